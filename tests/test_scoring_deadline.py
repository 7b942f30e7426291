"""Every scoring path has a hard per-item deadline, in-process scoring (``workers=0``) included,
and the math verifier never hands sympy an answer whose evaluation builds a huge number.

``$9^\\quad{99^\\quad{99}}$`` (14 tokens) used to make ``score_batch(..., workers=0)`` run forever:
Math-Verify's ``verify`` calls sympy's ``doit``, which computes ``9**(99**99)`` in one Python
integer power that no signal or thread can interrupt. The answers that would do that are refused
before sympy sees them, and a verifier that runs long in Python code is cut off at the timeout.
Cases that could hang run in a child process with its own time limit, so a regression fails
instead of hanging the suite.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import verifiers
from verifiers.math import MathVerifier, text_too_large, too_large

ROOT = Path(__file__).resolve().parents[1]

# (completion, reference): each one makes sympy build a number of millions of digits or more
HUGE = [
    ("$9^\\quad{99^\\quad{99}}$", "82"), ("$9^\\quad{99^\\quad{99}}$", "x"), ("\\boxed{9^{99^{99}}}", "y"),
    ("\\boxed{2^{2^{40}}}", "2^{x}"), ("so $(9^{99})^{99^{99}}$", "x"), ("$\\frac{1}{3}+9^{9^{9}}$", "x"),
    ("$10^{10^{10}} - 10^{10^{10}}$", "x"), ("\\boxed{\\binom{10^{10^{10}}}{2}}", "x"),
    ("$\\binom{9^{99^{99}}}{2}$", "x"), ("\\boxed{\\sqrt[9^{99^{99}}]{2}}", "x"), ("\\boxed{1000000!}", "x"),
    ("9**99**99", "x"), ("The answer is $9^{9999999}$.", "x"), ("\\boxed{(2^{2^{34}})}", "(2^{x})"),
    ("$\\{9^{99^{99}}, 1\\}$", "\\{1, x\\}"), ("$\\begin{pmatrix}9^{99^{99}}\\end{pmatrix}$", "x"),
    ("Answer: 82!!", "x"), ("\\boxed{(10^{10})!}", "x"), ("\\boxed{10^{10001}}", "x"),
]


def _run_child(code: str, timeout: float = 120) -> dict:
    """Run ``code`` in a fresh interpreter (cwd: the repository); it prints one JSON line."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_huge_answers_score_zero_in_process_without_hanging():
    """Before the size guard the first item never returned (the child ran into its time limit)."""
    got = _run_child(f"""
        import json, time, verifiers
        comps, refs = zip(*{HUGE!r})
        t0 = time.perf_counter()
        res = verifiers.score_batch("math", list(comps), list(refs), workers=0, timeout=10)
        print(json.dumps({{"rewards": [r.reward for r in res], "reasons": [r.info["reason"] for r in res],
                          "seconds": time.perf_counter() - t0}}))
    """)
    assert got["rewards"] == [0.0] * len(HUGE)
    assert set(got["reasons"]) <= {"answer too large to evaluate", "arithmetic expression, not a number",
                                   "no answer found"}, got["reasons"]
    assert got["seconds"] < 30, got


def test_trainer_scoring_and_rlvr_verify_bound_the_same_items(tmp_path):
    """The trainer's path (``rlvr.scoring.score_examples``, quickstart's ``reward.workers: 0``) and
    ``rlvr verify --workers 0`` score the same way."""
    comps = tmp_path / "c.jsonl"
    refs = tmp_path / "r.jsonl"
    comps.write_text("".join(json.dumps(c) + "\n" for c, _ in HUGE[:4]) + json.dumps("\\boxed{82}") + "\n")
    refs.write_text("".join(json.dumps(r) + "\n" for _, r in HUGE[:4]) + json.dumps("82") + "\n")
    got = _run_child(f"""
        import io, json, contextlib
        from rlvr.data import arithmetic_examples
        from rlvr.scoring import score_examples
        ex = arithmetic_examples("add2", split="test", limit=1)[0]
        texts = ["$9^\\\\quad{{99^\\\\quad{{99}}}}$", "\\\\boxed{{" + ex.reference + "}}"]
        res = score_examples([ex], texts, 2, [("math", 1.0)], workers=0, timeout=10)
        from rlvr.cli import main
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = main(["verify", "-c", {str(comps)!r}, "-r", {str(refs)!r}, "-w", "0", "-t", "10"])
        print(json.dumps({{"trainer": list(res.rewards), "rc": rc, "verify": buf.getvalue()}}))
    """)
    assert got["trainer"] == [0.0, 1.0]
    assert got["rc"] == 0 and "count=5" in got["verify"] and "correct=1" in got["verify"], got["verify"]


def test_size_guard_keeps_ordinary_powers():
    from verifiers.math import _mv_parse

    assert not too_large(_mv_parse("2^{2009}")) and not too_large(_mv_parse("x^{100} + 3^{50}"))
    assert not too_large(_mv_parse("\\frac{10!}{3!}")) and not too_large(_mv_parse("1.5 \\times 10^{300}"))
    assert not too_large(_mv_parse("10^{9999}")) and not too_large(_mv_parse("5!!")) and not too_large(_mv_parse("3000!"))
    assert too_large(_mv_parse("2^{2^{40}}")) and too_large(_mv_parse("10^{10^{5}}"))
    assert not text_too_large("\\binom{10}{3} and x^2") and text_too_large("\\dbinom {10^{12}}{3}")
    m = MathVerifier()
    assert m("\\boxed{2^{10}}", "2^{10}") == 1.0 and m("\\boxed{1024}", "2^{10}") == 1.0
    assert m("\\boxed{\\binom{5}{2}}", "\\binom{5}{2}") == 1.0


def _slow(seconds: float):
    def slow_reward(completion: str, reference) -> float:
        """Spins in Python for ``seconds``, swallowing ordinary exceptions on the way."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                sum(range(1000))
            except Exception:  # noqa: BLE001 - a verifier that swallows everything
                pass
        return 1.0
    return slow_reward


def _check_deadline(results: list, elapsed: float) -> None:
    assert [r.reward for r in results] == [0.0, 1.0], [r.info for r in results]
    assert results[0].info["reason"] == "timeout" and verifiers.outcome(results[0]) == "timeout"
    assert elapsed < 3.0  # 0.5 s for the slow item, then the quick one; not the 5 s it would take


def test_in_process_deadline_interrupts_in_the_main_thread():
    slow = _slow(5.0)
    fast = lambda c, r: 1.0  # noqa: E731
    t0 = time.perf_counter()
    res = verifiers.score_batch(lambda c, r: slow(c, r) if c == "slow" else fast(c, r), ["slow", "quick"],
                                [None, None], workers=0, timeout=0.5)
    _check_deadline(res, time.perf_counter() - t0)


def test_in_process_deadline_interrupts_in_another_thread():
    """A deadline built on ``signal.alarm`` (Math-Verify's) cannot even be set outside the main
    thread; the trainer may score from any thread."""
    slow = _slow(5.0)
    out: dict = {}

    def score() -> None:
        t0 = time.perf_counter()
        out["res"] = verifiers.score_batch(lambda c, r: slow(c, r) if c == "slow" else 1.0, ["slow", "quick"],
                                           [None, None], workers=0, timeout=0.5)
        out["elapsed"] = time.perf_counter() - t0

    t = threading.Thread(target=score)
    t.start()
    t.join(30)
    assert not t.is_alive()
    _check_deadline(out["res"], out["elapsed"])


def test_math_verify_own_timeout_cannot_run_in_a_thread():
    """Why the verifier turns Math-Verify's timeouts off and brings its own deadline."""
    from math_verify import parse

    err: list = []
    t = threading.Thread(target=lambda: err.append(_raises(lambda: parse("$\\frac{1}{2}$"))))
    t.start()
    t.join(30)
    assert err and "signal" in err[0]


def _raises(fn) -> str:
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    return ""


def test_no_deadline_left_behind():
    """A deadline that fired must not go off later in unrelated code."""
    slow = _slow(0.45)
    for _ in range(5):
        verifiers.score_batch(slow, ["x"], [None], workers=0, timeout=0.45)
    time.sleep(0.3)
    assert sum(range(10)) == 45  # nothing pending was delivered here
