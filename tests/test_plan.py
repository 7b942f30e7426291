"""``rlvr plan``: seeds and items a comparison needs, from pilot runs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evals.plan import make_plan
from rlvr.errors import ConfigError, RlvrError

ROOT = Path(__file__).resolve().parents[1]


def test_plan_from_the_committed_controlled_study():
    """The headline's pilot (3 seeds, per-seed scores only): its own interval and the power of a
    3-seed study to find +/-0.02, as the outside audit computed them (about 0.31)."""
    p = make_plan(ROOT / "docs/results/add2_controlled_pilot/summary.json", 0.02, ["ctrl_critic", "ctrl_group"])
    pil = p["pilot"]
    assert pil["level"] == "seeds" and pil["items"] == 256
    assert np.allclose(pil["per_seed_difference"], [6 / 256, 0, 0])
    assert pil["interval_95"][0] == pytest.approx(-0.026, abs=1e-3) and pil["interval_95"][1] == pytest.approx(0.041, abs=1e-3)
    assert pil["verdict"].startswith("inconclusive")
    row3 = next(r for r in p["table"] if r["seeds"] == 3)
    assert row3["power_detect"] == pytest.approx(0.31, abs=0.02)
    assert p["seeds_needed"]["256"]["detect"] > 3


def _write(root, preset, seed, correct):
    d = root / preset / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({"preset": preset, "seed": seed, "final_eval/pass@1": float(np.mean(correct))}))
    with open(d / "eval_items.jsonl", "w") as f:
        for i, c in enumerate(correct):
            f.write(json.dumps({"id": f"i{i}", "greedy/pass@1": float(c)}) + "\n")


def test_plan_from_per_item_records_projects_to_more_items(tmp_path):
    rng = np.random.default_rng(0)
    q = rng.beta(0.7, 1.3, size=300)  # item difficulty
    for s in range(4):
        for preset, bump in (("a", 0.02), ("b", 0.0)):
            _write(tmp_path, preset, s, rng.random(300) < np.clip(q + bump, 0, 1))
    p = make_plan(tmp_path, 0.03, ["a", "b"], items=[300, 1200], seeds=[4, 10])
    assert p["pilot"]["level"] == "items" and p["pilot"]["items"] == 300
    c = p["pilot"]["components"]
    assert c["res"] > 0.1  # 0/1 scores: most of the variance is seed x item
    by = {(r["seeds"], r["items"]): r for r in p["table"]}
    assert by[(10, 1200)]["power_detect"] > by[(4, 1200)]["power_detect"] > by[(4, 300)]["power_detect"]
    assert by[(10, 1200)]["half_width_95"] < by[(4, 300)]["half_width_95"]


def test_plan_errors_are_one_line(tmp_path):
    with pytest.raises(RlvrError, match="no such study"):
        make_plan(tmp_path / "nope", 0.02)
    with pytest.raises(ConfigError, match="--effect"):
        make_plan(ROOT / "docs/results/add2_controlled_pilot/summary.json", 2.0)
    with pytest.raises(ConfigError, match="--presets"):
        make_plan(ROOT / "docs/results/add2_controlled_pilot/summary.json", 0.02, ["ctrl_critic", "nope"])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "rlvr.cli", "plan", str(ROOT / "docs/results/add2_controlled_pilot/summary.json"),
                           "--effect", "0.02", "--presets", "ctrl_critic,ctrl_group"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0 and "seeds to find" in proc.stdout


def test_a_plan_from_a_report_of_a_study_in_progress_leaves_unfinished_runs_out(tmp_path):
    """A report rendered while a study runs lists the unfinished runs with their last logged eval (a
    mid-training score); its summary.json marks them, and a plan read from it uses finished runs only."""
    from evals.report import PANELS, make_report

    root = tmp_path / "study"
    for s in range(3):
        _write(root, "a", s, [1, 0, 1, 1] if s else [1, 1, 1, 1])
        _write(root, "b", s, [1, 0, 0, 1])
    for preset, v in (("a", 0.0), ("b", 1.0)):  # seed 3: still training, last eval far from the rest
        d = root / preset / "seed3"
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(f"algorithm:\n  preset: {preset}\ntrainer:\n  seed: 3\n")
        (d / "eval.jsonl").write_text(json.dumps({"step": 8, "eval/pass@1": v, "eval/n": 4}) + "\n")
    rep = make_report(root, out_dir=tmp_path / "rep", panels=tuple(p for p in PANELS if p.name == "reward"))
    runs = json.loads(rep["summary"].read_text())["runs"]
    assert {(r["preset"], r["seed"]): r["finished"] for r in runs} == {
        **{(p, s): True for p in "ab" for s in range(3)}, ("a", 3): False, ("b", 3): False}
    p = make_plan(rep["summary"], 0.1, ["a", "b"])
    assert p["pilot"]["seeds"] == [0, 1, 2]
    assert np.allclose(p["pilot"]["per_seed_difference"], [0.5, 0.25, 0.25])
