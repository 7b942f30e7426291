r"""Format rewards: does the completion have the required shape (independent of correctness)?

Default: 1 when the completion contains a non-empty ``\boxed{...}``. With ``pattern``: 1 when the
regex matches (``re.search``, or the whole text with ``fullmatch=True``). The reference is
ignored. Regexes run on at most ``max_chars`` characters (the end of the completion) so a
pathological completion cannot make scoring slow; prefer linear patterns all the same.
"""
from __future__ import annotations

import re
from typing import Any

from verifiers.base import ScoreResult, Verifier
from verifiers.math import extract_boxed


class FormatVerifier(Verifier):
    r"""Reward 1 for the required format: ``\boxed{}`` by default, or ``pattern`` (a regex)."""

    name = "format"
    default_timeout = 5.0

    def __init__(self, pattern: str | None = None, *, fullmatch: bool = False, flags: int = re.DOTALL,
                 max_chars: int = 20000):
        self.pattern = pattern
        self.fullmatch = fullmatch
        self.max_chars = int(max_chars)
        self._regex = re.compile(pattern, flags) if pattern is not None else None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_flags"] = self._regex.flags if self._regex is not None else 0
        state["_regex"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        flags = state.pop("_flags")
        self.__dict__.update(state)
        self._regex = re.compile(self.pattern, flags) if self.pattern is not None else None

    def __repr__(self) -> str:
        return f"FormatVerifier(pattern={self.pattern!r})" if self.pattern else "FormatVerifier(boxed)"

    def score(self, completion: str, reference: Any = None) -> ScoreResult:
        text = completion[-self.max_chars:]
        if self._regex is None:
            boxed = extract_boxed(completion)
            ok = boxed is not None
            return ScoreResult(float(ok), {"extracted": boxed, "reason": "boxed answer" if ok else "no boxed answer"})
        m = self._regex.fullmatch(text) if self.fullmatch else self._regex.search(text)
        return ScoreResult(float(m is not None), {"extracted": m.group(0)[:200] if m else None,
                                                  "reason": "format ok" if m else "format mismatch"})
