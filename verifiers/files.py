"""Score a JSONL file of completions against a JSONL file of references (``rlvr verify``).

Each completions line is a JSON string or an object with a ``completion`` string; each references
line is any JSON value, or an object whose ``reference`` field is used when present (otherwise the
whole object is the reference: a GSM8K/MATH/HumanEval/MBPP row works as is). Line i of one file
goes with line i of the other. :func:`score_files` scores them and, given ``out`` (``rlvr verify
--out``), writes one JSON object per item: ``index, reward`` and the verifier's info (``extracted,
reason, time_s, ...``; an info key named ``index``, ``reward`` or ``verifier_info`` is kept under
``verifier_info``).

A TRL reward function (``trl:rewards.py:fn``, :mod:`verifiers.trl`) scores the whole file in one call:
each references line that is an object is that completion's row (its ``prompt`` and its other
columns, e.g. ``solution``; any other value is the column ``reference``), and a completions line may
carry ``prompt`` and ``completion_ids`` beside ``completion``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from verifiers.errors import VerifierError as DataError  # bad input files: one line, exit code 2


def _read_jsonl(path: Path) -> list[tuple[str, Any]]:
    """``[(file:line, value)]`` for every non-blank line (DataError naming file:line on bad JSON)."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                out.append((where, json.loads(line)))
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: invalid JSON ({e.msg})") from None
    return out


def load_completions(path: Path) -> list[str]:
    texts = []
    for where, value in _read_jsonl(path):
        if isinstance(value, dict):
            value = value.get("completion")
        if not isinstance(value, str):
            raise DataError(f"{where}: expected a JSON string or an object with a string 'completion'")
        texts.append(value)
    return texts


def load_references(path: Path) -> list[Any]:
    return [v["reference"] if isinstance(v, dict) and "reference" in v else v for _, v in _read_jsonl(path)]


def load_trl_items(completions: Path, references: Path) -> list:
    """The :class:`verifiers.trl.Item` of each line pair: the references line's row (an object: its
    columns, ``prompt`` apart; else the column ``reference``), the completions line's ``prompt`` and
    ``completion_ids`` when it has them."""
    from verifiers.trl import item_of

    items = [item_of(v) for _, v in _read_jsonl(references)]
    for item, (where, c) in zip(items, _read_jsonl(completions)):
        if isinstance(c, dict):
            if "prompt" in c:
                item.prompt = c["prompt"]
            ids = c.get("completion_ids")
            if ids is not None:
                if not (isinstance(ids, list) and all(isinstance(x, int) for x in ids)):
                    raise DataError(f"{where}: 'completion_ids' must be a list of integers")
                item.completion_ids = ids
    return items


def summarize(results: list, seconds: float) -> dict:
    from verifiers.base import outcome

    n = len(results)
    seen = [outcome(r) for r in results]
    applied = [r.reward for r in results if not (r.info or {}).get("none")]  # a TRL function's None: left out
    return {"count": n, "mean_reward": sum(applied) / len(applied) if applied else 0.0,
            "correct": sum(r.reward >= 1.0 for r in results),
            "timeouts": seen.count("timeout"), "errors": seen.count("crash"), "violations": seen.count("violation"),
            "seconds": round(seconds, 3), "items_per_s": round(n / seconds, 1) if seconds > 0 else None}


RESERVED = ("index", "reward", "verifier_info")


def out_row(index: int, result) -> dict:
    """One ``--out`` line: ``index`` and ``reward`` are ours; the verifier's info keys follow, and
    any of them that would overwrite ours goes under ``verifier_info`` instead."""
    info = dict(result.info or {})
    clash = {k: info.pop(k) for k in RESERVED if k in info}
    return {"index": index, "reward": result.reward, **info, **({"verifier_info": clash} if clash else {})}


def score_files(verifier: str, completions: str | Path, references: str | Path, *, out: str | Path | None = None,
                workers: int | None = None, timeout: float | None = None) -> dict:
    """Score the completions in file ``completions`` against the references in file ``references``
    with ``verifier`` (any name :func:`verifiers.get` takes); with ``out``, write one :func:`out_row`
    per item there (JSONL). Returns :func:`summarize`'s summary. Bad files, unequal counts and a
    verifier that fails its start-up check raise VerifierError (one line), before any scoring."""
    import verifiers

    completions, references = Path(completions), Path(references)
    texts = load_completions(completions)
    refs = load_references(references)
    if len(texts) != len(refs):
        raise DataError(f"{completions} has {len(texts)} completions but {references} "
                        f"has {len(refs)} references")
    items = load_trl_items(completions, references) if verifier.startswith("trl:") else None
    # unknown name, failed import, wrong signature, non-number reward: one line, before scoring
    verifiers.check(verifier, (items or refs)[0] if refs else None, workers=workers, timeout=timeout)
    t0 = time.perf_counter()
    results = verifiers.score_batch(verifier, texts, items or refs, workers=workers, timeout=timeout)
    summary = summarize(results, time.perf_counter() - t0)
    if out:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            for i, r in enumerate(results):
                f.write(json.dumps(out_row(i, r), default=str) + "\n")
    return summary
