"""Weighted combinations of verifiers: ``reward = sum_i w_i r_i / sum_i w_i`` (stays in [0, 1])."""
from __future__ import annotations

from typing import Any

from verifiers.base import ScoreResult, Verifier, safe_score


class Combined(Verifier):
    """Weight-normalised sum of named verifiers, all given the same reference.

    ``Combined({"math": 1.0, "format": 0.1})`` gives 1.0 for a correct boxed answer, 0.909 for a
    correct unboxed one, 0.091 for a wrong boxed one. ``info`` holds each part's reward under
    ``parts`` and the first part's ``extracted``. Register it with ``verifiers.register(name, c)``.
    """

    def __init__(self, weights: dict[str, float], name: str | None = None):
        if not weights:
            raise ValueError("combine() needs at least one verifier")
        bad = {k: w for k, w in weights.items() if not isinstance(w, (int, float)) or w < 0}
        if bad or sum(weights.values()) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")
        from verifiers.registry import get

        self.weights = {k: float(w) for k, w in weights.items()}
        self.parts = {k: get(k) for k in self.weights}  # fail early on unknown names
        self.name = name or "+".join(f"{w:g}*{k}" for k, w in self.weights.items())
        self.default_timeout = sum(v.default_timeout for v in self.parts.values())

    def __getstate__(self) -> dict:  # parts are rebuilt by name in a worker
        return {"weights": self.weights, "name": self.name}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["weights"], state["name"])

    def __repr__(self) -> str:
        return f"Combined({self.weights})"

    def warm(self) -> None:
        for v in self.parts.values():
            v.warm()

    def score(self, completion: str, reference: Any) -> ScoreResult:
        total = sum(self.weights.values())
        parts, reward, first = {}, 0.0, None
        for k, w in self.weights.items():
            r = safe_score(self.parts[k], completion, reference)
            parts[k] = r.reward
            reward += w * r.reward / total
            first = first or r
        info = {"parts": parts, "extracted": first.info.get("extracted"),
                "reason": "; ".join(f"{k}={v:g}" for k, v in parts.items())}
        return ScoreResult(reward, info)
