"""Score a JSONL file of completions against a JSONL file of references (``rlvr verify``).

Each completions line is a JSON string or an object with a ``completion`` string; each references
line is any JSON value, or an object whose ``reference`` field is used when present (otherwise the
whole object is the reference: a GSM8K/MATH/HumanEval/MBPP row works as is). Line i of one file
goes with line i of the other. :func:`score_files` scores them and, given ``out`` (``rlvr verify
--out``), writes one JSON object per item: ``index, reward`` and the verifier's info (``extracted,
reason, time_s, ...``; an info key named ``index``, ``reward`` or ``verifier_info`` is kept under
``verifier_info``).
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


def summarize(results: list, seconds: float) -> dict:
    from verifiers.base import outcome

    n = len(results)
    seen = [outcome(r) for r in results]
    return {"count": n, "mean_reward": sum(r.reward for r in results) / n if n else 0.0,
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
    # unknown name, failed import, wrong signature, non-number reward: one line, before scoring
    verifiers.check(verifier, refs[0] if refs else None, workers=workers, timeout=timeout)
    t0 = time.perf_counter()
    results = verifiers.score_batch(verifier, texts, refs, workers=workers, timeout=timeout)
    summary = summarize(results, time.perf_counter() - t0)
    if out:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            for i, r in enumerate(results):
                f.write(json.dumps(out_row(i, r), default=str) + "\n")
    return summary
