"""Code rewards: run a Python completion against the reference tests in ``verifiers.sandbox``.

Reference formats (a dict, as the data rows come):

* HumanEval: ``prompt``, ``test``, ``entry_point``. Program = prompt + completion (a completion
  that already defines ``entry_point`` at module level is appended after the prompt, which then
  only contributes its imports and helpers). Tests = ``check(candidate)``.
* MBPP: ``test_list`` (assert strings), optional ``test_setup_code``, ``code`` (the reference
  solution: used only to know which names the tests may take from the completion) and
  ``challenge_test_list`` (added with ``challenge=True``).
* Generic: ``test`` (Python source with asserts, e.g. ``"assert f(2) == 4"``), optional ``setup``;
  a plain string reference is the same as ``{"test": string}``.

Reward: 1 when every test passes, else 0; with ``partial=True`` the fraction of asserting units
(MBPP: asserts in ``test_list``; HumanEval: top-level statements of ``check`` containing an
assert) that pass. A unit counts only when it calls the program (``assert True`` pays nothing),
and with ``partial=True`` not when it also passes against a candidate that returns None or
raises (see ``verifiers.judge.judge``). The program runs in a bubblewrap sandbox
(``verifiers.sandbox``) and the tests in a separate judge process (``verifiers.judge``) that only
exchanges plain data with it, so nothing the program does to its own interpreter can change the
verdict. Where the sandbox cannot run,
constructing the verifier raises ``SandboxUnavailable`` (one line naming the fix).
"""
from __future__ import annotations

import re
from typing import Any

from verifiers.base import ScoreResult, Verifier
from verifiers.sandbox import Sandbox, _isolation_from_env, check_available

MAX_CODE_CHARS = 200_000
_FENCE_LANG = re.compile(r"^[ \t]*(?:python3?|py)?[ \t]*\r?\n", re.IGNORECASE)


def extract_code(text: str, entry_point: str | None = None) -> str:
    """Code from a completion: the ```python fenced block that defines ``entry_point`` (else the
    first block containing ``def``, else the first block); the raw text when there is no fence.

    Linear time: the text is split on the fences once (no backtracking regex over the whole text).
    """
    parts = text.split("```")
    if len(parts) < 3:  # zero fences, or one unclosed fence: take what follows it
        return _FENCE_LANG.sub("", parts[1], count=1) if len(parts) == 2 and "def " in parts[1] else text
    blocks = [_FENCE_LANG.sub("", b, count=1) for b in parts[1::2]]
    if entry_point:
        defining = [b for b in blocks if re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", b, re.M)]
        if defining:
            return defining[-1]
    with_def = [b for b in blocks if "def " in b]
    return (with_def or blocks)[0]


def build_request(code: str, reference: Any, *, partial: bool = False, challenge: bool = False) -> dict:
    """The sandbox request for ``code`` against ``reference`` (ValueError on an unusable reference)."""
    if isinstance(reference, str):
        reference = {"test": reference}
    if not isinstance(reference, dict):
        raise ValueError(f"code reference must be a dict (HumanEval/MBPP row) or test source, got "
                         f"{type(reference).__name__}")
    if {"prompt", "test", "entry_point"} <= set(reference):
        return {"mode": "humaneval", "code": code, "prompt": reference["prompt"], "test": reference["test"],
                "entry_point": reference["entry_point"], "partial": partial}
    if "test_list" in reference:
        tests = list(reference["test_list"]) + (list(reference.get("challenge_test_list") or []) if challenge else [])
        if not tests or not all(isinstance(t, str) for t in tests):
            raise ValueError("MBPP reference: 'test_list' must be a non-empty list of strings")
        return {"mode": "mbpp", "code": code, "tests": tests, "setup": reference.get("test_setup_code") or "",
                "reference_code": reference.get("code") or "", "partial": partial}
    if isinstance(reference.get("test"), str):
        return {"mode": "script", "code": code, "test": reference["test"], "setup": reference.get("setup") or "",
                "reference_code": reference.get("code") or "", "partial": partial}
    raise ValueError("code reference needs HumanEval fields (prompt, test, entry_point), MBPP 'test_list' or 'test'")


class CodeVerifier(Verifier):
    """Run the completion's code against the reference tests in a sandbox.

    ``timeout``: wall-clock seconds per program; ``memory_mb``: address-space limit of each of its
    processes and resident-memory budget of all of them together; ``tmpfs_mb``:
    size of its only writable place; ``partial``:
    fraction of asserts passed instead of all-or-nothing; ``challenge``: add MBPP's challenge
    tests; ``isolation``: "auto"/"bwrap" (the bubblewrap sandbox; ``SandboxUnavailable`` where it
    cannot run) or "none" (explicit opt-out, also ``RLVR_CODE_SANDBOX=none``: no OS boundary, a
    warning on every run). One sandbox launcher per process, started on first use. ``info``:
    status, passed, total, reason, output, sandbox_time_s.
    """

    name = "code"

    def __init__(self, *, timeout: float = 5.0, memory_mb: int = 1024, partial: bool = False,
                 challenge: bool = False, isolation: str = "auto", tmpfs_mb: int = 64):
        self.timeout, self.memory_mb, self.partial = float(timeout), int(memory_mb), bool(partial)
        self.tmpfs_mb = int(tmpfs_mb)
        self.challenge, self.isolation = bool(challenge), isolation
        self.default_timeout = self.timeout + 10.0  # the sandbox times out first
        self._sandbox: Sandbox | None = None
        if _isolation_from_env(isolation) != "none":
            check_available()  # refuse now, in the caller's process, rather than score 0s

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_sandbox"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._sandbox = None

    def __repr__(self) -> str:
        return f"CodeVerifier(timeout={self.timeout}, memory_mb={self.memory_mb}, partial={self.partial})"

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox(timeout=self.timeout, memory_mb=self.memory_mb, isolation=self.isolation,
                                    tmpfs_mb=getattr(self, "tmpfs_mb", 64))
        return self._sandbox

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    def score(self, completion: str, reference: Any) -> ScoreResult:
        entry = reference.get("entry_point") if isinstance(reference, dict) else None
        code = extract_code(completion, entry)
        if len(code) > MAX_CODE_CHARS:
            return ScoreResult(0.0, {"extracted": code[:200], "status": "error", "reason": "code too long"})
        request = build_request(code, reference, partial=self.partial, challenge=self.challenge)
        res = self.sandbox.run(request)
        reward = res.fraction if self.partial else float(res.status == "passed")
        info = {"extracted": code, "status": res.status, "passed": res.passed, "total": res.total,
                "reason": res.reason, "output": res.output[:2000], "sandbox_time_s": res.time_s}
        if res.status == "timeout":
            info["timeout"] = True
        if "warning" in res.extra:
            info["warning"] = res.extra["warning"]
        return ScoreResult(reward, info)
