"""TRL's ``GRPOConfig`` as an rlvr recipe: ``convert(config)`` and ``rlvr from-trl CONFIG.yaml``.

``convert`` takes a ``trl.GRPOConfig`` or a mapping of its fields (what ``trl grpo --config
CONFIG.yaml`` reads, with the CLI's ``model_name_or_path``, ``dataset_name``, ``reward_funcs``...;
fields left out take trl 1.16's defaults, :data:`TRL_DEFAULTS`) and returns a :class:`Conversion`:
the recipe tree, the same as dotted overrides, and one line for every field whose value rlvr cannot
reproduce. :data:`TABLE` is the mapping field by field; docs/from-trl.md prints it (a test checks
that the page shows :func:`markdown_table` and that every row holds for real ``GRPOConfig``s).

How TRL counts, and rlvr: TRL's generation batch (``generation_batch_size`` completions, by default
``per_device_train_batch_size * num_processes * steps_per_generation``) is rlvr's step
(``trainer.prompts_per_step`` = that / ``num_generations``); TRL's ``max_steps``, ``warmup_steps``
and ``save_steps`` count optimizer steps, of which one generation batch makes
``steps_per_generation / gradient_accumulation_steps * num_iterations``.
"""
from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

# trl 1.16.0's GRPOConfig (and TrainingArguments) defaults of every field convert() reads; a test
# checks them against the installed trl
TRL_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-6, "lr_scheduler_type": "linear", "warmup_steps": 0, "weight_decay": 0.0,
    "max_grad_norm": 1.0, "seed": 42, "max_steps": -1, "num_train_epochs": 3.0,
    "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1, "steps_per_generation": None,
    "generation_batch_size": None, "num_generations": 8, "num_generations_eval": None,
    "max_completion_length": 512, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": None,
    "repetition_penalty": 1.0, "generation_kwargs": None, "beta": 0.0, "num_iterations": 1, "epsilon": 0.2,
    "epsilon_high": None, "delta": None, "loss_type": "dapo", "importance_sampling_level": "token",
    "scale_rewards": "group", "multi_objective_aggregation": "sum_then_normalize", "reward_weights": None,
    "mask_truncated_completions": False, "entropy_coef": 0.0, "use_adaptive_entropy": False,
    "top_entropy_quantile": 1.0, "sync_ref_model": False, "off_policy_mask_threshold": None,
    "use_bias_correction_kl": True, "cast_lm_head_to_fp32": False, "gradient_checkpointing": True,
    "bf16": True, "fp16": False, "shuffle_dataset": True, "output_dir": "trainer_output",
    "save_strategy": "steps", "save_steps": 500, "eval_strategy": "no", "eval_steps": None,
    "optim": "adamw_torch_fused", "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8,
    "use_vllm": False, "vllm_mode": "colocate", "vllm_server_base_url": None, "vllm_server_host": "0.0.0.0",
    "vllm_server_port": 8000, "vllm_gpu_memory_utilization": 0.3, "vllm_tensor_parallel_size": 1,
    "vllm_max_model_length": None, "vllm_importance_sampling_correction": True,
    "vllm_importance_sampling_mode": "sequence_mask", "vllm_importance_sampling_clip_max": 3.0,
    "vllm_importance_sampling_clip_min": None, "max_tool_calling_iterations": None,
    "chat_template_kwargs": None, "model_init_kwargs": None,
}
# the TRL CLI's own fields (trl grpo --config): model, data and reward functions
CLI_FIELDS = ("model_name_or_path", "dataset_name", "dataset_config", "dataset_train_split", "dataset_test_split",
              "reward_funcs", "reward_model_name_or_path", "num_processes")
# TRL CLI reward function names -> rlvr specs (trl/scripts/grpo.py's registry)
TRL_CLI_REWARDS = {
    "accuracy_reward": "trl:trl.rewards:accuracy_reward",
    "reasoning_accuracy_reward": "trl:trl.rewards:reasoning_accuracy_reward",
    "think_format_reward": "trl:trl.rewards:think_format_reward",
    "get_soft_overlong_punishment": "trl:trl.rewards:get_soft_overlong_punishment(max_completion_len=1280, "
                                    "soft_punish_cache=256)",
}
LOSS_AGG = {"grpo": "seq-mean-token-mean", "bnpo": "token-mean", "dapo": "token-mean",
            "dr_grpo": "seq-mean-token-sum-norm", "cispo": "token-mean"}
SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant", "constant_with_warmup": "constant"}

# (TRL field(s), rlvr setting(s), how): the page's table, in this order
TABLE: list[tuple[str, str, str]] = [
    ("learning_rate", "trainer.lr", "same value"),
    ("lr_scheduler_type", "trainer.lr_schedule", "linear, cosine, constant (constant_with_warmup: constant)"),
    ("warmup_steps", "trainer.warmup_steps", "optimizer steps -> rlvr steps (a fraction < 1: of max_steps)"),
    ("weight_decay, max_grad_norm, seed", "trainer.weight_decay, trainer.max_grad_norm, trainer.seed", "same values"),
    ("num_generations", "rollout.n", "same value"),
    ("max_completion_length", "rollout.max_new_tokens", "same value"),
    ("temperature, top_p", "rollout.temperature, rollout.top_p", "same values"),
    ("generation_batch_size (per_device_train_batch_size x processes x steps_per_generation)",
     "trainer.prompts_per_step", "generation_batch_size / num_generations / processes (rlvr's is per process)"),
    ("per_device_train_batch_size x gradient_accumulation_steps", "trainer.mini_batch_size",
     "samples per optimizer step and process (null: the whole batch, TRL's default)"),
    ("per_device_train_batch_size", "trainer.micro_batch_size", "samples per forward/backward"),
    ("num_iterations", "algorithm.epochs", "same value"),
    ("max_steps", "trainer.total_steps", "max_steps / (steps_per_generation / gradient_accumulation_steps x num_iterations)"),
    ("beta", "algorithm.kl_coef (k3 in the loss)", "same value, each token's k3 unbounded (algorithm.kl_clamp: null); "
     "0: no reference model"),
    ("epsilon, epsilon_high", "algorithm.clip_low, algorithm.clip_high", "same values (epsilon_high null: epsilon)"),
    ("delta", "algorithm.dual_clip", "same value (when > 1 + epsilon_high, where the two bounds coincide)"),
    ("loss_type", "algorithm.loss_agg", "grpo: seq-mean-token-mean; dapo, bnpo: token-mean; dr_grpo: "
     "seq-mean-token-sum-norm (normaliser: rollout.max_new_tokens); cispo: algorithm.policy_loss cispo, "
     "clip_high = epsilon_high - 1"),
    ("importance_sampling_level", "algorithm.policy_loss", "token: ppo_clip; sequence: gspo"),
    ("scale_rewards", "algorithm.estimator", "group: grpo ((s - mean) / std); none: dr_grpo (s - mean)"),
    ("reward_funcs, reward_weights", "reward.verifiers", "{trl:<file or module>:<function>: weight, ...} in order"),
    ("mask_truncated_completions", "algorithm.overlong", "true: mask"),
    ("entropy_coef", "algorithm.entropy_coef", "same value"),
    ("gradient_checkpointing", "model.gradient_checkpointing", "same value"),
    ("shuffle_dataset", "data.shuffle", "same value"),
    ("save_steps, eval_steps", "trainer.checkpoint_every, trainer.eval_every", "optimizer steps -> rlvr steps"),
    ("output_dir", "trainer.output_dir", "same value"),
    ("use_vllm, vllm_mode", "rollout.engine", "colocate: vllm; server: vllm_server (rollout.server.url)"),
    ("vllm_gpu_memory_utilization, vllm_tensor_parallel_size, vllm_max_model_length",
     "rollout.vllm.gpu_memory_utilization, .tensor_parallel_size, .max_model_len", "same values"),
    ("vllm_importance_sampling_mode, _clip_max, _clip_min", "algorithm.seq_is, seq_is_high, seq_is_low / algorithm.tis_cap",
     "sequence_mask, sequence_truncate: seq_is mask, truncate; token_truncate: tis_cap"),
    ("model_name_or_path (CLI)", "model.name", "same value"),
    ("dataset_name, dataset_train_split (CLI)", "data.train, data.train_split, data.format: trl",
     "a local .jsonl / .parquet / save_to_disk folder"),
]


def markdown_table() -> str:
    """:data:`TABLE` as the Markdown table docs/from-trl.md shows."""
    rows = ["| GRPOConfig | rlvr | how |", "| --- | --- | --- |"]
    rows += [f"| `{a}` | `{b}` | {c} |" for a, b, c in TABLE]
    return "\n".join(rows)


@dataclass
class Conversion:
    """``recipe``: the rlvr recipe tree; ``overrides``: the same as dotted ``key=value`` strings;
    ``notes``: one line per TRL field whose value rlvr does not reproduce."""

    recipe: dict[str, Any]
    overrides: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _plain(v: Any) -> Any:
    return v.value if isinstance(v, enum.Enum) else v


def _fields(config: Any) -> dict[str, Any]:
    """The fields of a GRPOConfig (or a mapping), enums as their values, over TRL_DEFAULTS."""
    if isinstance(config, Mapping):
        given = dict(config)
    elif dataclasses.is_dataclass(config):
        given = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if hasattr(config, f.name)}
        given["world_size"] = getattr(config, "world_size", 1)
    else:
        raise TypeError(f"convert() takes a trl.GRPOConfig or a mapping of its fields, not {type(config).__name__}")
    return {**TRL_DEFAULTS, **{k: _plain(v) for k, v in given.items()}}


def _set(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    *path, last = dotted.split(".")
    for p in path:
        node = node.setdefault(p, {})
    node[last] = value


SECTIONS = ("name", "model", "data", "rollout", "reward", "algorithm", "trainer")


def convert(config: Any, *, reward_funcs: list[str] | None = None, preset: str = "grpo",
            dataset_size: int | None = None, num_processes: int | None = None, **cli: Any) -> Conversion:
    """The rlvr recipe for a ``GRPOConfig`` (or a mapping of its fields, plus the TRL CLI's).

    ``reward_funcs``: the reward functions as rlvr specs (``trl:rewards.py:fn``) or TRL CLI names
    (``accuracy_reward``, ``my_lib.rewards.fn``), in ``reward_weights``' order (default: the
    mapping's ``reward_funcs``). ``preset``: the rlvr preset the algorithm settings are written
    against (``grpo``; ``ppo`` keeps PPO's critic and GAE and takes TRL's clip, epochs, loss and
    KL settings). ``dataset_size``: rows of the training set, to turn ``num_train_epochs`` into
    steps when ``max_steps`` is not set. ``num_processes``: TRL's processes (default: the config's
    ``world_size``, else 1). ``cli``: the TRL CLI's fields (:data:`CLI_FIELDS`: ``model_name_or_path``,
    ``dataset_name``...) beside a ``GRPOConfig``, which does not hold them.
    """
    from rlvr.algorithms.presets import get_preset

    unknown = sorted(set(cli) - set(CLI_FIELDS))
    if unknown:
        raise TypeError(f"convert() got unknown arguments {', '.join(unknown)} (TRL CLI fields: {', '.join(CLI_FIELDS)})")
    f = {**_fields(config), **cli}
    tree: dict[str, Any] = {}
    notes: list[str] = []

    def note(field_name: str, text: str) -> None:
        notes.append(f"{field_name}={f.get(field_name)!r}: {text}")

    # model, data, reward functions (the TRL CLI's fields)
    if f.get("model_name_or_path"):
        _set(tree, "model.name", f["model_name_or_path"])
    if f.get("dataset_name"):
        _set(tree, "data.train", f["dataset_name"])
        _set(tree, "data.format", "trl")
        if f.get("dataset_train_split") not in (None, "train"):
            _set(tree, "data.train_split", f["dataset_train_split"])
        if f.get("eval_strategy") not in (None, "no"):
            _set(tree, "data.eval", f["dataset_name"])
            _set(tree, "data.eval_split", f.get("dataset_test_split") or "test")
    if f.get("dataset_config"):
        note("dataset_config", "rlvr reads local datasets; point data.train at the files of that configuration")
    if f.get("reward_model_name_or_path"):
        note("reward_model_name_or_path", "rlvr has no reward models (verifiable rewards only); write the score "
             "as a reward function")
    funcs = list(reward_funcs if reward_funcs is not None else (f.get("reward_funcs") or []))
    if isinstance(funcs, str):
        funcs = [funcs]
    specs = [_reward_spec(x) for x in funcs]
    weights = f.get("reward_weights")
    if specs:
        if weights is not None and len(weights) != len(specs):
            raise ValueError(f"reward_weights has {len(weights)} weights for {len(specs)} reward functions")
        _set(tree, "reward.verifiers", {s: float(w) for s, w in zip(specs, weights or [1.0] * len(specs))})
    else:
        notes.append("reward_funcs: none given; list them in reward.verifiers as {trl:<file.py or module>:<function>: "
                     "weight} (reward_weights in the same order)")

    # optimizer and schedule
    _set(tree, "trainer.lr", float(f["learning_rate"]))
    _set(tree, "trainer.weight_decay", float(f["weight_decay"]))
    _set(tree, "trainer.max_grad_norm", float(f["max_grad_norm"]))
    _set(tree, "trainer.seed", int(f["seed"]))
    if f["optim"] not in ("adamw_torch", "adamw_torch_fused", "adamw_hf"):
        note("optim", "rlvr trains with torch AdamW")
    for k, d in (("adam_beta1", 0.9), ("adam_beta2", 0.999), ("adam_epsilon", 1e-8)):
        if f[k] != d:
            note(k, f"rlvr's AdamW uses {d}")

    # batch geometry
    n = int(f["num_generations"])
    procs = int(num_processes or f.get("num_processes") or f.get("world_size") or 1)
    per_dev, accum = int(f["per_device_train_batch_size"]), int(f["gradient_accumulation_steps"])
    spg, gbs = f["steps_per_generation"], f["generation_batch_size"]
    if spg is None and gbs is None:
        spg = accum
    if gbs is None:
        gbs = per_dev * procs * int(spg)
    elif spg is None:
        spg = int(gbs) // (per_dev * procs)
    gbs, spg = int(gbs), int(spg)
    if gbs % n:
        notes.append(f"generation_batch_size={gbs}: not a multiple of num_generations={n} (TRL refuses it); "
                     f"rlvr takes {max(1, gbs // n)} prompts per step")
    _set(tree, "rollout.n", n)
    # rlvr's batch settings are per process (each samples its own prompts), TRL's generation batch global
    if (gbs // n) % procs:
        notes.append(f"generation_batch_size={gbs}: {gbs // n} prompts do not split evenly over {procs} processes; "
                     f"rlvr takes {max(1, gbs // n // procs)} per process")
    _set(tree, "trainer.prompts_per_step", max(1, gbs // n // procs))
    opt_batch = per_dev * accum  # samples per optimizer step, per process
    _set(tree, "trainer.mini_batch_size", None if opt_batch * procs >= gbs else opt_batch)
    _set(tree, "trainer.micro_batch_size", per_dev)
    opt_per_gen = max(1, spg // accum) * int(f["num_iterations"])  # optimizer steps per generation batch

    def steps(opt_steps: float) -> int:
        return max(1, math.ceil(opt_steps / opt_per_gen))

    if f["max_steps"] and int(f["max_steps"]) > 0:
        _set(tree, "trainer.total_steps", steps(int(f["max_steps"])))
    elif dataset_size:
        _set(tree, "trainer.total_steps", max(1, math.ceil(float(f["num_train_epochs"]) * dataset_size / max(1, gbs // n))))
    else:
        note("max_steps", f"not set: TRL trains num_train_epochs={f['num_train_epochs']} over the dataset; set "
             "trainer.total_steps (epochs x rows / trainer.prompts_per_step) or pass dataset_size")
    sched = str(f["lr_scheduler_type"])
    if sched in SCHEDULES:
        _set(tree, "trainer.lr_schedule", SCHEDULES[sched])
    else:
        note("lr_scheduler_type", "rlvr's schedules are constant, linear and cosine; constant is used")
        _set(tree, "trainer.lr_schedule", "constant")
    warm = f["warmup_steps"] or 0
    if warm:
        total_opt = int(f["max_steps"]) if int(f["max_steps"] or 0) > 0 else None
        if 0 < warm < 1:
            if total_opt is None:
                note("warmup_steps", "a fraction of max_steps, which is not set; set trainer.warmup_steps")
            else:
                _set(tree, "trainer.warmup_steps", steps(warm * total_opt))
        else:
            _set(tree, "trainer.warmup_steps", steps(warm))

    # generation
    _set(tree, "rollout.max_new_tokens", int(f["max_completion_length"]))
    _set(tree, "rollout.temperature", float(f["temperature"]))
    _set(tree, "rollout.top_p", float(f["top_p"]))
    for k, neutral, why in (("top_k", 0, "rlvr samples without top-k"), ("min_p", None, "rlvr samples without min-p"),
                            ("repetition_penalty", 1.0, "rlvr samples without a repetition penalty"),
                            ("generation_kwargs", None, "rlvr has no extra generation arguments"),
                            ("chat_template_kwargs", None, "rlvr applies the tokenizer's chat template as is"),
                            ("num_generations_eval", None, "rlvr's evals are greedy pass@1 (trainer.final_eval_samples "
                             "adds sampled pass@k at the end)"),
                            ("max_tool_calling_iterations", None, "rlvr has no tool calling")):
        if f.get(k) not in (neutral, {}, None) and f.get(k) != neutral:
            note(k, why)
    if f.get("use_vllm"):
        if f["vllm_mode"] == "server":
            _set(tree, "rollout.engine", "vllm_server")
            url = f.get("vllm_server_base_url") or f"http://{f['vllm_server_host']}:{f['vllm_server_port']}"
            _set(tree, "rollout.server.url", url.replace("0.0.0.0", "127.0.0.1"))
        else:
            _set(tree, "rollout.engine", "vllm")
            _set(tree, "rollout.vllm.gpu_memory_utilization", float(f["vllm_gpu_memory_utilization"]))
            _set(tree, "rollout.vllm.tensor_parallel_size", int(f["vllm_tensor_parallel_size"]))
        if f.get("vllm_max_model_length"):
            _set(tree, "rollout.vllm.max_model_len", int(f["vllm_max_model_length"]))

    # the algorithm: TRL's GRPO loss as preset fields
    algo: dict[str, Any] = {}
    eps = float(f["epsilon"])
    eps_high = float(f["epsilon_high"]) if f["epsilon_high"] is not None else eps
    beta = float(f["beta"])
    algo["epochs"] = int(f["num_iterations"])
    algo["clip_low"], algo["clip_high"] = eps, eps_high
    algo["kl_coef"] = beta
    if beta:
        algo["kl_kind"], algo["kl_placement"] = "k3", "loss"
        _set(tree, "algorithm.kl_clamp", None)  # TRL does not bound a token's k3 (rlvr's default: 10)
        if f["use_bias_correction_kl"]:
            note("use_bias_correction_kl", "rlvr's k3 KL term is not multiplied by the importance ratio (the value is "
                 "the same on-policy, its gradient is not)")
    else:
        algo["kl_placement"] = "none"
    loss = str(f["loss_type"])
    if loss in LOSS_AGG:
        algo["loss_agg"] = LOSS_AGG[loss]
    else:
        algo["loss_agg"] = "token-mean"
        note("loss_type", "rlvr has no such loss (it has grpo, dapo, bnpo, dr_grpo, cispo); ppo_clip with a "
             "token-mean loss is used")
    level = str(f["importance_sampling_level"])
    if loss == "cispo":
        if level != "token":
            note("importance_sampling_level", "rlvr's cispo weights tokens; a sequence-level cispo has no equivalent")
        algo["policy_loss"], algo["clip_low"] = "cispo", None
        if eps_high >= 1:
            algo["clip_high"] = eps_high - 1  # TRL caps the ratio at epsilon_high; rlvr at 1 + clip_high
        else:
            algo["clip_high"] = None
            note("epsilon_high", "TRL's cispo caps the ratio at epsilon_high (< 1 here); rlvr caps at 1 + clip_high "
                 "(>= 1): left unbounded")
    elif level == "sequence":
        algo["policy_loss"] = "gspo"
    else:
        algo["policy_loss"] = "ppo_clip"
    if f["delta"] is not None:
        if algo["policy_loss"] == "ppo_clip" and float(f["delta"]) > 1 + eps_high:
            algo["dual_clip"] = float(f["delta"])
        else:
            note("delta", "only a token-level clipped loss with delta > 1 + epsilon_high has an rlvr equivalent "
                 "(algorithm.dual_clip)")
    scale = {True: "group", False: "none"}.get(f["scale_rewards"], f["scale_rewards"])
    if scale == "group":
        algo["estimator"] = "grpo"
    elif scale == "none":
        algo["estimator"] = "dr_grpo"
    else:
        algo["estimator"] = "grpo"
        note("scale_rewards", "rlvr has no group-mean baseline scaled by the batch std; group scaling (estimator "
             "grpo) is used")
    if f["multi_objective_aggregation"] != "sum_then_normalize":
        note("multi_objective_aggregation", "rlvr sums the weighted rewards, then normalises (sum_then_normalize)")
    algo["whiten_advantages"] = False
    algo["entropy_coef"] = float(f["entropy_coef"])
    if algo["entropy_coef"] and algo["loss_agg"] != "token-mean":
        note("entropy_coef", f"TRL's entropy bonus is a token mean; rlvr aggregates it as the loss ({algo['loss_agg']})")
    for k, neutral, why in (("use_adaptive_entropy", False, "rlvr's entropy coefficient is fixed"),
                            ("top_entropy_quantile", 1.0, "rlvr trains on every token"),
                            ("sync_ref_model", False, "rlvr's reference model stays the initial policy"),
                            ("off_policy_mask_threshold", None, "rlvr has no off-policy sequence masking"),
                            ("cast_lm_head_to_fp32", False, "rlvr computes log-probs in float32 from the model's logits")):
        if f.get(k) != neutral:
            note(k, why)
    if f["mask_truncated_completions"]:
        _set(tree, "algorithm.overlong", "mask")
    if f.get("use_vllm") and f["vllm_importance_sampling_correction"]:
        mode, hi, lo = f["vllm_importance_sampling_mode"], f["vllm_importance_sampling_clip_max"], \
            f["vllm_importance_sampling_clip_min"]
        if mode in ("sequence_mask", "sequence_truncate"):
            algo["seq_is"] = "mask" if mode == "sequence_mask" else "truncate"
            algo["seq_is_high"] = float(hi) if hi is not None else 1e9
            algo["seq_is_low"] = float(lo) if lo is not None else 0.0
        elif mode == "token_truncate" and hi is not None:
            _set(tree, "algorithm.tis_cap", max(1.0, float(hi)))
        else:
            note("vllm_importance_sampling_mode", "rlvr corrects per token by truncation only (algorithm.tis_cap)")
    base = get_preset(preset)
    if base.critic:  # ppo and its kin: the critic and GAE stay; TRL's group baseline does not apply
        algo.pop("estimator", None)
        algo.pop("whiten_advantages", None)
    _set(tree, "algorithm.preset", preset)
    for k, v in algo.items():
        if getattr(base, k) != v:
            _set(tree, f"algorithm.{k}", v)
    base.with_overrides(**{k: v for k, v in tree["algorithm"].items()
                           if k not in ("preset", "overlong", "tis_cap", "kl_clamp")})

    # model, checkpoints, evals, output
    _set(tree, "model.gradient_checkpointing", bool(f["gradient_checkpointing"]))
    if f["bf16"] or f["fp16"]:
        note("bf16" if f["bf16"] else "fp16", "TRL autocasts over float32 weights; rlvr trains in model.dtype "
             "(null: bfloat16 on CUDA, float32 on CPU)")
    if isinstance(f.get("model_init_kwargs"), Mapping) and f["model_init_kwargs"].get("dtype") in (
            "bfloat16", "float16", "float32"):
        _set(tree, "model.dtype", f["model_init_kwargs"]["dtype"])
    _set(tree, "data.shuffle", bool(f["shuffle_dataset"]))
    if f["save_strategy"] == "steps" and f["save_steps"]:
        save = f["save_steps"]
        if 0 < save < 1 and int(f["max_steps"] or 0) > 0:
            save = save * int(f["max_steps"])
        _set(tree, "trainer.checkpoint_every", steps(save))
    if f["eval_strategy"] == "steps" and f.get("eval_steps"):
        _set(tree, "trainer.eval_every", steps(f["eval_steps"]))
    if f.get("output_dir"):
        _set(tree, "trainer.output_dir", str(f["output_dir"]))
    tree = {k: tree[k] for k in SECTIONS if k in tree}
    flat = _flatten(tree)
    return Conversion(tree, [f"{k}={_text(v)}" for k, v in flat.items()], notes)


def _reward_spec(name: str) -> str:
    """An rlvr spec for a TRL CLI reward function name (or an rlvr spec already)."""
    if name.startswith("trl:"):
        return name
    if name in TRL_CLI_REWARDS:
        return TRL_CLI_REWARDS[name]
    if "." in name and ":" not in name:  # the CLI's dotted import path: my_lib.rewards.fn
        module, _, fn = name.rpartition(".")
        return f"trl:{module}:{fn}"
    raise ValueError(f"reward function {name!r}: expected one of {', '.join(TRL_CLI_REWARDS)}, a dotted import "
                     "path (my_lib.rewards.fn) or an rlvr spec (trl:rewards.py:fn)")


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict) and not (prefix + k).endswith("reward.verifiers"):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _text(v: Any) -> str:
    import yaml

    if v is None:
        return "null"
    if isinstance(v, dict):
        return yaml.safe_dump(v, default_flow_style=True, width=10**6).strip()
    return str(v).lower() if isinstance(v, bool) else str(v)
