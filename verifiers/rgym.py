"""``reasoning_gym:<task>``: a reasoning-gym task's own ``score_answer``, as a verifier.

The reference is the generated entry (``question``, ``answer``, ``metadata``). The answer scored
is the last ``<answer>...</answer>`` of the completion when it has one, else the whole completion.
Built by name in each scoring worker (``reasoning_gym`` is imported there, once), so a slow or
crashing scorer gets the same hard timeout and isolation as the other verifiers.
"""
from __future__ import annotations

import re
from typing import Any

from verifiers.base import ScoreResult, Verifier
from verifiers.errors import VerifierError

_ANSWER = re.compile(r"<answer>\s?(.*?)\s?</answer>", re.DOTALL)


def tasks() -> list[str]:
    """Names of the installed reasoning-gym tasks (VerifierError when it is not installed)."""
    try:
        from reasoning_gym.factory import DATASETS
    except ImportError:
        raise VerifierError("reasoning_gym verifiers need the reasoning-gym package: pip install reasoning-gym") from None
    return sorted(DATASETS)


class ReasoningGymVerifier(Verifier):
    """Reward = ``score_answer(answer, entry)`` of reasoning-gym task ``task`` (default config)."""

    default_timeout = 10.0

    def __init__(self, task: str):
        known = tasks()
        if task not in known:
            raise VerifierError(f"verifier 'reasoning_gym:{task}': unknown reasoning-gym task "
                                f"(e.g. {', '.join(known[:6])}, ...)")
        self.task = task
        self.name = f"reasoning_gym:{task}"
        self._fn = None

    def __getstate__(self) -> dict:
        return {"task": self.task, "name": self.name}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["task"])

    def __repr__(self) -> str:
        return f"ReasoningGymVerifier({self.task!r})"

    def warm(self) -> None:
        if self._fn is None:
            from reasoning_gym import get_score_answer_fn

            self._fn = get_score_answer_fn(self.task)

    def score(self, completion: str, reference: Any) -> ScoreResult:
        self.warm()
        found = _ANSWER.findall(completion)
        answer = found[-1].strip() if found else completion.strip()
        return ScoreResult(self._fn(answer=answer, entry=reference), {"extracted": answer[:200]})
