"""Offline preference pairs for DPO: a ``.jsonl`` (or ``.jsonl.gz``) of {"prompt", "chosen", "rejected"}.

Each row is one pair of completions of the same prompt, the first preferred. Errors name file:line.
Online pairs (from verifier scores inside each group) come from ``rlvr.algorithms.dpo.verifier_pairs``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlvr.data import read_jsonl
from rlvr.errors import DataError

FIELDS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str
    where: str  # "file:line" of the row


def load_preference_pairs(path: str | Path, limit: int | None = None) -> list[PreferencePair]:
    """Read (prompt, chosen, rejected) rows; every field a non-empty string, chosen != rejected.

    ``limit`` keeps the first rows. Raises DataError naming file:line for a bad row, and naming the
    file when it is missing or holds no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected a .jsonl of prompt/chosen/rejected rows)")
    pairs: list[PreferencePair] = []
    for where, row in read_jsonl(path):
        if limit is not None and len(pairs) >= limit:
            break
        for name in FIELDS:
            if name not in row:
                raise DataError(f"{where}: missing field '{name}' (need {', '.join(FIELDS)})")
            if not isinstance(row[name], str) or not row[name]:
                raise DataError(f"{where}: field '{name}' must be a non-empty string, got {row[name]!r:.60}")
        if row["chosen"] == row["rejected"]:
            raise DataError(f"{where}: 'chosen' and 'rejected' are identical; a pair needs two different completions")
        pairs.append(PreferencePair(row["prompt"], row["chosen"], row["rejected"], where))
    if not pairs:
        raise DataError(f"{path}: no preference pairs (the file has no rows)")
    return pairs
