"""Configuration: dataclasses <- YAML recipe <- dotted CLI overrides.

    cfg = load_config("recipes/gsm8k_grpo.yaml", ["trainer.lr=1e-6", "rollout.n=8"])

Unknown keys are rejected with the valid alternatives listed; values are type-checked against the
dataclass annotations, so ``rollout.n=eight`` fails with the field named, before anything runs.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlvr.errors import ConfigError


@dataclass
class ModelConfig:
    name: str = "smollm2-135m-instruct"  # HF dir, built-in name, or "tiny-random"
    dtype: str | None = None  # None: bf16 on CUDA, fp32 on CPU
    trainable_layers: int | None = None  # train only the top K blocks (+ final norm); None = all
    lora_r: int = 0  # 0 disables LoRA
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    gradient_checkpointing: bool = False
    critic_shared_trunk: bool = False


@dataclass
class DataConfig:
    train: str = "arithmetic:add2"  # jsonl path, HF dataset name, or built-in task
    train_split: str | None = None
    train_limit: int | None = None
    eval: str | None = None
    eval_split: str | None = None
    eval_limit: int | None = 128
    eval_seed: int = 0  # draws the held-out items (synthetic sets); independent of trainer.seed
    system_prompt: str | None = None
    # row format of a data file (train and eval): None detects it from the first row; "trl" reads a
    # TRL dataset as it is (a prompt column, text or messages, and any other columns, which reach
    # TRL reward functions); also gsm8k, math, humaneval, mbpp, generic
    format: str | None = None
    # with format "trl": the column the built-in verifiers (reward key "task") check, e.g. answer
    reference_column: str | None = None
    shuffle: bool = True
    # offline preference pairs for a pairwise preset (update_rule "dpo"): a .jsonl of
    # {"prompt", "chosen", "rejected"} rows that replaces sampling (see rlvr/pairs.py)
    pairs: str | None = None


@dataclass
class VLLMConfig:
    """``rollout.vllm.*``: settings of the vLLM engine only (see ``rlvr.rollout.vllm.VLLMEngine``)."""

    kv_cache_memory_bytes: int | None = None  # None: 1 GiB on CPU, else gpu_memory_utilization
    gpu_memory_utilization: float | None = None
    enforce_eager: bool = False  # no torch.compile / CUDA graphs
    tensor_parallel_size: int = 1
    max_model_len: int = 4096  # prompt + response tokens per sequence
    serving_threads: int | None = None  # torch threads while vLLM decodes (None: unchanged)


# flat keys of earlier versions -> their place in the engine's own section (read with a warning)
_MOVED_ROLLOUT_KEYS = {"vllm_kv_cache_memory_bytes": "vllm.kv_cache_memory_bytes",
                       "vllm_gpu_memory_utilization": "vllm.gpu_memory_utilization",
                       "vllm_enforce_eager": "vllm.enforce_eager", "tensor_parallel_size": "vllm.tensor_parallel_size"}


@dataclass
class VLLMServerConfig:
    """``rollout.server.*``: where the rollout server is and how long to wait for it."""

    url: str = "http://127.0.0.1:8000"
    timeout_s: float = 600.0  # one request (a generation of the whole step's batch, a weight push)
    connect_timeout_s: float = 10.0  # opening a connection
    reconnect_s: float = 60.0  # keep retrying a refused/dropped connection this long (server restart)
    verify_tol: float | None = None  # sync fingerprint tolerance (None: by dtype, as the vllm engine)
    # how process 0 pushes the weights: "http" (one safetensors blob), "collective" (a broadcast per
    # tensor: NCCL when both sides are on CUDA, else gloo), "auto" (collective over NCCL where both
    # sides are on CUDA and the server's engine is in its process, else http)
    weight_transport: str = "auto"
    collective_port: int = 0  # the server's rendezvous port for the collective push (0: a free one)
    # the server's token (None: the environment's RLVR_ROLLOUT_TOKEN, the better place for a secret;
    # never written to the run's config.yaml or logged)
    token: str | None = None


@dataclass
class RolloutConfig:
    engine: str = "hf"  # a name in rlvr.rollout.ENGINES: "hf" (embedded) | "vllm"
    n: int = 8  # samples per prompt
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    micro_batch_size: int = 64  # sequences per generation forward (hf engine)
    eval_max_new_tokens: int | None = None
    vllm: VLLMConfig = field(default_factory=VLLMConfig)  # rollout.engine=vllm only
    server: VLLMServerConfig = field(default_factory=VLLMServerConfig)  # rollout.engine=vllm_server only


@dataclass
class RewardConfig:
    # None: the task's own verifier; else a name (math, code, format, reasoning_gym:<task>, a
    # plugin), path/to/file.py:function or package.module:function
    verifier: str | None = None
    # several verifiers with weights, reward = sum(weight * reward): {math: 1.0, format: 0.1,
    # my_rewards.py:length_penalty: -0.01}; the first decides accuracy; key "task" = the task's own
    verifiers: dict[str, float] = field(default_factory=dict)
    workers: int = 2
    timeout_s: float = 10.0  # hard per-item limit (the scoring worker is killed)
    format_weight: float = 0.0  # shorthand for verifiers: {<verifier>: 1, format: format_weight}


@dataclass
class AlgorithmConfig:
    preset: str = "grpo"
    # Any field of rlvr.algorithms.presets.Preset may be overridden here (e.g. clip_high: 0.28);
    # they are collected into `overrides` and validated against the preset when it is built.
    overrides: dict[str, Any] = field(default_factory=dict)
    tis_cap: float | None = None  # truncated importance-sampling correction pi_train/pi_rollout <= C
    filter_zero_std_groups: bool = False  # drop groups whose rewards are all equal
    overlong: str = "keep"  # truncated responses: "keep" | "mask" (no loss) | "penalty"
    overlong_penalty: float = 0.0  # reward given to truncated responses when overlong == "penalty"
    value_clip: float | None = 0.2
    value_coef: float = 0.5  # weight of the value loss when the critic shares the policy trunk
    # a value head that starts at the first batch's mean score instead of 0 (critic lambda and value
    # warm-up are preset fields: algorithm.lam_critic, algorithm.value_warmup_steps)
    value_init_from_returns: bool = True
    kl_clamp: float | None = 10.0  # bound on each token's k3 estimate (None: unbounded)
    # dynamic sampling (a preset's dynamic_sampling, DAPO): at most this many extra generation rounds
    # per step to refill the batch with mixed groups; then it trains on the mixed groups it has
    dynamic_sampling_max_rounds: int = 3


@dataclass
class TrainerConfig:
    seed: int = 0
    total_steps: int = 100
    max_samples: int | None = None  # stop once this many samples were generated
    max_tokens: int | None = None  # stop once this many response tokens were generated
    max_time_s: float | None = None  # stop once this much wall-clock has passed
    prompts_per_step: int = 8
    mini_batch_size: int | None = None  # samples per optimizer step; None = the whole batch
    micro_batch_size: int = 16  # samples per forward/backward (gradient accumulation)
    # Use the engine's sampling log-probs as pi_old instead of recomputing them (saves one forward
    # pass per step; exact for the hf engine, which samples from the policy itself, fp32).
    reuse_sampler_logprobs: bool = False
    # log-softmax in chunks of about this many tokens when a micro-batch has more (bounds the
    # [tokens, V] float32 logits); 0 disables chunking
    logprob_chunk_size: int = 4096
    # with model.trainable_layers = k, run the frozen lower blocks once per step (or take their
    # output from the embedded engine) and only the top k blocks in every later pass
    frozen_prefix_cache: bool = True
    lr: float = 1e-6
    critic_lr: float = 1e-5
    # the value head's own learning rate (None: critic_lr). With Adam every head weight moves about lr per
    # step, so a value can move by lr x sum_i |h_i| (SmolLM2's final states: L1 norm ~650): 1e-3 makes
    # the value swing (docs/results/chain4d1, critic-only fits); watch value/bias
    value_head_lr: float | None = None
    lr_schedule: str = "constant"  # "constant" | "linear" | "cosine"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_every: int = 0  # 0: only at the end (if data.eval is set)
    # periodic evals on the first N held-out items only (a fixed random subset: the items are drawn
    # with data.eval_seed); the final eval always uses every item. None: every item every time
    eval_every_limit: int | None = None
    eval_at_start: bool = False  # also evaluate before the first step (the base model's score)
    # the final eval also samples this many completions per item (pass@k for k = 1..N) and writes
    # per-item results to eval_items.jsonl; at final_eval_temperature (None: rollout.temperature)
    final_eval_samples: int = 0
    final_eval_temperature: float | None = None
    checkpoint_every: int = 0  # 0: only at the end and on SIGINT/SIGTERM
    keep_checkpoints: int = 0  # 0: keep every checkpoint; N: after each save keep only the newest N
    gradvar_every: int = 0  # 0: off; else the gradient-variance diagnostic every N steps
    gradvar_splits: int = 4
    max_bad_steps: int = 3  # consecutive steps skipped for a non-finite loss or gradient norm before stopping
    # several processes: a collective that waits longer than this fails (a peer died or hangs)
    # instead of blocking forever; it must exceed the longest eval/checkpoint the others wait for
    dist_timeout_s: float = 1800.0
    # several processes: "ddp" (every process holds the full models, gradients all-reduced),
    # "fsdp2" (policy, critic and reference sharded with FSDP2; docs/scaling.md), "auto" (fsdp2
    # when accelerate launch was given an FSDP config, e.g. recipes/accelerate/fsdp2.yaml, else ddp)
    distributed: str = "auto"
    output_dir: str = "runs/default"
    tensorboard: bool = True
    wandb_project: str | None = None
    progress: bool = True
    device: str = "auto"


@dataclass
class Config:
    name: str = "default"
    # equivalence margin m of a comparison of runs of this recipe (rlvr compare / report verdicts:
    # "equivalent within +/-m"), declared before the runs; rlvr compare --margin overrides it
    margin: float | None = None
    # named variants of a preset for controlled comparisons: ``arms: {trpo_full_fisher: {preset: trpo,
    # algorithm.trpo_fvp_fraction: 1.0}}`` ("preset" plus any dotted settings). ``rlvr compare
    # --presets`` takes arm names beside preset names, each arm's runs in a directory of its name;
    # ``arm: NAME`` (or the override arm=NAME) trains one: recipe < arm < command-line overrides
    arms: dict[str, Any] = field(default_factory=dict)
    arm: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["rollout"]["server"]["token"] = None  # a secret: not saved with the run (nor sent to a logger)
        algo = d["algorithm"]
        algo.update(algo.pop("overrides"))
        return d


# ---------------------------------------------------------------------------------------------
# building and validation


def _check_type(value: Any, tp: Any, where: str) -> Any:
    """Coerce ``value`` to annotation ``tp`` (as resolved by typing.get_type_hints) or raise."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where}: expected a finite number, got {value!r}")
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if value is None:
        raise ConfigError(f"{where}: a value is required")
    return value


def _unknown(key: str, valid: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"unknown key '{where}{key}'{hint}; valid keys: {', '.join(sorted(valid))}")


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip('.') or 'recipe'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            if cls is AlgorithmConfig:
                extra[key] = value
                continue
            raise _unknown(str(key), names, where)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, f"{where}{key}.")
        else:
            kwargs[key] = _check_type(value, tp, f"{where}{key}")
    obj = cls(**kwargs)
    if cls is AlgorithmConfig:
        obj.overrides = {**obj.overrides, **extra}
    return obj


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{p}' is not a section")
    node[parts[-1]] = value


_NULLS = ("null", "Null", "NULL", "~")


def _field_type(dotted: str) -> Any:
    """The annotation of the config field ``dotted`` names (``algorithm.<preset field>`` included),
    or None for a key that names no field (it is reported when the config is built)."""
    parts = dotted.split(".")
    cls: Any = Config
    for i, name in enumerate(parts):
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            return None
        hints = typing.get_type_hints(cls)
        if name not in hints:
            if cls is AlgorithmConfig and i == len(parts) - 1:
                from rlvr.algorithms.presets import Preset

                return typing.get_type_hints(Preset).get(name)
            return None
        cls = hints[name]
    return cls


def _is_text(tp: Any) -> tuple[bool, bool]:
    """(``tp`` is a string field, it may also be None)."""
    if tp is str:
        return True, False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = set(typing.get_args(tp))
        if args == {str, type(None)}:
            return True, True
    return False, False


def parse_override(text: str) -> tuple[str, Any]:
    """``"trainer.lr=1e-6"`` -> ("trainer.lr", 1e-6).

    A string field takes the text after ``=`` verbatim (``data.system_prompt=Think # then answer``
    keeps its ``#``; ``trainer.output_dir=runs/exp #2`` is that directory); an optional one reads
    ``null`` or ``~`` as None. Every other value is parsed as YAML (numbers, true/false, lists,
    mappings), numeric strings such as ``1e-6`` as numbers."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    is_text, optional = _is_text(_field_type(key))
    if is_text:
        return key, None if optional and raw.strip() in _NULLS else raw
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, float) or isinstance(value, int):
        return key, value
    # YAML reads "1e-6" as a string; accept numeric strings as numbers
    if isinstance(value, str):
        try:
            return key, float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            pass
    return key, value


def validate(cfg: Config) -> Config:
    """Cross-field checks that a dataclass cannot express; raises ConfigError naming the field."""
    from rlvr.algorithms.presets import get_preset

    if cfg.margin is not None and not (math.isfinite(cfg.margin) and 0 < cfg.margin < 1):
        raise ConfigError(f"margin: {cfg.margin} must be a difference in accuracy between 0 and 1 (e.g. 0.02)")
    try:
        preset = get_preset(cfg.algorithm.preset)
    except (KeyError, ValueError) as e:
        raise ConfigError(f"algorithm.preset: {e}") from None
    try:
        preset.with_overrides(**cfg.algorithm.overrides)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"algorithm: {e}") from None
    from rlvr.rollout import ENGINES

    embedded = cfg.rollout.engine in ENGINES and ENGINES[cfg.rollout.engine].embedded
    bad = [k for k, v in cfg.algorithm.overrides.items()
           if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise ConfigError(f"algorithm.{bad[0]}: expected a finite number, got {cfg.algorithm.overrides[bad[0]]!r}")
    t, r, d, a, m = cfg.trainer, cfg.rollout, cfg.data, cfg.algorithm, cfg.model
    vl, sv = r.vllm, r.server

    def at_least(value, lo, name, optional=False):
        return ((optional and value is None) or value >= lo, f"{name} must be >= {lo}, got {value}")

    def positive(value, name, optional=False):
        return ((optional and value is None) or value > 0, f"{name} must be > 0, got {value}")

    ranges = [  # every numeric field: its range (floats are already finite, see _check_type)
        (0 <= t.seed < 2**31, f"trainer.seed must be in 0..2147483647, got {t.seed}"),
        (0 <= d.eval_seed < 2**31, f"data.eval_seed must be in 0..2147483647, got {d.eval_seed}"),
        at_least(d.train_limit, 1, "data.train_limit", True), at_least(d.eval_limit, 1, "data.eval_limit", True),
        at_least(t.max_samples, 1, "trainer.max_samples", True), at_least(t.max_tokens, 1, "trainer.max_tokens", True),
        positive(t.max_time_s, "trainer.max_time_s", True), positive(t.critic_lr, "trainer.critic_lr"),
        positive(t.value_head_lr, "trainer.value_head_lr", True), at_least(t.warmup_steps, 0, "trainer.warmup_steps"),
        at_least(t.weight_decay, 0, "trainer.weight_decay"), positive(t.max_grad_norm, "trainer.max_grad_norm"),
        at_least(t.eval_every, 0, "trainer.eval_every"), at_least(t.eval_every_limit, 1, "trainer.eval_every_limit", True),
        at_least(t.checkpoint_every, 0, "trainer.checkpoint_every"),
        at_least(t.keep_checkpoints, 0, "trainer.keep_checkpoints"),
        at_least(t.gradvar_every, 0, "trainer.gradvar_every"), at_least(t.final_eval_samples, 0, "trainer.final_eval_samples"),
        positive(t.final_eval_temperature, "trainer.final_eval_temperature", True),
        at_least(t.max_bad_steps, 1, "trainer.max_bad_steps"), positive(t.dist_timeout_s, "trainer.dist_timeout_s"),
        at_least(t.logprob_chunk_size, 0, "trainer.logprob_chunk_size"),
        at_least(r.micro_batch_size, 1, "rollout.micro_batch_size"),
        at_least(r.eval_max_new_tokens, 1, "rollout.eval_max_new_tokens", True),
        at_least(vl.kv_cache_memory_bytes, 1, "rollout.vllm.kv_cache_memory_bytes", True),
        (vl.gpu_memory_utilization is None or 0 < vl.gpu_memory_utilization <= 1,
         f"rollout.vllm.gpu_memory_utilization must be in (0, 1], got {vl.gpu_memory_utilization}"),
        at_least(vl.tensor_parallel_size, 1, "rollout.vllm.tensor_parallel_size"),
        at_least(vl.max_model_len, 1, "rollout.vllm.max_model_len"),
        at_least(vl.serving_threads, 1, "rollout.vllm.serving_threads", True),
        positive(sv.timeout_s, "rollout.server.timeout_s"), positive(sv.connect_timeout_s, "rollout.server.connect_timeout_s"),
        at_least(sv.reconnect_s, 0, "rollout.server.reconnect_s"), at_least(sv.verify_tol, 0, "rollout.server.verify_tol", True),
        at_least(cfg.reward.workers, 0, "reward.workers"), positive(cfg.reward.timeout_s, "reward.timeout_s"),
        positive(a.value_clip, "algorithm.value_clip", True), at_least(a.value_coef, 0, "algorithm.value_coef"),
        positive(m.lora_alpha, "model.lora_alpha"),
    ]
    for ok, msg in ranges:
        if not ok:
            raise ConfigError(msg)
    checks = [
        (cfg.rollout.engine in ENGINES, f"rollout.engine must be one of {', '.join(ENGINES)}"),
        (cfg.rollout.n >= 1, "rollout.n must be >= 1"),
        (cfg.rollout.temperature > 0, "rollout.temperature must be > 0 for training"),
        (0 < cfg.rollout.top_p <= 1, "rollout.top_p must be in (0, 1]"),
        (cfg.rollout.max_new_tokens >= 1, "rollout.max_new_tokens must be >= 1"),
        (cfg.rollout.server.weight_transport in ("http", "collective", "auto"),
         "rollout.server.weight_transport must be http, collective or auto, "
         f"got {cfg.rollout.server.weight_transport!r}"),
        (0 <= cfg.rollout.server.collective_port < 65536, "rollout.server.collective_port must be in 0..65535"),
        (cfg.trainer.total_steps >= 1, "trainer.total_steps must be >= 1"),
        (cfg.trainer.prompts_per_step >= 1, "trainer.prompts_per_step must be >= 1"),
        (cfg.trainer.micro_batch_size >= 1, "trainer.micro_batch_size must be >= 1"),
        (cfg.trainer.mini_batch_size is None or cfg.trainer.mini_batch_size >= 1,
         "trainer.mini_batch_size must be >= 1"),
        (cfg.trainer.lr > 0, "trainer.lr must be > 0"),
        (cfg.trainer.lr_schedule in ("constant", "linear", "cosine"),
         "trainer.lr_schedule must be constant, linear or cosine"),
        (cfg.trainer.gradvar_splits >= 2, "trainer.gradvar_splits must be >= 2"),
        (cfg.trainer.distributed in ("auto", "ddp", "fsdp2"), "trainer.distributed must be auto, ddp or fsdp2"),
        (cfg.algorithm.overlong in ("keep", "mask", "penalty"),
         "algorithm.overlong must be keep, mask or penalty"),
        (cfg.algorithm.tis_cap is None or cfg.algorithm.tis_cap >= 1, "algorithm.tis_cap must be >= 1"),
        (not cfg.trainer.reuse_sampler_logprobs or (embedded and cfg.rollout.top_p == 1.0),
         "trainer.reuse_sampler_logprobs needs an embedded engine (rollout.engine=hf) and rollout.top_p=1 "
         "(the sampler's log-probs must be the policy's own)"),
        (cfg.model.lora_r >= 0, "model.lora_r must be >= 0"),
        (cfg.model.lora_dropout == 0, "model.lora_dropout must be 0: dropout is off in every RL pass (pi_old is "
         "taken without it, so an on-policy ratio pi/pi_old stays exactly 1)"),
        (cfg.algorithm.kl_clamp is None or cfg.algorithm.kl_clamp > 0, "algorithm.kl_clamp must be > 0"),
        (cfg.algorithm.dynamic_sampling_max_rounds >= 0, "algorithm.dynamic_sampling_max_rounds must be >= 0"),
        (cfg.model.trainable_layers is None or cfg.model.trainable_layers >= 1,
         "model.trainable_layers must be >= 1"),
        (cfg.model.dtype in (None, "float32", "bfloat16", "float16"),
         "model.dtype must be float32, bfloat16 or float16"),
        (cfg.data.format in (None, "gsm8k", "math", "humaneval", "mbpp", "generic", "trl"),
         f"data.format must be trl, gsm8k, math, humaneval, mbpp or generic (or null: detect), got {cfg.data.format!r}"),
        (cfg.data.reference_column is None or cfg.data.format == "trl",
         "data.reference_column needs data.format: trl (other formats say where their reference is)"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    from rlvr.algorithms.presets import check_rollout

    built = preset.with_overrides(**cfg.algorithm.overrides)
    if cfg.data.pairs:
        if built.update_rule != "dpo":
            raise ConfigError(f"data.pairs needs a pairwise preset (update_rule 'dpo'), not "
                              f"{built.name} (update_rule {built.update_rule!r})")
        if cfg.trainer.reuse_sampler_logprobs or built.dynamic_sampling:
            raise ConfigError("data.pairs: offline pairs have no sampler log-probs and no sampling; "
                              "set trainer.reuse_sampler_logprobs=false and no dynamic_sampling")
    if built.update_rule == "trpo" and cfg.model.critic_shared_trunk:
        raise ConfigError("model.critic_shared_trunk must be false with update_rule 'trpo': value-loss steps "
                          "through a shared trunk would move the policy outside its trust region")
    check_rollout(built, 2 if cfg.data.pairs else cfg.rollout.n, cfg.rollout.max_new_tokens)
    from rlvr.scoring import validate_reward

    validate_reward(cfg.reward)  # every named verifier resolves (a spec imports, right signature)
    return cfg


def _move_renamed_keys(tree: dict[str, Any]) -> None:
    """Read the flat ``rollout.vllm_*`` keys of earlier versions into ``rollout.vllm.*``, with a warning."""
    import warnings

    rollout = tree.get("rollout")
    if not isinstance(rollout, dict):
        return
    for old, new in _MOVED_ROLLOUT_KEYS.items():
        if old not in rollout:
            continue
        section, key = new.split(".")
        dest = rollout.setdefault(section, {}) or {}
        rollout[section] = dest
        if not isinstance(dest, dict):
            raise ConfigError(f"rollout.{section}: expected a mapping, got {dest!r}")
        if key in dest:
            raise ConfigError(f"rollout.{old} and rollout.{new} are both set; keep only rollout.{new}")
        dest[key] = rollout.pop(old)
        warnings.warn(f"rollout.{old} is deprecated: it is now rollout.{new}", FutureWarning, stacklevel=3)


def from_dict(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    tree = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (data or {}).items()}
    given = []
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
        given.append(key)
    arms = _check_arms(tree)
    if tree.get("arm") is not None:
        _apply_arm(tree, arms, str(tree["arm"]), given)
    _move_renamed_keys(tree)
    return validate(_build(Config, tree, ""))


_SECTIONS = ("model", "data", "rollout", "reward", "algorithm", "trainer")
ARM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _check_arms(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The recipe's ``arms``, each checked: a name usable as a directory that is not a preset's, a
    mapping of settings, and a valid config once applied (errors name ``arms.<name>.<key>``)."""
    from rlvr.algorithms.presets import PRESETS

    arms = tree.get("arms") or {}
    if not isinstance(arms, dict):
        raise ConfigError(f"arms: expected a mapping of arm name -> settings, got {arms!r}")
    for name, settings in arms.items():
        if not isinstance(name, str) or not ARM_NAME.fullmatch(name):
            raise ConfigError(f"arms.{name}: an arm's name must be letters, digits, '_', '.' or '-' "
                              "(it names the arm's run directories)")
        if name in PRESETS:
            raise ConfigError(f"arms.{name}: '{name}' is a preset's name; give the arm a name of its own")
        if not isinstance(settings, dict) or not settings:
            raise ConfigError(f"arms.{name}: expected a mapping of settings (preset: ..., section.key: value), "
                              f"got {settings!r}")
        trial = {k: (dict(v) if isinstance(v, dict) else v) for k, v in tree.items() if k not in ("arms", "arm")}
        _apply_arm(trial, {name: settings}, name, [])
        try:
            validate(_build(Config, trial, ""))
        except ConfigError as e:
            raise ConfigError(f"arms.{name}: {e}") from None
    return arms


def arm_settings(arms: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    """Arm ``name``'s settings as dotted keys (its ``preset`` is ``algorithm.preset``)."""
    if name not in arms:
        listed = ", ".join(arms) or "none"
        raise ConfigError(f"arm: unknown arm {name!r}; the recipe's arms: {listed}")
    out = {}
    for key, value in arms[name].items():
        dotted = "algorithm.preset" if key == "preset" else str(key)
        if dotted.split(".")[0] not in _SECTIONS or "." not in dotted:
            raise ConfigError(f"arms.{name}.{key}: expected 'preset' or a dotted setting of a section "
                              f"({', '.join(_SECTIONS)}), such as trainer.lr")
        out[dotted] = value
    return out


def _apply_arm(tree: dict[str, Any], arms: dict[str, dict[str, Any]], name: str, given: list[str]) -> None:
    """Write arm ``name``'s settings into ``tree``, except those given on the command line (they win)."""
    for dotted, value in arm_settings(arms, name).items():
        if dotted not in given:
            _set_dotted(tree, dotted, value)


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML recipe (or defaults when path is None), apply dotted overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"recipe not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{p}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: a recipe must be a mapping of sections")
        data.setdefault("name", p.stem)
    return from_dict(data, overrides)


def flat_settings(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"trainer": {"lr": 1e-6}}`` -> ``{"trainer.lr": 1e-6}`` (mappings flattened to the leaves)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(flat_settings(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def settings_changed(before: dict[str, Any], cfg: Config) -> dict[str, list[Any]]:
    """``{key: [before, now]}`` for every setting whose value differs between a saved config
    (``config.yaml``'s mapping; keys it lacks take their defaults) and ``cfg``."""
    import json

    try:
        old = _build(Config, {k: (dict(v) if isinstance(v, dict) else v) for k, v in before.items()}, "").to_dict()
    except ConfigError:  # written by another version: compare what is there
        old = before
    a, b = flat_settings(old), flat_settings(cfg.to_dict())
    same = lambda x, y: json.dumps(x, sort_keys=True, default=str) == json.dumps(y, sort_keys=True, default=str)  # noqa: E731
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if not same(a.get(k), b.get(k))}


def save_config(cfg: Config, path: str | Path) -> None:
    from rlvr.rundir import write_atomic

    write_atomic(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
