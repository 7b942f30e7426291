"""Prompt sets: each row becomes an :class:`Example` (chat messages + the reference a verifier checks).

``load_prompts(source)`` accepts:

* a ``.jsonl`` / ``.jsonl.gz`` file, a ``.parquet`` file or a folder written by ``datasets``'
  ``save_to_disk`` (a ``DatasetDict`` folder gives its ``split``); the row format is detected from
  the first row's fields (GSM8K ``question, answer``; MATH ``problem, answer|solution``; HumanEval
  ``prompt, test, entry_point``; MBPP ``text, test_list``; generic ``prompt, reference|answer``) or
  forced with ``format`` (``trl``: a TRL dataset as it is, see :func:`trl_row`),
* a built-in set read from the data directory (``$RLVR_DATA_DIR``, else ``../shared/data`` next to
  the checkout): ``gsm8k`` (train 7,473 / test 1,319), ``math`` (train 12,000 / test = MATH-500),
  ``math500`` (500), ``humaneval`` (164), ``mbpp`` (974; splits prompt 1-10, test 11-510,
  validation 511-600, train 601-974 by task_id),
* ``arithmetic[:add2|add3|sub2|mul2x1][@k]``: synthetic, seeded, no file; a fixed 1 in k pairs
  (default 10) is held out as the "test" split (``add2@5``: 1,620 held-out additions);
  ``arithmetic:chain<k>[d<digits>][@h]``: k numbers of 1-3 digits (default 2) added step by step
  ("Step i: s + x = s'" lines, then "The answer is N."), a multi-step task with one worked
  example in the prompt (``chain4d1@5``: four one-digit numbers, 1,287 held-out tuples),
* ``reasoning_gym:<task>`` when the ``reasoning_gym`` package is installed,
* a Hugging Face dataset ``owner/name[:config]`` (or ``hf:name``), loaded with ``datasets``.

``limit`` keeps the first rows in file order; shuffling is the trainer's job.
"""
from __future__ import annotations

import gzip
import itertools
import json
import os
import random
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from rlvr.errors import DataError

SYSTEM_PROMPTS = {
    "math": "Please reason step by step, and put your final answer within \\boxed{}.",
    "arithmetic": "",  # the instruction sits in the user turn (measured: 0/16 greedy as a system
                       # prompt on add2 with SmolLM2-135M-Instruct, 4/16 in the user turn)
    "code": "Write a Python function that solves the task. Return only the code, in one ```python code block.",
}
ARITHMETIC_INSTRUCTION = "Answer with just the number."
BUILTIN_SETS = ("gsm8k", "math", "math500", "humaneval", "mbpp", "arithmetic")
_FILES = {  # (name, split) -> file under the data dir
    ("gsm8k", "train"): "gsm8k/train.jsonl", ("gsm8k", "test"): "gsm8k/test.jsonl",
    ("math", "train"): "math/train.jsonl", ("math", "test"): "math/test.jsonl",
    ("math500", "test"): "math/test.jsonl", ("humaneval", "test"): "humaneval/HumanEval.jsonl.gz",
    ("mbpp", None): "mbpp/mbpp.jsonl",
}
_DEFAULT_SPLIT = {"gsm8k": "train", "math": "train", "math500": "test", "humaneval": "test", "mbpp": None}
MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}


@dataclass
class Example:
    """One prompt. ``prompt`` is a list of chat messages ``{"role", "content"}``."""

    id: str
    prompt: list[dict[str, str]]
    reference: Any  # str answer (math), row dict (code); None for a TRL row without reference_column
    task: str  # gsm8k | math | humaneval | mbpp | arithmetic:add2 | generic | trl | ...
    verifier: str  # verifier name for verifiers.score_batch ("" when there is no reference to check)
    meta: dict = field(default_factory=dict)
    # a plain-text prompt (a TRL row's prompt as a string): the model continues this text as is, no
    # chat template (what TRL does); ``prompt`` then holds it as one user message, for display
    plain_prompt: str | None = None
    # a TRL row's columns other than prompt (completion, completion_ids): what TRL reward functions
    # get as keyword lists
    columns: dict[str, Any] | None = None


def _messages(system: str | None, user: str) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def data_dir() -> Path:
    """Folder with the built-in sets: ``$RLVR_DATA_DIR``, else ``../shared/data`` next to the checkout."""
    env = os.environ.get("RLVR_DATA_DIR")
    if env:
        return Path(env).expanduser()
    here = Path(__file__).resolve().parents[2] / "shared" / "data"
    if here.is_dir():
        return here
    raise DataError("built-in data sets need RLVR_DATA_DIR set to the folder holding gsm8k/, math/, humaneval/, mbpp/")


# ----------------------------------------------------------------------------- row readers


def read_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    """Yield ``("file:line", row)`` for each non-blank line of a ``.jsonl`` or ``.jsonl.gz`` file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: invalid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row


def detect_format(row: dict) -> str:
    """Row format from its fields: gsm8k, math, humaneval, mbpp or generic."""
    keys = set(row)
    if {"prompt", "test", "entry_point"} <= keys:
        return "humaneval"
    if {"text", "test_list"} <= keys:
        return "mbpp"
    if "question" in keys and "answer" in keys:
        return "gsm8k"
    if "problem" in keys:
        return "math"
    return "generic"


def _need(row: dict, where: str, *names: str) -> None:
    for name in names:
        if row.get(name) is None:
            raise DataError(f"{where}: missing field '{name}'")


def _need_str(row: dict, where: str, *names: str) -> None:
    """Each field present and a string (a number or a list here would fail only when scored)."""
    _need(row, where, *names)
    for name in names:
        if not isinstance(row[name], str):
            raise DataError(f"{where}: field '{name}' must be a string, got {type(row[name]).__name__} "
                            f"{_preview(row[name])}")


def _preview(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def last_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` in ``text`` (braces balanced), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def _row_id(row: dict, where: str) -> str:
    for key in ("task_id", "unique_id", "id"):
        if row.get(key) is not None:
            return str(row[key])
    if where.endswith("]"):  # path[i]: a parquet file's or a datasets folder's row
        return f"{Path(where).parent.name}/{Path(where).name}"
    path, _, line = where.rpartition(":")
    return f"{Path(path).parent.name}/{Path(path).name}:{line}"


def convert_row(fmt: str, row: dict, where: str, system_prompt: str | None,
                reference_column: str | None = None) -> Example:
    """Turn one row of format ``fmt`` into an :class:`Example` (DataError naming ``where``)."""
    rid = _row_id(row, where)
    if fmt == "trl":
        return trl_row(row, where, rid, system_prompt, reference_column)

    def sys(kind: str) -> str | None:
        return SYSTEM_PROMPTS.get(kind) if system_prompt is None else system_prompt

    if fmt == "gsm8k":
        _need_str(row, where, "question", "answer")
        if "####" not in row["answer"]:
            raise DataError(f"{where}: field 'answer' has no '#### <final answer>' line")
        ref = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        return Example(rid, _messages(sys("math"), row["question"]), ref, "gsm8k", "math")
    if fmt == "math":
        _need_str(row, where, "problem")
        ref = row.get("answer")
        if ref is not None and (isinstance(ref, bool) or not isinstance(ref, (str, int, float))):
            raise DataError(f"{where}: field 'answer' must be a string or a number, got "
                            f"{type(ref).__name__} {_preview(ref)}")
        if ref is None:
            _need_str(row, where, "solution")
            ref = last_boxed(row["solution"])
            if ref is None:
                raise DataError(f"{where}: no field 'answer' and no \\boxed{{}} in field 'solution'")
        meta = {k: row[k] for k in ("level", "subject") if k in row}
        return Example(rid, _messages(sys("math"), row["problem"]), str(ref), "math", "math", meta)
    if fmt == "humaneval":
        _need_str(row, where, "prompt", "test", "entry_point")
        user = f"Complete the following Python function.\n\n```python\n{row['prompt']}```"
        return Example(rid, _messages(sys("code"), user), row, "humaneval", "code")
    if fmt == "mbpp":
        _need_str(row, where, "text")
        _need(row, where, "test_list")
        tests = row["test_list"]
        if not (isinstance(tests, list) and tests and all(isinstance(x, str) for x in tests)):
            raise DataError(f"{where}: field 'test_list' must be a non-empty list of strings (assert "
                            f"statements), got {type(tests).__name__} {_preview(tests)}")
        user = row["text"] + "\nYour code should pass these tests:\n" + "\n".join(row["test_list"])
        return Example(f"mbpp/{rid}", _messages(sys("code"), user), row, "mbpp", "code")
    if fmt == "generic":
        return _generic_row(row, where, rid, system_prompt)
    raise DataError(f"unknown row format {fmt!r}; expected {', '.join(ROW_FORMATS)}")


ROW_FORMATS = ("gsm8k", "math", "humaneval", "mbpp", "generic", "trl")
TRL_NOT_COLUMNS = ("prompt", "completion", "completion_ids")  # columns TRL does not pass to reward functions


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(m, dict) and {"role", "content"} <= set(m) for m in value)


def trl_row(row: dict, where: str, rid: str, system_prompt: str | None = None,
            reference_column: str | None = None) -> Example:
    """A row of a TRL prompt-only dataset, as TRL's GRPOTrainer reads it: ``prompt`` is text (the
    model continues it as is, no chat template) or a list of ``{role, content}`` messages (the chat
    template applies; ``system_prompt``, when given, is inserted first); every other column is kept
    for TRL reward functions. ``reference_column`` names the column the built-in verifiers check
    (the example's own verifier: the row's ``verifier`` column, else ``math``); without it the
    example has no reference and only TRL reward functions can score it."""
    prompt = row.get("prompt")
    if prompt is None:
        raise DataError(f"{where}: missing field 'prompt' (a TRL dataset's prompt column: text or a list of "
                        "{role, content} messages)")
    columns = {k: v for k, v in row.items() if k not in TRL_NOT_COLUMNS}
    plain = None
    if isinstance(prompt, str):
        plain, messages = prompt, _messages(None, prompt)
    elif _is_messages(prompt):
        messages = [dict(m) for m in prompt]
        if system_prompt and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": system_prompt})
    else:
        raise DataError(f"{where}: field 'prompt' must be a string or a list of {{role, content}} messages, got "
                        f"{type(prompt).__name__} {_preview(prompt)}")
    ref, verifier = None, ""
    if reference_column:
        if row.get(reference_column) is None:
            have = ", ".join(k for k in row if k != "prompt") or "none"
            raise DataError(f"{where}: missing field '{reference_column}' (data.reference_column; the row has: {have})")
        ref = row[reference_column]
        verifier = row["verifier"] if isinstance(row.get("verifier"), str) and row["verifier"] else "math"
    task = row["task"] if isinstance(row.get("task"), str) and row["task"] else "trl"
    return Example(rid, messages, ref, task, verifier, plain_prompt=plain, columns=columns)


def _generic_row(row: dict, where: str, rid: str, system_prompt: str | None) -> Example:
    """``{prompt: str | messages, reference | answer, [verifier], [task]}``."""
    _need(row, where, "prompt")
    ref = row.get("reference", row.get("answer"))
    if ref is None:
        raise DataError(f"{where}: missing field 'reference' (or 'answer'); a TRL dataset (a prompt column and "
                        "any others) is read with data.format: trl")
    for name in ("verifier", "task"):
        if row.get(name) is not None and not isinstance(row[name], str):
            raise DataError(f"{where}: field '{name}' must be a string, got {type(row[name]).__name__}")
    verifier = row.get("verifier") or "math"
    system = SYSTEM_PROMPTS.get(verifier) if system_prompt is None else system_prompt
    prompt = row["prompt"]
    if isinstance(prompt, str):
        messages = _messages(system, prompt)
    elif isinstance(prompt, list) and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in prompt):
        messages = list(prompt)
        if system and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": system})
    else:
        raise DataError(f"{where}: field 'prompt' must be a string or a list of {{role, content}} messages")
    return Example(rid, messages, ref, row.get("task") or "generic", verifier)


def examples_from_rows(rows, *, fmt: str | None = None, system_prompt: str | None = None,
                       reference_column: str | None = None) -> list[Example]:
    """Convert ``(where, row)`` pairs; ``fmt`` None detects the format from the first row."""
    out = []
    for where, row in rows:
        fmt = fmt or detect_format(row)
        out.append(convert_row(fmt, row, where, system_prompt, reference_column))
    return out


# ----------------------------------------------------------------------------- synthetic arithmetic

ARITHMETIC = {  # variant -> (range of a, range of b, operator)
    "add2": ((10, 99), (10, 99), "+"),
    "add3": ((100, 999), (100, 999), "+"),
    "sub2": ((10, 99), (10, 99), "-"),  # a >= b, so answers are >= 0
    "mul2x1": ((10, 99), (2, 9), "*"),
}
ARITHMETIC_SIZES = {"train": 5000, "test": 500}  # default sizes when limit is None


def _split_of(terms, holdout: int = 10) -> str:
    """Fixed split of the operands ``terms`` (a pair (a, b), or a chain's tuple): 1 in ``holdout``
    is "test" (crc32 of "a,b,..."), independent of the seed, so train and test are disjoint by
    construction for every seed and size. The test items of ``holdout=10`` are among those of any
    divisor of 10 (5, 2): a wider split keeps the old items."""
    return "test" if zlib.crc32(",".join(map(str, terms)).encode()) % holdout == 0 else "train"


def _arith_variant(variant: str) -> tuple[str, int]:
    """``"add2"`` -> ("add2", 10); ``"add2@5"`` -> ("add2", 5): 1 in 5 pairs held out (add2 has
    8,100 pairs: 822 held out at 1 in 10, 1,620 at 1 in 5)."""
    base, at, k = variant.partition("@")
    if base not in ARITHMETIC:
        raise DataError(f"arithmetic:{variant}: unknown variant; expected one of {', '.join(ARITHMETIC)} "
                        "(optionally @k: hold out 1 in k pairs, default 10)")
    if not at:
        return base, 10
    if not k.isdigit() or not 2 <= int(k) <= 100:
        raise DataError(f"arithmetic:{variant}: @{k} must be an integer from 2 to 100 (hold out 1 in k pairs)")
    return base, int(k)


def _arith_pairs(variant: str, split: str, count: int, rng: random.Random) -> list[tuple[int, int]]:
    variant, holdout = _arith_variant(variant)
    (a0, a1), (b0, b1), op = ARITHMETIC[variant]
    ok = lambda a, b: _split_of((a, b), holdout) == split and (op != "-" or a >= b)  # noqa: E731
    if (a1 - a0 + 1) * (b1 - b0 + 1) <= 200_000:  # small space: enumerate, shuffle
        pairs = [(a, b) for a in range(a0, a1 + 1) for b in range(b0, b1 + 1) if ok(a, b)]
        rng.shuffle(pairs)
        return pairs[:count]
    seen: dict[tuple[int, int], None] = {}  # large space: rejection sampling without repeats
    while len(seen) < count:
        a, b = rng.randint(a0, a1), rng.randint(b0, b1)
        if ok(a, b):
            seen.setdefault((a, b))
    return list(seen)


CHAIN_INSTRUCTION = ("Add the {k} numbers one at a time from left to right, one step per line ({steps} steps), "
                     "then finish with: The answer is N.")
CHAIN_DIGITS = (1, 2, 3)  # d1: terms 1-9, d2: 10-99, d3: 100-999
CHAIN_ENUMERATE = 200_000  # tuple spaces up to this size are enumerated (every tuple reachable)


def chain_variant(variant: str) -> tuple[int, int, int]:
    """``"chain4d1@5"`` -> (k=4, digits=1, holdout=5); digits default to 2, holdout to 10."""
    m = re.fullmatch(r"chain(\d+)(?:d(\d+))?(?:@(\d+))?", variant)
    if not m:
        raise DataError(f"arithmetic:{variant}: expected chain<k>[d<digits>][@h], e.g. chain5, chain4d1, chain4d1@5")
    k, d, h = int(m[1]), int(m[2] or 2), int(m[3] or 10)
    if not 3 <= k <= 8:
        raise DataError(f"arithmetic:{variant}: chain<k> needs k from 3 to 8 numbers (e.g. chain5)")
    if d not in CHAIN_DIGITS:
        raise DataError(f"arithmetic:{variant}: d<digits> must be one of {', '.join(map(str, CHAIN_DIGITS))}")
    if not 2 <= h <= 100:
        raise DataError(f"arithmetic:{variant}: @{h} must be an integer from 2 to 100 (hold out 1 in h tuples)")
    return k, d, h


def chain_worked(terms) -> str:
    """The worked answer in the asked-for form: "Step i: s + x = s'" per term, then "The answer is N."."""
    lines, total = [], terms[0]
    for i, x in enumerate(terms[1:], 1):
        lines.append(f"Step {i}: {total} + {x} = {total + x}")
        total += x
    return "\n".join(lines + [f"The answer is {total}."])


def _chain_question(terms) -> str:
    return (f"What is {' + '.join(map(str, terms))}? "
            + CHAIN_INSTRUCTION.format(k=len(terms), steps=len(terms) - 1))


def _chain_shot(k: int, lo: int, hi: int) -> tuple[int, ...]:
    """The worked example's tuple: fixed per (k, digits), distinct terms, and a running total that
    crosses a multiple of ten (so the example shows a carry)."""
    rng = random.Random(f"arithmetic:chain{k}:{lo}-{hi}:shot")
    while True:
        t = tuple(rng.randint(lo, hi) for _ in range(k))
        totals = list(itertools.accumulate(t))
        if len(set(t)) == k and any(a // 10 != b // 10 for a, b in zip(totals, totals[1:])):
            return t


def _chain_examples(variant: str, split: str, count: int, seed: int, system: str) -> list[Example]:
    """``chain<k>[d<digits>][@h]``: the sum of k numbers of ``digits`` digits (default 2), worked
    step by step, a multi-step task whose intermediate tokens (each running total) carry
    information about the outcome.

    The prompt is a two-turn chat: one worked example of the same shape (a fixed tuple per variant,
    in neither split) as a user turn and the assistant's answer in the asked-for form
    (:func:`chain_worked`: "Step 1: 4 + 7 = 11" ... "The answer is N."), then the question. The
    user turn says how many numbers and steps there are. Without the example SmolLM2-135M-Instruct
    does not write the steps (chain3, the earlier zero-shot form: 0/32 greedy, 0/256 sampled); with
    an example but no step count it copies the example's number of lines (benchmarks/results/
    task_probe.json has the measurements that picked ``chain4d1``).

    Split: 1 in ``h`` tuples is "test" (crc32 of the tuple, default h = 10; ``chain4d1@5``: 1,287
    of the 6,561 tuples held out). Tuple spaces up to 200,000 are enumerated and shuffled (``limit``
    beyond the split's size gives the whole split); larger ones are sampled without repeats.
    """
    k, d, holdout = chain_variant(variant)
    lo, hi = (1 if d == 1 else 10 ** (d - 1)), 10**d - 1
    shot = _chain_shot(k, lo, hi)
    ok = lambda t: t != shot and _split_of(t, holdout) == split  # noqa: E731
    rng = random.Random(f"arithmetic:{variant}:{split}:{seed}")
    if (hi - lo + 1) ** k <= CHAIN_ENUMERATE:
        tuples = [t for t in itertools.product(range(lo, hi + 1), repeat=k) if ok(t)]
        rng.shuffle(tuples)
        tuples = tuples[:count]
    else:
        size = (hi - lo + 1) ** k * (1 / holdout if split == "test" else 1 - 1 / holdout)
        if count > size / 2:  # rejection sampling without repeats would crawl (or never end)
            raise DataError(f"arithmetic:{variant}: {count} {split} items asked for, about {size:,.0f} exist; "
                            "ask for at most half of them")
        seen: dict[tuple[int, ...], None] = {}
        while len(seen) < count:
            t = tuple(rng.randint(lo, hi) for _ in range(k))
            if ok(t):
                seen.setdefault(t)
        tuples = list(seen)
    demo = [{"role": "user", "content": _chain_question(shot)}, {"role": "assistant", "content": chain_worked(shot)}]
    out = []
    for t in tuples:
        messages = _messages(system, _chain_question(t))
        messages[-1:-1] = demo  # after the system prompt, before the question
        out.append(Example(f"arithmetic:{variant}/{split}/{'+'.join(map(str, t))}", messages, str(sum(t)),
                           f"arithmetic:{variant}", "math", {"terms": list(t), "op": "+", "shot": list(shot)}))
    return out


def arithmetic_examples(variant: str = "add2", *, split: str | None = None, limit: int | None = None,
                        seed: int = 0, system_prompt: str | None = None) -> list[Example]:
    """Synthetic problems "What is a <op> b?" with the integer answer as reference (verifier "math");
    ``chain<k>[d<digits>][@h]``: k numbers added step by step (:func:`_chain_examples`)."""
    variant = variant or "add2"
    if variant.startswith("chain"):
        split = split or "train"
        if split not in ARITHMETIC_SIZES:
            raise DataError(f"arithmetic: split {split!r}; expected 'train' or 'test'")
        system = SYSTEM_PROMPTS["arithmetic"] if system_prompt is None else system_prompt
        return _chain_examples(variant, split, ARITHMETIC_SIZES[split] if limit is None else limit, seed, system)
    _arith_variant(variant)  # a clear error for an unknown variant or split width
    split = split or "train"
    if split not in ARITHMETIC_SIZES:
        raise DataError(f"arithmetic: split {split!r}; expected 'train' or 'test'")
    rng = random.Random(f"arithmetic:{variant}:{split}:{seed}")
    op = ARITHMETIC[_arith_variant(variant)[0]][2]
    system = SYSTEM_PROMPTS["arithmetic"] if system_prompt is None else system_prompt
    out = []
    for a, b in _arith_pairs(variant, split, ARITHMETIC_SIZES[split] if limit is None else limit, rng):
        answer = {"+": a + b, "-": a - b, "*": a * b}[op]
        out.append(Example(f"arithmetic:{variant}/{split}/{a}{op}{b}", _messages(system, f"What is {a} {op} {b}? {ARITHMETIC_INSTRUCTION}"),
                           str(answer), f"arithmetic:{variant}", "math", {"a": a, "b": b, "op": op}))
    return out


# ----------------------------------------------------------------------------- sources


def _builtin_rows(name: str, split: str | None) -> Iterator[tuple[str, dict]]:
    split = split or _DEFAULT_SPLIT[name]
    if name == "mbpp":
        if split is not None and split not in MBPP_SPLITS:
            raise DataError(f"mbpp: split {split!r}; expected one of {', '.join(MBPP_SPLITS)} (or none for all)")
        lo, hi = MBPP_SPLITS[split] if split else (1, 10**9)
        return ((w, r) for w, r in read_jsonl(data_dir() / _FILES[("mbpp", None)]) if lo <= r.get("task_id", 0) <= hi)
    if (name, split) not in _FILES:
        have = sorted(s for n, s in _FILES if n == name)
        raise DataError(f"{name}: split {split!r}; available: {', '.join(have)}")
    path = data_dir() / _FILES[(name, split)]
    if not path.is_file():
        raise DataError(f"{name}: {path} not found (set RLVR_DATA_DIR to the folder holding {_FILES[(name, split)]})")
    return read_jsonl(path)


def _hf_rows(name: str, split: str | None) -> Iterator[tuple[str, dict]]:
    """Rows of a Hugging Face dataset ``owner/name[:config]`` (needs it cached, or network)."""
    import datasets

    repo, _, config = name.removeprefix("hf:").partition(":")
    try:
        ds = datasets.load_dataset(repo, config or None, split=split or "train")
    except Exception as e:  # noqa: BLE001 - network, missing split, unknown name
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise DataError(f"HF dataset {repo!r} could not be loaded ({msg}); without network, pass a local "
                        f".jsonl file or a built-in name ({', '.join(BUILTIN_SETS)})") from None
    return ((f"{repo}[{i}]", dict(row)) for i, row in enumerate(ds))


def _reasoning_gym_examples(task: str, split: str | None, limit: int | None, seed: int,
                            system_prompt: str | None) -> list[Example]:
    """Procedurally generated reasoning-gym problems; the entry is the reference, scored by the
    verifier ``reasoning_gym:<task>`` (the task's own ``score_answer``, in the scoring workers)."""
    try:
        import reasoning_gym
    except ImportError:
        raise DataError(f"reasoning_gym:{task} needs the reasoning-gym package: pip install reasoning-gym") from None

    name = f"reasoning_gym:{task}"
    seed = seed + (10**6 if split == "test" else 0)  # different generator stream for the test split
    try:
        ds = reasoning_gym.create_dataset(task, size=limit or 1000, seed=seed)
    except (KeyError, ValueError) as e:
        raise DataError(f"reasoning_gym:{task}: {e}") from None
    return [Example(f"{name}/{seed}/{i}", _messages(system_prompt, e["question"]), e, name, name)
            for i, e in enumerate(ds)]


def read_parquet(path: Path) -> Iterator[tuple[str, dict]]:
    """Yield ``("file[i]", row)`` for each row of a parquet file."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - not parquet, truncated
        raise DataError(f"{path}: cannot be read as parquet ({' '.join(str(e).split())[:200]})") from None
    for i, row in enumerate(table.to_pylist()):
        yield f"{path}[{i}]", row


def is_saved_dataset(path: Path) -> bool:
    """True for a folder written by ``datasets``' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return path.is_dir() and any((path / f).is_file() for f in ("dataset_info.json", "dataset_dict.json", "state.json"))


def read_saved_dataset(path: Path, split: str | None) -> Iterator[tuple[str, dict]]:
    """Yield ``("folder[i]", row)`` for each row of a ``save_to_disk`` folder (of a DatasetDict: its
    ``split``, default train)."""
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: cannot be loaded with datasets.load_from_disk ({' '.join(str(e).split())[:200]})") from None
    if isinstance(ds, datasets.DatasetDict):
        split = split or "train"
        if split not in ds:
            raise DataError(f"{path}: no split {split!r} (it has: {', '.join(ds)})")
        ds = ds[split]
    for i, row in enumerate(ds):
        yield f"{path}[{i}]", dict(row)


def load_prompts(source, *, task: str | None = None, split: str | None = None, limit: int | None = None,
                 system_prompt: str | None = None, seed: int = 0, format: str | None = None,
                 reference_column: str | None = None) -> list[Example]:
    """Load a prompt set (sources in the module docstring) as a list of :class:`Example`.

    ``format`` (or ``task``, for a file) forces the row format (gsm8k, math, humaneval, mbpp,
    generic, trl); ``task`` also names the arithmetic variant; ``system_prompt`` replaces the
    per-task default ("" for none); ``seed`` drives the synthetic sets; ``reference_column``: the
    column of a TRL row the built-in verifiers check (:func:`trl_row`).
    """
    source = str(source)
    name, _, variant = source.partition(":")
    if format is not None and format not in ROW_FORMATS:
        raise DataError(f"unknown row format {format!r}; expected one of {', '.join(ROW_FORMATS)}")
    if name == "arithmetic":
        return arithmetic_examples(variant or task or "add2", split=split, limit=limit, seed=seed,
                                   system_prompt=system_prompt)
    if name == "reasoning_gym":
        return _reasoning_gym_examples(variant, split, limit, seed, system_prompt)
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".parquet":
        rows = read_parquet(path)
    elif is_saved_dataset(path):
        rows = read_saved_dataset(path, split)
    elif path.is_file():
        rows = read_jsonl(path)
    elif source.lower() in _DEFAULT_SPLIT:
        rows = _builtin_rows(source.lower(), split)
    elif source.endswith((".jsonl", ".jsonl.gz", ".json", ".parquet")):
        raise DataError(f"data file {path} not found")
    elif path.is_dir():
        raise DataError(f"{path} is a folder but not one written by datasets' save_to_disk (no dataset_info.json, "
                        "dataset_dict.json or state.json)")
    elif "/" in source or source.startswith("hf:"):
        rows = _hf_rows(source, split)
    else:
        raise DataError(f"unknown data source {source!r}: not a file, not a built-in set "
                        f"({', '.join(BUILTIN_SETS)}, reasoning_gym:<task>), not an HF dataset owner/name")
    if limit is not None:
        rows = (r for i, r in zip(range(limit), rows))
    return examples_from_rows(rows, fmt=format or task, system_prompt=system_prompt, reference_column=reference_column)


def encode_prompt(tokenizer, example: Example) -> list[int]:
    """Token ids of the example's chat, ending with the assistant turn header
    (``add_generation_prompt=True``). Tokenizers without a chat template get the message
    contents joined by blank lines. A plain-text prompt (``example.plain_prompt``) is tokenized
    as is, as TRL does (``tokenizer(text)["input_ids"]``, no chat template)."""
    if example.plain_prompt is not None:
        return list(tokenizer(text=example.plain_prompt)["input_ids"])
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(example.prompt, add_generation_prompt=True, tokenize=False)
        return tokenizer.encode(text, add_special_tokens=False)
    return tokenizer.encode("\n\n".join(m["content"] for m in example.prompt) + "\n\n")


def load_eval_examples(cfg) -> list[Example] | None:
    """The recipe's held-out set: ``data.eval`` drawn with ``data.eval_seed`` (never the training
    seed), so every run of a comparison, whatever its seed, and the base model see the same items."""
    d = cfg.data
    if not d.eval:
        return None
    return load_prompts(d.eval, split=d.eval_split or "test", limit=d.eval_limit,
                        system_prompt=d.system_prompt, seed=d.eval_seed, format=d.format,
                        reference_column=d.reference_column)
