"""Every run names its code, versions, command and machine; a study refuses mixed code."""
import json
import subprocess
from pathlib import Path

import pytest

from evals.compare import check_code
from rlvr import provenance
from rlvr.errors import ConfigError
from rlvr.trainer import Trainer
from tiny import tiny_cfg

ROOT = Path(__file__).resolve().parents[1]


def _head():
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def test_a_run_records_its_commit_versions_command_and_machine(tmp_path):
    cfg = tiny_cfg(tmp_path, **{"trainer.total_steps": 1})
    Trainer(cfg).train()
    starts = provenance.read(cfg.trainer.output_dir)
    assert len(starts) == 1
    s = starts[0]
    assert s["code"]["commit"] == _head() and isinstance(s["code"]["dirty"], bool)
    assert s["versions"]["torch"] and s["versions"]["transformers"] and "math-verify" in s["versions"]
    assert s["command"]["argv"] and s["command"]["cwd"]
    assert s["machine"]["cpus"] >= 1 and s["machine"]["device"] in ("cpu", "cuda")
    assert s["step"] == 0
    # a resume appends a start (a run continued with other code says so); a fresh start begins anew
    cfg2 = tiny_cfg(tmp_path, **{"trainer.total_steps": 2})
    Trainer(cfg2, resume=True).train()
    starts = provenance.read(cfg.trainer.output_dir)
    assert [s["step"] for s in starts] == [0, 1]
    assert provenance.run_code_ids(cfg.trainer.output_dir) == [provenance.code_id(starts[0]["code"])]


def test_dirty_tree_is_identified_by_its_diff(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (repo / "f.py").write_text("x = 1\n")
    git("add", "f.py")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "c")
    clean = provenance.code_state(repo)
    assert clean["dirty"] is False and clean["diff_sha256"] is None and len(clean["commit"]) == 40
    (repo / "untracked.log").write_text("runs are not code\n")
    assert provenance.code_state(repo)["dirty"] is False
    (repo / "f.py").write_text("x = 2\n")
    a = provenance.code_state(repo)
    (repo / "f.py").write_text("x = 3\n")
    b = provenance.code_state(repo)
    assert a["dirty"] and b["dirty"] and a["diff_sha256"] != b["diff_sha256"]
    assert provenance.code_id(a).startswith(clean["commit"][:12] + "+dirty:")


def _fake_run(root, key, commit):
    d = root / key
    d.mkdir(parents=True)
    (d / "provenance.json").write_text(json.dumps({"starts": [{"step": 0, "code": {
        "commit": commit, "dirty": False, "diff_sha256": None, "version": "0.1.0"}}]}))


def test_compare_refuses_runs_of_different_code_unless_allowed(tmp_path):
    a, b = "a" * 40, "b" * 40
    _fake_run(tmp_path, "grpo/seed0", a)
    _fake_run(tmp_path, "ppo/seed0", a)
    keys = ["grpo/seed0", "ppo/seed0", "grpo/seed1"]
    assert check_code(tmp_path, keys, a[:12], False) == {"grpo/seed0": [a[:12]], "ppo/seed0": [a[:12]]}
    with pytest.raises(ConfigError, match="different code.*--allow-mixed-commits"):
        check_code(tmp_path, keys, b[:12], False)  # this checkout differs from the finished runs
    _fake_run(tmp_path, "grpo/seed1", b)
    with pytest.raises(ConfigError, match="grpo/seed1: bbbbbbbbbbbb"):
        check_code(tmp_path, keys, a[:12], False)
    assert check_code(tmp_path, keys, a[:12], True)["grpo/seed1"] == [b[:12]]


def test_a_studys_manifest_keeps_every_call():
    """combine_manifests: a later call's fields win, but presets, seeds, runs, code and the calls
    themselves accumulate; a manifest written before calls were kept counts as one call."""
    from evals.compare import combine_manifests

    old = {"recipe": "r.yaml", "presets": ["grpo", "ppo"], "seeds": [0, 1, 2], "command": ["rlvr", "compare", "a"],
           "code": {"grpo/seed0": ["a" * 12]}, "runs": {"grpo/seed0": "done", "ppo/seed0": "interrupted"},
           "base": {"final_eval/pass@1": 0.1}, "margin": 0.03}
    new = {"recipe": "r.yaml", "presets": ["ppo", "arm"], "seeds": [0], "command": ["rlvr", "compare", "b"],
           "code": {"arm/seed0": ["a" * 12]}, "runs": {"ppo/seed0": "done", "arm/seed0": "done"}, "margin": 0.03,
           "invocations": [{"command": ["rlvr", "compare", "b"], "presets": ["ppo", "arm"], "seeds": [0]}]}
    m = combine_manifests(old, new)
    assert m["presets"] == ["grpo", "ppo", "arm"] and m["seeds"] == [0, 1, 2]
    assert m["runs"] == {"grpo/seed0": "done", "ppo/seed0": "done", "arm/seed0": "done"}
    assert set(m["code"]) == {"grpo/seed0", "arm/seed0"} and m["base"] == old["base"]
    assert [c["command"][-1] for c in m["invocations"]] == ["a", "b"] and m["command"][-1] == "b"
    assert combine_manifests(m, {})["invocations"] == m["invocations"]  # folding nothing in changes nothing
