"""Several presets x N seeds on matched budgets, in one directory: :func:`compare` (``rlvr compare``).

    rlvr compare recipes/quickstart.yaml                       # ppo vs grpo, 3 seeds
    rlvr compare recipes/ladder.yaml --ladder --seeds 2        # REINFORCE -> PPO ladder + trpo, grpo
    rlvr report runs/compare_quickstart

Matched budgets: every run gets the same prompts per step, samples per prompt and steps, so the
same number of generated samples (``trainer.max_samples``); ``--max-tokens`` also caps generated
response tokens and ``--max-time`` wall-clock seconds, identically for every run. Each run is a
subprocess (``rlvr train ... --resume``): a finished run (its ``summary.json`` exists) is never
redone, an interrupted one continues from its last checkpoint. The base model is evaluated once
on the same eval set, the same way, for reference.

Layout::

    OUT/compare.json              manifest: recipe, presets, seeds, budgets, run status, code, and
                                  every call that built the study ("invocations")
    OUT/base/summary.json         base-model eval
    OUT/<preset>/seed<k>/         one run directory each (config.yaml, metrics.jsonl, ...)
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rlvr.errors import ConfigError, RlvrError
from rlvr.rundir import write_atomic


@dataclass(frozen=True)
class Limits:
    """Caps every run of a study gets alike, besides its samples (``trainer.max_samples``): generated
    response tokens and wall-clock seconds (None: no cap)."""

    max_tokens: int | None = None
    max_time: float | None = None


def _run_overrides(cfg, preset: str, seed: int, run_dir: Path, limits: Limits) -> list[str]:
    """What one run adds to the study's command line: its preset (or arm: a named variant of a
    preset in the recipe's ``arms``, which sets the preset itself), seed, directory and budgets."""
    t, r = cfg.trainer, cfg.rollout
    budget = t.total_steps * t.prompts_per_step * r.n
    which = f"arm={preset}" if preset in cfg.arms else f"algorithm.preset={preset}"
    ov = [which, f"trainer.seed={seed}", f"trainer.output_dir={run_dir}", f"trainer.max_samples={budget}"]
    if limits.max_tokens:
        ov.append(f"trainer.max_tokens={limits.max_tokens}")
    if limits.max_time:
        ov.append(f"trainer.max_time_s={limits.max_time}")
    return ov


def arm_config(cfg, name: str):
    """``cfg`` with arm ``name`` of its ``arms`` applied (``cfg`` itself when ``name`` is a preset)."""
    from rlvr.config import from_dict

    if name not in cfg.arms:
        return cfg
    return from_dict({k: v for k, v in cfg.to_dict().items() if k != "arm"}, [f"arm={name}"])


def resolved_settings(cfg, preset: str) -> dict[str, object]:
    """Every setting of a run of ``preset`` under ``cfg``, flat (``{"algorithm.estimator": "gae",
    "trainer.lr": 4e-05, ...}``): the recipe's sections with the preset's fields resolved (the
    recipe's algorithm keys override the preset's, as in the run). ``preset`` may name one of the
    recipe's arms: its settings are applied first."""
    from rlvr.algorithms.presets import get_preset

    if preset in cfg.arms:
        cfg = arm_config(cfg, preset)
        preset = cfg.algorithm.preset
    built = get_preset(preset).with_overrides(**cfg.algorithm.overrides)
    d = cfg.to_dict()
    d["algorithm"] = {**{k: v for k, v in d["algorithm"].items() if k != "preset"},
                      **{k: v for k, v in built.to_dict().items() if k not in ("name", "description")}}
    return {f"{section}.{k}": v for section, values in d.items() if isinstance(values, dict)
            for k, v in values.items()}


def differing(per_preset: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """``{setting: {preset: value}}`` for the settings whose value is not the same for every preset
    (seeds and output directories differ by design and are left out)."""
    flat: dict[str, dict[str, object]] = {}
    for name, settings in per_preset.items():
        for k, v in settings.items():
            flat.setdefault(k, {})[name] = v
    skip = {"trainer.seed", "trainer.output_dir", "arm"}  # an arm's settings are listed themselves
    return {k: v for k, v in flat.items() if k not in skip and (
        len(v) < len(per_preset) or len({json.dumps(x, sort_keys=True, default=str) for x in v.values()}) > 1)}


def _reference_kl(settings: dict[str, object]) -> bool:
    """Whether a run with these resolved settings has a reference-KL term in its reward or loss:
    ``kl_placement`` "reward" or "loss" with ``kl_coef`` > 0 or the adaptive controller
    (:attr:`rlvr.algorithms.presets.Preset.needs_reference`, its KL part)."""
    coef = settings.get("algorithm.kl_coef") or 0
    return settings.get("algorithm.kl_placement", "none") != "none" and (
        (isinstance(coef, (int, float)) and coef > 0) or bool(settings.get("algorithm.adaptive_kl")))


def inert_settings(per_preset: dict[str, dict[str, object]]) -> dict[str, str]:
    """``{setting: why}`` for settings that may differ between these presets' runs but cannot change
    what any of them trains: the reference KL's estimator and placement when no run has a
    reference-KL term (kl_coef 0 and no adaptive controller): its coefficient is 0 wherever it
    would enter the reward or the loss; and the gradient-variance diagnostic's settings (it takes
    gradients and drops them, and the trainer's sampling and shuffling use per-step seeded
    generators: tests/test_trainer.py checks that runs with and without it train the same
    parameters), which cost time only, and that time is left
    out of a run's ``train_s`` and ``train_cpu_s``. A report lists such differences with the
    reason beside them, so a reader does not take them for part of what the comparison changes."""
    if not per_preset:
        return {}
    out = {k: "does not change what is trained (a diagnostic); it adds to elapsed_s, not to train_s / train_cpu_s"
           for k in ("trainer.gradvar_every", "trainer.gradvar_splits")}
    if not any(_reference_kl(s) for s in per_preset.values()):
        why = "no effect: no run has a reference-KL term (kl_coef 0 or kl_placement none in each)"
        out.update({"algorithm.kl_kind": why, "algorithm.kl_placement": why})
    return out


def settings_that_differ(cfg, presets: list[str]) -> dict[str, dict[str, object]]:
    """Every resolved setting (recipe + preset fields) whose value differs between the presets'
    runs: ``{"algorithm.estimator": {"ppo": "gae", "grpo": "grpo"}, ...}``. Seeds and output
    directories are not listed (they differ by design)."""
    return differing({name: resolved_settings(cfg, name) for name in presets})


def run_child(cmd: list[str], grace_s: float = 600.0) -> tuple[int, bool]:
    """Run one training run as a child process; returns (exit code, interrupted). See
    :func:`run_children`."""
    out: list[tuple[int, bool]] = []
    run_children([("run", cmd)], 1, lambda key, rc, interrupted: out.append((rc, interrupted)), grace_s=grace_s)
    return out[0]


def run_children(tasks: list[tuple[str, list[str]]], jobs: int, on_done, grace_s: float = 600.0,
                 env: dict[str, str] | None = None, on_start=None) -> bool:
    """Run ``(key, cmd)`` tasks as child processes, at most ``jobs`` at a time, in order; call
    ``on_done(key, exit code, interrupted)`` as each ends. Returns True when interrupted.

    Each child has its own session, so a Ctrl-C at the terminal reaches only this process, which
    forwards exactly one SIGINT to every running child: each trainer finishes its current step,
    checkpoints and exits (a second Ctrl-C is forwarded too and stops them at once); no new child
    starts. A child is killed only if it has not exited ``grace_s`` seconds after the last signal.
    SIGTERM is handled the same way. Children also die with this process if it is killed by
    anything (SIGKILL, SIGHUP, ...): they receive SIGTERM, so they checkpoint.
    """
    import signal

    from rlvr.rundir import die_with_parent

    pending = list(tasks)
    running: dict[str, subprocess.Popen] = {}
    received: list[float] = []  # when each signal arrived
    old = {}

    def _forward(signum, frame):
        received.append(time.monotonic())
        for proc in running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, _forward)
        except ValueError:  # not the main thread
            pass
    try:
        while pending or running:
            while pending and len(running) < jobs and not received:
                key, cmd = pending.pop(0)
                if on_start is not None:
                    on_start(key)
                running[key] = subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_parent(), env=env)
            if received and not running:
                break
            for key, proc in list(running.items()):
                rc = proc.poll()
                if rc is not None:
                    del running[key]
                    on_done(key, rc, bool(received))
            if received and time.monotonic() - received[-1] > grace_s:
                for proc in running.values():
                    proc.kill()
            time.sleep(0.2)
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
    return bool(received)


def _base_eval(cfg, out: Path) -> dict | None:
    dest = out / "base" / "summary.json"
    if dest.is_file():
        return json.loads(dest.read_text())
    if not cfg.data.eval:
        return None
    from evals.harness import evaluate, recipe_eval_settings
    from rlvr.data import load_eval_examples

    examples = load_eval_examples(cfg)  # the same held-out items as every run (data.eval_seed)
    dest.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # the same final eval as every run: greedy, plus trainer.final_eval_samples per item
    res = evaluate(cfg.model.name, examples, out_path=dest.parent / "eval_items.jsonl", progress=False,
                   **recipe_eval_settings(cfg, final=True, seed=0))
    summary = {"preset": "base", "final_eval/pass@1": res.get("greedy/pass@1", res["pass@1"]), "eval/n": res["n"],
               "elapsed_s": time.perf_counter() - t0,
               **{f"final_eval/{k}": v for k, v in res.items() if k.startswith("sampled/") and isinstance(v, (int, float))},
               **{f"final_eval/{k}": res[k] for k in ("timeouts", "crashes", "violations") if k in res}}
    write_atomic(dest, json.dumps(summary, indent=2))
    return summary


def study_runs(out: Path) -> list[str]:
    """``<preset>/seed<k>`` of every run directory already under a study directory ``out``."""
    return sorted(f"{d.parent.name}/{d.name}" for d in Path(out).glob("*/seed*")
                  if d.is_dir() and d.name[4:].isdigit())


def _read_manifest(path: Path) -> dict:
    """An earlier ``compare.json`` (empty when there is none); a damaged one is an error naming it,
    so that a study's record is never silently replaced."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a readable study manifest ({e}); move it aside to start the study afresh") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a readable study manifest (a JSON object was expected)")
    return data


def _names(value) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def combine_manifests(earlier: dict, later: dict) -> dict:
    """One study's manifest from two calls' (``later`` wrote after ``earlier``): ``later``'s fields,
    with the presets and seeds of both (earlier's first), every run's status and code (``later``'s
    where both name a run), both calls under ``invocations``, and ``earlier``'s base eval if
    ``later`` has none. ``rlvr compare`` folds its call into the directory's manifest this way, and
    the report folds in manifests an older ``rlvr compare`` left set aside (``compare_*.json``)."""
    def _mapping(m: dict, key: str) -> dict:
        return m.get(key) if isinstance(m.get(key), dict) else {}

    out = {**earlier, **later}
    out["presets"] = list(dict.fromkeys([*_names(earlier.get("presets")), *_names(later.get("presets"))]))
    out["seeds"] = sorted({s for m in (earlier, later) for s in (m.get("seeds") or []) if isinstance(s, int)})
    for key in ("runs", "code"):
        out[key] = {**_mapping(earlier, key), **_mapping(later, key)}
    out["invocations"] = [*_invocations(earlier), *_invocations(later)]
    if not isinstance(later.get("base"), dict) and isinstance(earlier.get("base"), dict):
        out["base"] = earlier["base"]
    return out


def _invocations(manifest: dict) -> list[dict]:
    """The calls an earlier manifest records: its ``invocations``, or (a manifest written before
    they were kept) the one call its top-level fields describe."""
    if isinstance(manifest.get("invocations"), list):
        return [i for i in manifest["invocations"] if isinstance(i, dict)]
    if manifest.get("command"):
        return [{k: manifest[k] for k in ("command", "recipe", "overrides", "presets", "seeds", "budget")
                 if k in manifest}]
    return []


def check_code(out: Path, keys: list[str], current: str | None, allow_mixed: bool) -> dict[str, list[str]]:
    """The code ids (:func:`rlvr.provenance.code_id`) of every run of the study that has started,
    ``{"<preset>/seed<k>": [ids]}``; raises unless every run (and this checkout, ``current``) ran the
    same code, or ``allow_mixed``."""
    from rlvr.provenance import run_code_ids

    found = {k: ids for k in keys if (ids := run_code_ids(out / k))}
    every = {c for ids in found.values() for c in ids} | ({current} if current else set())
    if len(every) > 1 and not allow_mixed:
        by = ", ".join(f"{k}: {'+'.join(v)}" for k, v in found.items())
        raise ConfigError(f"{out}: runs of this study were made with different code ({by}; this checkout: "
                          f"{current}); finish it with that code, start a new --out, or pass --allow-mixed-commits")
    return found


def compare(recipe: str | Path, overrides: Sequence[str], presets: Sequence[str], seeds: Sequence[int], *,
            cfg=None, out: str | Path | None = None, max_tokens: int | None = None, max_time: float | None = None,
            base_eval: bool = True, jobs: int = 1, margin: float | None = None, allow_mixed_commits: bool = False,
            command: Sequence[str] | None = None) -> dict:
    """Train every preset at every seed on ``recipe`` + ``overrides`` with matched budgets, each run a
    ``rlvr train ... --resume`` child process, ``jobs`` at a time, into ``out`` (default
    ``runs/compare_<recipe name>``); evaluate the base model once (``base_eval``). ``cfg``: the
    recipe already loaded (``load_config(recipe, overrides)``; loaded here when None). ``margin``:
    the equivalence margin, recorded before any run (default the recipe's). ``command``: what
    started the study, recorded in ``compare.json`` and by every run (default ``sys.argv``).

    Returns the manifest written to ``OUT/compare.json``. Raises RlvrError when a run failed or
    the study was interrupted (the same call continues it), ConfigError on bad settings."""
    import os

    from rlvr import provenance
    from rlvr.config import load_config

    if cfg is None:
        cfg = load_config(recipe, list(overrides))  # validate once, before any run starts
    presets, seeds = list(presets), list(seeds)
    from rlvr.config import arm_settings, parse_override

    given = {parse_override(o)[0] for o in overrides}
    for name in (p for p in presets if p in cfg.arms):  # an arm's own setting given for every run would erase it
        clash = sorted(given & set(arm_settings(cfg.arms, name)))
        if clash:
            raise ConfigError(f"arms.{name} sets {clash[0]}, which the command line sets for every run; "
                              "drop it from the command line or from the arm")
    fixed = [k for k in ("estimator", "critic") if k in cfg.algorithm.overrides]
    if fixed and len(presets) > 1:  # every run would get the recipe's baseline: nothing compared
        raise ConfigError(f"algorithm.{fixed[0]}={cfg.algorithm.overrides[fixed[0]]!r} in the recipe is applied to every "
                          f"compared preset ({', '.join(presets)}), so their baselines would not differ; remove it")
    limits = Limits(max_tokens, max_time)
    command = list(sys.argv if command is None else command)
    margin = margin if margin is not None else cfg.margin
    if margin is not None and not (0 < margin < 1):
        raise ConfigError(f"--margin: {margin} must be a difference in accuracy between 0 and 1 (e.g. 0.02)")
    out = Path(out or f"runs/compare_{cfg.name}")
    out.mkdir(parents=True, exist_ok=True)
    from rlvr.rundir import lock_run_dir

    lock_run_dir(out, what="--out")  # one comparison per directory (held until this process ends)
    manifest_path = out / "compare.json"
    allow_mixed = bool(allow_mixed_commits)
    keys = [f"{p}/seed{s}" for s in seeds for p in presets]
    current = provenance.code_id(provenance.code_state())
    # every run already in the directory counts, not only this call's: a later call that adds a
    # preset or an arm to a study must not bring other code into it
    code = check_code(out, list(dict.fromkeys(keys + study_runs(out))), current, allow_mixed)
    earlier = _read_manifest(manifest_path)
    declared = earlier.get("margin")
    if declared is not None and margin is not None and abs(declared - margin) > 1e-12:
        raise ConfigError(f"--margin {margin}: this study declared margin {declared} before its runs; "
                          "a margin is chosen once, before the data")
    margin = declared if declared is not None else margin
    budget = {"samples": cfg.trainer.total_steps * cfg.trainer.prompts_per_step * cfg.rollout.n,
              "tokens": max_tokens, "time_s": max_time}
    invocation = {"command": command, "recipe": str(recipe), "overrides": list(overrides), "presets": presets,
                  "seeds": seeds, "budget": budget,
                  "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    # a study built by several calls into one directory (an arm added later, a resume) keeps what
    # the earlier calls recorded: their runs, their presets, and each call itself under "invocations"
    prior_runs = earlier.get("runs") if isinstance(earlier.get("runs"), dict) else {}
    manifest = combine_manifests({**earlier, "runs": {k: v for k, v in prior_runs.items() if k not in keys}}, {
        "recipe": str(recipe), "overrides": list(overrides), "presets": presets, "seeds": seeds,
        "budget": budget, "margin": margin, "allow_mixed_commits": allow_mixed, "code": code,
        "command": command, "invocations": [invocation], "runs": {}})
    from rlvr.algorithms.presets import PRESETS

    # the settings that differ across the whole study (an earlier call's preset this recipe cannot
    # resolve, e.g. an arm it lacks, is left out: its runs recorded their own settings, which the
    # report reads)
    resolved = {name: resolved_settings(cfg, name) for name in manifest["presets"]
                if name in presets or name in PRESETS or name in cfg.arms}
    manifest["differences"] = differing(resolved)
    write_atomic(manifest_path, json.dumps(manifest, indent=2))
    os.environ[provenance.PARENT_ENV] = shlex.join(command)  # each child records the command that started it
    print("settings that differ between the compared runs:")
    inert = inert_settings(resolved)
    for key, per in manifest["differences"].items():
        print(f"  {key}: " + ", ".join(f"{p}={v}" for p, v in per.items()) + (f" — {inert[key]}" if key in inert else ""))
    if base_eval:
        base = _base_eval(cfg, out)
        if base is not None:
            manifest["base"] = base
            print(f"base model: eval pass@1 = {base['final_eval/pass@1']:.3f} (n={base['eval/n']})")
    failed: list[str] = []
    tasks = []
    for seed in seeds:  # seed-major order: an interrupted compare still has every preset at seed 0
        for preset in presets:
            run_dir = out / preset / f"seed{seed}"
            key = f"{preset}/seed{seed}"
            if (run_dir / "summary.json").is_file():
                manifest["runs"][key] = "done"
                print(f"[skip] {key}: already finished")
                continue
            tasks.append((key, [sys.executable, "-m", "rlvr.cli", "train", str(recipe), *overrides,
                                *_run_overrides(cfg, preset, seed, run_dir, limits), "--resume"]))
    jobs = max(1, int(jobs or 1))
    env = None
    if jobs > 1:  # the cores are shared between the runs side by side (unless the caller chose)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or
               str(max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1) // jobs))}
    interrupted_in: list[str] = []

    def _done(key: str, rc: int, interrupted: bool) -> None:
        run_dir = out / key
        ok = rc == 0 and (run_dir / "summary.json").is_file()
        manifest["runs"][key] = "done" if ok else ("interrupted" if interrupted else f"failed (exit {rc})")
        if ids := provenance.run_code_ids(run_dir):
            manifest["code"][key] = ids
        write_atomic(manifest_path, json.dumps(manifest, indent=2))
        if interrupted or rc in (-2, 130, -15, 143):  # interrupted (SIGINT/SIGTERM)
            interrupted_in.append(key)
        elif not ok:
            failed.append(key)
        print(f"[{'done' if ok else 'stop' if key in interrupted_in else 'fail'}] {key}", flush=True)

    run_children(tasks, jobs, _done, env=env, on_start=lambda key: print(f"[run ] {key}", flush=True))
    if interrupted_in:  # stop the whole comparison; the same command continues it
        raise RlvrError(f"interrupted during {', '.join(interrupted_in)} (checkpointed at a step boundary); "
                        "rerun the same command to continue")
    write_atomic(manifest_path, json.dumps(manifest, indent=2))
    print(f"compare directory: {out}  (render with: rlvr report {out})")
    if failed:
        raise RlvrError(f"{len(failed)} run(s) failed: {', '.join(failed)}; see their run directories")
    return manifest
