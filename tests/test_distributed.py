"""Two real processes on CPU (gloo), started by ``accelerate launch`` as users do: every decision
that changes the number of collective calls is agreed, so rank-dependent data, a non-finite loss
on one rank, a token budget and a signal to one rank all end within a bounded time; and the global
normalisers make a 2-process step equal to the 1-process step on the same data."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from procs import alive, failure_text

ROOT = Path(__file__).resolve().parents[1]

RECIPE = ("model: {name: tiny-random}\n"
          "data: {train: 'arithmetic:add2', train_limit: 64}\n"
          "rollout: {n: 4, max_new_tokens: 6}\n"
          "reward: {workers: 0, verifier: 'REWARDS:FN'}\n"
          "trainer: {total_steps: 2, prompts_per_step: 2, micro_batch_size: 4, lr: 1.0e-3,"
          " progress: false, tensorboard: false, dist_timeout_s: 60}\n")

# verifiers that know which process scores them (workers=0: scoring runs in the trainer process)
REWARDS = '''
import os

def _rank():
    rank = os.environ.get("RANK", "0")
    pid_dir = os.environ.get("RLVR_TEST_PIDS")
    if pid_dir:  # written whole, then renamed: a reader never sees an empty or partial file
        path = os.path.join(pid_dir, rank)
        with open(f"{path}.{os.getpid()}", "w") as f:
            f.write(str(os.getpid()))
        os.replace(f"{path}.{os.getpid()}", path)
    return int(rank)

def rank0_flat(completion, reference):
    """Rank 0: every group has equal rewards (all filtered); rank 1: rewards vary."""
    return 0.0 if _rank() == 0 else float(len(completion) % 2)

def rank0_half_mixed(completion, reference):
    """Rank 1: length parity (almost every group mixed); rank 0: parity for about half of the
    prompts, 0 for the others (DAPO refills on rank 0 only). Each call is noted in <pids>/calls_<rank>."""
    rank = _rank()
    pid_dir = os.environ.get("RLVR_TEST_PIDS")
    if pid_dir:
        open(os.path.join(pid_dir, f"calls_{rank}"), "a").write("x")
    if rank == 1 or sum(map(ord, str(reference))) % 2 == 0:
        return float(len(completion) % 2)
    return 0.0

def rank0_ctrl_c_in_eval(completion, reference):
    """Length parity; rank 0 sends itself SIGINT at its 15th scoring call: after the recipe check's 2
    and its first step's 8, inside the first eval's 16. Each call is noted in <pids>/calls_<rank>."""
    import signal

    rank = _rank()
    path = os.path.join(os.environ["RLVR_TEST_PIDS"], f"calls_{rank}")
    with open(path, "a") as f:
        f.write("x")
    if rank == 0 and os.path.getsize(path) == 15:
        os.kill(os.getpid(), signal.SIGINT)
    return float(len(completion) % 2)

def rank1_only(completion, reference):
    """Rank 1: 0 or 1 (weighted 3e38 in the recipe, its policy loss overflows); rank 0: 0."""
    return float(len(completion) % 2) if _rank() == 1 else 0.0
'''


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _launcher() -> str:
    return shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"


def _launch_cmd(*args: str) -> list[str]:
    # accelerate 1.x starts several CPU processes through its torchrun path (--multi_gpu); with no
    # GPU the processes form a gloo group
    return [_launcher(), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), *args]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path) -> dict[str, str]:
    # tests/ on the path: the subprocess scripts import the recorded-rollout helpers of tests/replay.py;
    # a rank that aborts (SIGABRT, SIGSEGV) prints every thread's Python stack, so a failure says where
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1",
            "RLVR_TEST_PIDS": str(tmp_path / "pids"), "PYTHONFAULTHANDLER": "1"}


_LAUNCHED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_leftover_ranks():
    """A test that fails half-way (an assertion before its processes ended) must not leave two
    training processes running for the rest of the suite: kill each launch's whole session."""
    yield
    while _LAUNCHED:
        _kill_launch(_LAUNCHED.pop())


def _kill_launch(proc: subprocess.Popen) -> tuple[str, str]:
    """SIGKILL to the launcher's session and to every process that carries the launch's token in its
    environment: torch's elastic agent starts each rank in a session of its own, so the launcher's
    session alone misses the ranks, and they hold the launcher's pipes open (``communicate`` then
    waits for as long as they train). Returns what the launch printed."""
    token = f"RLVR_TEST_LAUNCH={proc.launch_token}".encode()
    pids = {proc.pid} | {int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _has_env(d, token)}
    for pid in pids:
        for kill in (os.killpg, os.kill):  # its session (a rank's own children), then itself
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    if proc.stdout is None or proc.stdout.closed:  # already read to the end
        proc.wait()
        return "", ""
    return proc.communicate()


def _has_env(proc_dir: Path, entry: bytes) -> bool:
    try:
        return entry in (proc_dir / "environ").read_bytes().split(b"\0")
    except OSError:  # ended meanwhile, or not ours
        return False


def _wait_for_first_step(proc: subprocess.Popen, tmp_path: Path, out: Path, timeout: float = 600) -> None:
    """Until rank 1 has scored and process 0 has logged a step (a loaded machine: minutes)."""
    metrics = out / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().strip() and (tmp_path / "pids" / "1").exists():
            return
        time.sleep(0.5)
    if proc.poll() is not None:
        pytest.fail(f"the run ended (rc {proc.returncode}) before its first step\n{_kill_launch(proc)[1][-3000:]}")
    pytest.fail(f"no step logged after {timeout:.0f} s")


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """``accelerate launch ...`` in a session of its own, tagged with a token in its environment (the
    launcher and its ranks are killed together by :func:`_kill_launch`: on a timeout in
    :func:`_finish`, and by :func:`_no_leftover_ranks` after a test)."""
    token = uuid.uuid4().hex
    proc = subprocess.Popen(cmd, env={**env, "RLVR_TEST_LAUNCH": token}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    proc.launch_token = token  # every process of the launch inherits it (see _kill_launch)
    _LAUNCHED.append(proc)
    return proc


def _run_launch(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """subprocess.run for ``accelerate launch``: on a timeout the launcher *and* its ranks are killed
    (subprocess.run would kill only the launcher and leave the ranks running)."""
    rc, out, err = _finish(_start(cmd, env), timeout)
    return subprocess.CompletedProcess(cmd, rc, out, err)


def _train(tmp_path: Path, fn: str, *overrides: str, weight: str | None = None) -> tuple[subprocess.Popen, Path]:
    (tmp_path / "pids").mkdir(exist_ok=True)
    (tmp_path / "rank_rewards.py").write_text(REWARDS)
    recipe = tmp_path / "tiny.yaml"
    spec = f"{tmp_path / 'rank_rewards.py'}:{fn}"
    text = RECIPE.replace("REWARDS:FN", spec)
    if weight is not None:  # verifier scores are clamped to [0, 1]; a weight scales them
        text = text.replace(f"verifier: '{spec}'", f"verifiers: {{'{spec}': {weight}}}")
    recipe.write_text(text)
    out = tmp_path / "run"
    cmd = _launch_cmd("-m", "rlvr.cli", "train", str(recipe), f"trainer.output_dir={out}", *overrides)
    return _start(cmd, _env(tmp_path)), out


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = _kill_launch(proc)
        pytest.fail(f"still running after {timeout:.0f} s (a rank waits in a collective?)\n{err[-3000:]}")
    return proc.returncode, out, err


def _checkpoint_steps(out: Path) -> list[int]:
    return sorted(int(p.name.split("_")[1]) for p in (out / "checkpoints").glob("step_*"))


def test_rank_dependent_zero_std_filtering_with_a_token_budget(tmp_path):
    """Rank 0 filters every group away, rank 1 keeps some: both run the same mini-batches (rank 0
    on padding rows) and stop at the same step on the global token count."""
    proc, out = _train(tmp_path, "rank0_flat", "algorithm.filter_zero_std_groups=true",
                       "trainer.total_steps=50", "trainer.max_tokens=150")
    rc, stdout, err = _finish(proc, 300)
    assert rc == 0, failure_text(err)
    rows = read_jsonl(out / "metrics.jsonl")
    steps = [r["step"] for r in rows]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 2
    # true global counts: each step adds the responses of both ranks (2 ranks x 2 prompts x 4)
    prev = 0
    for r in rows:
        assert r["tokens"] - prev == round(r["response_length/mean"] * 16)
        prev = r["tokens"]
    assert rows[-2]["tokens"] < 150 <= rows[-1]["tokens"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "max_tokens" and summary["steps"] == steps[-1]
    assert all(r["filtered_samples"] >= 0.5 for r in rows)  # rank 0 drops all of its samples
    assert any("grad_norm" in r for r in rows)  # rank 1's groups were trained on
    assert _checkpoint_steps(out)[-1] == steps[-1]


def test_dapo_refills_on_one_rank_with_a_sample_budget_stop_both_at_the_same_step(tmp_path):
    """Rank 0 needs dynamic-sampling refills, rank 1 does not: the sample count was per process, so
    rank 0 reached trainer.max_samples first and rank 1 waited in a collective until the timeout.
    The count is global: both stop at the same step, and it is every sample either rank generated."""
    proc, out = _train(tmp_path, "rank0_half_mixed", "algorithm.preset=dapo", "trainer.total_steps=50",
                       "trainer.max_samples=100", "algorithm.dynamic_sampling_max_rounds=2",
                       "trainer.dist_timeout_s=45")
    rc, _, err = _finish(proc, 400)
    assert rc == 0, failure_text(err)
    rows = read_jsonl(out / "metrics.jsonl")
    steps = [r["step"] for r in rows]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "max_samples" and summary["steps"] == steps[-1]
    assert rows[-2]["samples"] < 100 <= rows[-1]["samples"] == summary["samples"]
    assert any(r["dapo/rounds"] > 0 for r in rows)  # rank 0 refilled (a mean over ranks)
    # every scored completion is a generated sample, less the 2 start-up probes of each rank
    calls = sum(len((tmp_path / "pids" / f"calls_{r}").read_text()) for r in (0, 1))
    assert summary["samples"] == calls - 2 * 2


def test_nonfinite_loss_on_one_rank_skips_the_step_on_both(tmp_path):
    proc, out = _train(tmp_path, "rank1_only", "algorithm.preset=dr_grpo", "trainer.max_bad_steps=10",
                       weight="3.0e+38")
    rc, _, err = _finish(proc, 300)
    assert rc == 0, failure_text(err)
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    bad = [r for r in rows if r.get("nonfinite_loss")]
    assert bad, "rank 1's loss was expected to overflow"
    # the skip is agreed: both ranks report it (mean 1.0) and no optimizer step ran that step
    assert all(r["nonfinite_loss"] == 1.0 and "grad_norm" not in r for r in bad)


def test_dpo_with_no_pairs_on_one_rank_trains_on_the_other_without_a_hang(tmp_path):
    """Rank 0's groups are all-equal (no pair), rank 1's are mixed: both run the same optimizer
    steps (rank 0 with an empty share) instead of rank 1 waiting in a collective until the timeout."""
    proc, out = _train(tmp_path, "rank0_flat", "algorithm.preset=dpo")
    rc, _, err = _finish(proc, 300)
    assert rc == 0, failure_text(err)
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all("grad_norm" in r and r["dpo/pairs"] > 0 for r in rows), rows  # mean of 0 and rank 1's count
    assert all(r["dpo/groups_without_pair"] >= 0.5 for r in rows)  # rank 0: every group


def test_sigterm_to_one_rank_stops_both_at_the_same_step_with_a_checkpoint(tmp_path):
    proc, out = _train(tmp_path, "rank0_flat", "trainer.total_steps=100000")
    metrics = out / "metrics.jsonl"
    _wait_for_first_step(proc, tmp_path, out)
    os.kill(int((tmp_path / "pids" / "1").read_text()), signal.SIGTERM)
    t0 = time.time()
    rc, stdout, err = _finish(proc, 120)
    # every rank exits 143 (stopped by SIGTERM, checkpointed); the launcher reports it as a failure
    assert rc != 0 and "exitcode  : 143" in err and "exitcode  : 1 " not in err, err[-3000:]
    assert time.time() - t0 < 120
    rows = read_jsonl(metrics)
    last = rows[-1]["step"]
    assert [r["step"] for r in rows] == list(range(1, last + 1))
    assert f"stopped by SIGTERM at step {last}" in stdout
    assert _checkpoint_steps(out)[-1] == last
    assert not (out / "summary.json").exists()  # interrupted, resumable


def test_ctrl_c_to_process_0_during_an_eval_stops_both_at_once_and_the_resume_redoes_the_eval(tmp_path):
    """Process 0 evaluates while the other waits in a barrier: a first Ctrl-C there drops the eval
    and stops both processes after the barrier (the eval is not run to its end first), with a
    checkpoint that says the eval is still due; the resumed run evaluates that step first."""
    evals = ("data.eval=arithmetic:add2", "data.eval_limit=16", "trainer.eval_every=1", "trainer.total_steps=2")
    proc, out = _train(tmp_path, "rank0_ctrl_c_in_eval", *evals)
    rc, stdout, err = _finish(proc, 300)
    assert rc != 0 and "exitcode  : 130" in err and "exitcode  : 1 " not in err, err[-3000:]
    assert (tmp_path / "pids" / "calls_0").read_text() == "x" * 15  # the eval was cut short
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1]
    assert not (out / "eval.jsonl").exists() or read_jsonl(out / "eval.jsonl") == []
    assert _checkpoint_steps(out) == [1] and not (out / "summary.json").exists()
    (tmp_path / "pids" / "calls_0").write_text("x" * 100)  # no second signal
    recipe = tmp_path / "tiny.yaml"
    rc, stdout, err = _finish(_start(_launch_cmd("-m", "rlvr.cli", "train", str(recipe), f"trainer.output_dir={out}",
                                                 *evals, "--resume"), _env(tmp_path)), 300)
    assert rc == 0, failure_text(err)
    assert [r["step"] for r in read_jsonl(out / "eval.jsonl")] == [1, 2]
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2]
    assert (out / "summary.json").exists()


def test_a_dead_rank_ends_the_other_within_the_collective_timeout(tmp_path):
    """A rank killed outright (as after a second signal) never leaves its peer waiting forever."""
    proc, out = _train(tmp_path, "rank0_flat", "trainer.total_steps=100000", "trainer.dist_timeout_s=30")
    _wait_for_first_step(proc, tmp_path, out)
    os.kill(int((tmp_path / "pids" / "1").read_text()), signal.SIGKILL)
    rc, _, _ = _finish(proc, 120)
    assert rc != 0


def test_killing_a_launch_kills_its_ranks(tmp_path):
    """The clean-up after a failed or timed-out test reaches the ranks, not only the launcher: torch's
    elastic agent starts each rank in a session of its own, so killing the launcher's session left
    both ranks training (here: for 100,000 steps) beside the rest of the suite."""
    proc, out = _train(tmp_path, "rank0_flat", "trainer.total_steps=100000")
    _wait_for_first_step(proc, tmp_path, out)
    deadline = time.time() + 60
    while not (tmp_path / "pids" / "0").exists() and time.time() < deadline:
        time.sleep(0.2)
    ranks = [int((tmp_path / "pids" / r).read_text()) for r in ("0", "1")]
    assert all(map(alive, ranks))
    _kill_launch(proc)
    deadline = time.time() + 30
    while any(map(alive, ranks)) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(map(alive, ranks)), [pid for pid in ranks if alive(pid)]


# ---------------------------------------------------------------- global normalisers
STEP_SCRIPT = '''
import sys
import torch
from replay import record_or_replay
from rlvr.config import load_config
from rlvr.trainer import Trainer

recipe, record, out, per_rank = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
PRESETS = [("grpo", []), ("reinforce_pp", []), ("ppo", []),
           ("ctrl_group", ["algorithm.filter_zero_std_groups=true"]), ("dpo", [])]

for name, extra in PRESETS:
    cfg = load_config(recipe, [f"algorithm.preset={name}", f"trainer.prompts_per_step={per_rank}",
                               f"trainer.output_dir={out}/{name}", *extra])
    tr = Trainer(cfg)
    record_or_replay(tr, f"{record}/{name}.pkl", per_rank)  # 1 process records, 2 replay their halves
    before = {k: v.detach().clone() for k, v in tr.policy.state_dict().items()}
    m = tr.train_step()
    if tr.is_main:
        state = {k: v.detach().clone() for k, v in tr.policy.state_dict().items()}
        if tr.critic is not None:
            state |= {"critic." + k: v.detach().clone() for k, v in tr.critic.state_dict().items()}
        torch.save({"metrics": {k: v for k, v in m.items() if isinstance(v, float)}, "state": state,
                    "before": before},
                   f"{out}/{name}.pt")
'''


def test_two_processes_equal_one_process_on_the_same_data(tmp_path):
    """Sequence-mean and token-mean losses, a batch-level baseline (reinforce_pp), a critic with GAE
    (ppo, two epochs), whitened advantages with zero-std filtering and uneven kept rows (ctrl_group)
    and DPO on each process's own verifier pairs (dpo): one step on 2 processes x 2 prompts gives the
    loss and weights of 1 process x 4 prompts on the same samples."""
    (tmp_path / "rank_rewards.py").write_text(
        REWARDS + "\ndef parity(completion, reference):\n    return float(len(completion) % 2)\n")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE.replace("REWARDS:FN", f"{tmp_path / 'rank_rewards.py'}:parity")
                      .replace("lr: 1.0e-3", "lr: 1.0e-2"))
    script = tmp_path / "step.py"
    script.write_text(STEP_SCRIPT)
    (tmp_path / "rec").mkdir()
    env = _env(tmp_path)
    single = subprocess.run([sys.executable, str(script), str(recipe), str(tmp_path / "rec"), str(tmp_path / "one"), "4"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, failure_text(single.stderr)
    multi = _run_launch(_launch_cmd(str(script), str(recipe), str(tmp_path / "rec"), str(tmp_path / "two"), "2"),
                        env, 600)
    assert multi.returncode == 0, failure_text(multi.stderr)
    for name in ("grpo", "reinforce_pp", "ppo", "ctrl_group", "dpo"):
        one = torch.load(tmp_path / "one" / f"{name}.pt")
        two = torch.load(tmp_path / "two" / f"{name}.pt")
        for k in ("loss/policy", "loss/value", "grad_norm", "value/grad_norm"):
            if k in one["metrics"]:
                assert two["metrics"][k] == pytest.approx(one["metrics"][k], rel=1e-5, abs=1e-6), (name, k)
        moved = max(float((v - one["before"][k]).abs().max()) for k, v in one["state"].items() if k in one["before"])
        assert moved > 5e-3, name  # Adam's first step moves weights by about lr = 1e-2
        for k, v in one["state"].items():
            # equal up to summation order: Adam's first step is lr * g / (|g| + eps), so the few entries
            # with |g| near eps may differ by a fraction of lr (measured: 2e-4 = lr / 50 on one entry of
            # 4096 under dpo); a wrong update is off by about lr. All others agree to float precision.
            torch.testing.assert_close(two["state"][k], v, rtol=0, atol=5e-3, msg=f"{name}: {k}")
            assert float(((two["state"][k] - v).abs() > 1e-6).float().mean()) < 5e-3, (name, k)


EXIT_SCRIPT = '''
import atexit, os, sys
import torch.distributed as dist

out = sys.argv[2]

def note():  # registered before the Trainer: atexit runs it after the trainer's own hooks
    open(os.path.join(out, "rank" + os.environ.get("RANK", "0")), "w").write(str(dist.is_initialized()))

atexit.register(note)

from rlvr.config import load_config
from rlvr.trainer import Trainer

tr = Trainer(load_config(sys.argv[1], [f"trainer.output_dir={out}/run", "trainer.total_steps=1"]))
tr.train_step()
# no teardown here, as a user's own script would end
'''


def test_a_script_that_never_ends_the_process_group_exits_cleanly(tmp_path):
    """A 2-process script that builds a Trainer and just returns: the group is torn down before
    static destruction (which once aborted a rank: "terminate called without an active exception"),
    and both ranks exit 0."""
    (tmp_path / "rank_rewards.py").write_text(
        REWARDS + "\ndef parity(completion, reference):\n    return float(len(completion) % 2)\n")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE.replace("REWARDS:FN", f"{tmp_path / 'rank_rewards.py'}:parity"))
    script = tmp_path / "exit.py"
    script.write_text(EXIT_SCRIPT)
    (tmp_path / "pids").mkdir()
    done = _run_launch(_launch_cmd(str(script), str(recipe), str(tmp_path)), _env(tmp_path), 600)
    assert done.returncode == 0, failure_text(done.stderr)
    assert "terminate called" not in done.stderr
    assert (tmp_path / "rank0").read_text() == "False" and (tmp_path / "rank1").read_text() == "False"


LATE_RELEASE_SCRIPT = '''
import os, sys, threading
import torch
import torch.distributed as dist
from rlvr.collective import Collective, end_process_group

dist.init_process_group("gloo")
rank = dist.get_rank()
Collective(2, rank, torch.device("cpu"))  # what a Trainer registers: the group's teardown at exit
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 8))  # keeps the group referenced
# make the race of interest likely: the main thread keeps the GIL unless it blocks, and gloo's threads
# share its one core at the lowest priority, so a worker drops its last finished work (which takes
# the GIL) long after the collective returned
sys.setswitchinterval(30.0)
os.sched_setaffinity(0, {rank % os.cpu_count()})
for tid in os.listdir("/proc/self/task"):
    if int(tid) != threading.get_native_id():
        os.setpriority(os.PRIO_PROCESS, int(tid), 19)
out = [None, None]
dist.all_gather_object(out, {"rank": rank})
if sys.argv[1] == "train":  # rlvr train's own end: a barrier, then the teardown
    end_process_group(wait_for_peers=True)
# else: a script that just returns, as a user's would
'''


@pytest.mark.parametrize("ending", ["script", "train"])
def test_exit_waits_for_gloos_threads_to_drop_their_last_work(tmp_path, ending):
    """A group that something still references (here a DDP model) outlives destroy_process_group with
    its worker threads; each drops its last finished work after the collective returned, and that
    takes the GIL. Once the interpreter has begun to finalize, that aborts the process ("terminate
    called without an active exception", SIGABRT, after all its work was done). Measured with this
    script and the earlier teardown (a plain destroy_process_group at exit): 4 aborted launches in 6;
    rlvr.collective's teardown lets those threads finish first (0 in 6 here; 0 in 59 launches of a
    looser variant, where a plain destroy aborted 5 in 79)."""
    script = tmp_path / "late.py"
    script.write_text(LATE_RELEASE_SCRIPT)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(_free_port()), str(script), ending],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, failure_text(done.stderr)
    assert "terminate called" not in done.stderr
