"""docs/from-trl.md's mappings, checked: real ``trl.GRPOConfig``s (trl 1.16.0, the ``dev`` extra) go
through ``rlvr.from_trl.convert`` and rlvr's own config builder, and every row of the page's table
holds; the page shows the converter's table and the recipe it writes for the page's script."""
import ast
import dataclasses
import enum
import re
from pathlib import Path

import pytest
import yaml

from rlvr.algorithms.presets import get_preset
from rlvr.cli import main
from rlvr.config import from_dict
from rlvr.errors import ConfigError
from rlvr.from_trl import TABLE, TRL_DEFAULTS, convert, markdown_table

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "from-trl.md"
REWARDS = ["trl:recipes/trl_rewards.py:correct_answer", "trl:recipes/trl_rewards.py:bare_number"]


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the reward specs are relative to the repository


def grpo_config(**kw):
    trl = pytest.importorskip("trl")
    return trl.GRPOConfig(use_cpu=True, **{"bf16": False, **kw})


def rlvr_settings(recipe: dict) -> dict:
    """Every setting of rlvr's validated config, flat, the algorithm's resolved through its preset."""
    cfg = from_dict(recipe)
    d = cfg.to_dict()
    built = get_preset(cfg.algorithm.preset).with_overrides(**cfg.algorithm.overrides)
    d["algorithm"] = {**{k: v for k, v in d["algorithm"].items() if k != "preset"}, **dataclasses.asdict(built)}
    out = {}

    def flat(tree, prefix=""):
        for k, v in tree.items():
            if isinstance(v, dict) and not f"{prefix}{k}".endswith("reward.verifiers"):
                flat(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v
    flat(d)
    return out


# (GRPOConfig fields, expected rlvr settings): at least one case for every row of the page's table
CASES = [
    ({"learning_rate": 3e-6}, {"trainer.lr": 3e-6}),
    ({"lr_scheduler_type": "cosine"}, {"trainer.lr_schedule": "cosine"}),
    ({"lr_scheduler_type": "constant_with_warmup", "warmup_steps": 4, "max_steps": 40},
     {"trainer.lr_schedule": "constant", "trainer.warmup_steps": 4, "trainer.total_steps": 40}),
    ({"warmup_steps": 0.1, "max_steps": 100, "steps_per_generation": 2, "per_device_train_batch_size": 8},
     {"trainer.warmup_steps": 5, "trainer.total_steps": 50}),
    ({"weight_decay": 0.01, "max_grad_norm": 0.5, "seed": 3},
     {"trainer.weight_decay": 0.01, "trainer.max_grad_norm": 0.5, "trainer.seed": 3}),
    ({"num_generations": 4}, {"rollout.n": 4, "trainer.prompts_per_step": 2, "trainer.mini_batch_size": None}),
    ({"max_completion_length": 64}, {"rollout.max_new_tokens": 64}),
    ({"temperature": 0.7, "top_p": 0.9}, {"rollout.temperature": 0.7, "rollout.top_p": 0.9}),
    ({"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "num_generations": 4},
     {"trainer.prompts_per_step": 2, "trainer.mini_batch_size": None, "trainer.micro_batch_size": 4}),
    ({"per_device_train_batch_size": 4, "steps_per_generation": 4, "num_generations": 4, "max_steps": 40},
     {"trainer.prompts_per_step": 4, "trainer.mini_batch_size": 4, "trainer.micro_batch_size": 4,
      "trainer.total_steps": 10}),
    ({"generation_batch_size": 32, "per_device_train_batch_size": 8, "num_generations": 8},
     {"trainer.prompts_per_step": 4, "trainer.mini_batch_size": 8}),
    ({"num_iterations": 2, "max_steps": 10}, {"algorithm.epochs": 2, "trainer.total_steps": 5}),
    ({"beta": 0.04}, {"algorithm.kl_coef": 0.04, "algorithm.kl_kind": "k3", "algorithm.kl_placement": "loss",
                      "algorithm.kl_clamp": None}),
    ({"beta": 0.0}, {"algorithm.kl_placement": "none"}),
    ({"epsilon": 0.1}, {"algorithm.clip_low": 0.1, "algorithm.clip_high": 0.1}),
    ({"epsilon_high": 0.28}, {"algorithm.clip_low": 0.2, "algorithm.clip_high": 0.28}),
    ({"delta": 1.5}, {"algorithm.dual_clip": 1.5, "algorithm.policy_loss": "ppo_clip"}),
    ({"loss_type": "grpo"}, {"algorithm.loss_agg": "seq-mean-token-mean"}),
    ({"loss_type": "dapo"}, {"algorithm.loss_agg": "token-mean"}),
    ({"loss_type": "bnpo"}, {"algorithm.loss_agg": "token-mean"}),
    ({"loss_type": "dr_grpo", "max_completion_length": 128},
     {"algorithm.loss_agg": "seq-mean-token-sum-norm", "rollout.max_new_tokens": 128}),
    ({"loss_type": "cispo", "epsilon_high": 5.0},
     {"algorithm.policy_loss": "cispo", "algorithm.clip_low": None, "algorithm.clip_high": 4.0,
      "algorithm.loss_agg": "token-mean"}),
    ({"importance_sampling_level": "sequence", "epsilon": 3e-4, "epsilon_high": 4e-4},
     {"algorithm.policy_loss": "gspo", "algorithm.clip_low": 3e-4, "algorithm.clip_high": 4e-4}),
    ({"scale_rewards": "group"}, {"algorithm.estimator": "grpo", "algorithm.whiten_advantages": False}),
    ({"scale_rewards": "none"}, {"algorithm.estimator": "dr_grpo"}),
    ({"scale_rewards": False}, {"algorithm.estimator": "dr_grpo"}),
    ({"reward_weights": [1.0, 0.2]}, {"reward.verifiers": {REWARDS[0]: 1.0, REWARDS[1]: 0.2}}),
    ({"mask_truncated_completions": True}, {"algorithm.overlong": "mask"}),
    ({"entropy_coef": 0.01}, {"algorithm.entropy_coef": 0.01}),
    ({"gradient_checkpointing": False}, {"model.gradient_checkpointing": False}),
    ({"shuffle_dataset": False}, {"data.shuffle": False}),
    ({"save_steps": 10, "eval_strategy": "steps", "eval_steps": 4, "steps_per_generation": 2,
      "per_device_train_batch_size": 8}, {"trainer.checkpoint_every": 5, "trainer.eval_every": 2}),
    ({"output_dir": "runs/x"}, {"trainer.output_dir": "runs/x"}),
    ({"use_vllm": True, "vllm_gpu_memory_utilization": 0.5, "vllm_max_model_length": 2048},
     {"rollout.engine": "vllm", "rollout.vllm.gpu_memory_utilization": 0.5, "rollout.vllm.tensor_parallel_size": 1,
      "rollout.vllm.max_model_len": 2048, "algorithm.seq_is": "mask", "algorithm.seq_is_high": 3.0,
      "algorithm.seq_is_low": 0.0}),
    ({"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": "http://gen-host:8000",
      "vllm_importance_sampling_mode": "token_truncate", "vllm_importance_sampling_clip_max": 2.0},
     {"rollout.engine": "vllm_server", "rollout.server.url": "http://gen-host:8000", "algorithm.tis_cap": 2.0,
      "algorithm.seq_is": None}),
    ({"use_vllm": True, "vllm_importance_sampling_mode": "sequence_truncate", "vllm_importance_sampling_clip_min": 0.5},
     {"algorithm.seq_is": "truncate", "algorithm.seq_is_low": 0.5}),
]
CLI_CASES = [  # the TRL CLI's own fields (not GRPOConfig's)
    ({"model_name_or_path": "models/qwen", "dataset_name": "data/rows.parquet", "dataset_train_split": "train"},
     {"model.name": "models/qwen", "data.train": "data/rows.parquet", "data.format": "trl", "data.train_split": None}),
    ({"dataset_name": "data/folder", "dataset_train_split": "all", "dataset_test_split": "valid",
      "eval_strategy": "steps", "eval_steps": 5},
     {"data.train_split": "all", "data.eval": "data/folder", "data.eval_split": "valid", "trainer.eval_every": 5}),
]


@pytest.mark.parametrize("fields,expected", CASES, ids=[",".join(c[0]) for c in CASES])
def test_each_mapping_holds_for_a_real_grpo_config(fields, expected):
    args = grpo_config(**fields)
    conv = convert(args, reward_funcs=REWARDS)
    got = rlvr_settings(conv.recipe)
    for key, value in expected.items():
        assert got[key] == (pytest.approx(value) if isinstance(value, float) else value), key
    # the dotted overrides say the same as the tree
    assert from_dict({}, conv.overrides).to_dict() == from_dict(conv.recipe).to_dict()


@pytest.mark.parametrize("fields,expected", CLI_CASES)
def test_the_trl_cli_fields_map(fields, expected):
    conv = convert(fields, reward_funcs=REWARDS)
    got = rlvr_settings(conv.recipe)
    for key, value in expected.items():
        assert got[key] == value, key


def test_every_row_of_the_table_is_checked():
    keys = set().union(*(e for _, e in CASES + CLI_CASES))
    for trl_fields, rlvr_fields, _ in TABLE:
        first = re.split(r"[ ,/(]", rlvr_fields)[0]
        assert any(k == first or k.startswith(first + ".") for k in keys), (trl_fields, first)


def test_the_defaults_are_trl_1_16s():
    """TRL_DEFAULTS, what a mapping without a field means, are those of the installed GRPOConfig."""
    args = grpo_config(bf16=True)
    for key, value in TRL_DEFAULTS.items():
        if key in ("steps_per_generation", "generation_batch_size"):  # filled in by __post_init__
            continue
        theirs = getattr(args, key)
        theirs = theirs.value if isinstance(theirs, enum.Enum) else theirs
        assert theirs == value, key
    # so a mapping of a few fields converts as the GRPOConfig with those fields does
    few = {"learning_rate": 2e-6, "loss_type": "grpo", "beta": 0.01, "max_steps": 30}
    assert convert(few, reward_funcs=REWARDS).recipe == convert(grpo_config(bf16=True, **few), reward_funcs=REWARDS).recipe


def test_fields_without_an_equivalent_are_named_in_one_line():
    cases = {"scale_rewards": "batch", "loss_type": "sapo", "multi_objective_aggregation": "normalize_then_sum",
             "top_k": 50, "min_p": 0.1, "repetition_penalty": 1.1, "sync_ref_model": True, "top_entropy_quantile": 0.2,
             "use_adaptive_entropy": True, "off_policy_mask_threshold": 0.5, "delta": 1.1}
    for key, value in cases.items():
        conv = convert(grpo_config(**{key: value, "max_steps": 10}), reward_funcs=REWARDS)
        mine = [n for n in conv.notes if n.startswith(f"{key}=")]
        assert len(mine) == 1 and "\n" not in mine[0], (key, conv.notes)
        from_dict(conv.recipe)  # and the recipe still builds
    conv = convert(grpo_config(beta=0.04, max_steps=10), reward_funcs=REWARDS)
    assert [n.split(":")[0] for n in conv.notes] == ["use_bias_correction_kl=True"]
    assert convert(grpo_config(max_steps=10), reward_funcs=REWARDS).notes == []
    assert [n.split(":")[0] for n in convert(grpo_config(bf16=True), reward_funcs=REWARDS).notes] == [
        "max_steps=-1", "bf16=True"]
    assert any(n.startswith("reward_funcs: none given") for n in convert(grpo_config(max_steps=1)).notes)


def test_ppo_keeps_trls_settings_and_its_own_critic():
    conv = convert(grpo_config(num_iterations=1, beta=0.0, loss_type="grpo", epsilon_high=0.28, max_steps=10),
                   reward_funcs=REWARDS, preset="ppo")
    got = rlvr_settings(conv.recipe)
    assert got["algorithm.critic"] is True and got["algorithm.estimator"] == "gae"
    assert (got["algorithm.epochs"], got["algorithm.clip_high"], got["algorithm.loss_agg"],
            got["algorithm.kl_placement"]) == (1, 0.28, "seq-mean-token-mean", "none")


# ---------------------------------------------------------------- the page
def _page_block(marker: str, lang: str) -> str:
    text = PAGE.read_text()
    start = text.index(f"<!-- from-trl:{marker} -->")
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(text, start)
    return m.group(1)


def test_the_page_shows_the_converters_table():
    text = PAGE.read_text()
    a = text.index("<!-- from-trl:table -->\n") + len("<!-- from-trl:table -->\n")
    assert text[a:text.index("<!-- /from-trl:table -->")].strip() == markdown_table()


def test_the_pages_recipe_is_what_the_converter_writes_for_the_pages_script():
    """The GRPOConfig(...) and GRPOTrainer(...) of the page's script, through convert, give the
    page's recipe; and it is recipes/quickstart_trl.yaml's run."""
    tree = ast.parse(_page_block("script", "python"))
    calls = {n.func.id: n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    kwargs = {k.arg: ast.literal_eval(k.value) for k in calls["GRPOConfig"].keywords}
    trainer = {k.arg: k.value for k in calls["GRPOTrainer"].keywords}
    funcs = [f"trl:recipes/trl_rewards.py:{e.id}" for e in trainer["reward_funcs"].elts]
    data_files = next(ast.literal_eval(k.value) for k in calls["load_dataset"].keywords if k.arg == "data_files")
    page = yaml.safe_load(_page_block("recipe", "yaml"))
    conv = convert(grpo_config(**kwargs), reward_funcs=funcs, model_name_or_path=page["model"]["name"],
                   dataset_name=data_files)
    assert conv.recipe == page and conv.notes == []
    assert ast.literal_eval(trainer["model"]) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    # recipes/quickstart_trl.yaml is that run plus rlvr's CPU settings
    ours = rlvr_settings(page)
    shipped = rlvr_settings(yaml.safe_load((ROOT / "recipes" / "quickstart_trl.yaml").read_text()))
    same = ["rollout.n", "rollout.max_new_tokens", "rollout.temperature", "rollout.top_p", "reward.verifiers",
            "trainer.lr", "trainer.lr_schedule", "trainer.prompts_per_step", "trainer.total_steps", "data.train",
            "data.format", "trainer.seed", "trainer.mini_batch_size", "model.name"]
    same += [k for k in ours if k.startswith("algorithm.") and k not in ("algorithm.description",)]
    assert {k: ours[k] for k in same} == {k: shipped[k] for k in same}


def test_rlvr_from_trl_writes_a_recipe_that_builds(tmp_path, capsys):
    pytest.importorskip("trl")  # the recipe names trl.rewards functions
    config = tmp_path / "grpo.yaml"
    config.write_text(yaml.safe_dump({
        "model_name_or_path": "smollm2-135m-instruct", "dataset_name": "recipes/data/add2_trl/train.jsonl",
        "reward_funcs": ["think_format_reward", "get_soft_overlong_punishment"], "reward_weights": [1.0, 0.5],
        "learning_rate": 2e-6, "num_generations": 4, "per_device_train_batch_size": 8, "max_steps": 12,
        "scale_rewards": "batch", "top_k": 20}))
    out = tmp_path / "recipe.yaml"
    assert main(["from-trl", str(config), "beta=0.02", "-o", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[2].strip().split("=")[0] for line in err] == ["top_k", "use_bias_correction_kl", "scale_rewards",
                                                                               "bf16"]
    text = out.read_text()
    assert "# note: scale_rewards='batch': rlvr has no group-mean baseline" in text
    cfg = from_dict(yaml.safe_load(text))
    assert cfg.reward.verifiers == {
        "trl:trl.rewards:think_format_reward": 1.0,
        "trl:trl.rewards:get_soft_overlong_punishment(max_completion_len=1280, soft_punish_cache=256)": 0.5}
    assert (cfg.trainer.lr, cfg.rollout.n, cfg.trainer.prompts_per_step, cfg.algorithm.overrides["kl_coef"]) == (
        2e-6, 4, 2, 0.02)
    assert cfg.data.format == "trl" and cfg.name == "grpo"
    assert main(["from-trl", str(tmp_path / "none.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_compare_refuses_a_recipe_that_fixes_the_baseline(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model": {"name": "tiny-random"}, "algorithm": {"estimator": "dr_grpo"},
                                      "reward": {"workers": 0}}))
    from evals.compare import compare

    with pytest.raises(ConfigError, match=r"algorithm.estimator='dr_grpo' in the recipe is applied to every compared "
                                          r"preset \(ctrl_critic, ctrl_group, ctrl_loo, ctrl_vine\)"):
        compare(recipe, [], ["ctrl_critic", "ctrl_group", "ctrl_loo", "ctrl_vine"], [0], out=tmp_path / "cmp")
