"""Recipes, dotted overrides and validation errors."""
from pathlib import Path

import pytest

from rlvr.config import Config, from_dict, load_config, parse_override
from rlvr.errors import ConfigError

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_loads(recipe):
    cfg = load_config(recipe)
    assert isinstance(cfg, Config)
    assert cfg.name == recipe.stem


def test_required_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert {"quickstart", "gsm8k_ppo", "gsm8k_grpo", "math_ppo", "math_grpo", "humaneval_grpo", "ladder"} <= names


def test_dotted_overrides_are_typed():
    cfg = load_config(RECIPES[0], ["trainer.lr=1e-6", "rollout.n=4", "model.dtype=bfloat16",
                                   "trainer.max_time_s=60", "algorithm.clip_high=0.28"])
    assert cfg.trainer.lr == pytest.approx(1e-6) and isinstance(cfg.trainer.lr, float)
    assert cfg.rollout.n == 4 and isinstance(cfg.rollout.n, int)
    assert cfg.model.dtype == "bfloat16"
    assert cfg.trainer.max_time_s == 60.0
    assert cfg.algorithm.overrides == {"clip_high": 0.28}
    assert cfg.to_dict()["algorithm"]["clip_high"] == 0.28


def test_parse_override_values():
    assert parse_override("a.b=1e-6") == ("a.b", 1e-6)
    assert parse_override("a.b=true") == ("a.b", True)
    assert parse_override("a.b=null") == ("a.b", None)
    assert parse_override("a.b=[x, y]") == ("a.b", ["x", "y"])
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("trainer.lr")


def test_unknown_key_lists_alternatives():
    with pytest.raises(ConfigError) as e:
        load_config(RECIPES[0], ["trainer.learning_rate=1e-6"])
    msg = str(e.value)
    assert "trainer.learning_rate" in msg and "valid keys" in msg and "lr" in msg
    with pytest.raises(ConfigError, match="did you mean 'rollout'"):
        load_config(None, ["rollouts.n=3"])


def test_bad_type_names_the_field():
    with pytest.raises(ConfigError, match="rollout.n: expected an integer"):
        load_config(None, ["rollout.n=eight"])
    with pytest.raises(ConfigError, match="trainer.tensorboard: expected true/false"):
        load_config(None, ["trainer.tensorboard=3"])


def test_cross_field_validation():
    with pytest.raises(ConfigError, match="algorithm.preset"):
        load_config(None, ["algorithm.preset=sac"])
    with pytest.raises(ConfigError, match="rollout.engine"):
        load_config(None, ["rollout.engine=tgi"])
    with pytest.raises(ConfigError, match="algorithm"):
        load_config(None, ["algorithm.not_a_preset_field=1"])
    with pytest.raises(ConfigError, match="rollout.temperature"):
        load_config(None, ["rollout.temperature=0"])
    with pytest.raises(ConfigError, match="^rollout.server.weight_transport must be http, collective or auto, got"):
        load_config(None, ["rollout.server.weight_transport=nccl"])
    server = load_config(None, ["rollout.server.weight_transport=collective"]).rollout.server
    assert server.weight_transport == "collective"


def test_bad_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: x\ntrainer: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+"):
        load_config(bad)
    with pytest.raises(ConfigError, match="recipe not found"):
        load_config(tmp_path / "missing.yaml")


def test_vllm_settings_live_in_their_own_section():
    cfg = from_dict({"rollout": {"engine": "vllm", "vllm": {"enforce_eager": True, "max_model_len": 1024}}})
    assert cfg.rollout.vllm.enforce_eager and cfg.rollout.vllm.max_model_len == 1024
    assert cfg.to_dict()["rollout"]["vllm"]["enforce_eager"] is True  # saved nested, read back the same
    assert from_dict(cfg.to_dict()).rollout.vllm == cfg.rollout.vllm
    with pytest.raises(ConfigError, match="rollout.vllm.enforce_eeger"):
        from_dict({}, ["rollout.vllm.enforce_eeger=true"])


def test_flat_vllm_keys_of_earlier_versions_still_load_with_a_warning():
    with pytest.warns(FutureWarning, match=r"rollout.vllm_enforce_eager is deprecated: it is now rollout.vllm.enforce_eager"):
        cfg = from_dict({"rollout": {"vllm_enforce_eager": True, "tensor_parallel_size": 2}})
    assert cfg.rollout.vllm.enforce_eager and cfg.rollout.vllm.tensor_parallel_size == 2
    with pytest.raises(ConfigError, match="both set"):
        from_dict({"rollout": {"vllm_enforce_eager": True, "vllm": {"enforce_eager": False}}})


def test_engine_names_come_from_the_engine_table():
    from rlvr.rollout import ENGINES

    assert {"hf", "vllm"} <= set(ENGINES) and ENGINES["hf"].embedded and ENGINES["vllm"].section == "vllm"
    with pytest.raises(ConfigError, match="rollout.engine must be one of hf, vllm"):
        from_dict({"rollout": {"engine": "sglang"}})
    with pytest.raises(ConfigError, match="embedded engine"):
        from_dict({"rollout": {"engine": "vllm"}, "trainer": {"reuse_sampler_logprobs": True}})


def test_string_overrides_are_taken_verbatim():
    cfg = from_dict({}, ["data.system_prompt=Think # then answer", "trainer.output_dir=runs/exp #2",
                         "model.name=tiny-random", "data.eval=null", "trainer.lr=1e-3 ", "rollout.n=4"])
    assert cfg.data.system_prompt == "Think # then answer"
    assert cfg.trainer.output_dir == "runs/exp #2"
    assert cfg.data.eval is None and cfg.trainer.lr == 1e-3 and cfg.rollout.n == 4
    # a string field that looks like a number stays a string; a preset's string field too
    assert from_dict({}, ["trainer.output_dir=123"]).trainer.output_dir == "123"
    assert parse_override("algorithm.estimator=rloo # x") == ("algorithm.estimator", "rloo # x")


def test_compare_forwards_output_dir_and_overrides_to_its_runs(tmp_path):
    import argparse

    from evals.compare import _run_overrides

    out = tmp_path / "runs" / "exp #2"
    recipe = ["data.system_prompt=Think # then answer"]
    cfg = from_dict({}, recipe)
    args = argparse.Namespace(max_tokens=None, max_time=None)
    run_dir = out / "grpo" / "seed0"
    child = from_dict({}, [*recipe, *_run_overrides(cfg, "grpo", 0, run_dir, args)])
    assert child.trainer.output_dir == str(run_dir)
    assert child.data.system_prompt == "Think # then answer"


@pytest.mark.parametrize("override,field", [
    ("trainer.seed=-1", "trainer.seed"), ("trainer.lr=.inf", "trainer.lr"), ("trainer.lr=.nan", "trainer.lr"),
    ("algorithm.value_clip=0", "algorithm.value_clip"), ("trainer.eval_every=-1", "trainer.eval_every"),
    ("data.train_limit=-3", "data.train_limit"), ("data.eval_limit=0", "data.eval_limit"),
    ("trainer.max_grad_norm=0", "trainer.max_grad_norm"), ("trainer.critic_lr=-1e-5", "trainer.critic_lr"),
    ("trainer.checkpoint_every=-2", "trainer.checkpoint_every"), ("trainer.max_bad_steps=0", "trainer.max_bad_steps"),
    ("trainer.max_time_s=.inf", "trainer.max_time_s"), ("trainer.final_eval_temperature=0", "trainer.final_eval_temperature"),
    ("reward.workers=-1", "reward.workers"), ("rollout.vllm.gpu_memory_utilization=1.5", "rollout.vllm.gpu_memory_utilization"),
    ("trainer.warmup_steps=-1", "trainer.warmup_steps"),
])
def test_out_of_range_values_are_refused_naming_the_field(override, field):
    with pytest.raises(ConfigError) as e:
        from_dict({}, [override])
    assert str(e.value).startswith(field) and "\n" not in str(e.value)


def test_cli_reports_a_negative_seed_in_one_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "rlvr.cli", "train", str(RECIPES[0]),
                           "trainer.seed=-1", f"trainer.output_dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=120, env={**__import__("os").environ,
                                                                          "PYTHONPATH": str(RECIPES[0].parents[1])})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["rlvr train: error: trainer.seed must be in 0..2147483647, got -1"]


def test_study_chain4d1_recipe_declares_its_study():
    """recipes/study_chain4d1.yaml: a margin, >= 48 steps, >= 6 eval points (the base model, the
    periodic evals, the final one) and 1,024 distinct held-out items that training never draws."""
    from rlvr.data import load_eval_examples, load_prompts

    cfg = load_config(Path(__file__).resolve().parents[1] / "recipes" / "study_chain4d1.yaml")
    t = cfg.trainer
    assert cfg.margin == 0.03 and cfg.algorithm.preset == "ctrl_group" and t.total_steps >= 48
    assert 1 + len(range(t.eval_every, t.total_steps + 1, t.eval_every)) >= 6 and t.eval_every_limit == 256
    items = load_eval_examples(cfg)
    assert len(items) == 1024 == len({e.id for e in items})
    train = {e.id.rsplit("/", 1)[1] for e in load_prompts(cfg.data.train, split="train", limit=10**6)}
    assert not train & {e.id.rsplit("/", 1)[1] for e in items}
