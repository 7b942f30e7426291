def has_seven(completion: str, reference) -> float:
    """1 when the completion contains the digit 7: a reward the critic can read off the tokens."""
    return float("7" in completion)
