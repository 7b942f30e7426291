"""A committed study re-renders from its committed raw records to the same numbers.

docs/results/render.sh unpacks each study's records and runs the documented ``rlvr report``
command; here the stock-preset study is rendered that way into a temporary directory and every
number of its summary.json (per run and the statistics) is compared with the committed one, and
the tables of report.md with the committed report.md.
"""
import json
import math
import tarfile
from pathlib import Path

import pytest

from evals.report import make_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def _same(a, b, where="summary"):
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))}"
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert (a is None and b is None) or (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12), \
            f"{where}: {a} vs committed {b}"
    else:
        assert a == b, f"{where}: {a!r} vs committed {b!r}"


def _tables(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("|")]


@pytest.mark.slow
def test_stock_study_rerenders_from_its_records(tmp_path):
    with tarfile.open(RESULTS / "add2_algos" / "runs.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    out = tmp_path / "report"
    res = make_report(tmp_path / "add2_algos", out, presets=["grpo", "ppo", "dr_grpo"], reference="grpo",
                      title="2-digit addition, one commit: stock presets grpo, ppo, dr_grpo")
    fresh = json.loads(res["summary"].read_text())
    committed = json.loads((RESULTS / "add2_stock" / "summary.json").read_text())
    _same(fresh["runs"], committed["runs"], "runs")
    _same(fresh["stats"], committed["stats"], "stats")
    _same(fresh["base"], committed["base"], "base")
    assert _tables(res["markdown"].read_text()) == _tables((RESULTS / "add2_stock" / "report.md").read_text())


def test_the_powered_studys_status_line_is_what_its_records_say():
    """docs/results/add2_powered/README.md's status line is printed from the rendered report by
    docs/results/status.py: the words carry the numbers the records give, nothing typed by hand."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(RESULTS / "status.py"), "add2_powered", "--planned", "10"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert out.startswith("20 of 20 runs finished") and "equivalent within ±0.02 at 10 seeds" in out
    assert out in (RESULTS / "add2_powered" / "README.md").read_text()


def test_chain4d1s_status_line_is_what_its_records_say_and_marks_only_an_interim_look():
    """docs/results/chain4d1/README.md's status line is status.py's output too; before the declared
    number of seeds (5) its interval is marked as an interim look, at 5 it is the study's verdict."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(RESULTS / "status.py"), "chain4d1", "--planned", "5"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert out in (RESULTS / "chain4d1" / "README.md").read_text()
    runs = [r for r in json.loads((RESULTS / "chain4d1" / "summary.json").read_text())["runs"] if r.get("finished", True)]
    seeds = {r["seed"] for r in runs if r["preset"] == "ctrl_critic"} & {r["seed"] for r in runs if r["preset"] == "ctrl_group"}
    assert ("interim" in out) == (2 <= len(seeds) < 5)


@pytest.mark.parametrize("study", ["add2_critic_fit", "chain4d1"])
def test_critic_fit_tables_are_what_their_records_say(study, tmp_path):
    """The critic-only fits' tables in each study's README are printed by its critic_fit.py from the
    committed records (critic_fit_runs.tar.gz), row for row."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(RESULTS / study / "critic_fit.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("|")]
    assert len(rows) >= 4 and any(tmp_path.iterdir())  # header, rule, a row per fit; the figure
    readme = (RESULTS / study / "README.md").read_text()
    for row in rows:
        assert row in readme, row


def test_add2_algos_packed_line_is_what_its_records_say():
    """docs/results/add2_algos/README.md's "packed so far" sentence is packed.py's output from the
    committed runs.tar.gz: re-packing without updating the README (or the reverse) fails here."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(RESULTS / "packed.py"), "add2_algos", "--planned", "40"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert out.split(" of the 40 runs")[0].isdigit()
    assert out in (RESULTS / "add2_algos" / "README.md").read_text()
