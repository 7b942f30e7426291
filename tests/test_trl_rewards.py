"""TRL reward functions as verifiers (``trl:`` specs, verifiers/trl.py) and TRL datasets as they are.

The proof against the real thing: where trl is installed (the ``dev`` extra pins trl 1.16.0), the
reward functions TRL ships score the same batch through rlvr (its scoring workers, a TRL-format data
file) and through TRL's own ``GRPOTrainer._calculate_rewards`` followed by TRL's weighted ``nansum``,
and every number agrees. Nothing is installed at run time.
"""
import json
import math
import textwrap
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import verifiers
from rlvr.cli import main
from rlvr.config import from_dict
from rlvr.data import encode_prompt, load_prompts
from rlvr.errors import ConfigError, DataError
from rlvr.scoring import score_examples
from verifiers import VerifierError
from verifiers import trl as vtrl

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- a batch TRL's own functions score
ROWS = [  # a TRL prompt-only dataset with a solution column (and one TRL cannot parse: None)
    {"prompt": [{"role": "user", "content": "What is 1/3 of 1?"}], "solution": "\\frac{1}{3}", "level": 1},
    {"prompt": [{"role": "user", "content": "What is 6 x 7?"}], "solution": "42", "level": 2},
    {"prompt": [{"role": "user", "content": "Name a colour."}], "solution": "blue", "level": 3},
]
COMPLETIONS = [  # two per row (num_generations = 2), in TRL's order: row i's at 2i, 2i + 1
    "<think>\nOne third.\n</think>\nThe answer is $\\boxed{\\frac{1}{3}}$.",
    "The answer is $\\boxed{\\frac{1}{2}}$.",
    "<think>6 times 7</think> $\\boxed{42}$",
    "<think>6 times 7 is 42. 42 42 42 42</think>",
    "blue blue blue blue",
    "<think>colours</think> red",
]
IDS = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [1, 2, 1, 2, 1, 2], [5, 6, 7], [9] * 20, [3, 4, 3, 4, 3, 4, 3, 4, 3],
       list(range(15))]
SHIPPED = [  # (rlvr spec, weight)
    ("trl:trl.rewards:accuracy_reward", 1.0),
    ("trl:trl.rewards:reasoning_accuracy_reward", 0.5),
    ("trl:trl.rewards:think_format_reward", 0.25),
    ("trl:trl.rewards:get_repetition_penalty_reward(ngram_size=2, max_penalty=-0.5)", 1.0),
    ("trl:trl.rewards:get_soft_overlong_punishment(max_completion_len=14, soft_punish_cache=6)", 0.3),
    ("trl:trl.rewards:get_cosine_scaled_reward(max_len=16)", 0.2),
]


def trl_calculate_rewards(funcs, weights, inputs, prompts, completions, completion_ids, step=0):
    """TRL's own code: ``GRPOTrainer._calculate_rewards`` on a stand-in trainer (the attributes it
    reads), then the weighted sum of ``_generate_and_score_completions`` (``nansum``)."""
    import torch
    from transformers import TrainerState
    from trl import GRPOTrainer
    from trl.trainer.utils import get_callable_name

    extra, metrics = defaultdict(list), defaultdict(list)
    stub = SimpleNamespace(
        accelerator=SimpleNamespace(device=torch.device("cpu"), is_main_process=True),
        args=SimpleNamespace(report_to=[]), state=TrainerState(global_step=step), reward_funcs=funcs,
        reward_processing_classes=[None] * len(funcs), reward_func_names=[get_callable_name(f) for f in funcs],
        environments=None, _log_completion_extra=lambda c, v: extra[c].extend(v),
        _log_metric=lambda n, v: metrics[n].append(v))
    per_func = GRPOTrainer._calculate_rewards(stub, inputs, prompts, completions, completion_ids)
    total = (per_func * torch.tensor(weights, dtype=torch.float32).unsqueeze(0)).nansum(dim=1)
    return per_func, total, stub.reward_func_names


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_trl_shipped_reward_functions_score_identically_through_rlvr(tmp_path, monkeypatch):
    pytest.importorskip("trl")
    import torch

    monkeypatch.chdir(tmp_path)
    n = 2
    # TRL: the dataset's rows repeated num_generations times, conversational completions
    inputs = [dict(row) for row in ROWS for _ in range(n)]
    prompts = [x["prompt"] for x in inputs]
    completions = [[{"role": "assistant", "content": c}] for c in COMPLETIONS]
    funcs = [vtrl.load(spec).fn for spec, _ in SHIPPED]
    per_func, total, names = trl_calculate_rewards(funcs, [w for _, w in SHIPPED], inputs, prompts, completions,
                                                   IDS, step=3)
    assert torch.isnan(per_func).any() and not torch.isnan(per_func).all()  # None (blue) is in the batch

    # rlvr: the same rows as a TRL-format data file, scored in the worker processes
    examples = load_prompts(write_jsonl(tmp_path / "rows.jsonl", ROWS), format="trl")
    res = score_examples(examples, COMPLETIONS, n, SHIPPED, workers=2, timeout=30, completion_ids=IDS,
                         state={"global_step": 3})
    assert res.rewards == pytest.approx(total.tolist(), abs=1e-6)
    for j, name in enumerate(names):
        theirs = [None if math.isnan(x) else x for x in per_func[:, j].tolist()]
        assert res.parts[name] == pytest.approx(theirs, abs=1e-6), name
    # one reward/<name> metric per function: TRL's nanmean
    m = res.metrics()
    for j, name in enumerate(names):
        assert m[f"reward/{name}"] == pytest.approx(torch.nanmean(per_func[:, j]).item(), abs=1e-6)
    assert m["verifier/crash_rate"] == m["verifier/timeout_rate"] == 0.0
    # and scored in this process (reward.workers: 0) the same
    here = score_examples(examples, COMPLETIONS, n, SHIPPED, workers=0, timeout=30, completion_ids=IDS)
    assert here.rewards == pytest.approx(total.tolist(), abs=1e-6)


def test_plain_text_prompts_pass_text_completions_and_every_column(tmp_path, monkeypatch):
    """A plain-text TRL dataset: prompts and completions reach the function as strings, every column
    (not prompt) as a keyword list, trainer_state, log_extra and log_metric as TRL passes them; the
    same call through TRL's _calculate_rewards returns the same rewards."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "seen.py").write_text(textwrap.dedent('''
        import json
        def seen(prompts, completions, completion_ids, trainer_state, log_extra, log_metric, answer, tag, **kwargs):
            assert all(isinstance(p, str) for p in prompts) and all(isinstance(c, str) for c in completions)
            log_metric("mean_len", sum(map(len, completions)) / len(completions))
            log_extra("tag_seen", list(tag))
            return [float(len(c) + len(a) + len(ids)) + trainer_state.global_step / 10
                    for c, a, ids in zip(completions, answer, completion_ids)]
    '''))
    rows = [{"prompt": "2 + 2 =", "answer": "4", "tag": "a"}, {"prompt": "3 + 3 =", "answer": "6!", "tag": "b"}]
    examples = load_prompts(write_jsonl(tmp_path / "plain.jsonl", rows), format="trl")
    assert examples[0].plain_prompt == "2 + 2 =" and examples[0].columns == {"answer": "4", "tag": "a"}
    texts, ids = [" 4", " four", " 6", ""], [[1], [1, 2], [3], []]
    res = score_examples(examples, texts, 2, [("trl:seen.py:seen", 1.0)], workers=1, timeout=30,
                         completion_ids=ids, state={"global_step": 5})
    assert res.rewards == pytest.approx([4.5, 8.5, 5.5, 2.5])
    assert res.metrics()["reward/seen/mean_len"] == pytest.approx(9 / 4)
    got = vtrl.score("trl:seen.py:seen", texts, [vtrl.Item(r["prompt"], {k: v for k, v in r.items() if k != "prompt"}, i)
                                                 for r, i in zip([rows[0], rows[0], rows[1], rows[1]], ids)], workers=0)
    assert [r.info["extra"] for r in got.results] == [{"tag_seen": t} for t in "aabb"]
    try:
        import trl  # noqa: F401
    except ImportError:
        return
    else:
        inputs = [dict(r) for r in rows for _ in range(2)]
        per_func, total, _ = trl_calculate_rewards([vtrl.load("trl:seen.py:seen").fn], [1.0], inputs,
                                                   [x["prompt"] for x in inputs], texts, ids, step=5)
        assert total.tolist() == pytest.approx(res.rewards)


# ---------------------------------------------------------------- specs, factories, early errors
BAD = textwrap.dedent('''
    import os
    import time

    def fine(completions, **kwargs):
        return [1.0] * len(completions)

    def raises(completions, kind, **kwargs):
        """Raises on a batch holding a "boom" row: alone, only those rows fail."""
        if "boom" in kind:
            raise ValueError("boom row")
        return [1.0] * len(completions)

    def wrong_length(completions, **kwargs):
        """Right on the two-completion probe, one short on a training batch."""
        return [1.0] * (len(completions) - 1 if len(completions) > 2 else len(completions))

    def not_a_number(completions, kind, **kwargs):
        return ["high" if k == "boom" else 0.5 for k in kind]

    def slow(completions, kind, **kwargs):
        if "boom" in kind:
            time.sleep(30)
        return [0.25] * len(completions)

    def exits(completions, kind, **kwargs):
        """Kills its process on a batch holding a "boom" row."""
        if "boom" in kind:
            os._exit(3)
        return [0.5] * len(completions)

    def needs_solution(completions, solution, **kwargs):
        return [1.0] * len(completions)

    def no_kwargs(completions):
        return [1.0] * len(completions)

    def always_short(completions, **kwargs):
        return [1.0]

    def says_yes(completions, **kwargs):
        return ["yes"] * len(completions)

    class Scaled:
        __name__ = "scaled_reward"

        def __init__(self, scale, offset=0.0):
            self.scale, self.offset = scale, offset

        def __call__(self, completions, **kwargs):
            return [self.scale * len(c) + self.offset for c in completions]

    def make_constant(value):
        def constant(completions, **kwargs):
            return [value] * len(completions)
        return constant

    async def async_reward(completions, **kwargs):
        return [2.0] * len(completions)
''')


@pytest.fixture
def bad_rewards(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.py").write_text(BAD)
    return tmp_path


def test_factory_and_class_specs_take_literal_arguments(bad_rewards):
    items = [vtrl.Item("p", {}, [1])] * 2
    for spec, want in [("trl:bad.py:Scaled(2, offset=-1.5)", [2.5, 6.5]), ("trl:bad.py:make_constant(0.75)", [0.75, 0.75]),
                       ("trl:bad.py:async_reward", [2.0, 2.0]), ("trl:bad.py:make_constant(None)", [0.0, 0.0])]:
        got = vtrl.score(spec, ["ab", "abcd"], items, workers=0)
        assert [r.reward for r in got.results] == want, spec
    assert verifiers.label("trl:bad.py:Scaled(2)") == "scaled_reward"  # TRL's name for it
    assert verifiers.worker_name("trl:bad.py:Scaled(2)") == f"trl:{bad_rewards / 'bad.py'}:Scaled(2)"
    assert verifiers.score_batch("trl:bad.py:Scaled(1)", ["abc"], [None], workers=1)[0].reward == 3.0


@pytest.mark.parametrize("spec,message", [
    ("trl:bad.py", "expected trl:path/to/file.py:function"),
    ("trl:nofile.py:f", "file nofile.py not found"),
    ("trl:bad.py:nope", "bad.py has no 'nope' (it defines:"),
    ("trl:bad.py:no_kwargs", "no_kwargs(completions) cannot be called as TRL calls a reward function"),
    ("trl:bad.py:make_constant", "give it **kwargs (a factory? call it: trl:bad.py:make_constant(...))"),
    ("trl:bad.py:make_constant(1", "cannot read the arguments '(1'"),
    ("trl:bad.py:make_constant(open('x'))", "must be Python literals"),
    ("trl:bad.py:make_constant()", "make_constant() failed: TypeError"),
    ("trl:bad.py:Scaled", "Scaled is a class; TRL calls a reward function"),
    ("trl:os:remove", "standard-library module"),
    ("trl:bad.py:needs_solution", "needs_solution needs the column 'solution', which the data does not have "
                                  "(its columns: kind)"),
    ("trl:bad.py:always_short", "always_short returned 1 rewards for 2 completions"),
    ("trl:bad.py:says_yes", "says_yes returned a str at batch position 0, not a number"),
])
def test_bad_reward_functions_fail_in_one_line_before_any_model_loads(bad_rewards, capsys, spec, message):
    """Recipe, rlvr verify and rlvr eval: the model does not exist, so the error shows the check came first."""
    data = write_jsonl(bad_rewards / "rows.jsonl", [{"prompt": "1 + 1 =", "kind": "ok"}])
    comps = write_jsonl(bad_rewards / "c.jsonl", [{"completion": " 2"}])
    recipe = bad_rewards / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"name": str(bad_rewards / "no-model")}, "data": {"train": str(data), "format": "trl"},
        "reward": {"verifiers": {spec: 1.0}, "workers": 1}, "trainer": {"output_dir": str(bad_rewards / "run")}}))
    runs = [(["train", str(recipe)], "rlvr train: error: reward.verifiers: "),
            (["verify", "-v", spec, "-c", str(comps), "-r", str(data), "-w", "1"], "rlvr verify: error: "),
            (["eval", str(bad_rewards / "no-model"), "--task", str(data), "--verifier", spec, "--workers", "1"],
             "rlvr eval: error: --verifier: ")]
    for argv, prefix in runs:
        if argv[0] == "eval":  # eval reads the data with its own flag
            argv += ["--format", "trl"]
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(prefix) and message in err[-1], (argv[0], err)


def test_bad_results_score_zero_with_one_line_naming_function_and_position(bad_rewards, caplog):
    """Raising, a wrong length, a non-number, running over time: a line each, 0 for the items it
    concerns, the rest scored; both in the workers and in this process."""
    kinds = ["ok", "ok", "boom", "ok"]
    items = [vtrl.Item("q", {"kind": k}, [1, 2]) for k in kinds]
    texts = ["a", "b", "c", "d"]
    for workers in (2, 0):
        caplog.clear()
        raised = vtrl.score("trl:bad.py:raises", texts, items, workers=workers, timeout=5)
        assert [r.reward for r in raised.results] == [1.0, 1.0, 0.0, 1.0]
        assert raised.results[2].info["reason"] == "error: raised ValueError: boom row"
        assert raised.problems == ["reward function 'raises' (trl:bad.py:raises) raised ValueError: boom row at batch "
                                   "position 2 (of 4); it scores 0"]
        short = vtrl.score("trl:bad.py:wrong_length", texts, items, workers=workers)
        assert [r.reward for r in short.results] == [0.0] * 4
        assert all(verifiers.outcome(r) == "crash" for r in short.results)
        assert short.problems == ["reward function 'wrong_length' (trl:bad.py:wrong_length) returned 3 rewards for 4 "
                                  "completions at batch positions 0-3; its completions all score 0"]
        word = vtrl.score("trl:bad.py:not_a_number", texts, items, workers=workers)
        assert [r.reward for r in word.results] == [0.5, 0.5, 0.0, 0.5]
        assert word.problems == ["reward function 'not_a_number' (trl:bad.py:not_a_number) returned a str instead of "
                                 "a number at batch position 2 (of 4); it scores 0"]
        assert [rec.getMessage() for rec in caplog.records] == raised.problems + short.problems + word.problems
    died = vtrl.score("trl:bad.py:exits", texts, items, workers=2)
    assert [r.reward for r in died.results] == [0.5, 0.5, 0.0, 0.5]
    assert died.problems == ["reward function 'exits' (trl:bad.py:exits) killed its scoring worker at batch position 2 "
                             "(of 4); it scores 0"]
    slow = vtrl.score("trl:bad.py:slow", texts, items, workers=2, timeout=0.5)  # the batch: 2 s, then one by one
    assert [r.reward for r in slow.results] == [0.25, 0.25, 0.0, 0.25]
    assert verifiers.outcome(slow.results[2]) == "timeout"
    assert slow.problems == ["reward function 'slow' (trl:bad.py:slow) ran over its 0.5 s limit at batch position 2 "
                             "(of 4); it scores 0"]


def test_none_is_left_out_of_the_sum_and_the_mean(bad_rewards):
    (bad_rewards / "maybe.py").write_text(textwrap.dedent('''
        def maybe(completions, **kwargs):
            return [None if c == "skip" else 1.0 for c in completions]
        def nan_half(completions, **kwargs):
            return [float("nan"), 0.5, None, 0.25]
    '''))
    res = verifiers.score_weighted(["skip", "x", "skip", "y"], [None] * 4,
                                   [("trl:maybe.py:maybe", 2.0), ("trl:maybe.py:nan_half", 1.0)], workers=0)
    assert res.rewards == [0.0, 2.5, 0.0, 2.25]
    assert res.parts == {"maybe": [None, 1.0, None, 1.0], "nan_half": [None, 0.5, None, 0.25]}
    assert res.metrics()["reward/maybe"] == 1.0 and res.metrics()["reward/nan_half"] == 0.375
    assert res.unscorable == [True, False, True, False]
    with pytest.raises(VerifierError, match="TRL reward function, which scores whole batches"):
        verifiers.combine({"trl:maybe.py:maybe": 1.0})


def test_recipe_with_bad_reward_functions_trains_on(bad_rewards, caplog, tiny_model_path):
    """rlvr train with four misbehaving TRL functions: every step scores what it can, logs one line
    per fault naming the function and batch position, and the run completes."""
    rows = [{"prompt": f"{a} + {a} =", "kind": "boom" if a % 2 else "ok"} for a in range(4)]  # ok, boom, ok, boom
    data = write_jsonl(bad_rewards / "rows.jsonl", rows)
    specs = ["trl:bad.py:raises", "trl:bad.py:wrong_length", "trl:bad.py:not_a_number", "trl:bad.py:slow"]
    recipe = bad_rewards / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"name": "tiny-random"}, "data": {"train": str(data), "format": "trl", "shuffle": False},
        "rollout": {"n": 2, "max_new_tokens": 4, "micro_batch_size": 8},
        "reward": {"verifiers": {s: 1.0 for s in specs}, "workers": 2, "timeout_s": 1.0},
        "trainer": {"total_steps": 2, "prompts_per_step": 2, "micro_batch_size": 4, "lr": 1e-3,
                    "output_dir": str(bad_rewards / "run"), "progress": False, "tensorboard": False}}))
    assert main(["train", str(recipe)]) == 0
    rows = [json.loads(x) for x in (bad_rewards / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for m in rows:  # a step: rows (ok, boom) x 2 samples, the boom row's at batch positions 2-3
        assert m["reward/raises"] == 0.5 and m["reward/wrong_length"] == 0.0
        assert m["reward/not_a_number"] == 0.25 and m["reward/slow"] == 0.125
        assert m["reward/mean"] == pytest.approx(0.875)
        assert m["verifier/crash_rate"] == 1.0 and m["verifier/timeout_rate"] == 0.5
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "verifiers.trl"]
    for line in ["reward function 'raises' (trl:bad.py:raises) raised ValueError: boom row at batch positions 2-3 (of 4)",
                 "reward function 'wrong_length' (trl:bad.py:wrong_length) returned 3 rewards for 4 completions at "
                 "batch positions 0-3; its completions all score 0",
                 "reward function 'not_a_number' (trl:bad.py:not_a_number) returned a str instead of a number at batch "
                 "positions 2-3 (of 4)",
                 "reward function 'slow' (trl:bad.py:slow) ran over its 1 s limit at batch positions 2-3 (of 4)"]:
        assert sum(x.startswith(line) for x in lines) == 2, (line, lines)  # once per step


# ---------------------------------------------------------------- TRL datasets as they are
def test_trl_datasets_load_from_jsonl_parquet_and_save_to_disk(tmp_path, tokenizer):
    import datasets

    rows = [{"prompt": [{"role": "user", "content": "What is 2 + 3?"}], "answer": "5", "meta": {"id": 1}},
            {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 4 + 4?"}],
             "answer": "8", "meta": {"id": 2}}]
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "rows.parquet"))
    ds.save_to_disk(str(tmp_path / "single"))
    datasets.DatasetDict({"train": ds, "test": ds.select([1])}).save_to_disk(str(tmp_path / "dict"))
    write_jsonl(tmp_path / "rows.jsonl", rows)
    for source, split, count in [(tmp_path / "rows.jsonl", None, 2), (tmp_path / "rows.parquet", None, 2),
                                 (tmp_path / "single", None, 2), (tmp_path / "dict", "train", 2),
                                 (tmp_path / "dict", "test", 1)]:
        exs = load_prompts(source, format="trl", split=split, reference_column="answer")
        assert len(exs) == count, source
        ex = exs[-1]
        assert ex.prompt == rows[1]["prompt"] and ex.plain_prompt is None
        assert ex.columns == {"answer": "8", "meta": {"id": 2}} and ex.reference == "8" and ex.verifier == "math"
        assert ex.task == "trl"
    # no reference column: only TRL reward functions can score it
    (ex,) = load_prompts(tmp_path / "rows.parquet", format="trl", limit=1, system_prompt="Think.")
    assert ex.reference is None and ex.verifier == "" and ex.prompt[0] == {"role": "system", "content": "Think."}
    with pytest.raises(DataError, match=r"no split 'validation' \(it has: train, test\)"):
        load_prompts(tmp_path / "dict", format="trl", split="validation")
    with pytest.raises(DataError, match=r"rows.jsonl:1: missing field 'solution' \(data.reference_column"):
        load_prompts(tmp_path / "rows.jsonl", format="trl", reference_column="solution")
    write_jsonl(tmp_path / "noprompt.jsonl", [{"question": "x"}])
    with pytest.raises(DataError, match="noprompt.jsonl:1: missing field 'prompt'"):
        load_prompts(tmp_path / "noprompt.jsonl", format="trl")
    write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "The capital of France is", "x": 1}])
    with pytest.raises(DataError, match="a TRL dataset .* is read with data.format: trl"):
        load_prompts(tmp_path / "plain.jsonl")
    (plain,) = load_prompts(tmp_path / "plain.jsonl", format="trl")
    # a text prompt is continued as is, as TRL does: no chat template
    assert encode_prompt(tokenizer, plain) == tokenizer(text="The capital of France is")["input_ids"]
    chat = encode_prompt(tokenizer, ex)
    assert chat == tokenizer.apply_chat_template(ex.prompt, add_generation_prompt=True, tokenize=True, return_dict=True)[
        "input_ids"] or chat == tokenizer.encode(tokenizer.apply_chat_template(ex.prompt, add_generation_prompt=True,
                                                                                tokenize=False), add_special_tokens=False)


def test_data_format_settings_are_checked(tmp_path):
    base = {"model": {"name": "tiny-random"}}
    with pytest.raises(ConfigError, match="data.reference_column needs data.format: trl"):
        from_dict({**base, "data": {"reference_column": "answer"}})
    with pytest.raises(ConfigError, match="data.format must be trl, gsm8k"):
        from_dict({**base, "data": {"format": "sharegpt"}})
    rows = write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "1 + 1 =", "answer": "2"}])
    from rlvr.scoring import check_reward

    cfg = from_dict({**base, "data": {"train": str(rows), "format": "trl"}, "reward": {"workers": 0}})
    with pytest.raises(ConfigError, match="has no reference for a built-in verifier .* set data.reference_column"):
        check_reward(cfg.reward, load_prompts(rows, format="trl"))
    check_reward(cfg.reward, load_prompts(rows, format="trl", reference_column="answer"))  # the task's math verifier


# ---------------------------------------------------------------- the TRL quickstart recipe
def test_quickstart_trl_recipe_trains_the_tiny_model(tmp_path, monkeypatch, tiny_model_path):
    """recipes/quickstart_trl.yaml (a TRL-format dataset, TRL-style reward functions) with the tiny
    model for two steps; with trl installed also a factory TRL ships, from the command line."""
    monkeypatch.chdir(ROOT)  # the recipe names its files relative to the repository
    out = tmp_path / "run"
    over = ["model.name=tiny-random", "model.trainable_layers=null", "trainer.total_steps=2",
            "trainer.prompts_per_step=2", "rollout.n=4", "data.eval_limit=4", "trainer.eval_every=0",
            f"trainer.output_dir={out}", "trainer.progress=false", "trainer.tensorboard=false"]
    factory = "trl:trl.rewards:get_soft_overlong_punishment(max_completion_len=16, soft_punish_cache=4)"
    try:
        import trl  # noqa: F401
        over.append("reward.verifiers={trl:recipes/trl_rewards.py:correct_answer: 1.0, "
                    f"trl:recipes/trl_rewards.py:bare_number: 0.1, '{factory}': 0.5}}")
        with_factory = True
    except ImportError:
        with_factory = False
    assert main(["train", "recipes/quickstart_trl.yaml", *over]) == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for m in rows:
        parts = m["reward/correct_answer"] + 0.1 * m["reward/bare_number"]
        if with_factory:
            assert m["reward/soft_overlong_punishment_reward"] <= 0.0
            parts += 0.5 * m["reward/soft_overlong_punishment_reward"]
        assert m["reward/mean"] == pytest.approx(parts, abs=1e-5)
        assert m["accuracy"] == pytest.approx(m["reward/correct_answer"])  # the first function decides accuracy
        assert m["verifier/crash_rate"] == 0.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and "final_eval/pass@1" in summary
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["format"] == "trl"


def test_quickstart_trl_reward_file_matches_the_task_verifier():
    """The example file's correct_answer agrees with the quickstart's own math verifier on answers
    the model gives (a bare number, a sentence, a wrong number)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("trl_rewards", ROOT / "recipes" / "trl_rewards.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    texts = ["57", "The answer is 57.", "56", "5 + 52 = 57", "fifty-seven"]
    ours = mod.correct_answer([[{"role": "assistant", "content": t}] for t in texts], ["57"] * len(texts))
    task = [r.reward for r in verifiers.score_batch("math", texts, ["57"] * len(texts), workers=0)]
    assert ours == task == [1.0, 1.0, 0.0, 1.0, 0.0]
    rows = [json.loads(x) for x in (ROOT / "recipes/data/add2_trl/test.jsonl").read_text().splitlines()]
    from rlvr.data import arithmetic_examples

    held_out = arithmetic_examples("add2", split="test", limit=64, seed=0)  # what the quickstart evaluates
    assert [r["prompt"] for r in rows[:64]] == [ex.prompt for ex in held_out]
    assert [r["answer"] for r in rows[:64]] == [ex.reference for ex in held_out]
