"""One home for commands (rlvr/cli.py's COMMANDS, implemented in rlvr/commands/) and one for benchmarks
(rlvr/bench/, registered in rlvr.bench.BENCHMARKS); evals/ and verifiers/ have no command line of their own."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from rlvr.bench import BENCHMARKS
from rlvr.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
# process entry points that are not commands: the program the code sandbox runs as its pid 1
ENTRY_POINTS = {"verifiers/_sandbox_launcher.py"}


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (``from . import x`` resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
    return found


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_every_command_is_in_the_one_registry_and_lives_in_rlvr_commands():
    modules = {f"rlvr.commands.{p.stem}" for p in _modules("rlvr/commands") if p.stem != "__init__"}
    registered = {module for module, _ in COMMANDS.values()}
    assert registered == modules  # no command module outside the table, no table entry outside rlvr/commands/
    for name, (module, help_) in COMMANDS.items():
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.run), name
        assert help_ and "\n" not in help_
    script = re.search(r"^\[project\.scripts\]\n(.*?)(?:\n\[|\Z)", (ROOT / "pyproject.toml").read_text(),
                       re.S | re.M).group(1)
    assert script.strip() == 'rlvr = "rlvr.cli:main"'  # the one console script
    assert not (ROOT / "evals" / "cli.py").exists() and not (ROOT / "verifiers" / "cli.py").exists()


def test_only_the_command_layer_builds_parsers():
    for path in _modules("rlvr") + _modules("evals") + _modules("verifiers"):
        if "ArgumentParser(" in path.read_text(encoding="utf-8"):
            assert _rel(path) == "rlvr/cli.py" or _rel(path).startswith("rlvr/commands/"), _rel(path)


@pytest.mark.parametrize("folder", ["evals", "verifiers"])
def test_evals_and_verifiers_have_no_command_line(folder):
    for path in _modules(folder):
        if _rel(path) in ENTRY_POINTS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert "argparse" not in _imports(path), _rel(path)
        assert "main" not in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, _rel(path)
        assert not [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)], _rel(path)
        assert not {"add_arguments", "run"} <= {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, _rel(path)


def test_imports_point_down():
    """verifiers/ stands alone; rlvr/ outside the command layer does not import evals/."""
    for path in _modules("verifiers"):
        assert not {m for m in _imports(path) if m == "rlvr" or m.startswith(("rlvr.", "evals"))}, _rel(path)
    for path in _modules("rlvr"):
        if not _rel(path).startswith("rlvr/commands/"):
            assert not {m for m in _imports(path) if m == "evals" or m.startswith("evals.")}, _rel(path)


def test_every_benchmark_is_registered_and_lives_in_rlvr_bench():
    files = {f"rlvr.bench.{p.stem}" for p in _modules("rlvr/bench") if p.stem != "__init__"}
    assert {module for module, _ in BENCHMARKS.values()} == files
    assert not list(ROOT.glob("rlvr/bench_*.py")) and not (ROOT / "verifiers" / "bench.py").exists()
    assert not (ROOT / "rlvr" / "rollout" / "bench.py").exists()


@pytest.mark.parametrize("target", list(BENCHMARKS))
def test_every_benchmark_answers_help(target, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", target, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: rlvr bench {target}") and BENCHMARKS[target][1] in out


def test_bench_help_lists_every_target(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for target, (_, help_) in BENCHMARKS.items():
        assert target in out and help_ in out
