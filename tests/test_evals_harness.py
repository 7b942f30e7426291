"""Eval harness on real components: the tiny random Llama, the HF engine, the math verifier."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evals.harness import evaluate, resolve_checkpoint
from evals.passk import pass_at_k
from rlvr.errors import ConfigError, ModelError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_greedy_eval_writes_items(tiny_model_path, tmp_path):
    out = tmp_path / "items.jsonl"
    res = evaluate(tiny_model_path, "arithmetic:add2", limit=8, max_new_tokens=6, batch_size=8, out_path=out,
                   progress=False)
    assert res["n"] == 8 and res["samples"] == 1 and res["temperature"] == 0.0
    assert {"pass@1", "greedy/pass@1", "greedy/mean_reward", "time_s", "ci95", "tokens"} <= set(res)
    assert "sampled/pass@1" not in res  # temperature 0: greedy pass only
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 8 and len({r["id"] for r in recs}) == 8
    for r in recs:
        assert r["id"].startswith("arithmetic:add2/test/")  # evaluated on the held-out split
        assert r["prompt"][-1]["role"] == "user" and r["verifier"] == "math"
        assert len(r["completions"]) == len(r["rewards"]) == len(r["extracted"]) == len(r["tokens"]) == 1
        assert 1 <= r["tokens"][0] <= 6 and r["pass@1"] == float(r["correct"][0])
    assert res["pass@1"] == pytest.approx(sum(r["pass@1"] for r in recs) / 8)
    assert res["tokens"] == sum(r["tokens"][0] for r in recs)
    # the stored rewards are the verifier's
    from verifiers import score_batch

    again = score_batch("math", [r["completions"][0] for r in recs], [r["reference"] for r in recs])
    assert [s.reward for s in again] == [r["rewards"][0] for r in recs]


def test_sampled_eval_pass_at_k_and_in_memory_model(tiny_model_path, tmp_path):
    from rlvr.data import load_prompts
    from rlvr.models import load_policy
    from rlvr.rollout.hf import HFEngine

    model, tok = load_policy(tiny_model_path)
    model.train()
    examples = load_prompts("arithmetic:add2", split="test", limit=4)
    kwargs = dict(samples=4, temperature=1.0, k_values=(1, 2, 4), max_new_tokens=5, batch_size=8,
                  engine=HFEngine(model, tok, micro_batch_size=8), progress=False, seed=3, workers=0)
    res = evaluate((model, tok), examples, out_path=tmp_path / "s.jsonl", **kwargs)
    assert model.training  # restored after the eval
    for key in ("greedy/pass@1", "sampled/pass@1", "sampled/pass@2", "sampled/pass@4", "sampled/maj@4",
                "pass@4", "maj@4", "pass@2"):
        assert key in res and 0.0 <= res[key] <= 1.0, key
    assert res["pass@1"] == res["greedy/pass@1"] and res["n"] == 4 and res["samples"] == 4
    assert res["sampled/pass@1"] <= res["sampled/pass@2"] <= res["sampled/pass@4"]
    recs = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    for r in recs:
        assert len(r["completions"]) == 4 and len(r["greedy"]["completions"]) == 1
        c = sum(r["correct"])
        for k in (1, 2, 4):
            assert r[f"sampled/pass@{k}"] == pytest.approx(pass_at_k(4, c, k))
    # same seed -> same samples
    res2 = evaluate((model, tok), examples, out_path=tmp_path / "s2.jsonl", **kwargs)
    recs2 = [json.loads(line) for line in (tmp_path / "s2.jsonl").read_text().splitlines()]
    assert [r["completions"] for r in recs] == [r["completions"] for r in recs2]
    assert res2["sampled/pass@4"] == res["sampled/pass@4"]


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="needs temperature > 0"):
        evaluate("tiny-random", "arithmetic:add2", samples=4, temperature=0.0)
    with pytest.raises(ConfigError, match="pass@8 needs samples >= 8"):
        evaluate("tiny-random", "arithmetic:add2", samples=4, temperature=1.0, k_values=(1, 8))


def test_resolve_checkpoint_layouts(tiny_model_path, tmp_path):
    run = tmp_path / "run"
    for step in (2, 10):
        d = run / "checkpoints" / f"step_{step}" / "policy"
        d.mkdir(parents=True)
        (d / "config.json").write_text("{}")
    (run / "checkpoints" / ".tmp_step_12" / "policy").mkdir(parents=True)  # half-written: ignored
    (run / "checkpoints" / ".gone_step_1" / "policy").mkdir(parents=True)  # being deleted: ignored
    assert resolve_checkpoint(run) == str(run / "checkpoints" / "step_10" / "policy")
    (run / "checkpoints" / ".old_step_14" / "policy").mkdir(parents=True)  # a save of step 14 that a
    (run / "checkpoints" / ".old_step_14" / "policy" / "config.json").write_text("{}")  # crash cut off
    assert resolve_checkpoint(run) == str(run / "checkpoints" / ".old_step_14" / "policy")
    assert resolve_checkpoint(run / "checkpoints" / "step_2") == str(run / "checkpoints" / "step_2" / "policy")
    assert resolve_checkpoint(tiny_model_path) == tiny_model_path
    assert resolve_checkpoint("smollm2-135m-instruct") == "smollm2-135m-instruct"  # a name, left to load_policy
    with pytest.raises(ModelError, match="not a model directory"):
        resolve_checkpoint(tmp_path)


def test_cli_errors_are_one_line(capsys, tmp_path):
    from rlvr.cli import main

    assert main(["eval", "tiny-random", "--task", "no_such_task"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlvr eval: error:") and "no_such_task" in err and "\n" not in err
    assert main(["eval", str(tmp_path / "missing"), "--task", "arithmetic:add2", "--limit", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing" in err and "\n" not in err
    assert main(["eval", "tiny-random", "--task", "arithmetic:add2", "--samples", "2", "--temperature", "0"]) == 2
    assert "needs temperature > 0" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_eval_of_a_trainer_checkpoint(tiny_model_path, tmp_path):
    """`rlvr eval RUN_DIR` finds the latest checkpoint's policy/ and writes items + summary."""
    from rlvr.models import load_policy

    model, tok = load_policy(tiny_model_path)
    policy = tmp_path / "run" / "checkpoints" / "step_4" / "policy"
    model.save_pretrained(policy)
    tok.save_pretrained(policy)
    out = tmp_path / "items.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "rlvr.cli", "eval", str(tmp_path / "run"), "--task", "arithmetic:add2",
                           "--limit", "3", "--samples", "2", "--k", "1,2", "--max-new-tokens", "4", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(out.read_text().splitlines()) == 3
    summary = json.loads((tmp_path / "items.jsonl.summary.json").read_text())
    assert summary["n"] == 3 and summary["model"] == str(tmp_path / "run") and "sampled/pass@2" in summary
    assert "greedy/pass@1" in proc.stdout and "sampled/maj@2" in proc.stdout


class FirstChar:
    """A user verifier (public ``verifiers.register`` API): reward 1 when the completion's first
    character equals the reference, 0.5 (partial, not "correct") for any other non-empty text."""

    def score(self, completion: str, reference: str):
        from verifiers import ScoreResult

        first = completion.strip()[:1]
        reward = 1.0 if first and first == reference else (0.5 if first else 0.0)
        return ScoreResult(reward, {"extracted": first or None})


@pytest.mark.slow
def test_pass_and_maj_at_k_end_to_end_with_known_correctness(tiny_model_path, tmp_path):
    """Sample once, then make the first character of one sample (#0, #2 or #3) each item's reference and
    evaluate again with the same seed: the correctness of every sample is then known, so pass@k and
    maj@k can be checked exactly."""
    from collections import Counter

    import verifiers

    verifiers.register("test-first-char", FirstChar(), overwrite=True)
    try:
        path = tmp_path / "task.jsonl"

        def write(refs):
            path.write_text("".join(json.dumps({"prompt": f"Tell me a story number {i}.", "reference": r,
                                                "verifier": "test-first-char"}) + "\n" for i, r in enumerate(refs)))

        kw = dict(samples=4, temperature=1.0, k_values=(1, 2, 4), max_new_tokens=4, batch_size=16, greedy=False,
                  workers=0, progress=False, seed=5)
        write(["?"] * 3)
        evaluate(tiny_model_path, path, out_path=tmp_path / "a.jsonl", **kw)
        first = [[c.strip()[:1] for c in json.loads(line)["completions"]]
                 for line in (tmp_path / "a.jsonl").read_text().splitlines()]
        pick = [(0, 2, 3)[i % 3] for i in range(len(first))]
        write([f[j] for f, j in zip(first, pick)])
        res = evaluate(tiny_model_path, path, out_path=tmp_path / "b.jsonl", **kw)
        recs = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    finally:
        verifiers.unregister("test-first-char")
    assert "greedy/pass@1" not in res and res["pass@1"] == res["sampled/pass@1"]
    expected = {"sampled/pass@1": 0.0, "sampled/pass@2": 0.0, "sampled/pass@4": 0.0, "sampled/maj@4": 0.0}
    for f, j, r in zip(first, pick, recs):
        ref = f[j]
        assert [c.strip()[:1] for c in r["completions"]] == f  # same seed, same samples
        correct = [x == ref for x in f]
        assert r["correct"] == correct and r["rewards"] == [1.0 if ok else 0.5 for ok in correct]
        counts = Counter(x for x in f if x)
        top = max(counts.values())
        winner = next(x for x in f if x and counts[x] == top)  # earliest among the most frequent
        item = {f"sampled/pass@{k}": pass_at_k(4, sum(correct), k) for k in (1, 2, 4)}
        item["sampled/maj@4"] = float(winner == ref)
        assert item["sampled/pass@4"] == 1.0  # sample #j is correct by construction
        for key, v in item.items():
            assert r[key] == pytest.approx(v)
            expected[key] += v / len(recs)
    for key, v in expected.items():
        assert res[key] == pytest.approx(v)
    assert 0 < res["sampled/maj@4"] < 1 and 0 < res["sampled/pass@1"] < 1, "degenerate samples: pick other ones"
    assert res["sampled/mean_reward"] > res["sampled/pass@1"]  # partial rewards are not counted correct


def test_eval_seed_seeds_sampling_not_the_held_out_items(tiny_model_path, tmp_path):
    from rlvr.cli import main
    from rlvr.data import load_prompts

    def ids(*extra):
        out = tmp_path / f"items{len(list(tmp_path.iterdir()))}.jsonl"
        assert main(["eval", tiny_model_path, "--task", "arithmetic:add2", "--limit", "6", "--max-new-tokens", "2",
                     "--workers", "0", "--out", str(out), *extra]) == 0
        return [json.loads(line)["id"] for line in out.read_text().splitlines()]

    held_out = [e.id for e in load_prompts("arithmetic:add2", split="test", limit=6, seed=0)]
    assert ids("--seed", "3") == ids() == held_out
    assert ids("--data-seed", "5") == [e.id for e in load_prompts("arithmetic:add2", split="test", limit=6, seed=5)]


def test_eval_of_a_run_dir_draws_the_runs_held_out_items(tiny_model_path, tmp_path):
    from rlvr.cli import main
    from rlvr.data import load_eval_examples
    from rlvr.trainer import Trainer
    from tiny import tiny_cfg

    cfg = tiny_cfg(tmp_path, **{"trainer.total_steps": 1, "data.eval_seed": 5, "data.eval": "arithmetic:add2",
                                "data.eval_limit": 4})
    Trainer(cfg).train()
    out = tmp_path / "items.jsonl"
    assert main(["eval", cfg.trainer.output_dir, "--task", "arithmetic:add2", "--limit", "4", "--seed", "7",
                 "--max-new-tokens", "2", "--workers", "0", "--out", str(out)]) == 0
    got = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert got == [e.id for e in load_eval_examples(cfg)]


@pytest.mark.parametrize("body,key", [("import time\n    time.sleep(30)\n    return 1.0", "timeouts"),
                                      ("raise RuntimeError('broken')", "crashes")])
def test_eval_reports_timeouts_and_crashes(tiny_model_path, tmp_path, capsys, body, key):
    from rlvr.cli import main

    spec = tmp_path / "v.py"
    spec.write_text(f"def score(completion, reference):\n    {body}\n")
    out = tmp_path / "items.jsonl"
    assert main(["eval", tiny_model_path, "--task", "arithmetic:add2", "--limit", "2", "--max-new-tokens", "2",
                 "--verifier", f"{spec}:score", "--workers", "1", "--timeout", "0.5", "--out", str(out)]) == 0
    summary = json.loads(Path(str(out) + ".summary.json").read_text())
    assert summary[key] == 2 and summary["pass@1"] == 0.0 and summary["completions"] == 2
    assert f"warning: 2 {key} among 2 scored completions" in capsys.readouterr().out
