"""The run directory: safe checkpoint loading, attempts that keep their own files, resumes that
keep the run's settings, one trainer per directory, and exit codes of an interrupted run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlvr.errors import RlvrError
from rlvr.trainer import Trainer
from procs import alive
from tiny import tiny_cfg

ROOT = Path(__file__).resolve().parents[1]


def rows(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


class _Payload:
    """Pickles as a call that writes a marker file: what a crafted trainer_state.pt would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "ran"))


def test_crafted_trainer_state_is_refused_and_does_not_run(tmp_path):
    cfg = tiny_cfg(tmp_path)
    ckpt = Path(cfg.trainer.output_dir) / "checkpoints" / "step_5"
    (ckpt / "policy").mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"step": 5, "payload": _Payload(marker)}, ckpt / "trainer_state.pt")
    with pytest.raises(RlvrError, match=r"trainer_state.pt: refusing to load") as e:
        Trainer(cfg, resume=True)
    assert "\n" not in str(e.value)
    assert not marker.exists()


def test_checkpoint_state_loads_with_weights_only(tmp_path):
    cfg = tiny_cfg(tmp_path, **{"algorithm.preset": "ppo", "trainer.total_steps": 1,
                                "algorithm.value_warmup_steps": 0})
    Trainer(cfg).train()
    st = torch.load(Path(cfg.trainer.output_dir) / "checkpoints" / "step_1" / "trainer_state.pt",
                    weights_only=True)
    assert st["step"] == 1 and st["critic"] is not None


def test_fresh_start_moves_the_earlier_attempts_checkpoints_with_its_logs(tmp_path):
    from evals.harness import resolve_checkpoint

    first = tiny_cfg(tmp_path, **{"trainer.total_steps": 2, "trainer.checkpoint_every": 1})
    run = Path(first.trainer.output_dir)
    Trainer(first).train()
    (run / "eval_items.jsonl").write_text("{}\n")
    (run / "provenance.json").write_text("{}\n")
    again = tiny_cfg(tmp_path, **{"trainer.total_steps": 1})
    Trainer(again).train()  # a fresh start (no --resume) in the used directory
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_1"]
    old = run / "attempts" / "1"
    assert sorted(p.name for p in (old / "checkpoints").iterdir()) == ["step_1", "step_2"]
    for name in ("metrics.jsonl", "summary.json", "config.yaml", "eval_items.jsonl", "provenance.json"):
        assert (old / name).exists(), name
    assert not (run / "eval_items.jsonl").exists()
    assert (old / "provenance.json").read_text() == "{}\n"  # the earlier attempt's, moved with it
    assert json.loads((run / "provenance.json").read_text())["starts"][0]["step"] == 0  # this attempt's own
    assert json.loads((run / "summary.json").read_text())["steps"] == 1
    assert Path(resolve_checkpoint(run)).parent.name == "step_1"  # rlvr eval RUN_DIR: this attempt's
    assert Trainer(again, resume=True).step == 1


def test_resume_refuses_other_training_settings_and_lists_them(tmp_path):
    base = {"trainer.total_steps": 2}
    cfg = tiny_cfg(tmp_path, **base)
    run = Path(cfg.trainer.output_dir)
    Trainer(cfg).train(max_steps=1)
    saved = (run / "config.yaml").read_text()
    other = tiny_cfg(tmp_path, **base, **{"trainer.lr": 2e-3, "trainer.seed": 1, "algorithm.preset": "rloo"})
    with pytest.raises(RlvrError) as e:
        Trainer(other, resume=True)
    msg = str(e.value)
    assert "\n" not in msg and "--force-resume" in msg
    for key in ("trainer.lr", "trainer.seed", "algorithm.preset"):
        assert key in msg, key
    assert "trainer.total_steps" not in msg
    assert (run / "config.yaml").read_text() == saved  # not overwritten
    # budgets, cadences and logging may change
    ok = tiny_cfg(tmp_path, **{"trainer.total_steps": 3, "trainer.eval_every": 1, "trainer.checkpoint_every": 1,
                               "trainer.max_samples": 100, "trainer.progress": True})
    assert Trainer(ok, resume=True).step == 1
    # with a schedule, total_steps sets the learning rate of every later step
    sched = tiny_cfg(tmp_path / "s", **{"trainer.total_steps": 2, "trainer.lr_schedule": "cosine"})
    Trainer(sched).train(max_steps=1)
    longer = tiny_cfg(tmp_path / "s", **{"trainer.total_steps": 4, "trainer.lr_schedule": "cosine"})
    with pytest.raises(RlvrError, match=r"trainer.total_steps 2 -> 4"):
        Trainer(longer, resume=True)


def test_forced_resume_is_recorded_in_the_run_dir(tmp_path):
    cfg = tiny_cfg(tmp_path, **{"trainer.total_steps": 2})
    run = Path(cfg.trainer.output_dir)
    Trainer(cfg).train(max_steps=1)
    other = tiny_cfg(tmp_path, **{"trainer.total_steps": 2, "trainer.lr": 2e-3})
    tr = Trainer(other, force_resume=True)
    assert tr.step == 1
    (row,) = rows(run / "resume_forced.jsonl")
    assert row["step"] == 1 and row["changed"] == {"trainer.lr": [1e-3, 2e-3]}


def _wait_for(cond, timeout=60.0):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_a_second_trainer_on_a_locked_run_dir_is_refused_naming_the_holder(tmp_path):
    cfg = tiny_cfg(tmp_path)
    run = Path(cfg.trainer.output_dir)
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, pathlib; from rlvr.rundir import lock_run_dir\n"
        f"lock_run_dir({str(run)!r}); pathlib.Path({str(ready)!r}).write_text('x'); time.sleep(120)")],
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert _wait_for(ready.exists)
        with pytest.raises(RlvrError, match=rf"{run.name} is in use by another process \(pid {holder.pid}"):
            Trainer(cfg)
    finally:
        holder.kill()
        holder.wait()
    trainer = Trainer(cfg)  # the kernel dropped the dead holder's lock
    trainer.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_compare_child_dies_with_a_killed_parent(tmp_path):
    import signal

    pid_file = tmp_path / "child.pid"
    child = f"import os, time, pathlib; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); time.sleep(120)"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import sys; from evals.compare import run_child\n"
        f"run_child([sys.executable, '-c', {child!r}])")], env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert _wait_for(lambda: pid_file.exists() and pid_file.read_text())
        pid = int(pid_file.read_text())
        assert alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_for(lambda: not alive(pid), timeout=10), "the child outlived its killed parent"
    finally:
        if pid_file.exists() and pid_file.read_text() and alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_an_eval_due_at_an_interrupted_step_runs_after_resume(tmp_path):
    import signal

    from rlvr.commands.train import harness_evaluator

    cfg = tiny_cfg(tmp_path, **{"trainer.total_steps": 4, "trainer.eval_every": 2, "data.eval": "arithmetic:add2",
                                "data.eval_limit": 2})
    run = Path(cfg.trainer.output_dir)
    trainer = Trainer(cfg, evaluator=harness_evaluator)
    fired = []

    def ctrl_c_during_step_2(*_):
        if trainer.step == 1 and not fired:  # inside the second step's forward passes
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    trainer.policy.register_forward_hook(ctrl_c_during_step_2)
    summary = trainer.train()
    assert fired and summary["stop_reason"] == "SIGINT" and trainer.step == 2
    assert not (run / "eval.jsonl").exists() or rows(run / "eval.jsonl") == []
    trainer.close()
    Trainer(cfg, resume=True, evaluator=harness_evaluator).train()
    evals = rows(run / "eval.jsonl")
    assert [r["step"] for r in evals] == [2, 4]  # step 2's eval is not lost
    assert all(r["eval/timeouts"] == 0 and r["eval/crashes"] == 0 for r in evals)  # scoring counts logged
    assert json.loads((run / "summary.json").read_text())["final_eval/timeouts"] == 0


def _ctrl_c_inside_an_eval(trainer, when):
    """An evaluator that sends this process SIGINT from inside the model's forward passes of the
    eval ``when(step, final)`` picks, and records which evals ran to the end."""
    import signal

    from rlvr.commands.train import harness_evaluator

    state = {"evaluating": None, "fired": [], "finished": []}

    def evaluator(tr, final):
        state["evaluating"] = (tr.step, final)
        try:
            res = harness_evaluator(tr, final)
        finally:
            state["evaluating"] = None
        state["finished"].append((tr.step, final))
        return res

    def hook(*_):
        e = state["evaluating"]
        if e is not None and when(*e) and not state["fired"]:
            state["fired"].append(e)
            os.kill(os.getpid(), signal.SIGINT)

    trainer.evaluator = evaluator
    trainer.policy.register_forward_hook(hook)
    return state


def test_ctrl_c_during_a_periodic_eval_stops_the_run_at_once_and_the_resume_redoes_that_eval(tmp_path):
    """A first Ctrl-C inside an eval does not wait for it to finish (a final eval of 1,024 items
    takes half an hour on a CPU): the run stops with a checkpoint, and the resumed run evaluates that
    step first and then trains exactly as an uninterrupted run does."""
    from rlvr.commands.train import harness_evaluator

    over = {"trainer.total_steps": 4, "trainer.eval_every": 2, "data.eval": "arithmetic:add2", "data.eval_limit": 4}
    ref_cfg = tiny_cfg(tmp_path / "ref", **over)
    Trainer(ref_cfg, evaluator=harness_evaluator).train()
    cfg = tiny_cfg(tmp_path, **over)
    run = Path(cfg.trainer.output_dir)
    trainer = Trainer(cfg, evaluator=harness_evaluator)
    state = _ctrl_c_inside_an_eval(trainer, lambda step, final: step == 2 and not final)
    summary = trainer.train()
    assert state["fired"] == [(2, False)] and (2, False) not in state["finished"]
    assert summary["stop_reason"] == "SIGINT" and trainer.step == 2
    assert not (run / "eval.jsonl").exists() or rows(run / "eval.jsonl") == []
    assert (run / "checkpoints" / "step_2" / "trainer_state.pt").is_file() and not (run / "summary.json").exists()
    trainer.close()
    again = Trainer(cfg, resume=True, evaluator=harness_evaluator)  # cut short again: still due after
    state = _ctrl_c_inside_an_eval(again, lambda step, final: step == 2 and not final)
    assert again.train()["stop_reason"] == "SIGINT" and state["fired"] == [(2, False)] and not state["finished"]
    again.close()
    Trainer(cfg, resume=True, evaluator=harness_evaluator).train()
    assert [r["step"] for r in rows(run / "eval.jsonl")] == [2, 4]
    ref = Path(ref_cfg.trainer.output_dir)
    for got, want in zip(rows(run / "metrics.jsonl"), rows(ref / "metrics.jsonl"), strict=True):
        assert got["step"] == want["step"] and got["loss/policy"] == pytest.approx(want["loss/policy"], abs=1e-6)
    for got, want in zip(rows(run / "eval.jsonl"), rows(ref / "eval.jsonl"), strict=True):
        assert got["eval/pass@1"] == want["eval/pass@1"]


def test_ctrl_c_during_the_final_eval_stops_at_once_and_the_resume_runs_only_that_eval(tmp_path):
    from rlvr.commands.train import harness_evaluator

    cfg = tiny_cfg(tmp_path, **{"trainer.total_steps": 2, "data.eval": "arithmetic:add2", "data.eval_limit": 4})
    run = Path(cfg.trainer.output_dir)
    trainer = Trainer(cfg, evaluator=harness_evaluator)
    state = _ctrl_c_inside_an_eval(trainer, lambda step, final: final)
    summary = trainer.train()
    assert state["fired"] == [(2, True)] and state["finished"] == []
    assert summary["stop_reason"] == "SIGINT" and not (run / "summary.json").exists()
    assert not (run / "eval_items.jsonl").exists()
    assert (run / "checkpoints" / "step_2" / "trainer_state.pt").is_file()
    trainer.close()
    steps_before = len(rows(run / "metrics.jsonl"))
    again = Trainer(cfg, resume=True, evaluator=harness_evaluator)
    summary = again.train()
    assert again.step == 2 and len(rows(run / "metrics.jsonl")) == steps_before  # no step trained again
    assert summary["stop_reason"] == "total_steps" and summary["final_eval/pass@1"] is not None
    assert json.loads((run / "summary.json").read_text())["final_eval/pass@1"] == summary["final_eval/pass@1"]
    assert [r["step"] for r in rows(run / "eval.jsonl")] == [2]
    assert len(rows(run / "eval_items.jsonl")) == 4


def _recipe(tmp_path, steps):
    verifier = tmp_path / "parity.py"
    verifier.write_text("def score(completion, reference):\n    return float(len(completion) % 2 == 0)\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: {name: tiny-random}\ndata: {train: 'arithmetic:add2', train_limit: 64}\n"
        "rollout: {n: 4, max_new_tokens: 6}\n"
        f"reward: {{workers: 0, verifier: '{verifier}:score'}}\n"
        f"trainer: {{total_steps: {steps}, prompts_per_step: 2, micro_batch_size: 4, lr: 1.0e-3,"
        " progress: false, tensorboard: false}\n")
    return recipe


@pytest.mark.parametrize("sig,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_train_stopped_by_a_signal_checkpoints_and_exits_with_its_code(tmp_path, sig, code):
    import signal

    recipe = _recipe(tmp_path, steps=500)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rlvr.cli", "train", str(recipe), f"trainer.output_dir={run}"],
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text(), 300)
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err[-2000:]
    step = rows(run / "metrics.jsonl")[-1]["step"]
    assert (run / "checkpoints" / f"step_{step}" / "trainer_state.pt").is_file()
    assert not (run / "summary.json").exists()


def test_a_checkpoint_of_the_earlier_format_still_resumes(tmp_path):
    """Earlier versions stored numpy's RNG state as a tuple holding an array: still loadable."""
    import numpy as np

    from rlvr.checkpoint import load_state, set_rng_state

    cfg = tiny_cfg(tmp_path, **{"trainer.total_steps": 2})
    Trainer(cfg).train(max_steps=1)
    path = Path(cfg.trainer.output_dir) / "checkpoints" / "step_1" / "trainer_state.pt"
    st = torch.load(path, weights_only=True)
    np.random.seed(3)
    st["rng"]["numpy"] = np.random.get_state()
    torch.save(st, path)
    expected = np.random.rand()
    set_rng_state(load_state(path.parent)["rng"])
    assert np.random.rand() == expected
    assert Trainer(cfg, resume=True).step == 1


def test_keep_checkpoints_leaves_the_newest_and_a_resume_from_them_matches(tmp_path):
    """trainer.keep_checkpoints=2 with a checkpoint every step: after 4 steps only step_3 and step_4
    are left; resuming at step 4 and training to 5 gives the metrics of an uninterrupted 5-step run."""
    kept = tiny_cfg(tmp_path / "kept", **{"trainer.total_steps": 4, "trainer.checkpoint_every": 1,
                                          "trainer.keep_checkpoints": 2})
    run = Path(kept.trainer.output_dir)
    Trainer(kept).train()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_3", "step_4"]
    longer = tiny_cfg(tmp_path / "kept", **{"trainer.total_steps": 5, "trainer.checkpoint_every": 1,
                                            "trainer.keep_checkpoints": 2})
    Trainer(longer, resume=True).train()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_4", "step_5"]
    straight = tiny_cfg(tmp_path / "straight", **{"trainer.total_steps": 5})
    Trainer(straight).train()
    a = rows(run / "metrics.jsonl")[-1]
    b = rows(Path(straight.trainer.output_dir) / "metrics.jsonl")[-1]
    assert a["step"] == b["step"] == 5
    timing = {k for k in a if k.startswith("time/") or k.endswith("_s")}
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}


def test_keep_checkpoints_must_not_be_negative(tmp_path):
    with pytest.raises(RlvrError, match="trainer.keep_checkpoints"):
        tiny_cfg(tmp_path, **{"trainer.keep_checkpoints": -1})


# ----------------------------------------------------------------------------- writes a crash cannot tear
class _DiskFull:
    """``open`` for (over)writing files under ``root`` that stores half of what is written, then fails
    as a full disk does (a crash mid-write leaves the same half file). Appends still work."""

    def __init__(self, real, root: Path):
        self.real, self.root = real, str(root)

    def __call__(self, file, mode="r", *args, **kwargs):
        f = self.real(file, mode, *args, **kwargs)
        if "w" in mode and str(file).startswith(self.root):
            write = f.write

            def half(data):
                write(data[: len(data) // 2])
                f.flush()
                raise OSError(28, "No space left on device")

            f.write = half
        return f


@pytest.fixture
def disk_full(monkeypatch):
    import builtins
    import io

    def arm(root: Path) -> None:
        fake = _DiskFull(builtins.open, root)
        monkeypatch.setattr(builtins, "open", fake)
        monkeypatch.setattr(io, "open", fake)
    return arm


def test_a_write_that_fails_half_way_leaves_no_torn_file(tmp_path, disk_full):
    """summary.json marks a run finished (``rlvr compare`` skips it), config.yaml is read back on
    resume, the logs trimmed at a resume are rewritten, compare.json and the base eval are read back
    by the next compare: a write cut off half-way (full disk, a kill) must leave each file either
    whole as before or absent, never torn."""
    from rlvr.config import from_dict, save_config
    from rlvr.rundir import RunDir

    run = tmp_path / "run"
    run.mkdir()
    log = [json.dumps({"step": s}) for s in range(1, 7)]
    (run / "metrics.jsonl").write_text("".join(x + "\n" for x in log))
    (run / "config.yaml").write_text("name: before\n")
    (tmp_path / "bench.json").write_text('{"x": 1, "history": []}')
    d = RunDir(run, is_main=True)
    disk_full(tmp_path)
    with pytest.raises(OSError):
        d.write_summary({"preset": "grpo", "seed": 0, "steps": 16})
    assert not (run / "summary.json").exists()  # not taken for a finished run
    with pytest.raises(OSError):
        d.trim_logs_after(3)
    assert (run / "metrics.jsonl").read_text() == "".join(x + "\n" for x in log)  # nothing lost
    assert (run / "metrics.jsonl.after_checkpoint").read_text() == "".join(x + "\n" for x in log[3:])
    with pytest.raises(OSError):
        save_config(from_dict({"name": "after"}), run / "config.yaml")
    assert (run / "config.yaml").read_text() == "name: before\n"
    from rlvr.rundir import write_atomic  # what compare.json and the base eval are written with

    with pytest.raises(OSError):
        write_atomic(run / "compare.json", json.dumps({"presets": ["grpo"]}))
    assert not (run / "compare.json").exists()
    from rlvr.bench import write_result  # a benchmark's JSON keeps its history: a torn one lost it

    with pytest.raises(OSError):
        write_result(tmp_path / "bench.json", {"x": 2})
    assert json.loads((tmp_path / "bench.json").read_text()) == {"x": 1, "history": []}
    # no temporary file left behind
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "metrics.jsonl", "metrics.jsonl.after_checkpoint"]


class _CrashMidDelete(Exception):
    """What a kill part-way through deleting a directory tree leaves behind, as an exception."""


def _rmtree_that_dies_half_way(real):
    """shutil.rmtree that deletes ``policy/`` of a checkpoint (its exported weights) and then dies,
    as a kill part-way through the deletion of a large tree does (the rest is left)."""
    def rmtree(path, *args, **kwargs):
        path = Path(path)
        if (path / "trainer_state.pt").is_file() and (path / "policy").is_dir():
            real(path / "policy")
            raise _CrashMidDelete(str(path))
        return real(path, *args, **kwargs)
    return rmtree


def _whole(ckpt: Path) -> bool:
    return (ckpt / "trainer_state.pt").is_file() and any((ckpt / "policy").glob("*.safetensors"))


@pytest.mark.parametrize("crash", ["delete", "rename"])
def test_a_crash_while_a_checkpoint_replaces_one_of_its_step_leaves_a_whole_one(tmp_path, monkeypatch, crash):
    """A resumed run that stops at the step it resumed from (a run resumed for its final eval does)
    saves that step again. A kill while the earlier copy is deleted, or before the new one is in
    place, must leave a whole checkpoint of that step for the next resume: never none, never one
    with its weights half deleted."""
    import shutil

    import rlvr.checkpoint as ck
    from rlvr.checkpoint import latest_checkpoint, load_state

    cfg = tiny_cfg(tmp_path, **{"trainer.total_steps": 1})
    trainer = Trainer(cfg)
    trainer.train()
    run = Path(cfg.trainer.output_dir)
    assert _whole(run / "checkpoints" / "step_1")
    if crash == "delete":
        monkeypatch.setattr(ck.shutil, "rmtree", _rmtree_that_dies_half_way(shutil.rmtree))
    else:
        real = Path.rename

        def rename(self, target):
            if self.name.startswith(".tmp_step_"):
                raise _CrashMidDelete(str(self))
            return real(self, target)
        monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(_CrashMidDelete):
        trainer.save(123.0)
    monkeypatch.undo()
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and _whole(ckpt), sorted(p.name for p in (run / "checkpoints").iterdir())
    assert load_state(ckpt)["step"] == 1
    trainer.close()
    again = Trainer(cfg, resume=True)  # resumes, and its own save tidies what the crash left
    assert again.step == 1
    again.save(124.0)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_1"]
    assert _whole(run / "checkpoints" / "step_1") and load_state(run / "checkpoints" / "step_1")["elapsed_s"] == 124.0
    again.close()


def test_a_crash_while_old_checkpoints_are_pruned_leaves_none_half_deleted(tmp_path, monkeypatch):
    import shutil

    import rlvr.checkpoint as ck
    from rlvr.checkpoint import complete_checkpoints

    cfg = tiny_cfg(tmp_path, **{"trainer.total_steps": 2, "trainer.checkpoint_every": 1, "trainer.keep_checkpoints": 1})
    trainer = Trainer(cfg)
    monkeypatch.setattr(ck.shutil, "rmtree", _rmtree_that_dies_half_way(shutil.rmtree))
    with pytest.raises(_CrashMidDelete):
        trainer.train()  # step_2 is written, then the removal of step_1 dies half-way
    monkeypatch.undo()
    run = Path(cfg.trainer.output_dir)
    listed = complete_checkpoints(run)
    assert listed and all(_whole(p) for _, p in listed), sorted(p.name for p in (run / "checkpoints").iterdir())
    assert listed[-1][0] == 2
    trainer.close()


def test_an_eval_called_after_a_run_stopped_by_a_signal_still_evaluates(tmp_path):
    """trainer.evaluate() outside train() is the user's own call: a signal that stopped an earlier
    train() does not cut it short."""
    from rlvr.commands.train import harness_evaluator

    cfg = tiny_cfg(tmp_path, **{"trainer.total_steps": 2, "data.eval": "arithmetic:add2", "data.eval_limit": 4})
    trainer = Trainer(cfg, evaluator=harness_evaluator)
    _ctrl_c_inside_an_eval(trainer, lambda step, final: final)
    assert trainer.train()["stop_reason"] == "SIGINT"
    res = trainer.evaluate(final=False)
    assert res is not None and res["n"] == 4
    trainer.close()
