"""The whole tree passes pyflakes' checks (undefined names, unused imports and variables, names
redefined before use) and has no syntax error: ``ruff check`` with the selection in
pyproject.toml. An undefined name in a branch no test reaches is a crash waiting for a user."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "--no-cache",
                          "rlvr", "verifiers", "evals", "tests", "recipes", "benchmarks", "docs"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_catches_an_undefined_name(tmp_path):
    """The check above can fail: the same command on a file using a name it never defines."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    return undefined_name\n")
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "--no-cache",
                          "--config", str(ROOT / "pyproject.toml"), str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "F821" in out.stdout, out.stdout + out.stderr
