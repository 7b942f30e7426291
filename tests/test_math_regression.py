"""Math verifier against a hand-graded regression set (tests/data/math_regression.jsonl).

Each row is ``{"category", "prediction", "gold", "expected"}``: a model-like completion, the
reference answer as a data set would give it, and what a careful human grader says (1 or 0).
Two properties are checked over the whole set:

* agreement with Math-Verify's own judgement, ``verify(parse(gold), parse(prediction))`` with the
  extraction configs the verifier uses (:func:`verifiers.math.extraction_config`); the gold is
  given to ``parse`` as ``\\boxed{gold}``, the form of a final answer it reads as LaTeX (a bare
  ``\\frac13`` or ``[0,1)`` outside any delimiter is not extracted at all);
* equality with the human grade on every row except the known disagreements listed below.
"""
from __future__ import annotations

import collections
import json
import logging
from pathlib import Path

import pytest

from verifiers.math import MathVerifier, extraction_config

DATA = Path(__file__).resolve().parent / "data" / "math_regression.jsonl"

# (prediction, gold) -> why the verifier's reward differs from the human grade.
KNOWN_DISAGREEMENTS = {
    ("The inequality holds for $-1 < x < 4$.", "(-1,4)"):
        "Math-Verify compares an inequality with an interval only when the prediction is the set",
    ("Room 3B is where it happens.", "3"):
        "Math-Verify reads a number followed by letters as a number with a unit (like 5cm)",
    ("In the 1990s things changed.", "1990"):
        "Math-Verify reads a number followed by letters as a number with a unit (like 5cm)",
    ("So there are 24 students. Step 3 is done.", "24"):
        "no answer marker: the last number is taken, and here it is not the answer",
}
CATEGORIES = {"latex_no_box", "fractions", "intervals", "sets", "thousands_separators", "decimal_commas", "units",
              "percentages", "wrong_shared_digits", "inside_words", "multiple_numbers"}


@pytest.fixture(scope="module")
def graded() -> list[dict]:
    """Every row with ``ours`` (this verifier's reward) and ``mv`` (Math-Verify's verdict)."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout is disabled" notices
    config = list(extraction_config())
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    verifier = MathVerifier()
    for row in rows:
        row["ours"] = int(verifier.score(row["prediction"], row["gold"]).reward)
        gold = parse("\\boxed{" + row["gold"] + "}", config, parsing_timeout=None)
        pred = parse(row["prediction"], config, parsing_timeout=None)
        row["mv"] = int(bool(verify(gold, pred, timeout_seconds=None)))
    return rows


def test_regression_set_is_well_formed():
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 200
    assert all(set(r) == {"category", "prediction", "gold", "expected"} and r["expected"] in (0, 1) for r in rows)
    pairs = [(r["prediction"], r["gold"]) for r in rows]
    assert len(set(pairs)) == len(pairs), "duplicate (prediction, gold) pairs"
    counts = collections.Counter(r["category"] for r in rows)
    assert CATEGORIES <= set(counts), CATEGORIES - set(counts)
    assert 0.3 < sum(r["expected"] for r in rows) / len(rows) < 0.7  # both verdicts well represented
    assert set(KNOWN_DISAGREEMENTS) <= set(pairs)


def test_agrees_with_math_verify_on_at_least_95_percent(graded):
    agree = sum(r["ours"] == r["mv"] for r in graded)
    differ = [(r["prediction"], r["gold"], r["ours"], r["mv"]) for r in graded if r["ours"] != r["mv"]]
    assert agree / len(graded) >= 0.95, differ


def test_matches_the_human_grade_except_known_disagreements(graded):
    wrong = {(r["prediction"], r["gold"]): (r["ours"], r["expected"]) for r in graded if r["ours"] != r["expected"]}
    unexpected = {k: v for k, v in wrong.items() if k not in KNOWN_DISAGREEMENTS}
    fixed = [k for k in KNOWN_DISAGREEMENTS if k not in wrong]
    assert not unexpected, f"(prediction, gold): (reward, human grade) {unexpected}"
    assert not fixed, f"now graded as a human would; remove from KNOWN_DISAGREEMENTS: {fixed}"


def test_closer_to_the_human_grade_than_math_verify_alone(graded):
    """The extraction in front of Math-Verify (``\\boxed``, ``####``, "the answer is") helps."""
    ours = sum(r["ours"] == r["expected"] for r in graded)
    mv = sum(r["mv"] == r["expected"] for r in graded)
    assert ours > mv
