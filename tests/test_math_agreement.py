"""Agreement with Math-Verify's grading on cases of the kinds its own regression tests cover.

Each case is ``(kind, gold, completion, expected)``: ``gold`` as a data set or Math-Verify's tests
write it (``$\\{1,2,3\\}$``, a plain ``1,22``, a worked solution), ``completion`` as a model writes
it, and ``expected`` what Math-Verify says, ``verify(parse(gold), parse(completion))`` with the
configuration of its test suite (LaTeX with ``\\boxed`` first, then plain expressions; 6-digit
float rounding) -- except the rows in ``DELIBERATE``, where this verifier grades otherwise on
purpose. The agreement (share of cases graded as expected) must stay at or above 0.95.
``ROUNDED`` grades answers rounded to fewer places at a chosen precision (Math-Verify's
``float_rounding``, ``MathVerifier(precision=...)``).
"""
from __future__ import annotations

import collections
import logging

import pytest

from verifiers.math import MathVerifier

KINDS = {"multiple_boxed", "sets", "tuples", "intervals", "decimals", "percent", "units", "text", "matrices",
         "equations", "expressions", "notation", "worked_gold", "restatement", "final_answer", "answer_sentence",
         "box_then_final", "fractions", "irrational", "unparsed"}

# a worked solution ending as some models end one; a completion with a box before its final answer
PRICE_SOLUTION = ("The price drops by $25\\%$ and then by $20\\%$ of the new price, so it keeps "
                  "$0.75 \\cdot 0.8 = 0.6$ of its value. Final Answer: The final answer is $40 \\%$. "
                  "I hope it is correct.")
PAGES = ("Per hour that is $12 \\cdot 10 = \\boxed{120}$ pages, over eleven hours that is 1,320.\n"
         "Final Answer: The final answer is $1,320$. I hope it is correct.")

CASES = [
    ('multiple_boxed', '$\\{1,2,3\\}$', 'The solutions are $\\boxed{1},\\boxed{2},\\boxed{3}$.', 1),
    ('multiple_boxed', '$\\{1,2,3\\}$', 'So $\\boxed{3}, \\boxed{1}$ and $\\boxed{2}$', 1),
    ('multiple_boxed', '$\\{1,2,3\\}$', '$\\boxed{1},\\boxed{2}$', 0),
    ('multiple_boxed', '$(1,2),(3,4)$', '$\\boxed{(1,2)}, \\boxed{(3,4)}$', 1),
    ('multiple_boxed', '$1, 2$', 'The answers are $\\boxed{1}$ and $\\boxed{2}$', 1),
    ('multiple_boxed', '$2$', 'Either $\\boxed{1}$ or $\\boxed{2}$', 0),
    ('sets', '$\\{-2, 5\\}$', '$\\boxed{5, -2}$', 1),
    ('sets', '$1,2,3$', '\\boxed{\\{1,2,3\\}}', 1),
    ('sets', '$\\{1,2,3\\}$', '\\boxed{\\{1,2,4\\}}', 0),
    ('sets', '$\\{\\frac{1}{2}, 3\\}$', '\\boxed{3, 0.5}', 1),
    ('sets', '$x=1$ or $x=2$', '\\boxed{x = 1, 2}', 1),
    ('sets', '$\\{1, 2\\}$', '\\boxed{\\{2, 1\\}}', 1),
    ('sets', '$\\{1\\}$', '\\boxed{1}', 1),
    ('tuples', '$(1,2)$', '\\boxed{(1, 2)}', 1),
    ('tuples', '$(1,2)$', '\\boxed{(2, 1)}', 0),
    ('tuples', '$(3, \\frac{\\pi}{2})$', 'the point is $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$.', 1),
    ('tuples', '$(1, -1, 2)$', '\\boxed{(1,-1,2)}', 1),
    ('tuples', '$(1,2)$', '\\boxed{1, 2}', 1),
    ('intervals', '$[0,1)$', '\\boxed{[0,1)}', 1),
    ('intervals', '$[0,1)$', '\\boxed{(0,1)}', 0),
    ('intervals', '$(-\\infty, 3]$', '\\boxed{(-\\infty,3]}', 1),
    ('intervals', '$(-\\infty, 3] \\cup [5, \\infty)$', '\\boxed{(-\\infty,3]\\cup[5,\\infty)}', 1),
    ('intervals', '$(2, 5)$', '\\boxed{[2,5]}', 0),
    ('intervals', '$(-\\infty, 3)$', '\\boxed{x < 3}', 0),
    ('intervals', '$[1,2]$', '\\boxed{x \\in [1,2]}', 1),
    ('intervals', '$(1, \\infty)$', '\\boxed{(1,\\infty)}', 1),
    ('decimals', '$\\frac{1}{3}$', '\\boxed{0.333333}', 1),
    ('decimals', '$\\frac{1}{3}$', '\\boxed{0.33}', 0),
    ('decimals', '$\\frac{2}{3}$', '\\boxed{0.666667}', 1),
    ('decimals', '$\\frac{1}{8}$', '\\boxed{0.125}', 1),
    ('decimals', '$0.5$', '\\boxed{\\frac{1}{2}}', 1),
    ('decimals', '$1.22$', '1,22', 1),
    ('decimals', '$1000.99$', '1000,99', 1),
    ('decimals', '$0.4$', '.4', 1),
    ('decimals', '$7425000$', '7,425,000', 1),
    ('decimals', '$3.14$', '\\boxed{3.15}', 0),
    ('decimals', '$\\sqrt{2}$', '\\boxed{1.414214}', 1),
    ('decimals', '$0.33$', '\\boxed{\\frac{1}{3}}', 0),
    ('decimals', '$0.333333$', '\\boxed{\\frac{1}{3}}', 1),
    ('decimals', '$0.3333333$', '\\boxed{\\frac{1}{3}}', 1),
    ('decimals', '$\\frac{1}{3}$', '\\boxed{0.3333333}', 1),
    ('decimals', '$\\frac{1}{7}$', '\\boxed{0.142857}', 1),
    ('decimals', '$\\frac{1}{7}$', '\\boxed{0.1429}', 0),
    ('decimals', '$3.5$', '\\boxed{\\frac{7}{2}}', 1),
    ('decimals', '1,22', '1.22', 1),
    ('decimals', '0,111', '0.111', 1),
    ('decimals', '-2,1', '\\boxed{-2, 1}', 1),
    ('decimals', '58,500', '\\boxed{58500}', 1),
    ('decimals', '$1000$', '1 000', 1),
    ('decimals', '$2.74$', 'Soucis : 2,74 $ a..', 1),
    ('percent', '$28\\%$', '28 percent', 1),
    ('percent', '$28\\%$', '\\boxed{28}', 1),
    ('percent', '$28\\%$', '\\boxed{0.28}', 1),
    ('percent', '$0.28$', '28', 0),
    ('percent', '$28\\%$', '\\boxed{28\\%}', 1),
    ('percent', '$50\\%$', '\\boxed{40\\%}', 0),
    ('percent', '$\\frac{1}{2}$', '\\boxed{50\\%}', 1),
    ('percent', '$50$', '\\boxed{50\\%}', 1),
    ('units', '$5$', '\\boxed{5\\text{ cm}}', 1),
    ('units', '$12$', 'The length is $12$ meters.', 1),
    ('units', '$90^\\circ$', '\\boxed{90^{\\circ}}', 1),
    ('units', '$90$', '\\boxed{90^\\circ}', 1),
    ('units', '$\\$18$', '\\boxed{18}', 1),
    ('units', '$1000.99$', '$1,000.99', 1),
    ('units', '$1000.99$', 'the number is not 10 which is 1,000.99€', 1),
    ('units', '$1000.99$', 'so the number is 10 which is 1,000.99m²', 1),
    ('text', '$\\text{Evelyn}$', 'Therefore, $\\boxed{\\text{Evelyn}}$ is our answer.', 1),
    ('text', '$\\text{(C)}$', '\\boxed{\\text{(C)}}', 1),
    ('text', '$\\text{Evelyn}$', '\\boxed{\\text{Carla}}', 0),
    ('text', '$\\text{even}$', '\\boxed{\\text{even}}', 1),
    ('text', '$\\text{(A)}$', '\\boxed{A}', 1),
    ('text', '$12 \\text{ and } 13$', 'between $\\boxed{12 \\text{ and } 13}$', 1),
    ('matrices', '$\\begin{pmatrix} 0 & 3 \\\\ 0 & -1 \\end{pmatrix}$', '\\boxed{\\begin{pmatrix} 0 & 3 \\\\ 0 & -1 \\end{pmatrix}}', 1),
    ('matrices', '$\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}$', '\\boxed{\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}}', 0),
    ('matrices', '$\\begin{pmatrix} 1/2 \\\\ 2 \\end{pmatrix}$', '\\boxed{\\begin{pmatrix} 0.5 \\\\ 2 \\end{pmatrix}}', 1),
    ('matrices', '$\\begin{bmatrix} 1 & 0 \\\\ 0 & 1 \\end{bmatrix}$', '\\boxed{\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}}', 1),
    ('matrices', '$\\begin{pmatrix} 1 & 2 \\end{pmatrix}$', '\\boxed{\\begin{pmatrix} 1 & 2 \\end{pmatrix}}', 1),
    ('equations', '$x=3$', '\\boxed{3}', 1),
    ('equations', '$3$', '\\boxed{x=3}', 1),
    ('equations', '$y = 2x + 1$', '\\boxed{y=1+2x}', 1),
    ('equations', '$x=3$', '\\boxed{x=4}', 0),
    ('equations', '$\\frac{1}{3}$', '$k = \\frac{1}{3}$', 1),
    ('equations', '$2x+3y=6$', '\\boxed{2x+3y=6}', 1),
    ('equations', '$x = \\frac{1}{2}$', '\\boxed{0.5}', 1),
    ('equations', '$a=2, b=3$', '\\boxed{a=2, b=3}', 1),
    ('expressions', '$2\\sqrt{2}$', '\\boxed{\\sqrt{8}}', 1),
    ('expressions', '$\\frac{\\sqrt{3}}{3}$', '\\boxed{\\frac{1}{\\sqrt{3}}}', 1),
    ('expressions', '$x^2+2x+1$', '\\boxed{(x+1)^2}', 1),
    ('expressions', '$2-2p$', 'Thus $x-p=\\boxed{2-2p}$.', 1),
    ('expressions', '$\\pi$', '\\boxed{3.14}', 0),
    ('expressions', '$10/9$', '\\frac{10}{9}', 1),
    ('expressions', '$-10/9$', '-\\frac{10}{9}', 1),
    ('expressions', '$1/3$', '$\\frac13 $', 1),
    ('expressions', '$\\sqrt{3}$', '$\\sqrt3 $', 1),
    ('expressions', '$5\\sqrt{2}$', '\\boxed{\\sqrt{50}}', 1),
    ('expressions', '$3\\frac{1}{2}$', '\\boxed{3.5}', 1),
    ('expressions', '$1+i$', '\\boxed{i+1}', 1),
    ('expressions', '$\\infty$', '\\boxed{\\infty}', 1),
    ('expressions', '$\\frac{\\pi}{2}$', '\\boxed{\\frac{\\pi}{2}}', 1),
    ('expressions', '$\\frac{\\pi}{2}$', '\\boxed{1.570796}', 1),
    ('notation', '$9$', 'Answer \\[ 9 \\]', 1),
    ('notation', '$9$', 'Answer $$ 9 $$', 1),
    ('notation', '2', 'AZYUK2A', 0),
    ('notation', '$1/3$', '$\\frac{1}{3} \\text{meters}$', 1),
    ('notation', '$-5$', '-5', 1),
    ('worked_gold', 'Since $x<2$, $|x-2|=2-x$, so $x-p=\\boxed{2-2p}$.', 'The answer is $2-2p$.', 1),
    ('worked_gold', 'We add: $f(-2)+f(-1)+f(0)=2+\\frac{5}{3}+1=\\boxed{\\frac{14}{3}}$', '\\boxed{\\frac{14}{3}}', 1),
    ('worked_gold', 'We add: $f(-2)+f(-1)+f(0)=2+\\frac{5}{3}+1=\\boxed{\\frac{14}{3}}$', '\\boxed{\\frac{5}{3}}', 0),
    ('worked_gold', 'Natalia sold 48/2 = 24 clips in May.\nAltogether 48+24 = 72 clips.\n#### 72', '\\boxed{72}', 1),
    ('worked_gold', 'Natalia sold 48/2 = 24 clips in May.\nAltogether 48+24 = 72 clips.\n#### 72', '\\boxed{24}', 0),
    ('worked_gold', 'Evelyn is fastest, so $\\boxed{\\text{Evelyn}}$ is our answer.', '\\boxed{\\text{Evelyn}}', 1),
    ('worked_gold', 'The smallest such number is $14{,}916.$ Therefore, $\\boxed{14{,}916}$ is our answer.', 'so $N = 14916$', 1),
    ('worked_gold', 'The roots are $\\boxed{1}$ and $\\boxed{2}$.', '\\boxed{\\{1, 2\\}}', 1),
    ('worked_gold', 'Adding, $2+3=5$ apples. The answer is $5$.', '\\boxed{5}', 1),
    ('worked_gold', 'Adding, $2+3=5$ apples. The answer is $5$.', '\\boxed{3}', 0),
    ('worked_gold', 'Each costs $\\$3$, so together they cost $\\frac{14}{3}$ dollars', '\\boxed{\\frac{14}{3}}', 1),
    ('worked_gold', 'We get $x = 4$, so $x^2 = \\boxed{16}$.', 'The answer is 16', 1),
    ('worked_gold', 'Thus the area is $\\boxed{12\\sqrt{3}}$ square units.', '\\boxed{\\sqrt{432}}', 1),
    ('restatement', '$10$', 'Answer \\( (9+1) \\)', 0),
    # "Final Answer: The final answer is X" (the last anchor of the line), an answer written as a
    # sentence, a "final answer" after a box, runs of boxes joined by spacing or \text{and},
    # fractions ending a sentence, exact irrational answers to decimal references, a LaTeX answer
    # Math-Verify cannot parse (no number is read out of it)
    ('multiple_boxed', '$\\{-3, 4\\}$', 'so $x = \\boxed{-3} \\quad \\text{or} \\quad \\boxed{4}$', 1),
    ('multiple_boxed', '$\\boxed{5}\\boxed{7}$', '$\\boxed{5, 7}$', 1),
    ('multiple_boxed', '$5, 7$', '\\[\\boxed{7}\\,\\boxed{5}\\]', 1),
    ('multiple_boxed', '$\\{2, 6\\}$', '\\[ \\boxed{2} \\quad \\text{and} \\quad \\boxed{3} \\]', 0),
    ('multiple_boxed', '$\\{2, 6\\}$', '\\[ \\boxed{6} \\quad \\text{and} \\quad \\boxed{2} \\]', 1),
    ('worked_gold', PRICE_SOLUTION, 'a total drop of $\\boxed{40\\%}$.', 1),
    ('worked_gold', PRICE_SOLUTION, 'a total drop of $\\boxed{45\\%}$.', 0),
    ('final_answer', '$4096$', 'We double twelve times.\nFinal Answer: The final answer is 4,096. I hope it is correct.', 1),
    ('final_answer', '$\\frac{7}{2}$', 'Final Answer: The final answer is $\\frac{7}{2}$. I hope it is correct.', 1),
    ('final_answer', '$63$', 'Final Answer: The final answer is $36$. I hope it is correct.', 0),
    ('final_answer', '$2\\sqrt{6}$', 'Final Answer: The final answer is $\\sqrt{24}$. I hope it is correct.', 1),
    ('answer_sentence', '$12$', 'Final Answer: The smallest possible $k$ is 12.', 1),
    ('answer_sentence', '$45$', 'Final Answer: Maria finished the race 45 minutes after Tom started.', 1),
    ('answer_sentence', '$8$', 'Final Answer: The area of triangle $PQR$ is 8 square units.', 1),
    ('answer_sentence', '$9$', 'Final Answer: The number of marbles left is 7.', 0),
    ('box_then_final', '$1320$', PAGES.replace('that is 1,320', '$\\boxed{1320}$'), 1),
    ('box_then_final', '$1320$', PAGES, 1),
    ('box_then_final', '$120$', PAGES, 0),
    ('box_then_final', '$7$', 'The answer is $\\boxed{7}$.\nFinal Answer: I hope it is correct.', 1),
    ('fractions', '$5/8$', 'So the chance that both are red is 5/8.', 1),
    ('fractions', '$3/8$', 'So the chance that both are red is 5/8.', 0),
    ('fractions', '$-4/9$', 'Hence the slope is -4/9.', 1),
    ('irrational', '2.6457513', '$\\sqrt{7}$', 1),
    ('irrational', '0.7853982', '\\boxed{\\frac{\\pi}{4}}', 1),
    ('irrational', '3.4142136', '\\boxed{2+\\sqrt{2}}', 1),
    ('irrational', '2.6457513', '$\\sqrt{8}$', 0),
    ('restatement', '3.75', '\\boxed{1.5+2.25}', 0),
    ('restatement', '9', '\\boxed{\\sqrt{81}}', 0),
    ('restatement', '0.5', '\\boxed{\\sqrt{0.25}}', 0),
    ('unparsed', '$3$', '$-[1,3)$', 0),
    ('unparsed', '$4$', 'The set is $-(2,4]$', 0),
]

# (gold, completion) -> why this verifier's grade differs from Math-Verify's on purpose
DELIBERATE = {
    ("$10$", "Answer \\( (9+1) \\)"):
        "a numeric reference needs a number: (9+1) restates the question (Math-Verify evaluates it)",
    ("-2,1", "\\boxed{-2, 1}"):
        "a plain -2,1 is the list {-2, 1} in MATH; Math-Verify reads a decimal comma (-2.1)",
    ("3.75", "\\boxed{1.5+2.25}"):
        "a numeric reference needs a number, a decimal one too: 1.5+2.25 restates the question",
    ("9", "\\boxed{\\sqrt{81}}"):
        "a numeric reference needs a number: the root of a perfect square restates the question",
    ("0.5", "\\boxed{\\sqrt{0.25}}"):
        "a root whose value is rational restates the question; only an irrational value may stay exact",
}


def _math_verify(gold: str, completion: str) -> int:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    return int(bool(verify(parse(gold, config, parsing_timeout=None), parse(completion, config, parsing_timeout=None),
                           timeout_seconds=None)))


def test_cases_cover_every_kind_and_both_verdicts():
    assert len(CASES) >= 60
    counts = collections.Counter(kind for kind, *_ in CASES)
    assert set(counts) == KINDS and min(counts.values()) >= 1, counts
    pairs = [(g, c) for _, g, c, _ in CASES]
    assert len(set(pairs)) == len(pairs), "duplicate cases"
    assert 0.2 < sum(e for *_, e in CASES) / len(CASES) < 0.9
    assert set(DELIBERATE) <= set(pairs)


def test_expected_grades_are_math_verify_s_own():
    """The table says what Math-Verify says (the rows in DELIBERATE aside)."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    differ = [(g, c, e) for _, g, c, e in CASES if (g, c) not in DELIBERATE and _math_verify(g, c) != e]
    assert not differ, differ
    assert all(_math_verify(g, c) != e for _, g, c, e in CASES if (g, c) in DELIBERATE)


def test_agreement_with_math_verify_is_at_least_95_percent():
    verifier = MathVerifier()
    graded = [(kind, gold, completion, expected, int(verifier.score(completion, gold).reward))
              for kind, gold, completion, expected in CASES]
    misses = [(kind, gold, completion, expected) for kind, gold, completion, expected, got in graded if got != expected]
    agreement = 1 - len(misses) / len(graded)
    print(f"math agreement: {agreement:.3f} on {len(graded)} cases")
    assert agreement >= 0.95, misses


MISSED_KINDS = ("multiple_boxed", "worked_gold", "decimals", "final_answer", "answer_sentence", "box_then_final",
                "fractions", "irrational", "unparsed")


@pytest.mark.parametrize("kind,gold,completion,expected", [c for c in CASES if c[0] in MISSED_KINDS])
def test_grades_of_the_kinds_that_were_missed(kind, gold, completion, expected):
    """Each case of the kinds an outside review found graded unlike Math-Verify."""
    assert MathVerifier().score(completion, gold).reward == expected


# (precision, gold, completion, expected): answers rounded to ``precision`` decimal places, graded as
# Math-Verify grades them with ``float_rounding=precision`` (MathVerifier(precision=...))
ROUNDED = [
    (2, "$\\frac{2}{3}$", "\\boxed{0.67}", 1),
    (2, "$\\frac{2}{3}$", "\\boxed{0.66}", 0),
    (6, "$\\frac{2}{3}$", "\\boxed{0.67}", 0),
    (3, "$\\frac{5}{7}$", "The probability is about 0.714.", 1),
    (2, "$(\\frac{1}{6}, \\frac{5}{6}]$", "\\boxed{(0.17, 0.83]}", 1),
    (2, "$\\begin{pmatrix} \\frac{1}{7} \\\\ \\frac{4}{9} \\end{pmatrix}$",
     "\\boxed{\\begin{pmatrix} 0.14 \\\\ 0.44 \\end{pmatrix}}", 1),
    (4, "0.1667", "\\boxed{\\frac{1}{6}}", 1),
    (4, "0.1667", "\\boxed{\\frac{1}{7}}", 0),
    (2, "$\\sqrt{2}$", "\\boxed{1.41}", 1),
]


@pytest.mark.parametrize("precision,gold,completion,expected", ROUNDED)
def test_rounded_answers_at_a_chosen_precision(precision, gold, completion, expected):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    theirs = verify(parse(gold, config, parsing_timeout=None), parse(completion, config, parsing_timeout=None),
                    float_rounding=precision, timeout_seconds=None)
    assert int(bool(theirs)) == expected
    assert MathVerifier(precision=precision).score(completion, gold).reward == expected


def test_precision_defaults_to_math_verify_s_and_is_checked():
    assert MathVerifier().precision == 6
    assert MathVerifier().score("\\boxed{0.333333}", "\\frac{1}{3}").reward == 1.0
    assert MathVerifier().score("\\boxed{0.3333}", "\\frac{1}{3}").reward == 0.0
    assert MathVerifier(precision=4).score("\\boxed{0.3333}", "\\frac{1}{3}").reward == 1.0
    with pytest.raises(ValueError):
        MathVerifier(precision=-1)
