"""TRL-style reward functions for the quickstart task (2-digit addition), written exactly as for TRL's
``GRPOTrainer(reward_funcs=[...])``: each scores a whole batch and returns one float (or None) per
completion. rlvr calls them the way TRL does (recipes/quickstart_trl.yaml, docs/from-trl.md).
"""
import re


def _text(completion):
    """A conversational completion is [{"role": "assistant", "content": ...}]; a plain one is text."""
    return completion[0]["content"] if isinstance(completion, list) else completion


def correct_answer(completions, answer, **kwargs):
    """1.0 when the last integer in the completion is the row's ``answer`` column, else 0.0."""
    rewards = []
    for completion, expected in zip(completions, answer):
        numbers = re.findall(r"-?\d+", _text(completion).replace(",", ""))
        rewards.append(1.0 if numbers and int(numbers[-1]) == int(expected) else 0.0)
    return rewards


def bare_number(completions, **kwargs):
    """1.0 for a completion that is just a number (what the prompt asks for), else 0.0."""
    return [1.0 if re.fullmatch(r"\s*-?\d+\.?\s*", _text(c)) else 0.0 for c in completions]
