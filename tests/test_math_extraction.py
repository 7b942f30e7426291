"""Math extraction without ``\\boxed{}`` (Math-Verify's LaTeX/expression extraction, standalone
numbers only) and the address-space cap of scoring workers that run the math verifier."""
from __future__ import annotations

import pickle
import resource
import threading
import time

import pytest

import verifiers
from verifiers.math import (MathVerifier, cap_worker_memory, extract_answer, extract_last_number,
                            extract_math_verify, unevaluated_arithmetic)
from verifiers.pool import ScoringPool

M = MathVerifier()


@pytest.mark.parametrize("completion,gold,reward", [
    ("So it is $\\frac13$.", "1/3", 1.0),
    ("So it is $\\frac13$.", "13", 0.0),
    ("AZYUK2A", "2", 0.0),
    ("The total is 1 000", "1000", 1.0),
    ("so $[0,1)$", "[0,1)", 1.0),
    ("so $[0,1)$", "1", 0.0),
    ("which simplifies to \\frac{10}{9}", "\\frac{10}{9}", 1.0),
    ("which simplifies to \\frac{10}{9}", "9", 0.0),
])
def test_findings_of_the_last_number_heuristic_are_fixed(completion, gold, reward):
    assert M(completion, gold) == reward


def test_math_verify_extraction_reads_latex_and_plain_text_as_math_verify_does():
    assert extract_math_verify("So it is $\\frac13$.") == "\\frac{1}{3}"
    assert extract_math_verify("The total is 1 000") == "1000"
    assert extract_math_verify("The total is 1,000 dollars.") == "1000"
    assert extract_math_verify("Die Antwort ist 7,2") == "7.2"  # decimal comma
    assert extract_math_verify("First $a = 2$; finally \\(b = [0, 1)\\).") == "b = [0, 1)"
    assert extract_math_verify("AZYUK2A") is None and extract_math_verify("no numbers here") is None
    assert extract_answer("so $[0,1)$") == ("[0,1)", "math_verify")


def test_last_number_only_standalone_and_only_when_nothing_else_parses():
    assert extract_last_number("AZYUK2A") is None and extract_last_number("x2 and x^2") is None
    assert extract_last_number("I had 3 apples, then 1,000.5 and -2") == "-2"
    assert extract_last_number("total (5)") == "5"
    r = M.score("the total (5)", "5")  # Math-Verify extracts nothing here; the standalone number counts
    assert r.reward == 1.0 and r.info["extractor"] == "last_number"
    assert M.score("the variable x2 holds it", "2").info["reason"] == "no answer found"


def test_answer_is_and_gsm8k_read_separators_like_math_verify():
    assert extract_answer("The answer is 3,5.") == ("3.5", "answer_is")
    assert extract_answer("The answer is 10,000.") == ("10000", "answer_is")
    assert extract_answer("#### 1 234") == ("1234", "gsm8k")
    assert extract_answer("Final answer: 15 (from 3 baskets of 5)") == ("15", "answer_is")
    assert M("The answer is 2 3.", "23") == 0.0  # a space separates thousands, not any two numbers


def test_plain_integers_stay_on_the_fast_path():
    for completion in ("57", "The answer is 57.", "#### 57", "\\boxed{57}"):
        r = M.score(completion, "57")
        assert r.reward == 1.0 and r.info["match"] == "exact", (completion, r.info)
    assert M.score("56", "57").info["match"] == "numeric"  # two integers: decided without sympy
    t0 = time.perf_counter()
    for _ in range(2000):
        M.score("The answer is 57.", "57")
    assert (time.perf_counter() - t0) / 2000 < 1e-3  # tens of microseconds; 1 ms even on loaded cores


def test_memory_cap_is_configurable_and_only_for_math():
    assert MathVerifier().memory_mb == 3072 and MathVerifier(memory_mb=0).memory_mb is None
    with pytest.raises(ValueError, match="memory_mb must be >= 0"):
        MathVerifier(memory_mb=-1)
    before = resource.getrlimit(resource.RLIMIT_AS)
    assert cap_worker_memory(verifiers.get("format")) is None
    assert cap_worker_memory(MathVerifier(memory_mb=0)) is None
    verifiers.score_batch("math", ["\\boxed{\\sqrt{8}}"], ["2\\sqrt{2}"], workers=0)
    assert resource.getrlimit(resource.RLIMIT_AS) == before  # in-process scoring never caps the caller


def _address_space_limit(pid: int) -> int:
    for line in open(f"/proc/{pid}/limits", encoding="ascii"):
        if line.startswith("Max address space"):
            return int(line.split()[3])
    raise AssertionError("no address-space line in /proc/<pid>/limits")


@pytest.mark.slow
def test_memory_hungry_answer_scores_zero_and_the_worker_is_replaced():
    """``2^{2^{33}}`` makes sympy build a 1 GiB integer: under a 512 MiB cap the worker never
    grows past the cap, the item scores 0 and a fresh worker scores the rest (each time)."""
    cap = 512
    spec = ("pickle", pickle.dumps(MathVerifier(memory_mb=cap, max_digits=None)))  # the size guard off
    peaks: list[int] = []
    done = threading.Event()

    def watch(pool: ScoringPool) -> None:  # the largest address space any worker has had
        while not done.is_set():
            for pid in pool.pids():
                try:
                    status = open(f"/proc/{pid}/status", encoding="ascii").read()
                    peaks.append(int(status.split("VmPeak:")[1].split()[0]) * 1024)
                except (OSError, IndexError, ValueError):
                    pass
            time.sleep(0.05)

    with ScoringPool(1) as pool:
        assert pool.score("capped", spec, ["\\boxed{7}"], ["7"], timeout=60)[0].reward == 1.0
        first = pool.pids()[0]
        assert _address_space_limit(first) == cap * 2**20
        watcher = threading.Thread(target=watch, args=(pool,), daemon=True)
        watcher.start()
        try:
            res = pool.score("capped", spec, ["\\boxed{2^{2^{33}}}", "\\boxed{7}", "so $2^{2^{32}}$", "#### 8"],
                             # symbolic references, so sympy is asked to compare the towers (a numeric
                             # reference rejects an unevaluated power before any sympy work)
                             ["2^{x}", "7", "2^{x}", "8"], timeout=60)  # boxed, then found by Math-Verify's extraction
        finally:
            done.set()
            watcher.join(5)
        assert [r.reward for r in res] == [0.0, 1.0, 0.0, 1.0]
        assert all(res[i].info["reason"] == "worker crashed" and not res[i].info.get("timeout") for i in (0, 2))
        assert pool.restarts == 2 and pool.pids()[0] != first
        assert _address_space_limit(pool.pids()[0]) == cap * 2**20
    assert peaks and max(peaks) <= cap * 2**20


@pytest.mark.slow
def test_gold_answers_without_a_box_verify(data_dir):
    """GSM8K 1319/1319 and MATH-500 500/500 gold answers written the way models write them when
    they do not box: in running text, after "the answer is", inside ``$...$`` or ``\\(...\\)``."""
    import json

    from verifiers.math import gsm8k_reference, math_reference

    gsm = [gsm8k_reference(json.loads(line)) for line in open(data_dir / "gsm8k" / "test.jsonl", encoding="utf-8")]
    assert len(gsm) == 1319
    for template in ("Adding it all up, we get {:,} in total.", "The answer is {:,}.", "{}"):
        res = verifiers.score_batch("math", [template.format(int(r)) for r in gsm], gsm, workers=2)
        assert sum(r.reward for r in res) == 1319, template
    m500 = [math_reference(json.loads(line)) for line in open(data_dir / "math" / "test.jsonl", encoding="utf-8")]
    assert len(m500) == 500
    for template in ("Hence we get ${}$.", "So the answer is ${}$.", "Thus \\({}\\)"):
        res = verifiers.score_batch("math", [template.format(r) for r in m500], m500, workers=2, timeout=30)
        assert [(ref, r.info["extracted"]) for ref, r in zip(m500, res) if r.reward < 1] == [], template


def test_extraction_returns_what_math_verify_parse_returns(data_dir):
    """The integer shortcut in front of sympy changes speed, never the answer: over model-like
    GSM8K completions and the regression set, the extracted value is ``math_verify.parse``'s."""
    import json
    import logging
    from pathlib import Path

    from math_verify import parse

    from rlvr.bench.verifiers import gsm8k_completions
    from verifiers.math import _math_verify_extract, extraction_config

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    rows = [json.loads(line) for _, line in zip(range(300), open(data_dir / "gsm8k" / "test.jsonl", encoding="utf-8"))]
    texts = gsm8k_completions(rows)[0]
    regression = Path(__file__).resolve().parent / "data" / "math_regression.jsonl"
    texts += [json.loads(line)["prediction"] for line in regression.read_text(encoding="utf-8").splitlines()]
    texts += ["So 5 + 13.", "it is 007 or 0", "1,000 and 2 000 and 3,5", "-0", "answer: 12 then 13", "costs $1,250."]
    shortcut = 0
    for text in texts:
        ours = _math_verify_extract(text)
        theirs = parse(text, list(extraction_config()), parsing_timeout=None)
        values = [v for v in theirs if not isinstance(v, str)]
        if ours is None:
            assert values == [], text
        elif ours[1]:
            assert list(ours[1]) == list(theirs), text
        else:  # returned as text: Math-Verify's value is that integer
            shortcut += 1
            assert values and values[0].is_Integer and int(values[0]) == int(ours[0].rstrip(".")), (text, theirs)
    assert shortcut > 20


# --------------------------------------------------------------- a reward a policy found to forge
def test_restating_the_question_is_not_an_answer():
    """Trained on 2-digit addition, a policy learned to answer "What is 28 + 54?" with "To calculate
    28 + 54, we can simply add them together" (cut at 16 tokens): Math-Verify's expression extraction
    reads "28 + 54" and evaluates it to 82. A numeric reference needs a number."""
    v = MathVerifier()
    for completion, gold in [("To calculate 28 + 54, we can simply add them together", "82"),
                             ("To find 74 - 23, subtract", "51"), ("\\boxed{28+54}", "82"),
                             ("The answer is $6 \\times 7$.", "42"), ("The answer is $2^{10}$", "1024")]:
        r = v.score(completion, gold)
        assert r.reward == 0.0 and r.info["reason"] == "arithmetic expression, not a number", completion
    for completion, gold in [("28 + 54 = 82", "82"), ("82", "82"), ("The answer is 82.", "82"),
                             ("Therefore $n = 2^{10} = 1024$.", "1024"), ("Thus $p = \\frac{1}{2}$", "0.5"),
                             ("It costs 1,000 dollars.", "1000"), ("$\\frac{3}{4}$", "3/4")]:
        assert v.score(completion, gold).reward == 1.0, completion
    # a symbolic reference still takes an expression
    assert v.score("\\boxed{1 + 2\\sqrt{2}}", "2\\sqrt{2}+1").reward == 1.0


# Ways to write an expression that evaluates to the reference without writing the number, for
# "What is 28 + 54?" (gold 82), "What is 41 * 2?" (82) and "What is 9 * 9?" (81). Math-Verify
# evaluates every one of these to the reference; none of them is an answer.
RESTATEMENTS = [
    "$28+\\quad54$", "\\boxed{28+\\quad54}", "$41\\times\\quad2$", "$28+\\qquad 54$", "$28\\,+\\,54$",
    "$28\\;+\\;54$", "$28\\:+\\:54$", "$28\\!+\\!54$", "$28\\ +\\ 54$", "$28~+~54$", "$28\\hspace{1em}+54$",
    "$28\\hspace*{2pt}+ 54$", "$28+\\phantom{0}54$", "$28\\text{ }+54$", "$28+\\enspace 54$", "$28+\\mkern3mu 54$",
    "$\\left(28\\right)+\\left(54\\right)$", "$\\bigl(28\\bigr)+54$", "$41\\cdot 2$", "$41 \\cdot\\quad 2$",
    "$\\dfrac{164}{2}+0$", "$\\tfrac{82}{1}\\cdot 1$", "${{28}}+{{54}}$", "$\\{28\\}+54$", "$28＋54$",
    "$41×2$", "$41 ✕ 2$", "$41⋅2$", "$41·2$", "$１２３−４１$", "$123 − 41$", "$\\operatorname{41}\\cdot 2$",
    "$\\mathrm{41}\\times 2$", "$\\mathbf{28}+\\mathbf{54}$", "$\\text{28}+\\text{54}$", "$\\displaystyle 28+54$",
    "$\\textstyle{41}\\times{2}$", "\\boxed{\\displaystyle 41 \\times 2}", "$x = 28 +\\quad 54$", "$9^\\quad{2}+1$",
    "$\\sqrt{6724}$", "$\\sqrt{6561}-\\sqrt{0}+1$", "$41 \\ast 2$", "$164 \\div 2$", "$164 ÷ 2$", "$\\frac{28+54}{1}$",
    "$2 \\cdot 41$", "$(28)+(54)$", "The answer is $28+\\quad54$.", "So the answer is \\(41\\times\\,2\\).",
    # functions of numbers: the parser evaluates some at once (\\binom), sympy the rest
    "$\\binom{82}{1}$", "$\\dbinom{82}{81}$", "${82 \\choose 1}$", "$82!/81!$", "$|{-82}|$", "$\\gcd(164,82)$",
    "$\\lfloor 82.5 \\rfloor$", "$\\sum_{i=1}^{2} 41$", "$e^{\\ln 82}$", "$\\max(82,1)$", "$\\frac{1}{\\frac{1}{82}}$",
    "$\\tfrac{41}{1/2}$", "$\\operatorname{lcm}(41, 2)$", "$164 \\bmod 82 + 82$",
]


@pytest.mark.parametrize("completion", RESTATEMENTS)
def test_restatements_typeset_any_way_are_not_answers(completion):
    """Where Math-Verify extracts the whole expression the guard names it; where it extracts only
    a part (``28`` of ``28~+~54``) that part is a wrong answer. Either way: no reward."""
    r = M.score(completion, "82")
    assert r.reward == 0.0, (completion, r.info)
    if r.info["extracted"] and unevaluated_arithmetic(r.info["extracted"]):
        assert r.info["reason"] == "arithmetic expression, not a number", (completion, r.info)


@pytest.mark.parametrize("completion,gold", [
    ("$82$", "82"), ("$\\quad 82$", "82"), ("$82\\,$", "82"), ("\\boxed{\\displaystyle 82}", "82"),
    ("$\\mathbf{82}$", "82"), ("$1{,}000$", "1000"), ("$-\\,5$", "-5"),
    ("$x = 82$", "82"), ("$\\dfrac{3}{4}$", "0.75"), ("$\\left(\\frac{1}{2}\\right)$", "0.5"), ("$50\\%$", "50"),
    ("$82^\\circ$", "82"), ("$82\\text{ apples}$", "82"), ("$\\$82$", "82"), ("$-\\frac{3}{4}$", "-3/4"),
    ("$2\\sqrt{2}$", "2\\sqrt{2}"), ("$\\sqrt{8}$", "2\\sqrt{2}"), ("$x + 1$", "1 + x"),
])
def test_numbers_typeset_any_way_still_count(completion, gold):
    assert M.score(completion, gold).reward == 1.0, (completion, gold, M.score(completion, gold).info)
