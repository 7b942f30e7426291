"""Dataset sweeps: every gold answer / reference solution must verify, perturbed ones must not.

Measured on the reference machine (2 shared cores): GSM8K 1,319/1,319 gold, 0/1,319 shifted;
MATH-500 500/500 (plain and through Math-Verify); HumanEval 164/164 canonical, 0/164 stubbed;
MBPP 974/974 reference solutions (the threshold below leaves room for a few slow upstream
tests on an overloaded machine).
"""
from __future__ import annotations

import gzip
import json

import pytest

import verifiers
from verifiers.math import gsm8k_reference, math_reference

pytestmark = pytest.mark.slow
MBPP_MIN_PASS = 970  # measured 974/974; see the module docstring


def _jsonl(path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_gsm8k_gold_answers_verify_and_shifted_ones_do_not(data_dir):
    rows = _jsonl(data_dir / "gsm8k" / "test.jsonl")
    assert len(rows) == 1319
    refs = [gsm8k_reference(r) for r in rows]
    gold = verifiers.score_batch("math", [f"Reasoning...\n#### {r}" for r in refs], rows, workers=2)
    boxed = verifiers.score_batch("math", [f"The answer is $\\boxed{{{r}}}$." for r in refs], refs, workers=2)
    shifted = verifiers.score_batch("math", [f"\\boxed{{{int(r) + 1}}}" for r in refs], refs, workers=2)
    assert sum(r.reward for r in gold) == 1319
    assert sum(r.reward for r in boxed) == 1319
    assert sum(r.reward for r in shifted) == 0
    assert not any(r.info.get("timeout") for r in gold + boxed + shifted)


def test_math500_gold_answers_verify_plain_and_through_math_verify(data_dir):
    rows = _jsonl(data_dir / "math" / "test.jsonl")
    refs = [math_reference(r) for r in rows]
    plain = verifiers.score_batch("math", [f"So $\\boxed{{{r}}}$." for r in refs], refs, workers=2)
    assert [row["unique_id"] for row, s in zip(rows, plain) if s.reward < 1] == []
    # "\displaystyle x" is never identical to x, so every item takes the Math-Verify path
    forced = verifiers.score_batch("math", [f"So $\\boxed{{\\displaystyle {r}}}$." for r in refs], refs,
                                   workers=2, timeout=30)
    failed = [(row["unique_id"], ref) for row, ref, s in zip(rows, refs, forced) if s.reward < 1]
    assert failed == []
    assert all(s.info["match"] == "math_verify" for s in forced)
    wrong = verifiers.score_batch("math", [f"\\boxed{{{refs[(i + 1) % 500]}}}" for i in range(500)], refs,
                                  workers=2, timeout=30)
    coincide = sum(refs[i] == refs[(i + 1) % 500] for i in range(500))
    assert sum(s.reward for s in wrong) <= coincide + 3  # neighbours with equal answers (e.g. 3 and 3)


def test_humaneval_canonical_solutions_pass_and_stubs_fail(data_dir):
    rows = _jsonl(data_dir / "humaneval" / "HumanEval.jsonl.gz")
    good = verifiers.score_batch("code", [r["prompt"] + r["canonical_solution"] for r in rows], rows, workers=2)
    failed = [(r["task_id"], s.info["reason"]) for r, s in zip(rows, good) if s.reward < 1]
    assert failed == []
    fenced = verifiers.score_batch("code", [f"```python\n{r['prompt']}{r['canonical_solution']}```" for r in rows[:20]],
                                   rows[:20], workers=2)
    assert sum(s.reward for s in fenced) == 20
    stub = verifiers.score_batch("code", ["    return None\n"] * len(rows), rows, workers=2)
    assert [r["task_id"] for r, s in zip(rows, stub) if s.reward > 0] == []


def test_mbpp_reference_solutions_pass(data_dir):
    rows = _jsonl(data_dir / "mbpp" / "mbpp.jsonl")
    assert len(rows) == 974
    res = verifiers.score_batch("code", [r["code"] for r in rows], rows, workers=2)
    failed = [(r["task_id"], s.info["status"], s.info["reason"][:80]) for r, s in zip(rows, res) if s.reward < 1]
    passed = len(rows) - len(failed)
    assert passed >= MBPP_MIN_PASS, failed
    wrong = verifiers.score_batch("code", ["def unrelated():\n    return 1\n"] * 50, rows[:50], workers=2)
    assert sum(s.reward for s in wrong) == 0
