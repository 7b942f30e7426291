"""rlvr.data: built-in sets, file formats, synthetic arithmetic, errors, chat encoding."""
from __future__ import annotations

import gzip
import importlib.util
import json

import pytest

from rlvr.data import SYSTEM_PROMPTS, Example, encode_prompt, load_prompts
from rlvr.errors import DataError


def _write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_gsm8k(data_dir):
    train, test = load_prompts("gsm8k", split="train"), load_prompts("gsm8k", split="test")
    assert (len(train), len(test)) == (7473, 1319)
    assert train[0].reference == "72" and train[0].verifier == "math" and train[0].task == "gsm8k"
    assert "Natalia" in train[0].prompt[-1]["content"]
    assert train[0].prompt[0] == {"role": "system", "content": SYSTEM_PROMPTS["math"]}
    assert all("," not in ex.reference and ex.reference for ex in test)
    assert train[0].id == "gsm8k/train.jsonl:1"


def test_math_and_math500(data_dir):
    m500 = load_prompts("math500")
    assert len(m500) == 500 and m500[0].id == "test/precalculus/807.json"
    assert m500[0].reference == "\\left( 3, \\frac{\\pi}{2} \\right)" and m500[0].meta["level"] == 2
    assert len(load_prompts("math", split="train")) == 12000
    assert [e.reference for e in load_prompts("math", split="test", limit=5)] == [e.reference for e in m500[:5]]
    with pytest.raises(DataError, match="math500: split 'train'; available: test"):
        load_prompts("math500", split="train")


def test_code_sets(data_dir):
    he = load_prompts("humaneval")
    assert len(he) == 164 and he[0].verifier == "code" and he[0].task == "humaneval"
    assert he[0].reference["entry_point"] == "has_close_elements" and "def check" in he[0].reference["test"]
    assert he[0].reference["prompt"] in he[0].prompt[-1]["content"]
    mbpp = load_prompts("mbpp")
    assert len(mbpp) == 974 and mbpp[0].id == "mbpp/1"
    assert mbpp[0].reference["test_list"][0] in mbpp[0].prompt[-1]["content"]
    assert "test_setup_code" in mbpp[0].reference
    sizes = {s: len(load_prompts("mbpp", split=s)) for s in ("prompt", "test", "validation", "train")}
    assert sizes == {"prompt": 10, "test": 500, "validation": 90, "train": 374}


def test_formats_detected_from_files(tmp_path, data_dir):
    he = load_prompts(data_dir / "humaneval" / "HumanEval.jsonl.gz", limit=3)  # gzipped path
    assert [e.id for e in he] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"] and he[0].verifier == "code"
    rows = [{"problem": "1+1?", "solution": "so \\boxed{\\frac{1}{2}} and \\boxed{2}"},
            {"prompt": "hi", "answer": "3"}]
    math_file = _write_jsonl(tmp_path / "m.jsonl", rows[:1])
    assert load_prompts(math_file)[0].reference == "2" and load_prompts(math_file)[0].task == "math"
    generic = load_prompts(_write_jsonl(tmp_path / "g.jsonl", [
        {"prompt": "hi", "answer": "3"},
        {"prompt": [{"role": "user", "content": "q"}], "reference": "4", "verifier": "code", "task": "mine"}]))
    assert [(e.reference, e.task, e.verifier) for e in generic] == [("3", "generic", "math"), ("4", "mine", "code")]
    assert generic[1].prompt == [{"role": "system", "content": SYSTEM_PROMPTS["code"]}, {"role": "user", "content": "q"}]
    gz = tmp_path / "g.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"question": "q?", "answer": "x\\n#### 1,000"}\n'))
    assert load_prompts(gz)[0].reference == "1000"


def test_bad_rows_name_file_and_line(tmp_path):
    good = {"question": "q", "answer": "#### 1"}
    path = _write_jsonl(tmp_path / "bad.jsonl", [good, good, {"question": "q"}])
    with pytest.raises(DataError, match=rf"^{path}:3: missing field 'answer'$"):
        load_prompts(path)
    assert len(load_prompts(path, limit=2)) == 2
    path = _write_jsonl(tmp_path / "bad2.jsonl", [good, "{not json"])
    with pytest.raises(DataError, match=rf"{path}:2: invalid JSON"):
        load_prompts(path)
    path = _write_jsonl(tmp_path / "bad3.jsonl", [{"question": "q", "answer": "no final line"}])
    with pytest.raises(DataError, match=rf"{path}:1: field 'answer' has no '####"):
        load_prompts(path)
    path = _write_jsonl(tmp_path / "bad4.jsonl", [{"prompt": "p"}])
    with pytest.raises(DataError, match=rf"{path}:1: missing field 'reference'"):
        load_prompts(path)


def test_unknown_sources(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="unknown data source 'gsm9k'.*gsm8k, math, math500"):
        load_prompts("gsm9k")
    with pytest.raises(DataError, match="data file .*missing.jsonl not found"):
        load_prompts(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="arithmetic:div9: unknown variant"):
        load_prompts("arithmetic:div9")
    monkeypatch.setenv("RLVR_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="RLVR_DATA_DIR"):
        load_prompts("gsm8k")


def test_hf_dataset_offline_error(monkeypatch):
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="HF dataset 'no-such-owner/no-such-set' could not be loaded.*without network"):
        load_prompts("no-such-owner/no-such-set")


@pytest.mark.skipif(importlib.util.find_spec("reasoning_gym") is not None, reason="reasoning-gym is installed")
def test_reasoning_gym_missing_is_clear():
    with pytest.raises(DataError, match="pip install reasoning-gym"):
        load_prompts("reasoning_gym:basic_arithmetic")


@pytest.mark.parametrize("variant", ["add2", "add3", "sub2", "mul2x1"])
def test_arithmetic(variant):
    train = load_prompts(f"arithmetic:{variant}", split="train", seed=0)
    test = load_prompts(f"arithmetic:{variant}", split="test", seed=0)
    other_seed = load_prompts(f"arithmetic:{variant}", split="train", seed=1)
    assert len(train) == 5000 or variant in ("sub2", "mul2x1")  # small spaces: all their train pairs
    assert 0 < len(test) <= 500
    key = lambda e: e.prompt[-1]["content"]  # noqa: E731
    assert not {key(e) for e in test} & {key(e) for e in train + other_seed}  # disjoint, any seed
    assert len({key(e) for e in train}) == len(train)  # no repeats
    for e in train[:200] + test[:200]:
        a, op, b = e.prompt[-1]["content"].removeprefix("What is ").split("?")[0].split()
        assert e.reference == str(eval(f"{int(a)} {op} {int(b)}")) and int(e.reference) >= 0
    assert [key(e) for e in load_prompts(f"arithmetic:{variant}", split="train", seed=0, limit=20)] == \
        [key(e) for e in train[:20]]  # seeded and stable
    assert train[0].verifier == "math" and train[0].task == f"arithmetic:{variant}"


def test_system_prompt_override_and_chat_template(tokenizer):
    ex = load_prompts("arithmetic", split="test", limit=1)[0]
    (user,) = ex.prompt  # no system message by default: the instruction is in the user turn
    assert user["role"] == "user" and user["content"].endswith("? Answer with just the number.")
    text = tokenizer.decode(encode_prompt(tokenizer, ex))
    assert text.endswith(f"<|im_start|>user\n{user['content']}<|im_end|>\n<|im_start|>assistant\n")
    gsm = load_prompts("gsm8k", split="test", limit=1)[0]
    assert gsm.prompt[0]["role"] == "system" and "\\boxed{}" in gsm.prompt[0]["content"]
    text = tokenizer.decode(encode_prompt(tokenizer, gsm))
    assert text == (f"<|im_start|>system\n{gsm.prompt[0]['content']}<|im_end|>\n"
                    f"<|im_start|>user\n{gsm.prompt[1]['content']}<|im_end|>\n<|im_start|>assistant\n")
    bare = load_prompts("gsm8k", split="test", limit=1, system_prompt="")[0]
    assert bare.prompt == [{"role": "user", "content": gsm.prompt[1]["content"]}]
    custom = load_prompts("arithmetic", split="test", limit=1, system_prompt="Be brief.")[0]
    assert custom.prompt[0]["content"] == "Be brief."
    assert isinstance(custom, Example)


def test_arithmetic_holdout_width():
    """``add2@5`` holds out 1 in 5 pairs: 1,620 test additions that contain the 822 of the default
    split, disjoint from its own train split; a bad width is one clear error."""
    from rlvr.data import arithmetic_examples
    from rlvr.errors import DataError

    def pairs(v, split):
        return {e.id.rsplit("/", 1)[1] for e in arithmetic_examples(v, split=split, limit=100_000)}

    t10, t5, tr5 = pairs("add2", "test"), pairs("add2@5", "test"), pairs("add2@5", "train")
    assert (len(t10), len(t5), len(tr5)) == (822, 1620, 6480)
    assert t10 <= t5 and not (t5 & tr5)
    for bad in ("add2@1", "add2@x", "add9@5"):
        with pytest.raises(DataError, match=f"arithmetic:{bad}"):
            arithmetic_examples(bad, split="test", limit=4)


@pytest.mark.parametrize("row,message", [
    ({"question": "1+1?", "answer": 2}, "field 'answer' must be a string, got int"),
    ({"text": "add", "test_list": "assert f(1) == 2"}, "field 'test_list' must be a non-empty list of strings"),
    ({"text": "add", "test_list": []}, "field 'test_list' must be a non-empty list of strings"),
    ({"prompt": "def f():", "test": ["x"], "entry_point": "f"}, "field 'test' must be a string"),
    ({"problem": "1+1?", "answer": {"x": 1}}, "field 'answer' must be a string or a number"),
    ({"prompt": "hi", "answer": "1", "verifier": 3}, "field 'verifier' must be a string"),
])
def test_rows_with_wrongly_typed_fields_fail_at_load_naming_file_and_line(tmp_path, row, message):
    path = _write_jsonl(tmp_path / "rows.jsonl", [row])
    with pytest.raises(DataError) as e:
        load_prompts(str(path))
    assert str(e.value).startswith(f"{path}:1: {message}") and "\n" not in str(e.value)


def test_chain_task_is_multi_step_and_split():
    from rlvr.data import arithmetic_examples, chain_worked
    from rlvr.errors import DataError
    from verifiers import score_batch

    test = arithmetic_examples("chain5", split="test", limit=50)
    train = arithmetic_examples("chain5", split="train", limit=500)
    assert len(test) == 50 and not ({e.id for e in test} & {e.id for e in train})
    e = test[0]
    terms = e.meta["terms"]
    assert len(terms) == 5 and all(10 <= t <= 99 for t in terms) and e.reference == str(sum(terms))
    assert "5 numbers" in e.prompt[-1]["content"] and "(4 steps)" in e.prompt[-1]["content"]
    # a worked answer in the asked-for form scores 1; a wrong final total scores 0
    good = chain_worked(terms)
    bad = good.rsplit("The answer is", 1)[0] + f"The answer is {sum(terms) + 1}."
    assert [r.reward for r in score_batch("math", [good, bad], [e.reference] * 2, workers=0)] == [1.0, 0.0]
    for bad_variant, message in [("chain2", "chain<k>"), ("chain4d4", "d<digits>"), ("chain4d1@1", "@1"),
                                 ("chainx", "chain<k>")]:
        with pytest.raises(DataError, match=message):
            arithmetic_examples(bad_variant, split="test", limit=3)


def test_chain_one_digit_format_and_worked_example():
    """``chain4d1``: four numbers 1-9; the prompt is one worked example of the same shape (user
    turn, assistant turn in the "Step i: s + x = s'" form) then the question; the example's tuple
    is in neither split."""
    from rlvr.data import arithmetic_examples, chain_worked

    e = arithmetic_examples("chain4d1", split="test", limit=1)[0]
    terms, shot = e.meta["terms"], e.meta["shot"]
    assert len(terms) == 4 and all(1 <= t <= 9 for t in terms) and e.reference == str(sum(terms))
    assert [m["role"] for m in e.prompt] == ["user", "assistant", "user"]
    assert e.prompt[2]["content"].startswith(f"What is {' + '.join(map(str, terms))}? Add the 4 numbers")
    assert "(3 steps)" in e.prompt[2]["content"] and "The answer is N." in e.prompt[2]["content"]
    assert e.prompt[0]["content"].startswith(f"What is {' + '.join(map(str, shot))}?")
    assert e.prompt[1]["content"] == chain_worked(shot)
    assert chain_worked([8, 7, 1, 5]) == ("Step 1: 8 + 7 = 15\nStep 2: 15 + 1 = 16\nStep 3: 16 + 5 = 21\n"
                                          "The answer is 21.")
    assert len(set(shot)) == 4  # a fixed example with distinct terms, the same for every item and split
    assert all(x.meta["shot"] == shot for x in arithmetic_examples("chain4d1@5", split="train", limit=20))
    with_system = arithmetic_examples("chain4d1", split="test", limit=1, system_prompt="Be brief.")[0]
    assert [m["role"] for m in with_system.prompt] == ["system", "user", "assistant", "user"]
    everything = {x.id.rsplit("/", 1)[1] for s in ("train", "test")
                  for x in arithmetic_examples("chain4d1", split=s, limit=10**6)}
    assert "+".join(map(str, shot)) not in everything and len(everything) == 9**4 - 1


def test_chain_holdout_width_gives_a_large_disjoint_eval_split():
    """``chain4d1@5`` holds out 1 in 5 of the 6,561 tuples: over 1,024 eval items, containing the
    held-out tuples of the default 1 in 10, disjoint from its own train split; draws are seeded."""
    from rlvr.data import arithmetic_examples
    from rlvr.errors import DataError

    def ids(v, split, **kw):
        return [e.id.rsplit("/", 1)[1] for e in arithmetic_examples(v, split=split, limit=10**6, **kw)]

    t10, t5, tr5 = set(ids("chain4d1", "test")), set(ids("chain4d1@5", "test")), set(ids("chain4d1@5", "train"))
    assert len(t5) >= 1024 and len(t5) + len(tr5) == 9**4 - 1
    assert t10 <= t5 and not (t5 & tr5)
    first = [e.id for e in arithmetic_examples("chain4d1@5", split="test", limit=1024, seed=0)]
    assert len(set(first)) == 1024 and first == [e.id for e in arithmetic_examples("chain4d1@5", split="test",
                                                                                   limit=1024, seed=0)]
    assert first != [e.id for e in arithmetic_examples("chain4d1@5", split="test", limit=1024, seed=1)]
    # a large tuple space is sampled without repeats, still split by the tuple's hash
    big = arithmetic_examples("chain6d1", split="test", limit=200, seed=3)
    assert len({e.id for e in big}) == 200 and all(len(e.meta["terms"]) == 6 for e in big)
    with pytest.raises(DataError, match="ask for at most half"):
        arithmetic_examples("chain6d1", split="test", limit=10**6)


@pytest.mark.parametrize("response,reward", [
    ("Step 1: 9 + 7 = 16\nStep 2: 16 + 2 = 18\nStep 3: 18 + 9 = 27\nThe answer is 27.", 1.0),
    ("Step 1: 9 + 7 = 16\nStep 2: 16 + 2 = 18\nStep 3: 18 + 9 = 27\nThe answer is 28.", 0.0),
    ("Step 1: 9 + 7 = 16\nStep 2: 16 + 2 = 18\nThe answer is 18.", 0.0),  # a step left out
    ("Step 1: 9 + 7 + 2 = 18\nStep 2: 18 + 9 = 27\nThe answer is 27.", 1.0),  # the outcome alone is graded
    ("Step 1: 9 + 7 = 16\nStep 2: 16 + 2 = 18\nStep 3: 18 + 9 = 27\nThe answer is 27. Or 28.", 1.0),
    ("The answer is 27", 1.0),
    ("Step 1: 9 + 7 = 16\nStep 2: 16 + 2 = 18\nStep 3: 18 + 9 = 27", 1.0),  # cut before the last line
    ("Step 1: 9 + 7 = 16\nStep 2: 16 + 2 = 18\nStep 3: 18 + 9 = 37\nThe answer is 37.", 0.0),
])
def test_chain_verifier_grades_the_final_number_of_a_worked_answer(response, reward):
    from rlvr.data import load_prompts
    from verifiers import score_batch

    held_out = load_prompts("arithmetic:chain4d1@5", split="test", limit=10**6)
    e = next(x for x in held_out if x.meta["terms"] == [9, 7, 2, 9])
    assert e.reference == "27" and e.verifier == "math"
    assert score_batch(e.verifier, [response], [e.reference], workers=0)[0].reward == reward