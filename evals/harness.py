"""Evaluation harness: generate with a rollout engine, score with the task's verifier, report pass@k.

Two passes over the prompt set, each optional:

* greedy  (temperature 0, one completion per prompt) -> ``greedy/pass@1``;
* sampled (``samples`` completions per prompt at ``temperature`` > 0) -> ``sampled/pass@k``
  (unbiased estimator, Chen et al. 2021 eq. 1) and ``sampled/maj@k`` (majority vote over the
  verifier's extracted answers) for every k in ``k_values``.

``pass@1`` in the summary is the greedy number when the greedy pass ran, else the sampled one.
A completion counts as correct when its reward is at least ``threshold`` (1.0: fully correct; a
code completion that passes only some tests is not).

Per-item JSONL (``out_path``), one object per prompt::

    {"id", "task", "verifier", "prompt", "reference",
     "completions", "rewards", "extracted", "correct", "tokens", "finished",   # main pass
     "greedy": {...same keys, one completion each...},                          # when both passes ran
     "pass@1", "greedy/pass@1", "sampled/pass@k", "sampled/maj@k", ...}         # this item's metrics

"Main pass" is the sampled one when it ran, else the greedy one.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from evals.passk import aggregate_items, item_metrics
from rlvr.errors import ConfigError, ModelError
from rlvr.rollout.base import RolloutEngine, SamplingParams


# ----------------------------------------------------------------------------- model resolution
def resolve_checkpoint(path: str | Path) -> str:
    """A loadable model for ``path``: a HF model dir, a checkpoint dir holding ``policy/``, or a
    run dir (its latest ``checkpoints/step_N/policy``). Names that are not directories (built-in
    models, hub ids) are returned unchanged for :func:`rlvr.models.load_policy` to resolve."""
    p = Path(path).expanduser()
    if not p.is_dir():
        return str(path)
    if (p / "config.json").is_file():
        return str(p)
    if (p / "policy" / "config.json").is_file():
        return str(p / "policy")
    from rlvr.checkpoint import complete_checkpoints

    steps = complete_checkpoints(p, marker="policy/config.json")  # the training state need not be kept
    if steps:
        return str(steps[-1][1] / "policy")
    raise ModelError(f"{p}: not a model directory (no config.json), a checkpoint (no policy/config.json) "
                     "or a run directory (no checkpoints/step_N/policy/)")


def run_eval_seed(model: str) -> int | None:
    """``data.eval_seed`` of the run that ``model`` belongs to (a run dir, ``checkpoints/step_N`` or
    its ``policy/``), read from the run's ``config.yaml``; None when it is not in a run directory."""
    import yaml

    p = Path(model).expanduser()
    if not p.is_dir():
        return None
    for d in (p, p.parent.parent, p.parent.parent.parent):
        cfg = d / "config.yaml"
        if cfg.is_file() and (d / "checkpoints").is_dir():
            try:
                data = (yaml.safe_load(cfg.read_text()) or {}).get("data") or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{cfg}: invalid YAML ({getattr(e, 'problem', e)})") from None
            seed = data.get("eval_seed", 0)
            if not isinstance(seed, int) or isinstance(seed, bool):
                raise ConfigError(f"{cfg}: data.eval_seed must be an integer, got {seed!r}")
            return seed
    return None


def _model_and_tokenizer(model_or_path, engine, device, dtype):
    """(model or None, tokenizer, label) from a ``(model, tokenizer)`` pair or a name/path."""
    if isinstance(model_or_path, (tuple, list)):
        if len(model_or_path) != 2:
            raise TypeError("evaluate() expects a (model, tokenizer) pair or a model name/path")
        model, tok = model_or_path
        return model, tok, type(model).__name__
    from rlvr.models import load_policy, load_tokenizer

    path = resolve_checkpoint(model_or_path)
    if engine is not None:  # the engine holds the weights; only the chat template is needed
        return None, load_tokenizer(path), str(model_or_path)
    model, tok = load_policy(path, dtype=dtype, device=device)
    return model, tok, str(model_or_path)


def _examples(task_source, *, split, limit, system_prompt, seed, format=None, reference_column=None) -> tuple[list, str]:
    """(examples, task label) from a task name/path or an already loaded list of Examples."""
    if isinstance(task_source, (str, Path)):
        from rlvr.data import load_prompts

        if split is None and not Path(task_source).expanduser().is_file():
            split = "test"  # named sets (gsm8k, arithmetic:add2, owner/name, a DatasetDict folder) are evaluated on test
        examples = load_prompts(str(task_source), split=split, limit=limit, system_prompt=system_prompt, seed=seed,
                                format=format, reference_column=reference_column)
        label = str(task_source)
    else:
        examples = list(task_source)[:limit] if limit else list(task_source)
        label = examples[0].task if examples else "?"
    if not examples:
        raise ConfigError(f"task {label!r}: no examples to evaluate")
    return examples, label


# ----------------------------------------------------------------------------- one pass
def _answer_key(extracted: Any) -> str | None:
    """A hashable vote key for maj@k: the verifier's extracted answer as a string, None if absent."""
    if extracted is None or extracted == "" or extracted == []:
        return None
    return extracted if isinstance(extracted, str) else str(extracted)


def _score(examples: list, texts: list[str], n: int, verifier: str | None, workers: int | None,
           timeout: float | None, completion_ids: list[list[int]] | None = None):
    """Rewards [N] and vote keys [N] of ``texts`` (sample i belongs to ``examples[i // n]``), scored
    like training (:func:`rlvr.scoring.score_examples`: worker processes, hard timeout)."""
    from rlvr.scoring import score_examples
    from verifiers import outcome

    res = score_examples(examples, texts, n, [(verifier, 1.0)], workers=workers, timeout=timeout,
                         completion_ids=completion_ids)
    return ([float(r.reward) for r in res.primary],
            [_answer_key((r.info or {}).get("extracted")) for r in res.primary],
            [outcome(r) for r in res.primary])


def run_pass(engine: RolloutEngine, tokenizer, examples: list, prompts: list[list[int]], params: SamplingParams,
             *, batch_size: int, verifier: str | None, workers: int | None, timeout: float | None,
             threshold: float, on_chunk=None) -> list[dict[str, list]]:
    """Generate ``params.n`` completions per prompt and score them, ``batch_size`` sequences at a time.

    Returns one dict per example with lists of length n: completions, rewards, extracted,
    correct (reward >= threshold), tokens (response length), finished (ended on EOS/stop),
    outcomes (how scoring went: ok | timeout | crash | violation; the last three score 0).
    """
    per_chunk = max(1, batch_size // params.n)  # prompts per generate() call
    items: list[dict[str, list]] = []
    for c, start in enumerate(range(0, len(examples), per_chunk)):
        exs, ids = examples[start:start + per_chunk], prompts[start:start + per_chunk]
        seed = None if params.seed is None else params.seed + c  # independent draws per chunk
        ro = engine.generate(ids, SamplingParams(n=params.n, temperature=params.temperature, top_p=params.top_p,
                                                 max_new_tokens=params.max_new_tokens, seed=seed,
                                                 stop_token_ids=list(params.stop_token_ids)))
        texts = ro.texts or [tokenizer.decode(r, skip_special_tokens=True) for r in ro.response_ids]
        rewards, keys, outcomes = _score(exs, texts, params.n, verifier, workers, timeout, ro.response_ids)
        for j in range(len(exs)):
            s = slice(j * params.n, (j + 1) * params.n)
            items.append({"completions": texts[s], "rewards": rewards[s], "extracted": keys[s],
                          "correct": [r >= threshold for r in rewards[s]],
                          "tokens": [len(r) for r in ro.response_ids[s]], "finished": list(ro.finished[s]),
                          "outcomes": outcomes[s]})
        if on_chunk is not None:
            on_chunk(len(exs))
    return items


def pass_metrics(name: str, item: dict[str, list], k_values: Sequence[int]) -> dict[str, float]:
    """Per-item metrics of one pass, keyed ``<name>/pass@k``, ``<name>/maj@k``, ``<name>/mean_reward``..."""
    n = len(item["rewards"])
    ks = [1] if name == "greedy" else list(k_values)
    out = {f"{name}/{k}": v for k, v in item_metrics(item["correct"], item["extracted"], ks).items()}
    if name == "greedy":
        out.pop("greedy/maj@1")  # identical to greedy/pass@1
    out[f"{name}/mean_reward"] = sum(item["rewards"]) / n
    out[f"{name}/mean_tokens"] = sum(item["tokens"]) / n
    out[f"{name}/truncation_rate"] = sum(not f for f in item["finished"]) / n
    return out


# ----------------------------------------------------------------------------- evaluate
def check_settings(samples: int, temperature: float, k_values: Sequence[int], greedy: bool) -> list[int]:
    """Validate the sampling settings; returns the sorted k values (1 always included)."""
    if samples < 1:
        raise ConfigError(f"samples must be >= 1, got {samples}")
    if temperature < 0:
        raise ConfigError(f"temperature must be >= 0, got {temperature}")
    if samples > 1 and temperature == 0:
        raise ConfigError(f"samples={samples} needs temperature > 0 (temperature 0 is greedy: all samples equal)")
    if not greedy and temperature == 0:
        raise ConfigError("nothing to evaluate: greedy pass disabled and temperature is 0")
    ks = sorted({1, *(int(k) for k in k_values)})
    if ks[0] < 1:
        raise ConfigError(f"k values must be >= 1, got {list(k_values)}")
    if temperature > 0 and ks[-1] > samples:
        raise ConfigError(f"pass@{ks[-1]} needs samples >= {ks[-1]}, got samples={samples}")
    return ks


def _progress(enabled: bool):
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]eval {task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn())


class _EvalMode:
    """Put a torch model in eval mode and no-grad for the block; restore its training flag after."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        import torch

        self.was_training = bool(getattr(self.model, "training", False))
        if self.model is not None:
            self.model.eval()
        self.no_grad = torch.no_grad()
        self.no_grad.__enter__()

    def __exit__(self, *exc):
        self.no_grad.__exit__(*exc)
        if self.was_training:
            self.model.train()


def evaluate(model_or_path, task_source, *, samples: int = 1, temperature: float | None = None,
             k_values: Sequence[int] = (1,), limit: int | None = None, max_new_tokens: int = 512,
             batch_size: int = 32, engine: RolloutEngine | None = None, out_path: str | Path | None = None,
             progress: bool = True, verifier: str | None = None, split: str | None = None,
             system_prompt: str | None = None, seed: int = 0, data_seed: int = 0, greedy: bool = True, top_p: float = 1.0,
             threshold: float = 1.0, workers: int | None = None, timeout: float | None = None, device=None,
             dtype=None, format: str | None = None, reference_column: str | None = None) -> dict:
    """Evaluate a model on a task; returns the summary dict (module docstring has the keys).

    ``model_or_path``: ``(model, tokenizer)`` (e.g. the policy being trained), a model name/dir, a
    checkpoint dir or a run dir. ``task_source``: a task name or path for :func:`rlvr.data.load_prompts`
    (``gsm8k``, ``math500``, ``arithmetic:add2``, ``file.jsonl``...; named sets default to their
    ``test`` split) or a list of ``Example``.
    ``temperature`` defaults to 0 (greedy only) when ``samples == 1``, else 1.0. ``engine`` defaults
    to an :class:`rlvr.rollout.hf.HFEngine` over the model. ``verifier`` (a name,
    ``path/to/file.py:function`` or ``package.module:function``) overrides each example's;
    ``workers``/``timeout`` go to :func:`verifiers.score_batch` (None: its defaults). ``seed`` seeds
    the sampling only; ``data_seed`` draws a synthetic task's items (a recipe's ``data.eval_seed``:
    the same items whatever the sampling seed). ``format`` / ``reference_column``: how a data file's rows
    are read (``rlvr.data.load_prompts``; ``trl``: a TRL dataset as it is).
    """
    temperature = (0.0 if samples == 1 else 1.0) if temperature is None else float(temperature)
    ks = check_settings(samples, temperature, k_values, greedy)
    t0 = time.perf_counter()
    examples, task = _examples(task_source, split=split, limit=limit, system_prompt=system_prompt, seed=data_seed,
                               format=format, reference_column=reference_column)
    from rlvr.scoring import check_terms

    # a verifier that does not import, has the wrong signature or returns a non-number: one line,
    # before the model loads
    check_terms([(verifier, 1.0)], examples, workers=workers, timeout=timeout,
                field="--verifier" if verifier else "the task's verifier")
    model, tok, label = _model_and_tokenizer(model_or_path, engine, device, dtype)
    from rlvr.data import encode_prompt

    prompts = [encode_prompt(tok, ex) for ex in examples]
    if engine is None:
        from rlvr.rollout.hf import HFEngine

        engine = HFEngine(model, tok, micro_batch_size=batch_size)
    passes = [("greedy", SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens, seed=seed))] * greedy
    if temperature > 0:
        passes.append(("sampled", SamplingParams(n=samples, temperature=temperature, top_p=top_p,
                                                 max_new_tokens=max_new_tokens, seed=seed)))
    results: dict[str, list[dict]] = {}
    with _EvalMode(model), _progress(progress) as bar:
        for name, params in passes:
            task_id = bar.add_task(f"{task} {name}", total=len(examples)) if bar else None
            results[name] = run_pass(engine, tok, examples, prompts, params, batch_size=batch_size,
                                     verifier=verifier, workers=workers, timeout=timeout, threshold=threshold,
                                     on_chunk=(lambda k, t=task_id: bar.advance(t, k)) if bar else None)
    records = build_records(examples, results, ks)
    if verifier:  # the verifier that scored them, not the task's default
        for rec in records:
            rec["verifier"] = verifier
    summary = summarize(records, ks, passes)
    summary.update(task=task, model=label, samples=samples if temperature > 0 else 1, temperature=temperature,
                   max_new_tokens=max_new_tokens, time_s=time.perf_counter() - t0)
    if out_path is not None:
        summary["out_path"] = write_jsonl(records, out_path)
    return summary


def write_jsonl(records: list[dict], path: str | Path) -> str:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
    return str(out)


def build_records(examples: list, results: dict[str, list[dict]], ks: list[int]) -> list[dict]:
    """One JSON-able record per example: its completions, scores and per-item metrics."""
    main = "sampled" if "sampled" in results else "greedy"  # whose completions fill the record
    head = "greedy" if "greedy" in results else "sampled"  # whose pass@1 is the headline
    records = []
    for i, ex in enumerate(examples):
        rec = {"id": ex.id, "task": ex.task, "verifier": ex.verifier, "prompt": ex.prompt,
               "reference": ex.reference, **results[main][i]}
        if main == "sampled" and "greedy" in results:
            rec["greedy"] = results["greedy"][i]
        metrics = {}
        for name, items in results.items():
            metrics.update(pass_metrics(name, items[i], ks))
        rec["pass@1"] = metrics[f"{head}/pass@1"]
        rec.update(metrics)
        records.append(rec)
    return records


def summarize(records: list[dict], ks: list[int], passes) -> dict[str, Any]:
    """Mean over items of every per-item metric, with 95% CIs; ``pass@k``/``maj@k`` aliases for k > 1."""
    metric_keys = [k for k in records[0] if k == "pass@1" or "/" in k]
    agg = aggregate_items([{k: r[k] for k in metric_keys} for r in records])
    summary: dict[str, Any] = {k: m for k, (m, _) in agg.items()}
    summary["ci95"] = {k: h for k, (_, h) in agg.items()}
    if any(name == "sampled" for name, _ in passes):
        for k in ks[1:]:
            summary[f"pass@{k}"] = summary[f"sampled/pass@{k}"]
            summary[f"maj@{k}"] = summary[f"sampled/maj@{k}"]
    summary["n"] = len(records)
    summary["tokens"] = sum(sum(r["tokens"]) + sum((r.get("greedy") or {}).get("tokens", [])) for r in records)
    # completions (all passes) whose scoring timed out, crashed or broke the sandbox's rules: they
    # count as wrong, so an eval where scoring failed must say so next to its pass@1
    outcomes = [o for r in records for o in (*r.get("outcomes", ()), *(r.get("greedy") or {}).get("outcomes", ()))]
    for name, plural in (("timeout", "timeouts"), ("crash", "crashes"), ("violation", "violations")):
        summary[plural] = outcomes.count(name)
    summary["completions"] = len(outcomes)
    return summary


def scoring_warning(summary: dict) -> str | None:
    """One line when some completions were not scored (timeouts, crashes, sandbox violations)."""
    bad = {k: summary.get(k, 0) for k in ("timeouts", "crashes", "violations")}
    if not any(bad.values()):
        return None
    listed = ", ".join(f"{v} {k}" for k, v in bad.items() if v)
    return (f"warning: {listed} among {summary.get('completions', '?')} scored completions; they count as "
            "wrong in pass@k (check the verifier, reward.timeout_s / --timeout)")


def recipe_eval_settings(cfg, *, final: bool, seed: int) -> dict[str, Any]:
    """The :func:`evaluate` settings a recipe gives its held-out evals: greedy pass@1, and for the
    ``final`` eval also ``trainer.final_eval_samples`` completions per item (pass@k for k = 1..that,
    at ``trainer.final_eval_temperature``, default the rollout temperature). Shared by the trainer's
    evals and the base-model eval of ``rlvr compare``, so both measure the same thing."""
    from rlvr.scoring import eval_verifier

    r, t = cfg.rollout, cfg.trainer
    out: dict[str, Any] = dict(max_new_tokens=r.eval_max_new_tokens or r.max_new_tokens,
                               batch_size=r.micro_batch_size, verifier=eval_verifier(cfg.reward),
                               workers=cfg.reward.workers, timeout=cfg.reward.timeout_s, temperature=0.0)
    n = t.final_eval_samples if final else 0
    if n:
        out.update(samples=n, k_values=list(range(1, n + 1)), seed=seed,
                   temperature=t.final_eval_temperature if t.final_eval_temperature is not None else r.temperature)
    return out
