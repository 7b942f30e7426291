"""The loop stays readable: ``rlvr/trainer.py`` is short and names no algorithm, and update rules
move the models through the learner's public interface alone (no private member of another object)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from rlvr.algorithms.advantages import ESTIMATORS
from rlvr.algorithms.presets import PRESETS
from rlvr.updates import NEEDS, UPDATES

ROOT = Path(__file__).resolve().parents[1]


def test_trainer_is_under_500_lines():
    assert len((ROOT / "rlvr" / "trainer.py").read_text().splitlines()) <= 500


def test_trainer_names_no_algorithm():
    text = (ROOT / "rlvr" / "trainer.py").read_text().lower()
    names = set(PRESETS) | set(ESTIMATORS) | set(UPDATES) | {"ppo", "grpo", "dapo", "vine", "trpo", "dpo", "gspo",
                                                             "cispo", "vapo", "reinforce", "rloo", "gae"}
    names -= {"none", "mc", "td"}  # common words, not algorithm names
    found = sorted(n for n in names if re.search(rf"(?<![a-z0-9_]){re.escape(n.lower())}(?![a-z0-9])", text))
    assert not found, found


def _private_uses(path: Path) -> list[str]:
    """``x._name`` where x is not ``self`` and the member is not a dunder, in one module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")):
            out.append(f"{path.name}:{node.lineno}: .{node.attr}")
    return out


def test_update_rules_use_no_private_member():
    found = [u for f in sorted((ROOT / "rlvr" / "updates").glob("*.py")) for u in _private_uses(f)]
    # NamedTuple._replace and torch.Tensor._version (its in-place counter) are those libraries' public API
    assert [u for u in found if not u.endswith(("._replace", "._version"))] == []


def test_every_update_rule_declares_its_needs():
    assert set(NEEDS) == set(UPDATES)
    for name, needs in NEEDS.items():
        assert needs.fsdp or needs.fsdp_why, name  # a refusal says why
