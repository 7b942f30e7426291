r"""Math answers: extract the final answer, then decide equivalence with the reference.

Extraction (:func:`extract_answer`) tries, in a configurable order: the last ``\boxed{...}``
(braces matched by a linear scan), GSM8K's ``#### N``, "the answer is X", then Math-Verify's own
extraction (:func:`extract_math_verify`: the last ``$...$``, ``$$...$$``, ``\(...\)``,
``\[...\]``, bare ``\frac{a}{b}``, then plain numbers and expressions, with thousands separators
``1 000``/``1,000``, decimal commas ``3,5`` and ``\frac13`` shorthand read as Math-Verify reads
them), and last a standalone number (:func:`extract_last_number`: delimited by spaces or
punctuation, never part of a word such as ``AZYUK2A`` or of LaTeX such as ``x^2``).
A run of boxes (``\boxed{1}, \boxed{2}``, ``\boxed{1} \quad \text{and} \quad \boxed{2}``) is one
set; a "Final Answer: The final answer is X" written after the last box is the answer (Math-Verify
ranks that form above a box); "the answer is" followed by a sentence (``The largest $n$ is 34``)
gives what Math-Verify extracts from that line. ``strict=True`` accepts only ``\boxed{}``. The
boxed scan reads the whole text; the others read at most the last ``tail_chars`` characters, so a
1 MB completion costs milliseconds.

Equivalence (:func:`answers_match`) first tries cheap exact paths: identical normalised strings,
then both sides as plain numbers (``1,234``, ``1 234``, ``$18``, ``50%``, ``18 dollars``,
``\frac{1}{2}``, ``1/2``) compared exactly with Fractions; two different integers are decided
there. Everything else goes to Math-Verify: both sides wrapped as ``\boxed{...}`` (or, for an
answer Math-Verify extracted itself, its parsed value) and compared with ``math_verify.verify``
(fractions, radicals, intervals, sets, tuples, matrices, equations, percent, units,
``\text{}``). Math-Verify's own ``signal.alarm`` timeouts are disabled (``parsing_timeout=None``,
``timeout_seconds=None``: ``signal.alarm`` cannot be set outside the main thread and cannot
interrupt a long C call). Instead: answers whose evaluation would build a number beyond
``MAX_DIGITS`` digits (``9^{99^{99}}``, ``\binom{10^{10^{10}}}{2}``, ``1000000!``) are refused
before sympy evaluates them (:func:`too_large`, :func:`text_too_large`), since Python computes such
an integer in one C call nothing can interrupt; the hard timeout is the worker process being killed
(``verifiers.pool``) or, in-process, :mod:`verifiers.deadline`; and a worker that scores math runs
under an address-space cap (:func:`cap_worker_memory`, ``MathVerifier(memory_mb=...)``).

A numeric reference needs a number (:func:`unevaluated_arithmetic` on the text with its typesetting
flattened by :func:`flatten_latex`, then :func:`number_form` on Math-Verify's parse): ``28 + 54``,
``28+\quad54``, ``41 \times 2``, ``\sqrt{6724}`` restate a question about 82, they do not answer it.
Only an irrational value (``\sqrt{17}``, ``2+\sqrt{2}``) may stay exact against a decimal reference
(``4.1231056``), which merely approximates it. Decimals are compared with exact values at
``precision`` decimal places (Math-Verify's ``float_rounding``, default 6).

References may be a plain answer (``"18"``, ``"\frac{14}{3}"``), a GSM8K solution text (the part
after the last ``####``), LaTeX with ``\boxed{}``/``$...$``, a number, a GSM8K/MATH row dict
(:func:`gsm8k_reference`, :func:`math_reference`) or a list of acceptable answers.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import re
from fractions import Fraction
from functools import lru_cache
from typing import Any, Sequence

from verifiers.base import ScoreResult, Verifier

EXTRACTORS = ("boxed", "gsm8k", "answer_is", "math_verify", "last_number")
MAX_ANSWER_CHARS = 1000  # longer "answers" are not answers (and would make sympy slow)


# ------------------------------------------------------------------------------ extraction
def extract_boxed(text: str) -> str | None:
    r"""Content of the last well-formed ``\boxed{...}`` / ``\fbox{...}`` (nested boxes unwrapped)."""
    pos = len(text)
    for _ in range(20):  # the last 20 box commands at most: stays linear on adversarial input
        start = max(text.rfind("\\boxed", 0, pos), text.rfind("\\fbox", 0, pos))
        if start < 0:
            return None
        content = _boxed_at(text, start)
        if content is not None and content.strip():
            inner = content.strip()
            while inner.startswith(("\\boxed", "\\fbox")):  # \boxed{\boxed{5}}
                nested = _boxed_at(inner, 0)
                if nested is None or not nested.strip():
                    break
                inner = nested.strip()
            return inner
        pos = start
    return None


_GAP = r"(?:\s|\$|\\[,;:! ]|\\q?quad(?![A-Za-z])|~)*"  # spaces, math delimiters, LaTeX spacing
_BOX_JOIN = re.compile(_GAP + r"(?:(?:,|,?\s*(?:and|or)\b|,?\s*\\text\s*\{\s*,?\s*(?:and|or)\s*\})" + _GAP + r")?")


def extract_boxed_list(text: str) -> list[str] | None:
    r"""The contents of the last run of two to six boxes joined by ``,``, ``and``, ``or``,
    ``\text{and}`` or nothing but spacing (``\boxed{1}, \boxed{2}`` and ``$\boxed{3}$``;
    ``\boxed{-2} \quad \text{and} \quad \boxed{1}``; ``\boxed{1}\boxed{2}``), which Math-Verify
    reads as one set; None when the last box stands alone."""
    parts: list[str] = []
    pos, after = len(text), None
    for _ in range(6):
        start = max(text.rfind("\\boxed", 0, pos), text.rfind("\\fbox", 0, pos))
        if start < 0:
            break
        content, end = _boxed_span(text, start)
        if content is None or not content.strip():
            break
        if after is not None and not _BOX_JOIN.fullmatch(text[end:after]):
            break
        parts.append(content.strip())
        pos, after = start, start
    return parts[::-1] if len(parts) >= 2 else None


def _boxed_span(text: str, start: int) -> tuple[str | None, int]:
    """``(content, end)`` of the box command at ``start`` with a braced argument."""
    i = text.find("{", start, start + 8)
    if i < 0 or text[start + (6 if text.startswith("\\boxed", start) else 5):i].strip():
        return None, start
    content, end = _group_at(text, i)
    return content, end


def _joined_boxes(text: str) -> str | None:
    r"""``\{a, b, c\}`` for a run of boxes (:func:`extract_boxed_list`), else None."""
    parts = extract_boxed_list(text) if text.count("\\boxed") + text.count("\\fbox") >= 2 else None
    return "\\{" + ", ".join(parts) + "\\}" if parts else None


def _boxed_at(text: str, start: int) -> str | None:
    """The argument of the box command at ``start``: ``{...}`` (balanced) or ``\\boxed 5``."""
    i = text.find("{", start, start + 8)
    word_end = start + (6 if text.startswith("\\boxed", start) else 5)
    if i < 0 or text[word_end:i].strip():
        m = re.match(r"\s+([^\s$]+)", text[word_end:word_end + 200])  # "\boxed 5" form
        return m.group(1) if m and word_end < len(text) and text[word_end] == " " else None
    depth = 0
    for j in range(i, len(text)):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None


def extract_gsm8k(text: str) -> str | None:
    """The text after the last ``####`` (up to the end of that line)."""
    at = text.rfind("####")
    if at < 0:
        return None
    line = text[at + 4:].strip().split("\n", 1)[0].strip()
    return line or None


_ANSWER_IS = re.compile(r"(?i)(?:final answer|the answer|answer)(?:\s+(?:is|was|would be|will be)|\s*[:=])"
                        r"[ \t]*:?[ \t]*([^\n]{1,300})")
_CUT = re.compile(r"\.\s|\.$|,\s+(?=[A-Za-z]{2})|\s+\((?=[A-Za-z]{2})|\s+(?:because|since|which|so)\b")


def _last_answer_anchor(text: str) -> re.Match | None:
    """The last "the answer is" / "final answer:" match: the one a line ends with ("Final Answer:
    The final answer is 5" gives "final answer is", not "Final Answer:" reading past it)."""
    last = None
    for m in _ANSWER_IS.finditer(text):
        last = m
    while last is not None:
        later = _ANSWER_IS.search(text, last.start(1), last.end(1))
        if later is None:
            break
        last = later
    return last


def extract_answer_is(text: str) -> str | None:
    """``X`` from the last "the answer is X" / "final answer: X": a ``$...$``/``\\(...\\)`` span,
    else the first sentence of that line (a plain number read as :func:`_plain_text_number` does);
    a sentence in words ("The largest $n$ is 34", "she began 3 hours ago") gives what Math-Verify
    extracts from the anchored line (its "final answer ... is X" and "answer: ... X" patterns)."""
    last = _last_answer_anchor(text)
    if last is None:
        return None
    s = last.group(1).strip()
    math_span = re.match(r"\$\$?((?:\\\$|[^$]){1,300})\$|\\\((.{1,300}?)\\\)", s)
    if math_span:
        return (math_span.group(1) or math_span.group(2)).strip() or None
    cut = _CUT.search(s)
    s = (s[:cut.start()] if cut else s).strip().rstrip(".").strip()
    if _prose(s):
        found = _math_verify_extract(text[last.start():last.end()])
        if found:
            return found[0]
    return _plain_text_number(s.strip("*`").strip()) or None


def _prose(s: str) -> bool:
    """Two or more words outside math: a sentence, not an answer ("5 apples" is one)."""
    return len(re.findall(r"[A-Za-z]{2,}", _MATH_SPANS.sub(" ", s))) >= 2


def _final_answer_after_box(text: str) -> str | None:
    r"""The answer of a "final answer ... is X" / "Final Answer: X" written after the last box
    (``\boxed{255} ... Final Answer: The final answer is $10,455$``), which Math-Verify takes over
    the box; None when there is none or it is a sentence rather than an answer."""
    m = _last_answer_anchor(text)
    if m is None or not m.group(0).lower().startswith("final answer"):
        return None
    if m.start() < max(text.rfind("\\boxed"), text.rfind("\\fbox")):
        return None
    found = extract_answer_is(text)
    return found if found and not _prose(found) else None


_NUMBER = re.compile(r"(?:(?<=^)|(?<=[\s(\[:=$,;*]))"  # starts after a space or punctuation...
                     r"(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+)"
                     r"(?=$|[\s)\].,;:!?*%])")  # ...and ends before one: never inside a word or LaTeX


def extract_last_number(text: str) -> str | None:
    """The last standalone number in ``text`` (thousands commas kept; not ``2`` in ``x2``/``x^2``)."""
    last = None
    for m in _NUMBER.finditer(text):
        last = m
    return last.group(1) if last else None


_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?\.?")


@lru_cache(maxsize=1)
def extraction_config() -> tuple:
    """Math-Verify's extraction targets used here: its default LaTeX and plain-expression configs."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    return (LatexExtractionConfig(), ExprExtractionConfig())


def _math_verify_extract(text: str) -> tuple[str, list] | None:
    """``(answer as text, parse result)`` from Math-Verify's own extraction, or None when it matches
    nothing. A match that does not parse (``$-[0,1)$``) is the answer as text, as ``parse`` returns
    it (no number is then read out of it by a later extractor).

    This is ``math_verify.parse(text, extraction_config(), parsing_timeout=None)``: Math-Verify's
    regexes, priorities (answer anchors, then the rightmost LaTeX span or expression) and parsers,
    run by the loop of ``math_verify.parser.extract_target_from_pred``, with one shortcut: a plain
    integer that wins is returned as text with an empty parse result, since building a sympy
    ``Number`` costs about 2 ms and the numeric fast path of :func:`answers_match` decides it
    (the string is parsed like any answer when sympy is needed after all). Text without
    ``\\boxed`` skips the boxed patterns, which cannot match it.
    """
    plain = text.strip()
    if _PLAIN_NUMBER.fullmatch(plain):  # the whole completion is one number: what Math-Verify finds
        return plain.rstrip("."), []
    from math_verify.parser import extract_match

    if text_too_large(text):
        return None  # parsing it could build a huge number (see text_too_large)
    try:
        patterns = _extraction_patterns("\\boxed" in text)
        fallback = None
        for _, group in itertools.groupby(patterns, key=lambda x: x[2]):
            matches = sorted(((m, target) for pattern, target, _ in group for m in pattern.finditer(text)),
                             key=lambda x: (x[0].end(), -x[0].start()), reverse=True)
            for m, target in matches:
                integer = None if fallback else _integer_of(m)
                if integer is not None:
                    return integer, []
                value, shown = extract_match(m, target)
                fallback = fallback or shown
                if value is not None:  # verify() gets what parse() returns: the value, the first text
                    found = [value, fallback] if fallback else [value]
                    return (shown or str(value)).strip(), found
    except Exception:  # noqa: BLE001 - as math_verify.parse: an input it cannot handle has no answer
        return None
    if fallback and fallback.strip():  # matched, nothing parsed: parse() gives the first text
        return fallback.strip(), [fallback]
    return None


@lru_cache(maxsize=2)
def _extraction_patterns(boxed: bool) -> list:
    """Math-Verify's compiled patterns for :func:`extraction_config` as ``(pattern, target,
    priority)`` sorted by priority; ``boxed=False`` leaves out the boxed patterns (for text without
    ``\\boxed``, where they cannot match). Cached here: Math-Verify caches one config at a time."""
    from math_verify.parser import get_extraction_regexes

    config = list(extraction_config())
    if not boxed:
        config[0] = dataclasses.replace(config[0], boxed_match_priority=-1)
    return sorted(((pattern, target, priority) for target_patterns, target in get_extraction_regexes(config)
                   for pattern, priority in target_patterns), key=lambda x: x[2])


def _integer_of(m: re.Match) -> str | None:
    """The integer a Math-Verify plain-number match stands for (as its ``extract_expr`` reads it:
    separators dropped, leading zeros stripped), or None for decimals, percentages and the rest."""
    groups = m.groupdict()
    if not any(k.startswith("integer") for k in groups) or groups.get("percent"):
        return None
    if any(v for k, v in groups.items() if k.startswith("decimal")):
        return None
    integer = next((v for k, v in groups.items() if k.startswith("integer") and v), "")
    if not integer:
        return None
    return integer.translate(str.maketrans("", "", ", ")).lstrip("0") or "0"


def extract_math_verify(text: str) -> str | None:
    r"""The answer Math-Verify extracts from ``text`` (last LaTeX span or expression), as text."""
    found = _math_verify_extract(text)
    return found[0] if found else None


EXTRACTOR_FUNCS = {"boxed": extract_boxed, "gsm8k": extract_gsm8k, "answer_is": extract_answer_is,
                   "math_verify": extract_math_verify, "last_number": extract_last_number}


def _extract(text: str, order: Sequence[str], tail_chars: int) -> tuple[str | None, str | None, list | None]:
    """``(answer, extractor name, Math-Verify's parsed value or None)``; see :func:`extract_answer`."""
    for name in order:
        source = text if name == "boxed" else text[-tail_chars:]
        parsed = None
        if name == "math_verify":
            mv = _math_verify_extract(source)
            found, parsed = (mv[0], mv[1] or None) if mv else (None, None)
        elif name == "boxed":
            found = _joined_boxes(text[-tail_chars:]) or extract_boxed(text)
            later = _final_answer_after_box(text[-tail_chars:]) if found and "answer_is" in order else None
            if later:
                found, name = later, "answer_is"
        else:
            found = EXTRACTOR_FUNCS[name](source)
        found = found.strip().strip("*`").strip() if found is not None else ""  # **18**, `18`
        if found:
            if name == "gsm8k":
                found = _plain_text_number(found)
            return found, name, parsed
    return None, None, None


def extract_answer(text: str, order: Sequence[str] = EXTRACTORS, tail_chars: int = 4000
                   ) -> tuple[str | None, str | None]:
    """``(answer, extractor name)`` from the first extractor in ``order`` that finds one."""
    return _extract(text, order, tail_chars)[:2]


_THOUSANDS = re.compile(r"-?[1-9]\d{0,2}(?:([ ,])\d{3})(?:\1\d{3})*(?:\.\d+)?")
_DECIMAL_COMMA = re.compile(r"-?\d+,\d+")


def _plain_text_number(s: str) -> str:
    """A number written in running text, read as Math-Verify reads one: ``1 000`` / ``1,000`` ->
    ``1000`` (thousands), ``3,5`` -> ``3.5`` (decimal comma); anything else unchanged."""
    if _THOUSANDS.fullmatch(s):
        return s.replace(",", "").replace(" ", "")
    if _DECIMAL_COMMA.fullmatch(s):
        return s.replace(",", ".")
    return s


# ------------------------------------------------------------------------------ references
def gsm8k_reference(row: dict) -> str:
    """GSM8K row -> reference: the text after the last ``####`` with thousands commas removed."""
    answer = row["answer"]
    if "####" not in answer:
        raise ValueError("GSM8K answer has no '#### <final answer>' line")
    return answer.rsplit("####", 1)[1].strip().split("\n", 1)[0].replace(",", "").strip()


def math_reference(row: dict) -> str:
    r"""MATH row -> reference: its ``answer`` field, else the last ``\boxed{}`` of ``solution``."""
    answer = row.get("answer")
    if isinstance(answer, str) and answer.strip():
        return answer.strip()
    boxed = extract_boxed(row.get("solution") or "")
    if boxed is None:
        raise ValueError("MATH row has no 'answer' and no \\boxed{} in 'solution'")
    return boxed


def normalize_reference(reference: Any) -> list[str]:
    """All acceptable gold answers as strings (a list reference means any of them)."""
    if isinstance(reference, (list, tuple)):
        return [a for r in reference for a in normalize_reference(r)]
    if isinstance(reference, dict):
        if isinstance(reference.get("answer"), str) and "####" in reference["answer"]:
            return [gsm8k_reference(reference)]
        if "answer" in reference or "solution" in reference:
            return [math_reference(reference)]
        for key in ("reference", "expected", "target"):
            if key in reference:
                return normalize_reference(reference[key])
        raise ValueError("reference dict has no 'answer', 'solution' or 'reference' field")
    if isinstance(reference, bool) or reference is None:
        raise ValueError(f"unusable math reference: {reference!r}")
    if isinstance(reference, (int, float, Fraction)):
        return [str(reference)]
    return [_reference_text(str(reference).strip())]


_MATH_SPANS = re.compile(r"\$\$.*?\$\$|\$(?:\\\$|[^$])*?\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[A-Za-z]+\*?(?:\{[^{}]*\})*", re.S)
_REF_DECIMAL_COMMA = re.compile(r"-?0,\d+|-?[1-9]\d*,\d{2}|-?\d+,\d{4,}")


@lru_cache(maxsize=4096)
def _reference_text(text: str) -> str:
    r"""The gold answer in a reference string: the text after ``####``; the last ``\boxed{}`` (a run
    of boxes ``\boxed{1}, \boxed{2}`` as the set ``\{1, 2\}``); in a worked solution (prose: four
    or more words outside math), the answer the extractors find there; a plain number with a
    decimal comma (``1,22``, ``0,111``; not ``-2,1``, a list in MATH, nor ``58,500``) read as a
    decimal, as Math-Verify reads plain text; else the text without its math delimiters."""
    if "####" in text:
        return extract_gsm8k(text) or ""
    if "\\boxed" in text or "\\fbox" in text:
        return _joined_boxes(text) or extract_boxed(text) or text
    if len(re.findall(r"[A-Za-z]{2,}", _MATH_SPANS.sub(" ", text))) >= 4:
        answer = _extract(text, EXTRACTORS, 4000)[0]
        if answer:
            return answer
    if _REF_DECIMAL_COMMA.fullmatch(text):
        return text.replace(",", ".")
    return _strip_math_delimiters(text)


# ------------------------------------------------------------------------------ equivalence
_UNIT_TEXT = re.compile(r"\\(?:text|mbox|mathrm|textbf)\{\s*[A-Za-z][A-Za-z .]*\}\s*$")
_TRAILING_WORDS = re.compile(r"(?<=\d)\s+[A-Za-z][A-Za-z .]{0,30}$")


def _strip_math_delimiters(s: str) -> str:
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) > len(left) + len(right):
            s = s[len(left):-len(right)].strip()
    return s


def _unbrace(s: str) -> str:
    """``{{(1, 2)}}`` -> ``(1, 2)``: drop braces that enclose the whole answer."""
    while len(s) >= 2 and s[0] == "{" and s[-1] == "}":
        depth = 0
        for i, c in enumerate(s):
            depth += (c == "{") - (c == "}")
            if depth == 0 and i < len(s) - 1:
                return s  # the first brace closes early: "{a}+{b}"
        s = s[1:-1].strip()
    return s


def normalize(s: str) -> str:
    """Light, safe normalisation used for exact comparison and the numeric fast path."""
    s = _unbrace(_strip_math_delimiters(s).rstrip(".").strip())
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\left", "").replace("\\right", "")
    s = s.replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\ ", " ")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\%", "%").replace("\\$", "$")
    s = s.replace("\u2212", "-")  # unicode minus
    return " ".join(s.split())


def parse_number(s: str) -> tuple[Fraction, bool] | None:
    r"""``(value, is_integer_literal)`` for plain numbers, else None.

    Accepts ``-1,234.5``, ``1 234``, ``$18``, ``50%`` (as 50, Math-Verify's convention), ``18 dollars``,
    ``5\text{ cm}``, ``\frac{1}{2}``, ``1/2``, ``2.5e3``. Anything with letters or operators that
    are not one of those forms is not a plain number.
    """
    s = _UNIT_TEXT.sub("", s).strip()
    s = _TRAILING_WORDS.sub("", s).strip()
    s = s.lstrip("$").rstrip("%").strip()
    if len(s) > 60:
        return None
    if " " in s:  # spaces only as thousands separators ("1 000"), never between two numbers
        if not re.fullmatch(r"[-+]?\d{1,3}(?: \d{3})+(?:\.\d+)?", s):
            return None
        s = s.replace(" ", "")
    m = re.fullmatch(r"\\frac\{(-?\d+)\}\{(-?\d+)\}|(-?\d+)/(-?\d+)", s)
    if m:
        num, den = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        return (Fraction(int(num), int(den)), False) if int(den) != 0 else None
    if re.fullmatch(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?(?:[eE][-+]?\d{1,3})?|[-+]?\.\d+", s):
        try:
            value = Fraction(s.replace(",", ""))
        except (ValueError, ZeroDivisionError):
            return None
        return value, bool(re.fullmatch(r"[-+]?[\d,]+", s))
    return None


# ------------------------------------------------------------------------------ size guard
MAX_DIGITS = 10_000  # an answer whose evaluation builds a number with more digits is not compared
PRECISION = 6  # decimal places of Math-Verify's float comparison (its default float_rounding)


class AnswerTooLarge(ValueError):
    """An answer (or reference) whose evaluation would build a number beyond ``MAX_DIGITS`` digits."""


def _digits(e: Any) -> float:
    """An upper bound on ``log10 |value|`` of the numbers sympy would build evaluating ``e`` (a
    variable counts as 10): numbers by their ``log10``, powers as ``log10 |base| * |exponent|``,
    products as sums, factorials and binomials as ``log10 n!``; ``inf`` when the bound itself
    overflows a float."""
    import sympy

    if isinstance(e, sympy.MatrixBase):
        return max((_digits(v) for v in e), default=0.0)
    if not isinstance(e, sympy.Basic):
        return 0.0
    if e.is_Rational:  # integers too
        return max(math.log10(abs(int(e.p))) if e.p else 0.0, math.log10(int(e.q)))
    if e.is_Float:
        _, man, exp, bc = e._mpf_ if len(e._mpf_) == 4 else (0, 0, 0, 0)
        return abs(int(exp) + int(bc)) * 0.30103 if man else 0.0  # binary exponent -> decimal digits
    if e.is_Symbol or e.is_NumberSymbol or not e.args:
        return 1.0
    if e.is_Pow or isinstance(e, sympy.exp):
        base, exponent = (e.args[0], e.args[1]) if e.is_Pow else (sympy.E, e.args[0])
        size = _value(exponent)
        return math.inf if size == math.inf else (_digits(base) if base.is_number else max(1.0, _digits(base))) * size
    if e.is_Mul:
        return sum(_digits(a) for a in e.args)
    if e.is_Add:
        return max(_digits(a) for a in e.args) + math.log10(len(e.args))
    if isinstance(e, (sympy.factorial, sympy.factorial2, sympy.subfactorial, sympy.gamma, sympy.binomial,
                      sympy.RisingFactorial, sympy.FallingFactorial)):
        n = max(_value(a) for a in e.args)
        return math.inf if n > 1e300 else math.lgamma(n + 1) / math.log(10) + 1
    return max(_digits(a) for a in e.args)


def _value(e: Any) -> float:
    """An upper bound on ``|value|`` of ``e`` (``inf`` past 1e300): exact for a plain number."""
    if getattr(e, "is_Rational", False):
        return abs(float(e)) if _digits(e) < 300 else math.inf
    d = _digits(e)
    return 10.0 ** d if d < 300 else math.inf


def too_large(values: Sequence[Any], max_digits: int | None = MAX_DIGITS) -> bool:
    r"""True when evaluating any of Math-Verify's parsed ``values`` (sympy keeps ``9^{99^{99}}``
    unevaluated until :func:`math_verify.verify` asks) would build a number with more than
    ``max_digits`` digits (None: no limit): a power tower, a huge exponent or factorial. Python
    computes such an integer in one C call that nothing in the process can interrupt (only a
    worker's SIGKILL)."""
    if max_digits is None:
        return False
    try:
        return any(_digits(v) > max_digits for v in values)
    except RecursionError:
        return True


_PARSE_EVALUATED = re.compile(r"\\[dt]?binom|\\choose|\\sqrt\s*\[")
_BIG_ARGUMENT = re.compile(r"\^|\*\*|!|\d{7}")


def text_too_large(text: str) -> bool:
    r"""True when parsing ``text`` could make sympy build a huge number before anything is
    compared: the parser evaluates ``\binom{n}{k}`` and the index of ``\sqrt[n]{x}`` at once, so a
    power, a factorial or a 7-digit number in their arguments is refused (others stay lazy and are
    checked by :func:`too_large`)."""
    if not _PARSE_EVALUATED.search(text):
        return False
    flat = flatten_latex(text)
    for m in _PARSE_EVALUATED.finditer(flat):
        if m.group(0) == "\\choose":  # {n \choose k}
            args = flat[max(0, m.start() - 60):m.end() + 60]
        elif m.group(0).endswith("["):
            args = flat[m.end():flat.find("]", m.end()) if "]" in flat[m.end():] else m.end() + 200]
        else:
            first, end = _group_at(flat, m.end())
            second, _ = _group_at(flat, end) if first is not None else (None, end)
            args = (flat[m.end():m.end() + 200] if first is None else first) + " " + (second or "")
        if _BIG_ARGUMENT.search(args):
            return True
    return False


def _group_at(text: str, i: int) -> tuple[str | None, int]:
    """``(content, end)`` of the balanced ``{...}`` at ``text[i]`` (spaces skipped); None if none."""
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text) or text[i] != "{":
        return None, i
    depth = 0
    for j in range(i, min(len(text), i + 2000)):
        depth += (text[j] == "{") - (text[j] == "}")
        if depth == 0:
            return text[i + 1:j], j + 1
    return None, i


def _mv_parse(answer: str) -> tuple:
    """Math-Verify parse of one answer wrapped in ``\\boxed{}`` (timeouts off: see module doc);
    :class:`AnswerTooLarge` for one whose parsing alone would build a huge number."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    if text_too_large(answer):
        raise AnswerTooLarge(answer[:100])
    return tuple(parse("\\boxed{" + answer + "}", [LatexExtractionConfig(), ExprExtractionConfig()],
                       parsing_timeout=None))


@lru_cache(maxsize=4096)
def _mv_parse_gold(answer: str) -> tuple:
    """Cached gold parse: a reference repeats for every sample of its group."""
    return _mv_parse(answer)


def answers_match(gold: str, pred: str, parsed_pred: list | None = None, *, require_number: bool = False,
                  max_digits: int | None = MAX_DIGITS, precision: int = PRECISION) -> tuple[bool, str]:
    """``(equal, how)`` with how in exact | numeric | math_verify | form | too_large.

    ``parsed_pred``: Math-Verify's parsed value of ``pred`` when Math-Verify extracted it from the
    completion (then it is compared as parsed, e.g. ``50%`` keeps its percent). ``require_number``:
    the reference is a number, so a prediction that is arithmetic still to be done
    (:func:`unevaluated_arithmetic`, :func:`number_form`) is not equal (``form``) -- unless the
    reference is not an integer and the prediction's value is irrational (``\\sqrt{17}`` for
    ``4.1231056``): a decimal reference then only approximates a value no number writes exactly,
    and Math-Verify compares the two at its float precision. Values whose evaluation would build
    a number beyond ``max_digits`` digits are never handed to sympy (``too_large``, :func:`too_large`).
    ``precision``: decimal places at which Math-Verify compares a decimal with an exact value
    (its ``float_rounding``: at 2, ``0.33`` is ``\\frac{1}{3}``; at the default 6 it is not).
    """
    g, p = normalize(gold), normalize(pred)
    if g == p and g and parsed_pred is None:
        return True, "exact"
    ng = parse_number(g)
    np_ = parse_number(p) if parsed_pred is None else _exact_number(parsed_pred)
    if ng is not None and np_ is not None:
        if ng[0] == np_[0]:
            return True, "numeric"
        if ng[1] and np_[1] and "%" not in gold + pred:
            return False, "numeric"  # two different integers: no need for sympy
    from math_verify import verify

    try:
        gp = _mv_parse_gold(_unbrace(gold.strip()))
        pp = tuple(parsed_pred) if parsed_pred is not None else _mv_parse(_unbrace(pred.strip()))
    except AnswerTooLarge:
        return False, "too_large"
    if not gp or not pp:
        return False, "math_verify"
    if too_large(gp, max_digits) or too_large(pp, max_digits):
        return False, "too_large"
    if require_number and (unevaluated_arithmetic(pred) or not number_form(pp[0])) and not (
            ng is not None and ng[0].denominator != 1 and _irrational(pp[0])):
        return False, "form"
    return bool(verify(list(gp), list(pp), float_rounding=precision, timeout_seconds=None)), "math_verify"


_OPERAND = r"(?:\d|\)|\}|[a-zA-Z])"
_BINARY_OP = re.compile(r"(?:" + _OPERAND + r"\s*(?:[+*^]|\\times|\\cdot|\\div|\\ast)|[\d)}]\s*-)\s*(?:[\d({]|\\frac)")
_SPACING = re.compile(
    r"\\(?:q?quad|[enm]space|thinspace|medspace|thickspace|neg(?:thin|med|thick)space|nobreakspace|space|"
    r"displaystyle|textstyle|scriptstyle|scriptscriptstyle|limits|nolimits|left|right|middle|"
    r"[bB]ig{1,2}[lrm]?|bigg[lrm]?|Bigg[lrm]?)(?![A-Za-z])\.?"
    r"|\\(?:[hv]space\*?|[hv]?phantom|[hv]skip|mskip|mkern|kern)\s*(?:\{[^{}]*\}|-?[\d.]+\s*(?:mu|em|ex|pt|cm|mm|in)?)"
    r"|\\text\s*\{\s*\}|\\[,;:!> ]|~")
_WRAPPER = re.compile(r"\\(?:math(?:rm|bf|it|sf|tt|normal|bb|cal)|text(?:rm|bf|it|up|sf|tt)?|mbox|operatorname\*?|"
                      r"boldsymbol|bm|ensuremath|underline|overline)\s*\{([^{}]*)\}")
_UNICODE_OPS = str.maketrans({"\u00d7": "*", "\u2715": "*", "\u2716": "*", "\u2a2f": "*", "\u22c5": "*", "\u00b7": "*",
                              "\u2219": "*", "\u2022": "*", "\u2217": "*", "\u2212": "-", "\u2013": "-", "\u2014": "-",
                              "\u2012": "-", "\u00f7": "\\div ", "\u2215": "/", "\u2044": "/"})


def flatten_latex(s: str) -> str:
    r"""``s`` with what only changes how a formula looks removed: spacing (``\quad``, ``\,``, ``~``,
    ``\hspace{..}``, ``\phantom{..}``, ``\text{ }``), sizing and style (``\left``, ``\big``,
    ``\displaystyle``), wrappers whose content stays (``\mathrm{41}``, ``\operatorname{..}``,
    ``\text{..}``), fraction variants (``\dfrac`` -> ``\frac``) and unicode forms (NFKC: fullwidth
    ``＋``, digits; ``×``/``·``/``⋅`` -> ``*``, ``−``/``–`` -> ``-``, ``÷`` -> ``\div``)."""
    import unicodedata

    s = unicodedata.normalize("NFKC", s).translate(_UNICODE_OPS)
    for _ in range(8):  # nested wrappers: \mathrm{\mathbf{41}}
        t = _WRAPPER.sub(lambda m: " " + m.group(1) + " ", _SPACING.sub(" ", s))
        if t == s:
            break
        s = t
    return re.sub(r"\\[dtc]frac(?![A-Za-z])", r"\\frac", s)


def unevaluated_arithmetic(answer: str) -> bool:
    r"""True when ``answer`` is arithmetic still to be done (``28 + 54``, ``6 \times 7``, ``2^10``,
    ``x = 5 + 2``, ``\binom{82}{1}``, ``5!``) rather than a number, however it is typeset (:func:`flatten_latex`: ``28+\quad54``,
    ``41\times\,2``, ``\left(28\right)+54``, ``28＋54``). Only what the last ``=`` gives counts (``x = 5``
    and ``n = 2^{10} = 1024`` are numbers). A fraction written as one (``3/4``, ``\frac{3}{4}``), a
    sign, thousands separators, a percent sign or a unit are parts of a number, not operations."""
    s = flatten_latex(_strip_math_delimiters(answer.strip()))
    s = s.rsplit("=", 1)[-1]
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?", "", s)  # 60^{\circ}: degrees, not a power
    s = re.sub(r"(?<=\d)\s*(?:[ ,]|\{,\})\s*(?=\d{3}\b)", "", s)  # 1 000 / 1,000 / 1{,}000
    return bool(_BINARY_OP.search(s) or _EAGER_OP.search(s))


_EAGER_OP = re.compile(r"\\[dt]?binom(?![A-Za-z])|\\choose(?![A-Za-z])|[\d)}]\s*!")  # the parser evaluates these


def number_form(value: Any) -> bool:
    r"""False when a Math-Verify parse result is arithmetic on numbers still to be done (an ``Add``,
    a product, a power, a root, a sum, a function of numbers: ``28+54``, ``41 \cdot 2``,
    ``\sqrt{6724}``) rather than a number: the check behind :func:`unevaluated_arithmetic` on the
    parsed value, whatever the notation. A number, a percentage, ``x = <number>``, a set or tuple of
    numbers, and anything with a variable in it count as a number form."""
    import sympy

    if isinstance(value, str) or not isinstance(value, (sympy.Basic, sympy.MatrixBase)):
        return True
    if isinstance(value, sympy.MatrixBase):
        return all(number_form(v) for v in value)
    if value.is_Number or value in (sympy.S.Infinity, sympy.S.NegativeInfinity, sympy.S.NaN):
        return True
    if isinstance(value, sympy.Eq):
        return number_form(value.rhs)
    if isinstance(value, (sympy.Set, sympy.Tuple, sympy.Interval)) or type(value).__name__ in ("FiniteSet", "Tuple"):
        return all(number_form(a) for a in value.args if isinstance(a, sympy.Basic) and not a.is_Boolean)
    if value.free_symbols:
        return True
    if isinstance(value, sympy.Mul) and len(value.args) == 2:
        a, b = value.args
        if b == sympy.UnevaluatedExpr(sympy.Rational(1, 100)) and a.is_Number:  # 50\%
            return True
    if isinstance(value, sympy.Mul):  # 3/4 read as 3 * 4^-1, -3/4: a fraction written as one
        inverse = [a for a in value.args if a.is_Pow and _whole(a.args[0]) and a.args[1] == -1]
        numbers = [a for a in value.args if a.is_Number]
        return len(inverse) <= 1 and len(inverse) + len(numbers) == len(value.args) and (
            len(numbers) <= 1 or (len(numbers) == 2 and sympy.S.NegativeOne in numbers))
    if value.is_Pow and _whole(value.args[0]) and value.args[1] == -1:  # 1/4
        return True
    return False


def _whole(value: Any) -> bool:
    """An integer, or a float with nothing after the point: ``3.`` in "is 2/3." (the full stop
    read as a decimal point), which Math-Verify parses as ``2/3.0``."""
    return bool(value.is_Integer or (value.is_Float and math.isfinite(float(value)) and float(value).is_integer()))


def _irrational(value: Any) -> bool:
    """True when sympy knows ``value`` (or the right side of ``x = value``) to be an irrational
    number: ``\\sqrt{17}``, ``1 + \\sqrt{2}``, ``\\pi/2``; not ``\\sqrt{6724}`` (82), nor what it
    cannot decide (a ``\\sum``, a logarithm)."""
    import sympy

    if isinstance(value, sympy.Eq):
        value = value.rhs
    return isinstance(value, sympy.Expr) and bool(value.is_number) and value.is_rational is False


def _exact_number(parsed: list) -> tuple[Fraction, bool] | None:
    """``(value, is_integer)`` when Math-Verify parsed a plain sympy Integer or Rational."""
    value = parsed[0] if parsed else None
    if type(value).__name__ in ("Integer", "Rational", "Half", "One", "Zero", "NegativeOne"):
        return Fraction(int(value.p), int(value.q)), int(value.q) == 1
    return None


# ------------------------------------------------------------------------------ memory cap
DEFAULT_MEMORY_MB = 3072


def cap_worker_memory(verifier: Any) -> int | None:
    """Cap this process's address space (soft ``RLIMIT_AS``) for the math verifiers in ``verifier``.

    Called by scoring workers (``verifiers.pool``) after building a verifier; never in the
    trainer's process. Uses the largest ``memory_mb`` among ``verifier`` and its parts (a
    weighted combination); returns the cap in MiB, or None when nothing was capped (no math
    verifier, ``memory_mb`` 0/None, or a tighter limit already set). Only the soft limit is
    lowered, so sandboxed children can still set their own limits.
    """
    import resource

    parts = [verifier, *getattr(verifier, "parts", {}).values()]
    caps = [int(v.memory_mb) for v in parts if isinstance(v, MathVerifier) and v.memory_mb]
    if not caps:
        return None
    limit = max(caps) * 2**20
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY and soft <= limit:
        return None
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    global _WORKER_CAP
    _WORKER_CAP = limit
    return limit // 2**20


_WORKER_CAP: int | None = None  # bytes, set by cap_worker_memory in a scoring worker
RECYCLE_AT = 0.9  # a capped worker whose peak address space reached this share of the cap exits


def _exit_if_near_cap() -> None:
    """In a capped scoring worker: exit when the peak address space (``VmPeak``) came within
    ``RECYCLE_AT`` of the cap, so the pool scores the item 0 and starts a fresh worker (Math-Verify
    swallows ``MemoryError``; what it half-built stays in the process)."""
    if _WORKER_CAP is None:
        return
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            peak = next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmPeak:")), 0)
    except (OSError, ValueError):
        return
    if peak >= RECYCLE_AT * _WORKER_CAP:
        import os
        import sys

        print(f"math scoring worker {os.getpid()}: address space reached {peak // 2**20} MiB of its "
              f"{_WORKER_CAP // 2**20} MiB cap; exiting so that a fresh worker takes over", file=sys.stderr)
        os._exit(70)


# ------------------------------------------------------------------------------ the verifier
class _QuietTimeoutWarning(logging.Filter):
    """Math-Verify warns once that its timeouts are off; here that is deliberate."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_QuietTimeoutWarning())


class MathVerifier(Verifier):
    r"""Reward 1 when the extracted final answer is equivalent to the reference, else 0.

    ``strict``: only a ``\boxed{}`` answer counts. ``order``: extractor order (names in
    ``EXTRACTORS``). ``tail_chars``: how much of the end of the completion the non-boxed
    extractors read. ``memory_mb``: address-space cap of a scoring worker that runs this verifier
    (:func:`cap_worker_memory`; 0 or None: no cap). ``max_digits``: an answer or reference whose
    evaluation would build a number with more digits is not compared (:func:`too_large`; None: no
    limit, leaving only the timeout and the memory cap). ``precision``: decimal places at which a
    decimal answer or reference is compared with an exact value (Math-Verify's ``float_rounding``,
    default 6: ``0.333333`` is ``\\frac{1}{3}``, ``0.33`` is not; 2 for answers rounded to
    hundredths). ``info``: extracted, extractor, reference, match, reason, time_s.
    """

    name = "math"
    default_timeout = 5.0

    def __init__(self, *, strict: bool = False, order: Sequence[str] = EXTRACTORS, tail_chars: int = 4000,
                 memory_mb: int | None = DEFAULT_MEMORY_MB, max_digits: int | None = MAX_DIGITS,
                 precision: int = PRECISION):
        unknown = [o for o in order if o not in EXTRACTOR_FUNCS]
        if unknown:
            raise ValueError(f"unknown extractor(s) {unknown}; choose from {list(EXTRACTOR_FUNCS)}")
        if memory_mb is not None and int(memory_mb) < 0:
            raise ValueError(f"memory_mb must be >= 0 (0: no cap), got {memory_mb}")
        self.strict = strict
        self.order = ("boxed",) if strict else tuple(order)
        self.tail_chars = int(tail_chars)
        self.memory_mb = int(memory_mb) if memory_mb else None
        if max_digits is not None and int(max_digits) < 1:
            raise ValueError(f"max_digits must be >= 1 (None: no limit), got {max_digits}")
        self.max_digits = int(max_digits) if max_digits is not None else None
        if int(precision) < 0:
            raise ValueError(f"precision must be >= 0 decimal places, got {precision}")
        self.precision = int(precision)

    def __repr__(self) -> str:
        return (f"MathVerifier(strict={self.strict}, order={self.order}, memory_mb={self.memory_mb}, "
                f"max_digits={self.max_digits}, precision={self.precision})")

    def warm(self) -> None:
        """Import Math-Verify/sympy and exercise them once (about a second, once per process)."""
        answers_match("\\frac{1}{2}", "\\sqrt{2}/2")
        _math_verify_extract("so $x = \\frac13$ and 1 000")

    def extract(self, completion: str) -> tuple[str | None, str | None]:
        """``(answer, extractor name)`` with this verifier's order and tail (see :func:`extract_answer`)."""
        return extract_answer(completion, self.order, self.tail_chars)

    def score(self, completion: str, reference: Any) -> ScoreResult:
        golds = normalize_reference(reference)
        answer, how, parsed = _extract(completion, self.order, self.tail_chars)
        info = {"extracted": answer, "extractor": how, "reference": golds[0] if len(golds) == 1 else golds}
        mv_extraction = "math_verify" in self.order and how in (None, "math_verify", "last_number")
        if answer is None or len(answer) > MAX_ANSWER_CHARS:
            if mv_extraction:
                _exit_if_near_cap()
            if answer is None:
                return ScoreResult(0.0, {**info, "reason": "no boxed answer" if self.strict else "no answer found"})
            return ScoreResult(0.0, {**info, "extracted": answer[:100] + "...", "reason": "answer too long"})
        numbers = [parse_number(normalize(g)) for g in golds]
        numeric = all(n is not None for n in numbers)
        if numeric and all(n[0].denominator == 1 for n in numbers) and unevaluated_arithmetic(answer):
            # a numeric reference needs a number: "28 + 54" restates the question, it does not answer it
            # (Math-Verify would evaluate it to 82; a policy trained on that learns to echo the prompt).
            # Decided here, before any parsing, for integer references; answers_match decides the rest
            # (there an irrational value such as \sqrt{17} may answer a decimal such as 4.1231056)
            return ScoreResult(0.0, {**info, "match": "form", "reason": "arithmetic expression, not a number"})
        for gold in golds:
            ok, match = answers_match(gold, answer, parsed, require_number=numeric, max_digits=self.max_digits,
                                      precision=self.precision)
            if ok:
                break
        if match == "math_verify" or parsed or (mv_extraction and how != "math_verify"):
            _exit_if_near_cap()  # sympy ran (or Math-Verify extraction failed): check the memory it took
        reason = "correct" if ok else _REASONS.get(match, "wrong answer")
        return ScoreResult(1.0 if ok else 0.0, {**info, "match": match, "reason": reason})


_REASONS = {"form": "arithmetic expression, not a number", "too_large": "answer too large to evaluate"}
