"""``rlvr report`` on a synthetic comparison directory written in the run-directory format."""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evals.report import PANELS, make_report, read_jsonl, seed_curves
from rlvr.errors import DataError, RlvrError

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")

STEPS, BATCH, RESP = 30, 64, 40  # steps, samples per step, mean response tokens
FEW_PANELS = tuple(p for p in PANELS if p.name in ("reward", "explained_variance"))  # faster tests


def write_run(d: Path, preset: str, seed: int, *, critic: bool, truncate: bool = False) -> dict:
    """A run directory with realistic-looking numbers; returns its summary."""
    rng = random.Random(f"{preset}-{seed}")
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"name: quickstart\nalgorithm:\n  preset: {preset}\ntrainer:\n  seed: {seed}\n")
    rows, evals, t = [], [], 0.0
    for step in range(1, STEPS + 1):
        t += 11.0 + rng.random() * 2 + (3.0 if critic else 0.0)
        acc = min(0.9, 0.2 + 0.02 * step + rng.gauss(0, 0.02))
        inside = 0.9 + rng.random() * 0.05
        row = {
            "step": step, "samples": step * BATCH, "tokens": step * BATCH * RESP, "elapsed_s": round(t, 3),
            "reward/mean": acc, "reward/std": 0.4, "accuracy": acc, "kl/old": 0.002 + 0.001 * rng.random(),
            "kl/ref": 0.001 * step, "entropy": 1.2 - 0.01 * step, "response_length/mean": RESP + rng.gauss(0, 3),
            "truncation_rate": 0.05, "zero_std_groups": 0.3 - 0.005 * step,
            "clip/pos_high": (1 - inside) * 0.3, "clip/pos_low": (1 - inside) * 0.2,
            "clip/neg_high": (1 - inside) * 0.2, "clip/neg_low": (1 - inside) * 0.3, "clip/inside": inside,
            "loss/policy": rng.gauss(0, 0.01), "grad_norm": 0.5, "memory/peak_gb": 3.1 + 0.01 * step,
        }
        if critic:
            row["loss/value"] = 0.2 / step
            row["value/explained_variance"] = 0.6 * (1 - math.exp(-step / 8))
        if step % 10 == 0:
            row["gradvar/none"] = 4.0 + rng.random()
            row["gradvar/group"] = 1.0 + 0.5 * rng.random()
            if critic:
                row["gradvar/critic"] = 1.5 + 0.5 * rng.random()
            evals.append({"step": step, "samples": step * BATCH, "elapsed_s": round(t, 3),
                          "eval/pass@1": round(acc - 0.05, 4), "eval/n": 64})
        rows.append(row)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if truncate:
        text += json.dumps({"step": STEPS + 1, "samples": 9999})[:20]  # killed mid-write
    (d / "metrics.jsonl").write_text(text)
    (d / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    summary = {"final_eval/pass@1": evals[-1]["eval/pass@1"], "elapsed_s": round(t, 1),
               "samples": STEPS * BATCH, "tokens": STEPS * BATCH * RESP,
               "peak_memory_gb": 3.1 + 0.01 * STEPS + seed * 0.1,
               "preset": preset, "seed": seed}
    (d / "summary.json").write_text(json.dumps(summary))
    return summary


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    summaries = {}
    for preset, critic in (("ppo", True), ("grpo", False)):
        for seed in (0, 1):
            s = write_run(root / preset / f"seed{seed}", preset, seed, critic=critic,
                          truncate=(preset == "grpo" and seed == 1))
            summaries.setdefault(preset, []).append(s)
    (root / "base").mkdir()  # the untrained model's eval, as `rlvr compare` writes it
    (root / "base" / "summary.json").write_text(json.dumps({"preset": "base", "final_eval/pass@1": 0.1875,
                                                            "eval/n": 64, "elapsed_s": 20.5}))
    runs = {f"{p}/seed{k}": "done" for p in ("ppo", "grpo") for k in (0, 1)}
    runs["grpo/seed1"] = "failed (exit 1)"
    (root / "compare.json").write_text(json.dumps({"recipe": "recipes/quickstart.yaml", "presets": ["ppo", "grpo"],
                                                   "seeds": [0, 1], "budget": {"samples": STEPS * BATCH},
                                                   "runs": runs}))
    return root, summaries


@pytest.fixture(scope="module")
def report(compare_dir):
    root, _ = compare_dir
    with pytest.warns(UserWarning, match="truncated last line"):
        return make_report(root)


def _ci(values):
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    return m, 12.706 * s / math.sqrt(len(values))  # t_{0.975, 1}


def test_report_writes_valid_pngs(report):
    names = {p.name for p in report["plots"]}
    for name in ("reward", "accuracy", "eval_accuracy", "kl", "entropy", "response_length", "clip",
                 "gradvar", "explained_variance", "losses"):
        assert f"{name}.png" in names
    for p in report["plots"]:
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 15_000, p


def test_report_tables_have_the_right_numbers(report, compare_dir):
    _, summaries = compare_dir
    md = report["markdown"].read_text()
    page = report["html"].read_text()
    for preset, ss in summaries.items():
        acc = [s["final_eval/pass@1"] for s in ss]
        cell = f"{sum(acc) / 2:.3f} ({min(acc):.3f}-{max(acc):.3f})"  # mean (min-max over seeds): no t interval
        wall = [s["elapsed_s"] for s in ss]
        mem = f"{max(s['peak_memory_gb'] for s in ss):.2f}"
        assert f"| {preset} | 2 | {cell} |" in md
        assert f"<tr><td>{preset}</td><td>2</td><td>{cell}</td>" in page
        assert f"{sum(wall) / 2:,.0f} ({min(wall):,.0f}-{max(wall):,.0f})" in md and mem in md
        assert f"{STEPS * BATCH * RESP:,}" in md and f"{STEPS * BATCH:,}" in md
    # presets keep compare.json order, and the HTML embeds the plots
    assert md.index("| ppo | 2") < md.index("| grpo | 2")
    assert page.count('src="data:image/png;base64,') == len(report["plots"])
    assert "truncated last line" in md  # the killed run is reported, not hidden
    assert "run grpo/seed1 failed (exit 1)" in md
    assert "Base model before training: eval pass@1 = 0.188 (n=64)." in md and 'id="base"' in page
    assert "| base |" not in md  # the base eval is a reference, not a preset
    assert "![reward](reward.png)" in md and (report["out_dir"] / "reward.png").is_file()


def test_single_run_dir_and_missing_metrics(tmp_path):
    write_run(tmp_path / "run", "grpo", 3, critic=False)
    res = make_report(tmp_path / "run", tmp_path / "out", panels=FEW_PANELS)
    md = res["markdown"].read_text()
    assert "| grpo | 1 |" in md
    assert not (tmp_path / "out" / "explained_variance.png").exists()  # GRPO logs no critic
    assert any("Critic: explained variance" in n for n in res["notes"])


def test_seed_curves_average_with_a_t_band():
    x = np.array([0.0, 1.0, 2.0])
    g, m, lo, hi = seed_curves([(x, np.array([0.0, 1.0, 2.0])), (x, np.array([2.0, 3.0, 4.0]))])
    assert np.array_equal(g, x) and np.allclose(m, [1, 2, 3])
    assert np.allclose(hi - m, 12.706 * math.sqrt(2) / math.sqrt(2), atol=1e-3)  # t(1) * sd / sqrt(2)


def test_bad_inputs_give_one_line_errors(tmp_path):
    with pytest.raises(RlvrError, match="no such run directory"):
        make_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RlvrError, match="no run found"):
        make_report(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2,,}\n{"step": 3}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:2: invalid JSON"):
        read_jsonl(bad / "metrics.jsonl", [])
    # the CLI prints one line and exits 2
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "rlvr.cli", "report", str(bad)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "metrics.jsonl:2" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)")
def test_html_renders_in_headless_chromium(report, tmp_path):
    from PIL import Image

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = report["html"].as_uri()
    shot = tmp_path / "shot.png"
    subprocess.run([str(CHROMIUM), *flags, f"--screenshot={shot}", "--window-size=1200,2000", url],
                   capture_output=True, timeout=120, check=True)
    dom = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert '<table id="presets">' in dom and "<td>ppo</td>" in dom and "<td>grpo</td>" in dom
    assert dom.count("data:image/png;base64,") == len(report["plots"])
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (2000, 1200)
    colours = np.unique(img.reshape(-1, 3), axis=0)
    assert len(colours) > 200, f"screenshot looks blank ({len(colours)} colours)"
    # the plots drew: matplotlib's default blue and orange preset lines are on screen
    for rgb in ((31, 119, 180), (255, 127, 14)):
        assert np.any(np.all(np.abs(img.astype(int) - rgb) <= 12, axis=-1)), f"no plot pixels of colour {rgb}"
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_preset_and_seed_come_from_config_when_summary_is_missing(tmp_path):
    """An unfinished run has no summary.json: preset/seed come from config.yaml, finals from the logs."""
    d = tmp_path / "cmp" / "whatever" / "run_a"
    write_run(d, "grpo", 7, critic=False)
    (d / "summary.json").unlink()
    res = make_report(tmp_path / "cmp", panels=FEW_PANELS)
    md = res["markdown"].read_text()
    assert "| grpo | 7 | whatever/run_a | 30 |" in md and "| no |" in md
    assert any("no summary.json" in n for n in res["notes"])


def test_wall_clock_mean_reaches_every_seeds_final_value():
    """Seeds end at different wall-clock times: the mean line runs to the slowest seed and ends at
    the mean of the final values (a finished run keeps its final accuracy), never stopping where
    the fastest seed stopped."""
    a = (np.array([0.0, 10.0, 20.0]), np.array([0.2, 0.4, 0.6]))
    b = (np.array([0.0, 15.0, 30.0, 40.0]), np.array([0.2, 0.3, 0.3, 0.2]))
    g, m, lo, hi = seed_curves([a, b], hold_last=True)
    assert g.max() == 40.0 and m[-1] == pytest.approx((0.6 + 0.2) / 2)
    assert np.all(lo <= m + 1e-12) and np.all(m <= hi + 1e-12)
    g, m, _, _ = seed_curves([a, b], hold_last=False)  # per-step metrics: the late part is one seed's
    assert m[-1] == pytest.approx(0.2)


def _items(path, correct, sampled=None):
    with open(path, "w") as f:
        for i, c in enumerate(correct):
            row = {"id": f"item{i}", "greedy/pass@1": float(c)}
            if sampled is not None:
                row["sampled/pass@1"] = float(sampled[i])
            f.write(json.dumps(row) + "\n")


def test_final_accuracy_uses_paired_seed_level_intervals(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cmp"
    hard = rng.random(128) < 0.5
    for preset, bonus in (("ctrl_critic", 0), ("ctrl_group", 20)):
        for seed in (0, 1, 2):
            d = root / preset / f"seed{seed}"
            write_run(d, preset, seed, critic=preset == "ctrl_critic")
            c = hard.copy()
            c[:bonus] = True  # ctrl_group solves 20 more items on every seed
            _items(d / "eval_items.jsonl", c, sampled=c * 0.5)
    (root / "base").mkdir()
    (root / "base" / "summary.json").write_text(json.dumps({"preset": "base", "final_eval/pass@1": 0.1, "eval/n": 128}))
    _items(root / "base" / "eval_items.jsonl", np.zeros(128), sampled=np.zeros(128))
    (root / "compare.json").write_text(json.dumps({"presets": ["ctrl_critic", "ctrl_group"], "differences": {
        "algorithm.estimator": {"ctrl_critic": "gae", "ctrl_group": "grpo"}}}))
    res = make_report(root, panels=FEW_PANELS)
    st = res["stats"]
    assert st["items"] == 128 and st["metrics"] == ["greedy/pass@1", "sampled/pass@1"]
    for preset, e in ((p, v["greedy/pass@1"]) for p, v in st["presets"].items()):
        assert 0 <= e["lo"] <= e["mean"] <= e["hi"] <= 1
    e = st["vs_reference"]["ctrl_group"]["greedy/pass@1"]
    assert abs(e["mean"] - (20 - hard[:20].sum()) / 128) < 1e-9 and e["lo"] > 0  # paired: shared items cancel
    assert e["verdict"] == "better" and e["df"] > 2  # no seed spread: the items' part decides
    md = res["markdown"].read_text()
    assert "ctrl_group - ctrl_critic" in md and "better" in md and "Satterthwaite" in md
    assert "| algorithm.estimator | ctrl_critic: \"gae\", ctrl_group: \"grpo\" |" in md
    summary = json.loads(res["summary"].read_text())
    assert {(r["preset"], r["seed"]) for r in summary["runs"]} == {(p, s) for p in ("ctrl_critic", "ctrl_group") for s in (0, 1, 2)}
    assert summary["stats"]["vs_base"]["ctrl_group"]["greedy/pass@1"]["lo"] > 0


def test_ladder_report_compares_each_rung_with_the_one_before(tmp_path):
    """``--steps``: every rung against the previous one (paired, same items and seeds) and the
    settings that change at each rung, in the order given."""
    rng = np.random.default_rng(1)
    root = tmp_path / "ladder"
    base_correct = rng.random(96) < 0.3
    solved = {"reinforce": 0, "reinforce_baseline": 10, "a2c": 16}  # extra items each rung solves
    for preset, extra in solved.items():
        for seed in (0, 1):
            d = root / preset / f"seed{seed}"
            write_run(d, preset, seed, critic=preset == "a2c")
            if preset == "reinforce":  # started with an override that compare.json does not know of
                (d / "config.yaml").write_text((d / "config.yaml").read_text() + "  gradvar_every: 8\n")
            c = base_correct.copy()
            c[:extra] = True
            _items(d / "eval_items.jsonl", c)
    (root / "compare.json").write_text(json.dumps({"differences": {
        "algorithm.estimator": {"reinforce": "mc", "reinforce_baseline": "batch_mean", "a2c": "td"},
        "algorithm.critic": {"reinforce": False, "reinforce_baseline": False, "a2c": True}}}))
    unfinished = root / "grpo" / "seed0"  # a run of a preset the report leaves out: not its business
    write_run(unfinished, "grpo", 0, critic=False)
    (unfinished / "summary.json").unlink()
    res = make_report(root, panels=FEW_PANELS, presets=["reinforce", "reinforce_baseline", "a2c"], steps=True)
    assert not any("grpo" in n for n in res["notes"]), res["notes"]
    prev = res["stats"]["vs_previous"]
    d = prev["a2c"]["greedy/pass@1"]["mean"]
    assert prev["a2c"]["previous"] == "reinforce_baseline"
    assert abs(d - (base_correct[10:16] == 0).sum() / 96) < 1e-9  # the 6 items a2c adds over the rung below
    md = res["markdown"].read_text()
    assert "a2c - reinforce_baseline (one rung)" in md
    assert "reinforce_baseline - reinforce (one rung)" not in md  # reinforce is the reference: shown once
    assert "reinforce_baseline - reinforce |" in md
    assert '| reinforce_baseline -> a2c | algorithm.estimator: "batch_mean" -> "td"; algorithm.critic: false -> true |' in md
    assert "What each rung changes" in res["html"].read_text()
    # the settings come from what the runs recorded, not only from compare.json
    assert "| reinforce -> reinforce_baseline |" in md and "trainer.gradvar_every: 8 -> 0" in md
    assert ("| trainer.gradvar_every | reinforce: 8, reinforce_baseline: 0, a2c: 0 — does not change what is "
            "trained (a diagnostic); it adds to elapsed_s, not to train_s / train_cpu_s |") in md
    assert "trainer.gradvar_every: 8 -> 0 (does not change what is trained, see below)" in md
    # without --steps nothing of this appears
    plain = make_report(root, tmp_path / "plain", panels=FEW_PANELS, presets=["reinforce", "reinforce_baseline", "a2c"])
    assert "vs_previous" not in plain["stats"] and "one rung" not in plain["markdown"].read_text()


def test_the_preset_table_averages_finished_runs_only(tmp_path):
    """A study in progress: an unfinished run's last logged eval (often a subset's, mid-training) is
    not averaged with finished runs' final scores; the table says how many it left out, and a preset
    with no finished run shows its unfinished runs' last values, marked as such."""
    root = tmp_path / "study"
    done = [write_run(root / "ppo" / f"seed{k}", "ppo", k, critic=True) for k in (0, 1)]
    write_run(root / "ppo" / "seed2", "ppo", 2, critic=True)
    (root / "ppo" / "seed2" / "summary.json").unlink()
    (root / "ppo" / "seed2" / "eval.jsonl").write_text(json.dumps({"step": 10, "eval/pass@1": 0.99, "eval/n": 8}) + "\n")
    write_run(root / "grpo" / "seed0", "grpo", 0, critic=False)
    (root / "grpo" / "seed0" / "summary.json").unlink()
    (root / "grpo" / "seed0" / "eval.jsonl").write_text(json.dumps({"step": 10, "eval/pass@1": 0.5, "eval/n": 8}) + "\n")
    md = make_report(root, panels=FEW_PANELS)["markdown"].read_text()
    acc = [s["final_eval/pass@1"] for s in done]
    assert f"| ppo | 2 (+1 unfinished, not counted) | {sum(acc) / 2:.3f} ({min(acc):.3f}-{max(acc):.3f}) |" in md
    assert "| grpo | 0 finished (1 unfinished: last logged values) | 0.500 |" in md
    assert "| ppo | 2 | ppo/seed2 | 30 | 0.990 |" in md  # the runs table still shows every run as it stands


def test_held_fixed_settings_leave_out_an_empty_arms_table_and_the_arm_label():
    """A study without arms records ``arms: {}`` and ``arm: null`` in every run's config: neither is
    a setting the study held fixed, so neither is listed (the lr is)."""
    from types import SimpleNamespace

    from evals.report import shared_settings
    from rlvr.config import from_dict

    cfgs = [from_dict({}, [f"algorithm.preset={p}", "trainer.lr=3e-5"]).to_dict() for p in ("ppo", "grpo")]
    rows = shared_settings({"ppo": [SimpleNamespace(config=cfgs[0])], "grpo": [SimpleNamespace(config=cfgs[1])]}, {})
    keys = [k for k, _ in rows]
    assert ["trainer.lr", "3e-05"] in rows
    assert "arms" not in keys and "arm" not in keys and not any(k.startswith("arms.") for k in keys)


def test_a_kl_setting_that_differs_without_any_kl_term_is_marked_as_having_no_effect(tmp_path):
    """Stock grpo and ppo differ in the KL's estimator and placement; with kl_coef 0 in every run no
    KL term exists, so the report lists those differences with the reason they change nothing.
    With a KL term in one run they are listed plainly."""
    from evals.compare import inert_settings

    for coef_ppo, marked in ((0.0, True), (0.001, False)):
        root = tmp_path / f"kl{coef_ppo}"
        for preset, coef in (("grpo", 0.0), ("ppo", coef_ppo)):
            for seed in (0, 1):
                d = root / preset / f"seed{seed}"
                write_run(d, preset, seed, critic=preset == "ppo")
                (d / "config.yaml").write_text(f"name: s\nalgorithm:\n  preset: {preset}\n  kl_coef: {coef}\n"
                                               f"trainer:\n  seed: {seed}\n")
        res = make_report(root, panels=FEW_PANELS)
        md = res["markdown"].read_text()
        row = next(line for line in md.splitlines() if line.startswith("| algorithm.kl_placement |"))
        assert 'grpo: "loss", ppo: "reward"' in row
        assert ('"reward" — no effect: no run has a reference-KL term' in row) is marked, row
        inert = json.loads(res["summary"].read_text())["inert_settings"]
        assert set(inert) == ({"algorithm.kl_kind", "algorithm.kl_placement"} if marked else set())
        assert not any(line.startswith("| algorithm.loss_agg |") and "no effect" in line for line in md.splitlines())
    # the rule itself: a KL term is kl_placement "reward"/"loss" with kl_coef > 0 or the adaptive controller
    none = {"algorithm.kl_placement": "none", "algorithm.kl_coef": 0.5}
    off = {"algorithm.kl_placement": "loss", "algorithm.kl_coef": 0.0}
    adaptive = {"algorithm.kl_placement": "reward", "algorithm.kl_coef": 0.0, "algorithm.adaptive_kl": True}
    gradvar = {"trainer.gradvar_every", "trainer.gradvar_splits"}
    assert set(inert_settings({"a": none, "b": off})) == {"algorithm.kl_kind", "algorithm.kl_placement"} | gradvar
    assert set(inert_settings({"a": off, "b": adaptive})) == gradvar and inert_settings({}) == {}


def test_a_manifest_set_aside_by_an_earlier_call_is_folded_in_and_each_page_shows_its_own_calls(tmp_path):
    """A study an older ``rlvr compare`` built in two calls: the first call's manifest was set aside
    as compare_*.json before the second rewrote compare.json with its own call alone. The report
    folds both together (runs, code, presets, every call), and a page of some presets shows the
    calls that made their runs, not the other call's command."""
    root = tmp_path / "cmp"
    for preset, critic in (("ppo", True), ("grpo", False)):
        for seed in (0, 1):
            write_run(root / preset / f"seed{seed}", preset, seed, critic=critic)
    first = ["rlvr", "compare", "r.yaml", "--seeds", "2", "--presets", "ppo"]
    second = ["rlvr", "compare", "r.yaml", "--seeds", "2", "--presets", "grpo"]
    (root / "compare_first.json").write_text(json.dumps({
        "recipe": "r.yaml", "presets": ["ppo"], "seeds": [0, 1], "command": first, "margin": 0.05,
        "code": {f"ppo/seed{k}": ["aaaaaaaaaaaa"] for k in (0, 1)}, "runs": {f"ppo/seed{k}": "done" for k in (0, 1)}}))
    (root / "compare.json").write_text(json.dumps({
        "recipe": "r.yaml", "presets": ["grpo"], "seeds": [0, 1], "command": second, "margin": 0.05,
        "code": {f"grpo/seed{k}": ["aaaaaaaaaaaa"] for k in (0, 1)}, "runs": {f"grpo/seed{k}": "done" for k in (0, 1)}}))

    def manifest_shown(out):
        text = (out / "report.md").read_text()
        return json.loads(text.split("## Comparison settings (compare.json)\n\n```json\n")[1].split("\n```")[0])

    make_report(root, tmp_path / "all", panels=FEW_PANELS)
    shown = manifest_shown(tmp_path / "all")
    assert shown["presets"] == ["ppo", "grpo"] and len(shown["runs"]) == len(shown["code"]) == 4
    assert [c["command"] for c in shown["invocations"]] == [first, second] and "command" not in shown
    make_report(root, tmp_path / "ppo", panels=FEW_PANELS, presets=["ppo"])
    shown = manifest_shown(tmp_path / "ppo")
    assert shown["presets"] == ["ppo"] and set(shown["runs"]) == {"ppo/seed0", "ppo/seed1"}
    assert [c["command"] for c in shown["invocations"]] == [first]
