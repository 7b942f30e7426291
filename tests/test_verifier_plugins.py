"""Verifiers plugged in by spec (``file.py:function``, ``package.module:function``), weighted
verifiers with per-verifier metrics, the verifier outcome rates, reasoning-gym through the
workers, the early one-line errors, and the runnable example of docs/verifiers.md.

Everything runs for real: scoring worker processes, the tiny random model, ``rlvr`` commands.
"""
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

import verifiers
from rlvr.cli import main
from rlvr.config import from_dict
from rlvr.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

# Each verifier appends its process id to <this file>.pids, so a test can tell where it ran.
REWARDS = textwrap.dedent('''
    import os
    import time
    from pathlib import Path

    def _note():
        with open(Path(__file__).with_suffix(".pids"), "a") as f:
            f.write(f"{os.getpid()}\\n")

    def long_answer(completion, reference):
        _note()
        return min(1.0, len(completion) / 20)

    def has_digit(completion, reference):
        _note()
        return float(any(c.isdigit() for c in completion))

    def tricky(completion, reference):
        """Exact match; sleeps on "sleep", raises on "raise"."""
        _note()
        if completion == "sleep":
            time.sleep(60)
        if completion == "raise":
            raise ValueError("no answer here")
        return float(completion == reference), {"extracted": completion, "pid": os.getpid()}

    def guarded(completion, reference):
        """Exact match, but a completion that imports os is reported as a sandbox violation."""
        if "import os" in completion:
            return 0.0, {"status": "violation", "reason": "imports os"}
        return float(completion == reference)

    def pid_reward(completion, reference):
        """Reward 1; the extracted answer is the scoring process's id."""
        return 1.0, {"extracted": str(os.getpid())}

    def sleepy(completion, reference):
        time.sleep(60)
        return 1.0

    def boom(completion, reference):
        raise RuntimeError("reference missing")

    def one_arg(completion):
        return 1.0

    def verdict(completion, reference):
        return "correct"
''')


def write_rewards(folder: Path, name: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(REWARDS)
    return path


def pids_of(path: Path) -> set[int]:
    pid_file = path.with_suffix(".pids")
    return {int(x) for x in pid_file.read_text().split()} if pid_file.is_file() else set()


def write_recipe(folder: Path, reward: dict, **over) -> Path:
    tree = {
        "name": "plugins",
        "model": {"name": "tiny-random"},
        "data": {"train": "arithmetic:add2", "train_limit": 32},
        "rollout": {"n": 4, "max_new_tokens": 6, "micro_batch_size": 16},
        "reward": reward,
        "algorithm": {"preset": "grpo"},
        "trainer": {"total_steps": 2, "prompts_per_step": 2, "micro_batch_size": 8, "lr": 1e-3,
                    "output_dir": str(folder / "run"), "progress": False, "tensorboard": False},
    }
    for dotted, value in over.items():
        section, key = dotted.split(".")
        tree[section][key] = value
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# ------------------------------------------------------------------ rlvr train
def test_file_and_module_verifiers_train_with_weights_in_workers(tmp_path, monkeypatch, tiny_model_path):
    """reward.verifiers with the task's verifier, a file spec and a module spec: each scored in
    worker processes, each logged as reward/<name>, the total their weighted sum."""
    monkeypatch.chdir(tmp_path)
    rfile = write_rewards(tmp_path, "rewards_train")
    rmod = write_rewards(tmp_path, "vp_train_mod")
    weights = {"task": 1.0, "rewards_train.py:long_answer": 0.5, "vp_train_mod:has_digit": -0.25}
    recipe = write_recipe(tmp_path, {"verifiers": weights, "workers": 2, "timeout_s": 30})
    assert main(["train", str(recipe)]) == 0
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(rows) == 2
    for m in rows:
        parts = {k: m[f"reward/{k}"] for k in ("math", "rewards_train.py:long_answer", "vp_train_mod:has_digit")}
        assert all(0.0 <= v <= 1.0 for v in parts.values()), m
        total = parts["math"] + 0.5 * parts["rewards_train.py:long_answer"] - 0.25 * parts["vp_train_mod:has_digit"]
        assert m["reward/mean"] == pytest.approx(total, abs=1e-5)
        assert m["accuracy"] == pytest.approx(parts["math"])  # the first verifier decides accuracy
        assert m["verifier/timeout_rate"] == m["verifier/crash_rate"] == m["verifier/violation_rate"] == 0.0
    assert any(m["reward/rewards_train.py:long_answer"] > 0 for m in rows)  # random text has length
    for path in (rfile, rmod):  # scored (probe + 2 steps x 8 samples) in other processes
        pids = pids_of(path)
        assert pids and os.getpid() not in pids
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["reward"]["verifiers"] == weights


def test_sleeping_and_raising_verifiers_are_cut_off_in_training(tmp_path, monkeypatch, tiny_model_path):
    """A verifier that sleeps 60 s per item is killed at reward.timeout_s; one that raises scores 0;
    the step's verifier/* rates say so and training goes on."""
    monkeypatch.chdir(tmp_path)
    write_rewards(tmp_path, "rewards_bad")
    recipe = write_recipe(tmp_path, {"verifiers": {"rewards_bad.py:sleepy": 1.0, "rewards_bad.py:boom": 1.0},
                                     "workers": 2, "timeout_s": 1.0},
                          **{"trainer.total_steps": 1, "trainer.prompts_per_step": 1, "rollout.n": 2})
    t0 = time.monotonic()
    assert main(["train", str(recipe)]) == 0
    assert time.monotonic() - t0 < 50  # two sleeping items (and two probes) would take minutes
    (m,) = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert m["verifier/timeout_rate"] == 1.0 and m["verifier/crash_rate"] == 1.0
    assert m["verifier/violation_rate"] == 0.0
    assert m["reward/mean"] == 0.0 and m["reward/rewards_bad.py:sleepy"] == 0.0


def test_format_weight_is_a_shorthand_for_two_weighted_verifiers(tmp_path, tiny_model_path):
    recipe = write_recipe(tmp_path, {"workers": 0, "format_weight": 0.5}, **{"trainer.total_steps": 1})
    assert main(["train", str(recipe)]) == 0
    (m,) = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert m["reward/mean"] == pytest.approx(m["reward/math"] + 0.5 * m["reward/format"], abs=1e-6)
    assert {"verifier/timeout_rate", "verifier/crash_rate", "verifier/violation_rate"} <= set(m)
    base = {"model": {"name": "tiny-random"}}
    with pytest.raises(ConfigError, match="reward.format_weight is a shorthand"):
        from_dict({**base, "reward": {"verifiers": {"math": 1.0}, "format_weight": 0.1}})
    with pytest.raises(ConfigError, match="reward.verifier and reward.verifiers are both set"):
        from_dict({**base, "reward": {"verifiers": {"math": 1.0}, "verifier": "math"}})
    with pytest.raises(ConfigError, match="reward.verifiers.format: weight must be a finite number"):
        from_dict(base, ["reward.verifiers={math: 1.0, format: heavy}"])
    cfg = from_dict(base, ["reward.verifiers={math: 1.0, format: 0.1}", "reward.verifiers.code=0.2"])
    assert cfg.reward.verifiers == {"math": 1.0, "format": 0.1, "code": 0.2}


# ------------------------------------------------------------------ the early errors
BAD_SPECS = [
    ("nofile.py:f", "file nofile.py not found"),
    ("rewards_err.py:nope", "rewards_err.py has no 'nope' (it defines: boom, guarded, has_digit"),
    ("rewards_err.py:one_arg", "one_arg(completion) cannot be called as (completion, reference)"),
    ("rewards_err.py:verdict", "returned a str, not a number"),
    ("no_such_module_xyz:f", "no module named 'no_such_module_xyz'"),
    ("not a verifier", "unknown verifier 'not a verifier'"),
]


@pytest.mark.parametrize("spec,message", BAD_SPECS)
def test_bad_verifiers_fail_in_one_line_before_any_model_loads(tmp_path, monkeypatch, capsys, spec, message):
    """The model path does not exist: an error about the verifier proves it came first."""
    monkeypatch.chdir(tmp_path)
    write_rewards(tmp_path, "rewards_err")
    recipe = write_recipe(tmp_path, {"verifier": spec, "workers": 1, "timeout_s": 10},
                          **{"model.name": str(tmp_path / "no-model")})
    refs = tmp_path / "r.jsonl"
    refs.write_text('"1"\n')
    runs = [(["train", str(recipe)], "reward.verifier: "),
            (["eval", str(tmp_path / "no-model"), "--task", "arithmetic:add2", "--limit", "2", "--verifier", spec,
              "--workers", "1"], "--verifier: "),
            (["verify", "-v", spec, "-c", str(refs), "-r", str(refs), "-w", "1"], "verify: error: ")]
    if " " not in spec:  # a YAML mapping key
        runs.append((["train", str(recipe), "reward.verifier=null", f"reward.verifiers={{{spec}: 1.0}}"],
                     "reward.verifiers: "))
    for argv, field in runs:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0, err
        assert field in err and repr(spec) in err and message in err, err
        assert "no-model" not in err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ rlvr verify / rlvr eval
def test_verify_with_a_file_verifier_kills_the_sleeper_and_reports_the_raiser(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_rewards(tmp_path, "rewards_verify")
    comps = tmp_path / "c.jsonl"
    comps.write_text("".join(json.dumps(c) + "\n" for c in ["42", "41", "sleep", "raise"]))
    refs = tmp_path / "r.jsonl"
    refs.write_text('"42"\n' * 4)
    out = tmp_path / "scored.jsonl"
    t0 = time.monotonic()
    assert main(["verify", "-v", "rewards_verify.py:tricky", "-c", str(comps), "-r", str(refs),
                 "-w", "2", "-t", "2", "-o", str(out)]) == 0
    assert time.monotonic() - t0 < 40
    line = capsys.readouterr().out
    assert "count=4 mean_reward=0.2500" in line and "timeouts=1 errors=1 violations=0" in line, line
    rows = read_jsonl(out)
    assert [r["reward"] for r in rows] == [1.0, 0.0, 0.0, 0.0]
    assert rows[2]["reason"] == "timeout" and rows[2]["timeout"] is True and rows[2]["time_s"] < 10
    assert rows[3]["reason"] == "error: ValueError: no answer here"
    assert rows[0]["pid"] != os.getpid() and rows[0]["extracted"] == "42"


def test_verify_command_with_a_module_verifier(tmp_path):
    write_rewards(tmp_path, "vp_verify_mod")
    comps = tmp_path / "c.jsonl"
    comps.write_text('"7"\n"8"\n"raise"\n')
    refs = tmp_path / "r.jsonl"
    refs.write_text('"7"\n"7"\n"7"\n')
    out = tmp_path / "scored.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "rlvr.cli", "verify", "-v", "vp_verify_mod:tricky", "-c", str(comps),
                             "-r", str(refs), "-w", "1", "-o", str(out)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    assert "count=3 mean_reward=0.3333" in stdout and "errors=1" in stdout
    rows = read_jsonl(out)
    assert [r["reward"] for r in rows] == [1.0, 0.0, 0.0] and "no answer here" in rows[2]["reason"]
    assert pids_of(tmp_path / "vp_verify_mod.py") == {rows[0]["pid"]}  # one worker scored them all,
    assert rows[0]["pid"] != proc.pid  # and it is not the command's own process


def test_eval_with_file_and_module_verifiers(tmp_path, monkeypatch, tiny_model_path):
    monkeypatch.chdir(tmp_path)
    write_rewards(tmp_path, "rewards_eval")
    write_rewards(tmp_path, "vp_eval_mod")
    for spec in ("rewards_eval.py:pid_reward", "vp_eval_mod:pid_reward"):
        out = tmp_path / f"{spec.split(':')[0]}.jsonl"
        assert main(["eval", "tiny-random", "--task", "arithmetic:add2", "--limit", "3", "--max-new-tokens", "4",
                     "--verifier", spec, "--workers", "2", "--out", str(out)]) == 0
        records = read_jsonl(out)
        assert len(records) == 3 and all(r["rewards"] == [1.0] and r["verifier"] == spec for r in records)
        scorer_pids = {int(r["extracted"][0]) for r in records}
        assert scorer_pids and os.getpid() not in scorer_pids  # scored in worker processes
        summary = json.loads(Path(str(out) + ".summary.json").read_text())
        assert summary["pass@1"] == 1.0


# ------------------------------------------------------------------ outcome rates, reasoning-gym
def test_outcome_rates_count_timeouts_crashes_and_violations(tmp_path, monkeypatch):
    """Each sample counts once per outcome any of its verifiers saw; a verifier reports a sandbox
    violation with ``info["status"] == "violation"`` (as a code sandbox does)."""
    monkeypatch.chdir(tmp_path)
    write_rewards(tmp_path, "rewards_outcomes")
    comps = ["42", "import os", "sleep", "raise"]
    t0 = time.monotonic()
    res = verifiers.score_weighted(comps, ["42"] * 4, [("rewards_outcomes.py:guarded", 1.0),
                                                       ("rewards_outcomes.py:tricky", 0.5)], workers=2, timeout=2)
    assert time.monotonic() - t0 < 40
    assert res.rewards == [1.5, 0.0, 0.0, 0.0]
    assert [sorted(o) for o in res.outcomes] == [[], ["violation"], ["timeout"], ["crash"]]
    m = res.metrics()
    assert m["verifier/violation_rate"] == m["verifier/timeout_rate"] == m["verifier/crash_rate"] == 0.25
    assert m["reward/rewards_outcomes.py:guarded"] == 0.25 and m["reward/rewards_outcomes.py:tricky"] == 0.25
    assert res.primary[1].info["reason"] == "imports os"


def test_reasoning_gym_tasks_are_scored_in_the_workers(tmp_path, tiny_model_path):
    pytest.importorskip("reasoning_gym")
    from rlvr.data import load_prompts

    examples = load_prompts("reasoning_gym:chain_sum", limit=4)
    name = examples[0].verifier
    assert name == "reasoning_gym:chain_sum" and verifiers.worker_name(name) == name  # rebuilt by name
    comps = [f"So:\n<answer>{ex.reference['answer']}</answer>" if i % 2 == 0 else "<answer>-1</answer>"
             for i, ex in enumerate(examples)]
    res = verifiers.score_batch(name, comps, [ex.reference for ex in examples], workers=1, timeout=30)
    assert [r.reward for r in res] == [1.0, 0.0, 1.0, 0.0]
    assert not any(r.info.get("in_process") for r in res)
    with pytest.raises(verifiers.VerifierError, match="unknown reasoning-gym task"):
        verifiers.get("reasoning_gym:no_such_task")
    recipe = write_recipe(tmp_path, {"workers": 1}, **{"data.train": "reasoning_gym:chain_sum",
                                                       "trainer.total_steps": 1})
    assert main(["train", str(recipe)]) == 0
    (m,) = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert "reward/reasoning_gym:chain_sum" in m and m["verifier/crash_rate"] == 0.0


# ------------------------------------------------------------------ docs/verifiers.md
def test_docs_example_runs(tmp_path, tiny_model_path):
    """The ten-line example of docs/verifiers.md, as written (plus overrides that make it tiny)."""
    doc = (ROOT / "docs" / "verifiers.md").read_text()
    blocks = re.findall(r"```(\w+)\n(.*?)```", doc, re.S)
    source = next(body for lang, body in blocks if lang == "python" and body.startswith("# my_rewards.py"))
    command = next(body for lang, body in blocks if lang == "bash" and body.startswith("rlvr train"))
    assert len(source.splitlines()) + len(command.splitlines()) <= 10
    (tmp_path / "my_rewards.py").write_text(source)
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:3] == ["rlvr", "train", "recipes/quickstart.yaml"]
    tiny = ["model.name=tiny-random", "model.trainable_layers=null", "rollout.n=4", "trainer.prompts_per_step=2",
            f"trainer.output_dir={tmp_path / 'run'}", "trainer.progress=false", "data.eval_limit=4"]
    res = subprocess.run([sys.executable, "-m", "rlvr.cli", "train", str(ROOT / argv[2]), *argv[3:], *tiny],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr[-3000:]
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(rows) == 3
    for m in rows:  # the keys the docs promise
        assert m["reward/mean"] == pytest.approx(m["reward/math"] + 0.1 * m["reward/my_rewards.py:brevity"],
                                                 abs=1e-5)
        assert {"verifier/timeout_rate", "verifier/crash_rate", "verifier/violation_rate"} <= set(m)


# ------------------------------------------------------------------ what a plugin may be
def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("spec", ["builtins:eval", "builtins:exec", "os:rename", "shutil:copyfile", "operator:eq",
                                  "subprocess:call", "numpy:save", "yaml:dump", "verifiers.files:out_row",
                                  "reexport.py:score", "reexport.py:evaluate", "reexport.py:dump"])
def test_callables_that_are_not_verifiers_are_refused(tmp_path, monkeypatch, capsys, spec):
    """``builtins:eval`` passed the start-up check and then evaluated every completion as Python in
    the trainer; a library function (or one re-exported from a user file) is no verifier either."""
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "reexport.py", """
        from os import rename as score
        from yaml import dump
        evaluate = eval
    """)
    with pytest.raises(verifiers.VerifierError, match="not a verifier"):
        verifiers.get(spec)
    refs = tmp_path / "r.jsonl"
    refs.write_text('"1"\n')
    comps = tmp_path / "c.jsonl"
    comps.write_text(json.dumps("__import__('pathlib').Path('pwned').touch()") + "\n")
    assert main(["verify", "-v", spec, "-c", str(comps), "-r", str(refs), "-w", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and repr(spec) in err and "not a verifier" in err, err
    # a data row's own verifier field goes through the same check before any model loads
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"prompt": "What is 1 + 1?", "answer": "2", "verifier": spec}) + "\n")
    recipe = write_recipe(tmp_path, {"workers": 0}, **{"data.train": str(data), "data.train_limit": None,
                                                       "model.name": str(tmp_path / "no-model")})
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and repr(spec) in err and "not a verifier" in err and "no-model" not in err, err
    assert not (tmp_path / "pwned").exists()


def test_user_functions_classes_and_partials_are_still_verifiers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "good_plugins.py", """
        import functools

        from verifiers import Verifier

        def exact(completion, reference):
            return float(completion == reference)

        def _prefix(completion, reference, n):
            return float(completion[:n] == str(reference)[:n])

        first_two = functools.partial(_prefix, n=2)

        class Scorer:
            def score(self, completion, reference):
                return 0.5

        class Mine(Verifier):
            def score(self, completion, reference):
                return 1.0

        scorer = Scorer()
    """)
    for attr, want in (("exact", 1.0), ("first_two", 1.0), ("Scorer", 0.5), ("scorer", 0.5), ("Mine", 1.0)):
        res = verifiers.score_batch(f"good_plugins.py:{attr}", ["42"], ["42"], workers=0)
        assert res[0].reward == want, attr


def _install_entry_points(site: Path, **points: str) -> None:
    dist = site / "vp_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vp-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[rlvr.verifiers]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))


def test_an_entry_point_named_like_a_file_spec_is_the_same_verifier_everywhere(tmp_path, monkeypatch):
    """The name resolved to the entry point in the trainer and to the file in the scoring workers."""
    monkeypatch.chdir(tmp_path)
    site = tmp_path / "site"
    _install_entry_points(site, **{"scores.py:f": "vp_ep_plugin:score", "vp_eval": "builtins:eval"})
    _write(site / "vp_ep_plugin.py", """
        def score(completion, reference):
            return 0.75
    """)
    _write(tmp_path / "scores.py", """
        def f(completion, reference):
            return 0.25
    """)
    monkeypatch.syspath_prepend(str(site))
    here = verifiers.score_batch("scores.py:f", ["x"], [None], workers=0)[0]
    there = verifiers.score_batch("scores.py:f", ["x"], [None], workers=1, timeout=30)[0]
    assert not there.info.get("in_process")
    assert here.reward == there.reward == 0.75  # the documented order: entry points before specs
    assert verifiers.get("scores.py:f")("x", None) == 0.75  # also after the file was seen
    with pytest.raises(verifiers.VerifierError, match="'vp_eval' is not a verifier: builtins.eval"):
        verifiers.get("vp_eval")  # an entry point declares a plugin, not a built-in


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_reward_fails_the_check_and_is_flagged(tmp_path, monkeypatch, capsys, value):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "nan_rewards.py", f"""
        def always(completion, reference):
            return float("{value}")
    """)
    with pytest.raises(verifiers.VerifierError, match=f"returned {dict(nan='NaN').get(value, value)}, not a finite number"):
        verifiers.check("nan_rewards.py:always", "1", workers=0)
    for workers in (0, 1):
        (r,) = verifiers.score_batch("nan_rewards.py:always", ["x"], ["1"], workers=workers, timeout=30)
        assert r.reward == 0.0 and verifiers.outcome(r) == "crash" and r.info["non_finite"] in r.info["reason"], r
    recipe = write_recipe(tmp_path, {"verifier": "nan_rewards.py:always", "workers": 1},
                          **{"model.name": str(tmp_path / "no-model")})
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert "reward.verifier: " in err and "not a finite number" in err and "no-model" not in err, err


def test_verify_out_keeps_index_and_reward_when_the_plugin_info_has_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "clash.py", """
        def score(completion, reference):
            return float(completion == reference), {"index": 99, "reward": 0.5, "note": "mine"}
    """)
    comps, refs, out = tmp_path / "c.jsonl", tmp_path / "r.jsonl", tmp_path / "o.jsonl"
    comps.write_text('"1"\n"2"\n')
    refs.write_text('"1"\n"1"\n')
    assert main(["verify", "-v", "clash.py:score", "-c", str(comps), "-r", str(refs), "-w", "0", "-o", str(out)]) == 0
    rows = read_jsonl(out)
    assert [(r["index"], r["reward"]) for r in rows] == [(0, 1.0), (1, 0.0)]
    assert all(r["verifier_info"] == {"index": 99, "reward": 0.5} and r["note"] == "mine" for r in rows)


def test_a_plugin_calling_sys_exit_in_process_scores_zero_with_a_reason(tmp_path):
    _write(tmp_path / "quitter.py", """
        import sys

        def score(completion, reference):
            if completion == "quit":
                sys.exit(0)
            return float(completion == reference)
    """)
    comps, refs, out = tmp_path / "c.jsonl", tmp_path / "r.jsonl", tmp_path / "o.jsonl"
    comps.write_text('"1"\n"quit"\n"1"\n')
    refs.write_text('"1"\n"1"\n"1"\n')
    for workers in ("0", "1"):
        res = subprocess.run([sys.executable, "-m", "rlvr.cli", "verify", "-v", "quitter.py:score", "-c", str(comps),
                              "-r", str(refs), "-w", workers, "-o", str(out)], cwd=tmp_path, capture_output=True,
                             text=True, timeout=180, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert res.returncode == 0, res.stderr
        assert "count=3 mean_reward=0.6667" in res.stdout and "errors=1" in res.stdout, (workers, res.stdout)
        rows = read_jsonl(out)
        assert [r["reward"] for r in rows] == [1.0, 0.0, 1.0]
        assert rows[1]["reason"] == "error: SystemExit: 0", rows[1]
