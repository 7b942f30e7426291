"""Verifier registry, batch scoring (pool, hard timeouts, no leaks), math/format/combine, CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

import verifiers
from verifiers import VerifierError
from verifiers.base import Verifier, safe_score
from verifiers.math import (MathVerifier, answers_match, extract_answer, extract_boxed, extract_gsm8k,
                            extract_last_number, gsm8k_reference, math_reference, normalize_reference)
from verifiers.pool import ScoringPool

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ helpers importable by workers
def sleepy(completion: str, reference) -> float:
    """Sleeps ``reference`` seconds, then says whether completion == "ok"."""
    time.sleep(float(reference))
    return float(completion == "ok")


def crashy(completion: str, reference) -> float:
    if completion == "die":
        os._exit(3)  # takes the worker process down
    if completion == "raise":
        raise RuntimeError("verifier bug")
    return 1.0


class WarmLog(Verifier):
    """Writes "start PID" and "built PID" lines to ``path`` around a ``warm_s``-second warm-up (a slow
    import); scores like :func:`sleepy`."""

    def __init__(self, path: str, warm_s: float):
        self.path, self.warm_s = path, warm_s

    def _log(self, what: str) -> None:
        with open(self.path, "a") as f:
            f.write(f"{what} {os.getpid()}\n")

    def warm(self) -> None:
        self._log("start")
        time.sleep(self.warm_s)
        self._log("built")

    def score(self, completion, reference):
        return sleepy(completion, reference)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# ------------------------------------------------------------------ registry and contract
def test_builtin_names_resolve_to_verifiers():
    for name in ("math", "math_strict", "arithmetic", "code", "code_partial", "format"):
        v = verifiers.get(name)
        assert isinstance(v, Verifier) and callable(v)
    assert verifiers.get("math_strict").strict and not verifiers.get("math").strict
    assert verifiers.get("code_partial").partial


def test_unknown_name_is_a_one_line_config_error():
    with pytest.raises(VerifierError, match="unknown verifier 'nope'.*math"):
        verifiers.get("nope")


def test_register_decorator_plain_callable_and_duplicates():
    @verifiers.register("test_exact")
    def exact(completion: str, reference) -> float:
        return float(completion.strip() == str(reference))

    try:
        assert exact("4", 4) == 1.0  # the decorator returns the function unchanged
        v = verifiers.get("test_exact")
        assert v("4", 4) == 1.0 and v("5", 4) == 0.0
        assert [r.reward for r in verifiers.score_batch("test_exact", ["4", "5"], [4, 4], workers=0)] == [1.0, 0.0]
        verifiers.register("test_exact", exact)  # the same function again (module re-import): fine
        with pytest.raises(VerifierError, match="already registered"):
            verifiers.register("test_exact", lambda c, r: 0.0)
        verifiers.register("test_exact", lambda c, r: 0.5, overwrite=True)
        assert verifiers.get("test_exact")("x", 1) == 0.5
    finally:
        verifiers.unregister("test_exact")


def test_entry_point_plugins_load_lazily(tmp_path, monkeypatch):
    (tmp_path / "rlvr_plugin_demo.py").write_text("def score(completion, reference):\n    return 0.25\n")
    dist = tmp_path / "rlvr_plugin_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rlvr-plugin-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[rlvr.verifiers]\ndemo_plugin = rlvr_plugin_demo:score\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "demo_plugin" in verifiers.names()
    assert "rlvr_plugin_demo" not in sys.modules  # listed, not imported
    assert verifiers.get("demo_plugin")("x", None) == 0.25
    res = verifiers.score_batch("demo_plugin", ["a", "b"], [None, None], workers=1)  # shipped to a worker
    assert [r.reward for r in res] == [0.25, 0.25] and not res[0].info.get("in_process")


def test_safe_score_never_raises_and_clamps():
    class Bad(Verifier):
        def score(self, completion, reference):
            return {"raise": lambda: 1 / 0, "nan": lambda: float("nan"), "big": lambda: 7,
                    "neg": lambda: -1, "str": lambda: "x", "tuple": lambda: (0.5, {"extracted": "e"})}[completion]()

    b = Bad()
    out = {k: safe_score(b, k, None) for k in ("raise", "nan", "big", "neg", "str", "tuple")}
    assert out["raise"].reward == 0.0 and "ZeroDivisionError" in out["raise"].info["reason"]
    assert out["nan"].reward == 0.0 and "NaN" in out["nan"].info["reason"]
    assert out["big"].reward == 1.0 and out["neg"].reward == 0.0 and out["str"].reward == 0.0
    assert out["tuple"].reward == 0.5 and out["tuple"].info["extracted"] == "e"
    assert all("time_s" in r.info for r in out.values())
    assert safe_score(b, None, None).reward == 0.0  # non-str completion


def test_score_batch_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 completions but 1 references"):
        verifiers.score_batch("math", ["a", "b"], ["1"], workers=0)


# ------------------------------------------------------------------ the pool
def test_workers_and_in_process_agree():
    comps = ["\\boxed{42}", "#### 7", "the answer is 1/2.", "no idea", "\\boxed{\\frac{1}{2}}", "x = 3, so 3"]
    refs = ["42", "8", "0.5", "1", "\\dfrac12", 3]
    a = verifiers.score_batch("math", comps, refs, workers=0)
    b = verifiers.score_batch("math", comps, refs, workers=2)
    assert [r.reward for r in a] == [r.reward for r in b] == [1, 0, 1, 0, 1, 1]
    assert [r.info["extracted"] for r in a] == [r.info["extracted"] for r in b]


def test_hard_timeout_kills_the_worker_and_the_pool_recovers():
    with ScoringPool(2) as pool:
        v = verifiers.base.FunctionVerifier(sleepy)
        key, spec = verifiers._spec(v, v)
        assert spec is not None and spec[0] == "pickle"
        warm = pool.score(key, spec, ["ok"], [0], timeout=5)
        assert warm[0].reward == 1.0
        before = set(pool.pids())
        t0 = time.monotonic()
        res = pool.score(key, spec, ["ok", "ok", "ok", "no"], [0, 60, 0, 0], timeout=1.0)
        assert time.monotonic() - t0 < 8
        assert [r.reward for r in res] == [1.0, 0.0, 1.0, 0.0]
        assert res[1].info["reason"] == "timeout" and res[1].info["timeout"]
        assert pool.restarts == 1
        killed = before - set(pool.pids())
        assert len(killed) == 1 and not alive(killed.pop())
        assert [r.reward for r in pool.score(key, spec, ["ok"] * 4, [0] * 4, timeout=5)] == [1.0] * 4
        pids = pool.pids()
    assert not any(alive(p) for p in pids)  # close() leaves no worker behind


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_replacement_builds_the_killed_items_verifier_before_an_item_needs_it(tmp_path):
    """A worker killed on an item is replaced by one that builds that item's verifier at once: the
    import a restart costs runs while the caller does other work, not before its next item. The
    worker's other verifiers are built only when an item needs them."""
    log, other_log = tmp_path / "warm.log", tmp_path / "other.log"
    with ScoringPool(1) as pool:
        v, other = WarmLog(str(log), 0.5), WarmLog(str(other_log), 0.0)
        key, spec = verifiers._spec(v, v)
        okey, ospec = verifiers._spec(other, other)
        assert [r.reward for r in pool.score(key, spec, ["ok"], [0], timeout=5)] == [1.0]
        assert [r.reward for r in pool.score(okey, ospec, ["ok"], [0], timeout=5)] == [1.0]
        (first,) = pool.pids()
        assert _lines(log) == [f"start {first}", f"built {first}"] and _lines(other_log) == [f"start {first}", f"built {first}"]
        res = pool.score(key, spec, ["ok", "ok"], [60, 0], timeout=1.0)  # the first item is killed
        assert [r.reward for r in res] == [0.0, 1.0] and res[0].info["reason"] == "timeout"
        (second,) = pool.pids()
        assert second != first and f"built {second}" in _lines(log)  # built while the chunk's rest waited
        res = pool.score(key, spec, ["ok"], [60], timeout=1.0)
        (third,) = pool.pids()
        deadline = time.monotonic() + 60
        while f"built {third}" not in _lines(log) and time.monotonic() < deadline:  # no score() call
            time.sleep(0.05)
        assert f"built {third}" in _lines(log)
        assert not any(str(p) in x for x in _lines(other_log) for p in (second, third))  # not needed yet
        assert [r.reward for r in pool.score(key, spec, ["ok", "no"], [0, 0], timeout=5)] == [1.0, 0.0]
        assert [r.reward for r in pool.score(okey, ospec, ["ok"], [0], timeout=5)] == [1.0]
        assert pool.pids() == [third] and pool.restarts == 2
        assert _lines(log).count(f"start {third}") == 1  # built once, not again for the item
        assert _lines(other_log)[-2:] == [f"start {third}", f"built {third}"]  # when an item needed it


def test_a_worker_that_hangs_building_is_not_rebuilt_in_the_background(tmp_path, monkeypatch):
    """A build that times out is retried only when an item needs it (no endless background loop)."""
    import verifiers.pool as vpool

    monkeypatch.setattr(vpool, "LOAD_TIMEOUT", 1.0)
    log = tmp_path / "warm.log"
    with ScoringPool(1) as pool:
        v = WarmLog(str(log), 60)
        key, spec = verifiers._spec(v, v)
        (res,) = pool.score(key, spec, ["ok"], [0], timeout=5)
        assert res.reward == 0.0 and res.info["reason"] == "timeout while loading the verifier"
        time.sleep(1.5)
        assert [x.split()[0] for x in _lines(log)] == ["start"]  # the replacement builds nothing yet
        assert pool.restarts == 1


def test_worker_crash_and_verifier_exception_are_reward_zero():
    res = verifiers.score_batch(crashy, ["fine", "raise", "die", "fine"], [None] * 4, workers=1, timeout=30)
    assert [r.reward for r in res] == [1.0, 0.0, 0.0, 1.0]
    assert "RuntimeError" in res[1].info["reason"]
    assert res[2].info["reason"] == "worker crashed"


def test_unpicklable_verifier_falls_back_to_in_process():
    secret = 3
    res = verifiers.score_batch(lambda c, r: float(len(c) == secret), ["abc", "ab"], [None, None], workers=2)
    assert [r.reward for r in res] == [1.0, 0.0] and res[0].info["in_process"]


def test_scoring_from_a_background_thread():
    """Math-Verify's signal.alarm timeout fails off the main thread; ours does not use it."""
    out = {}

    def work():
        out["w0"] = verifiers.score_batch("math", ["\\boxed{\\frac{2}{4}}", "\\boxed{(1, 2]}"], ["0.5", "(1,2]"], workers=0)
        out["w1"] = verifiers.score_batch("math", ["\\boxed{\\sqrt{8}}"], ["2\\sqrt{2}"], workers=1)

    t = threading.Thread(target=work)
    t.start()
    t.join(120)
    assert [r.reward for r in out["w0"]] == [1.0, 1.0] and out["w1"][0].reward == 1.0
    assert out["w0"][0].info["match"] == "numeric" and out["w0"][1].info["match"] == "math_verify"


def test_adversarial_math_input_times_out_and_scorer_keeps_working():
    comps = ["\\boxed{9^{9^{9^{9}}}}", "\\boxed{9**9**9**9}", "\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
             "The answer is 5. " * 60_000 + "\\boxed{7}", "\\boxed{" * 100_000, "9" * 1_000_000, "\\boxed{7}"]
    t0 = time.monotonic()
    # symbolic references for the towers, so sympy is asked to compare them (a numeric reference
    # rejects an unevaluated power before any sympy work)
    refs = ["2^{x}", "2^{x}"] + ["7"] * (len(comps) - 2)
    res = verifiers.score_batch("math", comps, refs, workers=2, timeout=2.0)
    assert time.monotonic() - t0 < 2.0 * 2 + 15  # at most two timeouts back to back, plus start-up
    assert [r.reward for r in res] == [0, 0, 0, 1, 0, 0, 1]
    assert res[0].info["reason"] == "answer too large to evaluate"  # refused before sympy (the size guard)
    # with the size guard off the tower reaches sympy, and the worker is killed at the timeout
    from verifiers.math import MathVerifier

    r = verifiers.score_batch(MathVerifier(max_digits=None), comps[:1], refs[:1], workers=2, timeout=2.0)[0]
    assert r.reward == 0 and r.info["reason"] == "timeout"
    again = verifiers.score_batch("math", ["\\boxed{7}", "#### 8"], ["7", "8"], workers=2, timeout=2.0)
    assert [r.reward for r in again] == [1.0, 1.0]


def _launcher_pids() -> set[int]:
    pids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if b"_sandbox_launcher.py" in (d / "cmdline").read_bytes():
                    pids.add(int(d.name))
            except OSError:
                pass
    return pids


def test_pool_processes_do_not_outlive_the_interpreter():
    script = textwrap.dedent("""
        import verifiers
        from verifiers.pool import get_pool
        verifiers.score_batch("math", ["\\\\boxed{1}"] * 8, ["1"] * 8, workers=2)
        r = verifiers.score_batch("code", ["def f():\\n    return 1\\n"], [{"test": "assert f() == 1"}], workers=1)
        assert r[0].reward == 1.0, r
        print(" ".join(map(str, get_pool(2).pids() + get_pool(1).pids())))
    """)  # no close(): atexit must stop the workers, and with them the code worker's sandbox launcher
    before = _launcher_pids()
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 3
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (any(alive(p) for p in pids) or _launcher_pids() - before):
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)
    assert not [p for p in _launcher_pids() - before if alive(p)]


def test_workers_and_sandboxes_die_with_a_killed_parent():
    script = textwrap.dedent("""
        import os, signal, verifiers
        from verifiers.pool import get_pool
        r = verifiers.score_batch("code", ["def f():\\n    return 1\\n"], [{"test": "assert f() == 1"}], workers=2)
        assert r[0].reward == 1.0
        print(" ".join(map(str, get_pool(2).pids())), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no atexit, no close()
    """)
    before = _launcher_pids()
    dirs_before = set(Path(tempfile.gettempdir()).glob("rlvr-sandbox-*"))
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == -9, out.stderr
    pids = [int(p) for p in out.stdout.split()]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (any(alive(p) for p in pids) or
                                           [p for p in _launcher_pids() - before if alive(p)]):
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)
    assert not [p for p in _launcher_pids() - before if alive(p)]
    assert not [d for d in Path(tempfile.gettempdir()).glob("rlvr-sandbox-*") if d not in dirs_before]


# ------------------------------------------------------------------ math
def test_extractors():
    assert extract_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}} c") == "\\frac{1}{2}"
    assert extract_boxed("\\boxed{\\boxed{5}}") == "5"
    assert extract_boxed("\\boxed 7 then") == "7"
    assert extract_boxed("\\boxed{unclosed") is None and extract_boxed("none") is None
    assert extract_boxed("\\boxed{3} and \\boxed{") == "3"  # last *well-formed* box
    assert extract_gsm8k("work\n#### 1,234\n") == "1,234"
    assert extract_last_number("I had 3 apples, then 1,000.5 and -2") == "-2"
    assert extract_answer("So the answer is $\\frac{3}{4}$.")[0] == "\\frac{3}{4}"
    assert extract_answer("The final answer is 18 dollars, because reasons.")[0] == "18 dollars"
    assert extract_answer("Total: 5 and 6\n#### 6") == ("6", "gsm8k")
    assert extract_answer("Total: 5 and 6\n#### 6", order=("last_number",)) == ("6", "last_number")
    assert extract_answer("12 eggs\n#### 6", order=("boxed",)) == (None, None)
    for chatty in ("The answer is **18**.", "**Final answer:** 18", "Answer: `18`", "#### **18**"):
        assert extract_answer(chatty)[0] == "18", chatty


def test_strict_mode_accepts_only_boxed():
    strict, loose = MathVerifier(strict=True), MathVerifier()
    assert strict("The answer is 5.", "5") == 0.0 and loose("The answer is 5.", "5") == 1.0
    assert strict("so \\boxed{5}", "5") == 1.0
    assert strict.score("#### 5", "5").info["reason"] == "no boxed answer"
    with pytest.raises(ValueError, match="unknown extractor"):
        MathVerifier(order=("boxed", "vibes"))


EQUIVALENT = [("\\frac{1}{2}", "0.5"), ("\\frac{1}{2}", "1/2"), ("\\frac{1}{2}", "\\dfrac{1}{2}"),
              ("\\frac12", "\\tfrac{1}{2}"), ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})"),
              ("1000", "1,000"), ("1234567", "1,234,567"), ("50\\%", "50"), ("25", "25\\%"),
              ("18", "\\$18"), ("18", "18 dollars"), ("5", "5\\text{ cm}"), ("90^\\circ", "90"),
              ("[1,2)", "[1, 2)"), ("\\{1,2\\}", "\\{2,1\\}"), ("3, 5, 7", "7,5,3"),
              ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
              ("x=5", "5"), ("\\text{Evelyn}", "Evelyn"), ("6 - 5i", "6-5i"), ("2\\sqrt{2}", "\\sqrt{8}"),
              ("-3", "-3.0"), ("-3", "\u22123"), ("0.333333", "\\frac{1}{3}")]
DIFFERENT = [("\\frac{1}{2}", "0.6"), ("1000", "1001"), ("[1,2)", "[1,2]"), ("\\{1,2\\}", "\\{1,3\\}"),
             ("x^2", "x^3"), ("18", "81"), ("-3", "3")]


@pytest.mark.parametrize("gold,pred", EQUIVALENT)
def test_equivalent_forms_match(gold, pred):
    assert answers_match(gold, pred)[0], (gold, pred)
    assert MathVerifier()(f"... so the answer is $\\boxed{{{pred}}}$.", gold) == 1.0


@pytest.mark.parametrize("gold,pred", DIFFERENT)
def test_different_answers_do_not_match(gold, pred):
    assert not answers_match(gold, pred)[0], (gold, pred)


def test_references_in_every_accepted_form():
    gsm_row = {"question": "q", "answer": "3 + 4 = <<3+4=7>>7\n#### 1,007"}
    assert gsm8k_reference(gsm_row) == "1007"
    assert math_reference({"answer": "\\frac{1}{2}"}) == "\\frac{1}{2}"
    assert math_reference({"solution": "so $\\boxed{\\frac{1}{2}}$."}) == "\\frac{1}{2}"
    with pytest.raises(ValueError):
        math_reference({"solution": "no box"})
    assert normalize_reference("work...\n#### 42") == ["42"]
    assert normalize_reference("$\\frac{1}{2}$") == ["\\frac{1}{2}"]
    assert normalize_reference(3.5) == ["3.5"] and normalize_reference(["1", "2"]) == ["1", "2"]
    m = MathVerifier()
    assert m("#### 1007", gsm_row) == 1.0 and m("#### 1008", gsm_row) == 0.0
    assert m("\\boxed{0.5}", {"problem": "p", "solution": "$\\boxed{\\frac12}$"}) == 1.0
    assert m("\\boxed{2}", ["1", "2"]) == 1.0
    with pytest.raises(ValueError, match="unusable math reference"):
        m.score("\\boxed{3}", None)
    bad = safe_score(m, "\\boxed{3}", None)  # what score_batch does: reward 0 with the reason
    assert bad.reward == 0.0 and bad.info["reason"].startswith("error: ValueError")


def test_info_fields_for_the_trainer_and_evals():
    r = verifiers.score_batch("math", ["I think \\boxed{12}"], ["12"], workers=0)[0]
    assert r.reward == 1.0 and r.info["extracted"] == "12" and r.info["extractor"] == "boxed"
    assert r.info["reason"] == "correct" and r.info["time_s"] >= 0
    r = verifiers.score_batch("arithmetic", ["no number here"], ["12"], workers=0)[0]
    assert r.reward == 0.0 and r.info["extracted"] is None and r.info["reason"] == "no answer found"


# ------------------------------------------------------------------ format and combine
def test_format_verifier_boxed_and_regex():
    f = verifiers.get("format")
    assert f("so \\boxed{4}", None) == 1.0 and f("so 4", None) == 0.0 and f("\\boxed{}", None) == 0.0
    from verifiers.format import FormatVerifier

    think = FormatVerifier(r"<think>.*?</think>\s*<answer>.*?</answer>\s*", fullmatch=True)
    assert think("<think>hm</think> <answer>4</answer>", None) == 1.0
    assert think("<answer>4</answer>", None) == 0.0
    res = verifiers.score_batch(think, ["<think>a</think><answer>1</answer>", "x"], [None, None], workers=1)
    assert [r.reward for r in res] == [1.0, 0.0] and not res[0].info.get("in_process")


def test_combine_weights_normalised_and_registrable():
    c = verifiers.combine({"math": 1.0, "format": 0.25})
    assert c("\\boxed{4}", "4") == 1.0
    assert c("The answer is 4.", "4") == pytest.approx(1.0 / 1.25)
    assert c("\\boxed{5}", "4") == pytest.approx(0.25 / 1.25)
    assert c.score("\\boxed{4}", "4").info["parts"] == {"math": 1.0, "format": 1.0}
    verifiers.register("test_math_fmt", c)
    try:
        res = verifiers.score_batch("test_math_fmt", ["\\boxed{4}", "The answer is 4."], ["4", "4"], workers=2)
        assert [r.reward for r in res] == pytest.approx([1.0, 0.8]) and not res[0].info.get("in_process")
    finally:
        verifiers.unregister("test_math_fmt")
    with pytest.raises(ValueError):
        verifiers.combine({"math": -1.0})
    with pytest.raises(VerifierError):
        verifiers.combine({"nope": 1.0})


# ------------------------------------------------------------------ CLI
def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_verify_writes_results_and_summary(tmp_path, capsys):
    from rlvr.cli import main

    comps = _write_jsonl(tmp_path / "c.jsonl", ["\\boxed{4}", {"completion": "#### 5"}, "nothing", "\\boxed{1/2}"])
    refs = _write_jsonl(tmp_path / "r.jsonl", ["4", {"reference": "6"}, 7, {"question": "q", "answer": "x\n#### 0.5"}])
    out = tmp_path / "out" / "res.jsonl"
    assert main(["verify", "--verifier", "math", "-c", str(comps), "-r", str(refs), "-o", str(out), "-w", "1"]) == 0
    line = capsys.readouterr().out
    assert "count=4" in line and "mean_reward=0.5000" in line and "timeouts=0" in line and "throughput=" in line
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["reward"] for r in rows] == [1.0, 0.0, 0.0, 1.0]
    assert rows[0]["extracted"] == "4" and rows[2]["reason"] == "no answer found" and rows[3]["index"] == 3


def test_cli_bad_lines_name_file_and_line(tmp_path, capsys):
    from rlvr.cli import main

    good = _write_jsonl(tmp_path / "r.jsonl", ["1", "2"])
    bad = tmp_path / "c.jsonl"
    bad.write_text('"\\\\boxed{1}"\n{not json\n')
    assert main(["verify", "-c", str(bad), "-r", str(good), "-w", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{bad}:2: invalid JSON" in err
    wrong_type = _write_jsonl(tmp_path / "c2.jsonl", ["ok", {"text": "no completion key"}])
    assert main(["verify", "-c", str(wrong_type), "-r", str(good), "-w", "0"]) == 2
    assert f"{wrong_type}:2:" in capsys.readouterr().err
    short = _write_jsonl(tmp_path / "c3.jsonl", ["only one"])
    assert main(["verify", "-c", str(short), "-r", str(good), "-w", "0"]) == 2
    assert "1 completions" in capsys.readouterr().err
    assert main(["verify", "-v", "nope", "-c", str(good), "-r", str(good)]) == 2
    assert "unknown verifier" in capsys.readouterr().err


def test_cli_runs_as_a_command(tmp_path):
    comps = _write_jsonl(tmp_path / "c.jsonl", ["```python\ndef f(x):\n    return 2 * x\n```"])
    refs = _write_jsonl(tmp_path / "r.jsonl", [{"test_list": ["assert f(2) == 4"], "code": "def f(x): return 2*x"}])
    out = subprocess.run([sys.executable, "-m", "rlvr.cli", "verify", "-v", "code", "-c", str(comps), "-r", str(refs),
                          "-w", "1"], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert "count=1 mean_reward=1.0000" in out.stdout


def test_bench_builds_model_like_completions(data_dir):
    from rlvr.bench.verifiers import gsm8k_completions, math500_completions

    rows = [json.loads(x) for x in open(data_dir / "gsm8k" / "test.jsonl")][:200]
    comps, refs = gsm8k_completions(rows)
    res = verifiers.score_batch("math", comps, refs, workers=0)
    share = sum(r.reward for r in res) / len(res)
    assert 0.75 < share < 0.95  # about 85% correct by construction
    assert {r.info["extractor"] for r in res} >= {"boxed", "gsm8k", "answer_is", "math_verify"}
    m500 = [json.loads(x) for x in open(data_dir / "math" / "test.jsonl")][:20]
    comps, refs = math500_completions(m500)
    assert all("\\boxed{" in c for c in comps) and len(refs) == 20
