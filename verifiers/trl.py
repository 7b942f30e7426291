"""TRL reward functions as verifiers, called on batches exactly as TRL's ``GRPOTrainer`` calls them.

A TRL reward function scores a whole batch in one call::

    f(prompts=[...], completions=[...], completion_ids=[[...], ...], trainer_state=..., log_extra=...,
      log_metric=..., **columns) -> list[float | None]

(``GRPOTrainer._calculate_rewards`` in trl 1.16). The dataset's columns other than ``prompt``,
``completion`` and ``completion_ids`` arrive as keyword lists, one value per completion; a
conversational batch (the first prompt is a list of ``{role, content}`` messages) gets each
completion as ``[{"role": "assistant", "content": text}]``, a plain-text one as the text; ``None``
(or NaN) means "not applicable" and is left out of the weighted sum (TRL's ``nansum``).

Spec forms, wherever a verifier is named (recipes, ``rlvr verify``, ``rlvr eval``)::

    trl:path/to/file.py:fn                         a function of a file (relative to the current directory)
    trl:package.module:fn                          a function of an importable module
    trl:trl.rewards:think_format_reward            one TRL ships
    trl:trl.rewards:get_soft_overlong_punishment(max_completion_len=16, soft_punish_cache=4)
                                                   a factory (or class) called once with these arguments
                                                   (Python literals); what it returns is the function

Every call runs in the scoring workers (:mod:`verifiers.pool`) under the hard timeout: the whole
batch gets ``timeout`` seconds per completion. What a function does wrong is reported in one line
naming it and the batch position, scores 0 there and never stops training:

* it raises, runs over its time or kills its worker: the batch is scored again one completion at a
  time (each under ``timeout``), so only the completions that fail score 0;
* it returns a list of the wrong length (or no list): every completion of the call scores 0 (scoring
  one at a time would hide the bug);
* an item is not a number (a string, inf): that item scores 0.

Rewards are not clamped (TRL's are not: a penalty is negative). ``log_metric(name, value)`` values are
averaged into ``reward/<label>/<name>``; ``log_extra(column, values)`` columns land in each item's
``info["extra"]`` (``rlvr verify --out``). ``trainer_state`` is a ``transformers.TrainerState`` whose
``global_step`` is rlvr's step (one generation batch) and ``max_steps`` is ``trainer.total_steps``.
"""
from __future__ import annotations

import ast
import asyncio
import functools
import inspect
import logging
import math
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from verifiers.base import ScoreResult, Verifier
from verifiers.errors import VerifierError

PREFIX = "trl:"
# the keywords TRL passes besides the dataset's columns (GRPOTrainer._calculate_rewards)
STANDARD_KWARGS = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")
NOT_COLUMNS = ("prompt", "completion", "completion_ids")  # dataset columns TRL does not pass on
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = re.compile(rf"{_IDENT}(\.{_IDENT})*")
FORMS = ("trl:path/to/file.py:function, trl:package.module:function, or a factory with literal arguments: "
         "trl:package.module:factory(a=1, b=2)")
log = logging.getLogger(__name__)


def is_trl(name: Any) -> bool:
    """True for a ``trl:`` spec."""
    return isinstance(name, str) and name.startswith(PREFIX)


@dataclass(frozen=True)
class Spec:
    """A parsed ``trl:`` spec: ``kind`` "file" or "module", where, the attribute, and the literal
    arguments of a factory call (``call`` is their text, "" for none)."""

    kind: str
    where: str
    attr: str
    call: str = ""
    args: tuple = ()
    kwargs: tuple = ()  # ((name, value), ...)


def parse(name: str) -> Spec:
    """The :class:`Spec` of ``name`` (VerifierError, one line, when it is not one of :data:`FORMS`)."""
    if not is_trl(name):
        raise VerifierError(f"verifier {name!r} is not a TRL reward function spec ({FORMS})")
    body = name[len(PREFIX):].strip()
    call = ""
    paren = body.find("(")
    if paren >= 0:
        body, call = body[:paren].rstrip(), body[paren:].strip()
    where, sep, attr = body.rpartition(":")
    if not sep or not where or not _DOTTED.fullmatch(attr):
        raise VerifierError(f"verifier {name!r}: expected {FORMS}")
    if where.endswith(".py"):
        kind = "file"
    elif _DOTTED.fullmatch(where):
        kind = "module"
    else:
        raise VerifierError(f"verifier {name!r}: {where!r} is neither a .py file nor a module name (expected {FORMS})")
    args, kwargs = _parse_call(name, call) if call else ((), ())
    return Spec(kind, where, attr, call, args, kwargs)


def _parse_call(name: str, call: str) -> tuple[tuple, tuple]:
    """``"(3, max_penalty=-0.5)"`` -> ``((3,), (("max_penalty", -0.5),))``: Python literals only."""
    try:
        tree = ast.parse("f" + call, mode="eval")
    except SyntaxError:
        raise VerifierError(f"verifier {name!r}: cannot read the arguments {call!r} (write them as in Python: "
                            "factory(a=1, b='x'))") from None
    node = tree.body
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "f"):
        raise VerifierError(f"verifier {name!r}: {call!r} is not one argument list (factory(a=1, b=2))")
    args, kwargs = [], []
    try:
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise ValueError("*args")
            args.append(ast.literal_eval(a))
        for k in node.keywords:
            if k.arg is None:
                raise ValueError("**kwargs")
            kwargs.append((k.arg, ast.literal_eval(k.value)))
    except ValueError:
        raise VerifierError(f"verifier {name!r}: the arguments {call!r} must be Python literals (numbers, "
                            "strings, True/False/None, lists, tuples, dicts)") from None
    return tuple(args), tuple(kwargs)


def worker_name(name: str) -> str:
    """The spec a scoring worker rebuilds the same function from (a file made absolute)."""
    s = parse(name)
    if s.kind == "file":
        return f"{PREFIX}{Path(s.where).expanduser().resolve()}:{s.attr}{s.call}"
    return name


# ------------------------------------------------------------------------------ loading
_cache: dict[str, "RewardFunction"] = {}


def load(name: str) -> "RewardFunction":
    """The checked :class:`RewardFunction` a ``trl:`` spec names (cached); VerifierError otherwise."""
    from verifiers import registry

    s = parse(name)
    key = worker_name(name)
    if key in _cache:
        return _cache[key]
    if s.kind == "file":
        module = registry._import_file(name, Path(s.where).expanduser())
        origin = Path(s.where).name
    else:
        if registry._library_module(s.where):
            raise VerifierError(f"verifier {name!r} is not a reward function: {s.where} is a Python "
                                "standard-library module")
        module = registry._import_module(name, s.where)
        origin = f"module {s.where}"
    obj: Any = module
    for part in s.attr.split("."):
        if not hasattr(obj, part):
            funcs = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                           and getattr(v, "__module__", None) == module.__name__)
            hint = f" (it defines: {', '.join(funcs[:8])})" if funcs else ""
            raise VerifierError(f"verifier {name!r}: {origin} has no {s.attr!r}{hint}")
        obj = getattr(obj, part)
    if s.call:
        _refuse_library_code(obj, name)
        if not callable(obj):
            raise VerifierError(f"verifier {name!r}: {s.attr} is a {type(obj).__name__}, which cannot be called "
                                f"with {s.call}")
        try:
            obj = obj(*s.args, **dict(s.kwargs))
        except BaseException as e:  # noqa: BLE001 - SystemExit in a factory too
            if isinstance(e, KeyboardInterrupt):
                raise
            raise VerifierError(f"verifier {name!r}: {s.attr}{s.call} failed: {_one_line(e)}") from None
    fn = RewardFunction(obj, name)
    _cache[key] = fn
    return fn


def _refuse_library_code(obj: Any, name: str) -> None:
    """Built-in (C) callables and the standard library's are not reward functions (``builtins:eval``)."""
    from verifiers import registry

    target = obj
    while isinstance(target, functools.partial):
        target = target.func
    if inspect.ismethod(target):
        target = target.__func__
    if inspect.isroutine(target) and not inspect.isfunction(target):
        raise VerifierError(f"verifier {name!r} is not a reward function: "
                            f"{getattr(target, '__qualname__', target)!r} is a built-in function, not Python code")
    module = getattr(target, "__module__", None) if (inspect.isfunction(target) or isinstance(target, type)) \
        else type(target).__module__
    if registry._library_module(module):
        raise VerifierError(f"verifier {name!r} is not a reward function: it is from the Python standard library")


def callable_name(fn: Any) -> str:
    """TRL's name for a reward function (``trl.trainer.utils.get_callable_name``): a partial's
    function's ``__name__``, else ``__name__``, else the class name."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "__name__", type(fn).__name__)


def label(name: str) -> str:
    """The metric label of a ``trl:`` spec: the function's name as TRL logs it
    (``reward/accuracy_reward``); the attribute when it cannot be loaded."""
    try:
        return load(name).label
    except VerifierError:
        return parse(name).attr


class RewardFunction(Verifier):
    """A TRL reward function behind the :class:`Verifier` interface: :meth:`call` scores one batch
    (a payload of :func:`payload`), as TRL would; :meth:`score` one item (a batch of one)."""

    default_timeout = 10.0

    def __init__(self, fn: Any, name: str):
        _refuse_library_code(fn, name)
        if isinstance(fn, type):
            raise VerifierError(f"verifier {name!r}: {fn.__name__} is a class; TRL calls a reward function "
                                f"(name an instance: {name}())")
        if not callable(fn):
            raise VerifierError(f"verifier {name!r} is a {type(fn).__name__}, not a reward function")
        self.fn, self.name, self.label = fn, name, callable_name(fn)
        self._check_signature()

    def __repr__(self) -> str:
        return f"RewardFunction({self.name})"

    def warm(self) -> None:
        """Import what ``trainer_state`` needs (transformers) before any call is timed."""
        trainer_state(None)

    def _signature(self) -> inspect.Signature | None:
        try:
            return inspect.signature(self.fn)
        except (TypeError, ValueError):
            return None

    def _check_signature(self) -> None:
        sig = self._signature()
        if sig is None:
            return
        try:
            sig.bind_partial(**{k: None for k in STANDARD_KWARGS})
        except TypeError:
            hint = (" (a factory? call it: " + self.name + "(...))") if parse(self.name).call == "" and \
                "prompts" not in sig.parameters and "completions" not in sig.parameters else ""
            raise VerifierError(
                f"verifier {self.name!r}: {self.label}{sig} cannot be called as TRL calls a reward function, "
                f"f(prompts=..., completions=..., completion_ids=..., trainer_state=..., log_extra=..., "
                f"log_metric=..., **columns): give it **kwargs{hint}") from None

    def check_columns(self, columns: Sequence[str]) -> None:
        """VerifierError when the function needs a keyword the data's columns do not supply."""
        sig = self._signature()
        if sig is None:
            return
        try:
            sig.bind(**{k: None for k in STANDARD_KWARGS}, **{c: None for c in columns if c not in STANDARD_KWARGS})
        except TypeError as e:
            missing = re.search(r"missing a required argument: '([^']+)'", str(e))
            have = ", ".join(columns) or "none"
            what = f"needs the column {missing.group(1)!r}" if missing else str(e)
            raise VerifierError(f"verifier {self.name!r}: {self.label} {what}, which the data does not have "
                                f"(its columns: {have})") from None

    def score(self, completion: str, reference: Any) -> ScoreResult:
        out = self.call(payload([completion], [item_of(reference)]))
        if "failed" in out:
            raise RuntimeError(out["error"])
        reward = out["rewards"][0]
        if out["bad"]:
            raise TypeError(f"returned {out['bad'][0]}, not a number")
        return ScoreResult(0.0 if reward is None else reward, {"none": reward is None})

    def call(self, data: dict) -> dict:
        """One TRL call on a batch; never raises for the function's faults. Returns
        ``{"rewards": [float | None], "bad": {position: what}, "extra": {...}, "metrics": {...}}`` or
        ``{"failed": "raised" | "length", "error": text}``."""
        from verifiers.deadline import DeadlineExceeded

        texts = list(data["completions"])
        n = len(texts)
        prompts = list(data["prompts"])
        conversational = bool(prompts) and is_conversational(prompts[0])
        completions = [[{"role": "assistant", "content": t}] for t in texts] if conversational else texts
        extra: dict[str, list] = {}
        metrics: dict[str, list[float]] = {}
        kwargs: dict[str, Any] = {k: list(v) for k, v in data["columns"].items()}
        kwargs["trainer_state"] = trainer_state(data.get("state"))
        kwargs["log_extra"] = lambda column, values: extra.setdefault(str(column), []).extend(list(values))
        kwargs["log_metric"] = lambda metric, value: metrics.setdefault(str(metric), []).append(value)
        kwargs.update(prompts=prompts, completions=completions, completion_ids=list(data["completion_ids"]))
        try:
            out = self.fn(**kwargs)
            if inspect.isawaitable(out):  # an async reward function (TRL awaits it)
                out = asyncio.run(_awaited(out))
        except (KeyboardInterrupt, DeadlineExceeded):
            raise
        except BaseException as e:  # noqa: BLE001 - SystemExit too: a reward function's fault
            return {"failed": "raised", "error": f"raised {_one_line(e)}"}
        if isinstance(out, (str, bytes, dict)) or not hasattr(out, "__len__"):
            return {"failed": "length", "error": f"returned a {type(out).__name__}, not a list of {n} rewards"}
        try:
            values = list(out)
        except Exception as e:  # noqa: BLE001
            return {"failed": "length", "error": f"returned a {type(out).__name__} that is not a list ({_one_line(e)})"}
        if len(values) != n:
            return {"failed": "length", "error": f"returned {len(values)} rewards for {n} completions"}
        rewards: list[float | None] = []
        bad: dict[int, str] = {}
        for i, v in enumerate(values):
            r = _number(v)
            if isinstance(r, str):
                bad[i] = r
                rewards.append(None)
            else:
                rewards.append(r)
        means = {}
        for key, vals in metrics.items():
            nums = [x for x in map(_number, vals) if isinstance(x, float)]
            if nums:
                means[key] = sum(nums) / len(nums)
        extra = {k: [_plain(x) for x in v] for k, v in extra.items()}
        return {"rewards": rewards, "bad": bad, "extra": extra, "metrics": means}


async def _awaited(awaitable):
    return await awaitable


def _number(v: Any) -> float | None | str:
    """A reward as TRL reads it: a float; None for None or NaN (nansum skips both); else a string
    saying what it is (scores 0)."""
    if v is None:
        return None
    if isinstance(v, (str, bytes)):
        return f"a {type(v).__name__}"
    if isinstance(v, bool):
        return float(v)
    if not isinstance(v, numbers.Real) and getattr(v, "ndim", None) == 0 and hasattr(v, "item"):
        v = v.item()  # numpy / torch scalars
        if isinstance(v, bool):
            return float(v)
    if not isinstance(v, numbers.Real):
        return f"a {type(v).__name__}"
    r = float(v)
    if math.isnan(r):
        return None
    if math.isinf(r):
        return "inf" if r > 0 else "-inf"
    return r


def _plain(x: Any) -> Any:
    return x if isinstance(x, (str, int, float, bool, type(None))) else repr(x)[:200]


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def is_conversational(prompt: Any) -> bool:
    """TRL's test (``trl.data_utils.is_conversational`` on ``{"prompt": prompt}``): a list whose first
    element is a dict with a ``role``."""
    return isinstance(prompt, list) and bool(prompt) and isinstance(prompt[0], dict) and "role" in prompt[0]


def trainer_state(state: dict | None):
    """A ``transformers.TrainerState`` with the given fields (a plain namespace without transformers)."""
    state = dict(state or {})
    try:
        from transformers import TrainerState

        names = set(inspect.signature(TrainerState).parameters)
        ts = TrainerState(**{k: v for k, v in state.items() if k in names})
        for k, v in state.items():
            if k not in names:
                setattr(ts, k, v)
        return ts
    except ImportError:
        from types import SimpleNamespace

        return SimpleNamespace(**{"global_step": 0, "max_steps": 0, "epoch": None, **state})


# ------------------------------------------------------------------------------ items and batches
@dataclass
class Item:
    """What TRL knows about one completion besides its text: the prompt as the dataset gave it (text
    or messages), the row's other columns, and the completion's token ids (None when unknown)."""

    prompt: Any = ""
    columns: dict = field(default_factory=dict)
    completion_ids: list[int] | None = None


def item_of(reference: Any) -> Item:
    """An :class:`Item` from a verifier reference: an Item as is; a dict is a row (its ``prompt``,
    ``completion_ids`` and other columns); anything else is the column ``reference``."""
    if isinstance(reference, Item):
        return reference
    if isinstance(reference, dict):
        cols = {k: v for k, v in reference.items() if k not in NOT_COLUMNS}
        ids = reference.get("completion_ids")
        return Item(reference.get("prompt", ""), cols, list(ids) if isinstance(ids, list) else None)
    return Item("", {"reference": reference})


def payload(texts: Sequence[str], items: Sequence[Item], positions: Sequence[int] | None = None,
            state: dict | None = None) -> dict:
    """The picklable batch a worker calls the function on. Columns are those of the first item (as
    TRL takes the keys of the first example); an item without one passes None."""
    keys = [k for k in (items[0].columns if items else {}) if k not in NOT_COLUMNS]
    return {"prompts": [it.prompt for it in items], "completions": list(texts),
            "completion_ids": [None if it.completion_ids is None else list(it.completion_ids) for it in items],
            "columns": {k: [it.columns.get(k) for it in items] for k in keys},
            "state": dict(state or {}), "positions": list(positions if positions is not None else range(len(texts)))}


def _sub(data: dict, j: int) -> dict:
    """Item ``j`` of a payload as a batch of one."""
    return {"prompts": [data["prompts"][j]], "completions": [data["completions"][j]],
            "completion_ids": [data["completion_ids"][j]], "columns": {k: [v[j]] for k, v in data["columns"].items()},
            "state": data["state"], "positions": [data["positions"][j]]}


# ------------------------------------------------------------------------------ scoring
@dataclass
class Scores:
    """What :func:`score` returns: one result per completion (``info["none"]`` for a None reward:
    reward 0.0, left out of the function's mean), the ``log_metric`` means, and the problem lines."""

    results: list[ScoreResult]
    metrics: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _run(name: str, fn: RewardFunction, batches: list[dict], workers: int, timeout: float) -> list[dict]:
    """Call the function on each batch (in the scoring workers unless ``workers`` is 0), each under
    ``timeout * len(batch)`` seconds: a result dict of :meth:`RewardFunction.call`, or
    ``{"failed": "timeout" | "crashed", "error": ...}``."""
    limit = timeout * max(len(b["completions"]) for b in batches)
    if workers == 0:
        return _run_here(fn, batches, limit)
    from verifiers import _spec
    from verifiers.pool import get_pool

    key, spec = _spec(name, fn)
    try:
        raw = get_pool(workers).score(key, spec, batches, [None] * len(batches), timeout=limit, kind="call")
    except OSError as e:  # cannot start processes: score here rather than stop training
        log.warning("scoring workers unavailable (%s); calling %s in-process", e, fn.label)
        return _run_here(fn, batches, limit)
    out = []
    for r in raw:
        if isinstance(r.reward, dict):
            out.append(r.reward)
        elif (r.info or {}).get("timeout"):
            out.append({"failed": "timeout", "error": f"ran over its {limit:g} s limit"})
        else:
            reason = str((r.info or {}).get("reason") or "").removeprefix("error: ")
            out.append({"failed": "crashed", "error": "killed its scoring worker" if reason in ("", "worker crashed")
                        else f"could not be scored: {reason}"})
    return out


def _run_here(fn: RewardFunction, batches: list[dict], limit: float) -> list[dict]:
    from verifiers.deadline import ItemDeadline

    fn.warm()  # imports are not charged to the first call (as in a worker)
    out = []
    with ItemDeadline(limit) as d:
        for b in batches:
            res, late = d.run(fn.call, b)
            out.append({"failed": "timeout", "error": f"ran over its {limit:g} s limit"} if late else res)
    return out


def _positions(pos: Sequence[int]) -> str:
    pos = list(pos)
    if len(pos) > 1 and pos == list(range(pos[0], pos[0] + len(pos))):
        return f"batch positions {pos[0]}-{pos[-1]}"
    shown = ", ".join(map(str, pos[:8])) + (f" and {len(pos) - 8} more" if len(pos) > 8 else "")
    return f"batch position{'s' if len(pos) > 1 else ''} {shown}"


def score(name: str, completions: Sequence[str], items: Sequence[Item], *, workers: int | None = None,
          timeout: float | None = None, state: dict | None = None,
          positions: Sequence[int] | None = None) -> Scores:
    """Score ``completions`` (with their :class:`Item`s) in one TRL call of the function ``name``
    names; failures are handled as the module docstring says and each is logged in one line.
    ``positions``: the completions' positions in the caller's batch (for the messages)."""
    from verifiers import default_workers

    n = len(completions)
    if len(items) != n:
        raise ValueError(f"{n} completions but {len(items)} items")
    fn = load(name)
    if n == 0:
        return Scores([])
    workers = default_workers() if workers is None else int(workers)
    timeout = float(timeout if timeout is not None else fn.default_timeout)
    data = payload(completions, items, positions, state)
    pos = data["positions"]
    results: list[ScoreResult | None] = [None] * n
    problems: list[str] = []
    metrics: dict[str, list[float]] = {}
    who = f"reward function {fn.label!r} ({name})"

    def take(j0: int, out: dict, count: int) -> None:
        for key, v in out["metrics"].items():
            metrics.setdefault(key, []).append(v)
        for j in range(count):
            r = out["rewards"][j]
            info = {"extracted": None, "reason": ""}
            extra = {k: v[j] for k, v in out["extra"].items() if len(v) == count}
            if extra:
                info["extra"] = extra
            if j in out["bad"]:
                info.update(reason=f"error: returned {out['bad'][j]}, not a number", error=True, non_number=out["bad"][j])
                results[j0 + j] = ScoreResult(0.0, info)
            elif r is None:
                info.update(none=True, reason="not applicable (None)")
                results[j0 + j] = ScoreResult(0.0, info)
            else:
                results[j0 + j] = ScoreResult(r, info)

    def fail(j: int, out: dict) -> None:
        timed_out = out["failed"] == "timeout"
        info = {"extracted": None, "reason": "timeout" if timed_out else f"error: {out['error']}"[:500]}
        info["timeout" if timed_out else "error"] = True
        results[j] = ScoreResult(0.0, info)

    (first,) = _run(name, fn, [data], workers, timeout)
    if "failed" not in first:
        take(0, first, n)
        bad = sorted(first["bad"])
        if bad:
            kinds = sorted({first["bad"][j] for j in bad})
            problems.append(f"{who} returned {' / '.join(kinds)} instead of a number at {_positions([pos[j] for j in bad])} "
                            f"(of {n}); {'they score' if len(bad) > 1 else 'it scores'} 0")
    elif first["failed"] == "length" or n == 1:
        for j in range(n):
            fail(j, first)
        what = "its completions all score" if n > 1 else "it scores"
        problems.append(f"{who} {first['error']} at {_positions(pos)}; {what} 0")
    else:  # raised, timed out or crashed: once more one completion at a time, to find which
        singles = _run(name, fn, [_sub(data, j) for j in range(n)], workers, timeout)
        failed: dict[str, list[int]] = {}
        for j, out in enumerate(singles):
            if "failed" in out:
                fail(j, out)
                failed.setdefault(out["error"], []).append(j)
            else:
                take(j, out, 1)
        for error, js in failed.items():
            problems.append(f"{who} {error} at {_positions([pos[j] for j in js])} (of {n}); "
                            f"{'they score' if len(js) > 1 else 'it scores'} 0")
        if not failed:
            problems.append(f"{who} {first['error']} on the batch of {n} but on none of its completions alone; "
                            "they were scored one at a time")
    for line in problems:
        log.warning("%s", line)
    return Scores(results, {k: sum(v) / len(v) for k, v in metrics.items()}, problems)  # type: ignore[arg-type]


PROBES = ("", "The answer is \\boxed{42}.")


def check(name: str, item: Item | None = None, *, workers: int | None = None, timeout: float | None = None) -> RewardFunction:
    """Before use: the spec loads, the function can be called as TRL calls it with ``item``'s columns,
    and on two probe completions it returns a list of the right length holding numbers or None
    (VerifierError, one line, otherwise). A probe call that raises or runs over its time is not an
    error (it is logged; such completions score 0 in training too)."""
    from verifiers import default_workers

    fn = load(name)
    item = item or Item()
    fn.check_columns(list(item.columns))
    probe_items = [Item(item.prompt, item.columns, [ord(c) % 256 for c in text]) for text in PROBES]
    out = _run(name, fn, [payload(list(PROBES), probe_items)], default_workers() if workers is None else int(workers),
               float(timeout if timeout is not None else fn.default_timeout))[0]
    if out.get("failed") == "length":
        raise VerifierError(f"verifier {name!r}: {fn.label} {out['error']} (a reward function returns one "
                            "reward per completion: a number, or None for not applicable)")
    if out.get("failed") == "crashed" and "could not be built" in out["error"]:
        raise VerifierError(f"verifier {name!r}: {out['error']}")
    if "failed" in out:
        log.warning("reward function %r (%s) %s on the probe completions %r", fn.label, name, out["error"], PROBES)
    elif out["bad"]:
        j = min(out["bad"])
        raise VerifierError(f"verifier {name!r}: {fn.label} returned {out['bad'][j]} at batch position {j}, not a "
                            "number (a reward function returns a number, or None for not applicable)")
    return fn
