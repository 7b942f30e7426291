"""vLLM rollout engine, colocated with the trainer (same process), with verified weight sync.

Sampling. Each prompt becomes one vLLM request with ``n`` samples; vLLM returns them as the
request's ``n`` completions, which we lay out contiguously (sample i = prompt i // n). The engine is
built with ``logprobs_mode="processed_logprobs"``, so the log-prob reported for a sampled token is
``log q(y)`` with ``q = softmax(topp(z / T))`` -- the distribution the token was actually drawn from,
after temperature and top-p (vLLM's default, ``raw_logprobs``, would report ``log softmax(z)[y]``
whatever T and top-p were). Greedy requests (T = 0) report ``log softmax(z)[y]``. This is the same
convention as :mod:`rlvr.rollout.hf`, and what :func:`rlvr.models.sequence_logprobs` recomputes
at the same temperature (exactly so when top_p = 1).

Weight sync (:meth:`VLLMEngine.sync_weights`). The trainer's weights are exported under the base
model's Hugging Face names (:func:`hf_weights`: LoRA deltas merged, tied aliases dropped), checked
against the checkpoint's names and shapes, pushed by the first path the installed vLLM offers:

1. ``load_weights`` -- the live model still holds checkpoint-layout parameters (the usual GPU case):
   ``model.load_weights(iter)`` on the driver worker's model, in-process;
2. ``reload_weights`` -- the live parameters were repacked into kernel layouts after loading (vLLM
   on CPU packs linear weights into oneDNN handles, leaving empty parameters that
   ``load_weights`` cannot fill): the worker's in-place ``reload_weights(weights_iterator=...)``,
   which restores checkpoint layout, loads and re-runs the packing;
3. ``reload_from_disk`` -- the engine runs in other processes (``VLLM_ENABLE_V1_MULTIPROCESSING=1``
   or tensor parallel > 1): weights are written to a temporary safetensors directory and every
   worker reloads them (``rlvr_reload_weights``, a method :mod:`rlvr.rollout.vllm_worker` adds to
   vLLM's workers, which also re-prepares a tied output head).

Then the prefix cache is reset (cached KV blocks were computed by the old weights), and the sync is
verified: the engine's prompt log-probs of a fixed probe text must match the trainer model's within
``verify_tol`` (mean |delta| per token), else ``RuntimeError``.

Environment defaults (set only when the user has not set them, before vLLM is imported):
``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (engine core in this process: colocated, and needed by sync
paths 1-2) and ``VLLM_CPU_NUM_OF_RESERVED_CPU=0`` (vLLM on CPU otherwise keeps a core idle).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rlvr.errors import ModelError
from rlvr.rollout.base import Rollout, SamplingParams, continuation_limits
from rlvr.rollout.vllm_worker import WORKER_EXTENSION, refresh_tied_head

log = logging.getLogger(__name__)

ENV_DEFAULTS = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
INSTALL_HINT = 'pip install -e ".[vllm]"'
SYNC_PATHS = ("load_weights", "reload_weights", "reload_from_disk")
SYNC_FILE_BYTES = 1 << 30  # reload_from_disk: safetensors files of about this size
# Fixed probe text for the sync fingerprint: ordinary prose and arithmetic, so next-token
# distributions are peaked and log-prob differences reflect weights, not noise in flat tails.
PROBE_TEXT = (
    "Question: Natalia sold clips to 48 of her friends in April, and then she sold half as many "
    "clips in May. How many clips did Natalia sell altogether in April and May?\n"
    "Answer: In May she sold 48 / 2 = 24 clips. Altogether she sold 48 + 24 = 72 clips."
)
# Default fingerprint tolerance (mean |delta log p| per probe token) by the coarser dtype in play.
# Measured on SmolLM2-135M (fp32 vs fp32: ~1e-5; see docs/benchmarks.md); a weight sync that did not
# take after one optimizer step at lr 1e-5 moves the fingerprint by far more than these.
VERIFY_TOL = {torch.float32: 1e-3, torch.bfloat16: 0.1, torch.float16: 0.05}


def import_vllm():
    """Import vLLM or raise a one-line :class:`ModelError` saying how to install it."""
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        import vllm
    except ImportError as e:
        raise ModelError(f"rollout.engine=vllm needs vLLM ({e}); install it with {INSTALL_HINT}") from None
    except Exception as e:  # noqa: BLE001 - e.g. a CUDA torchvision beside a CPU torch
        raise ModelError(
            f"vLLM is installed but failed to import: {type(e).__name__}: {e}. If the message names "
            "torchvision, uninstall it (pip uninstall -y torchvision torchaudio torchcodec)"
        ) from None
    return vllm


# ----------------------------------------------------------------------------- trainer weights


def _is_peft(model: torch.nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def _lora_deltas(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``{state-dict name of a LoRA-wrapped base weight: delta W}`` for the active adapters.

    peft's ``get_delta_weight`` gives delta W = (alpha / r) B A; adapters already merged into the
    base weight (``layer.merged``) contribute nothing more.
    """
    deltas: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if not (hasattr(module, "get_delta_weight") and hasattr(module, "base_layer")):
            continue
        if getattr(module, "merged", False) or getattr(module, "disable_adapters", False):
            continue
        adapters = [a for a in module.active_adapters if a in getattr(module, "lora_A", {})
                    or a in getattr(module, "lora_embedding_A", {})]
        if adapters:
            deltas[f"{name}.base_layer.weight"] = sum(module.get_delta_weight(a) for a in adapters)
    return deltas


def _peft_base_name(name: str) -> str | None:
    """Map a peft state-dict name to the base model's name; None for adapter-only tensors."""
    parts = name.split(".")
    if any(p.startswith("lora_") for p in parts) or "original_module" in parts:
        return None
    if "modules_to_save" in parts:  # "<m>.modules_to_save.<adapter>.weight" -> "<m>.weight"
        i = parts.index("modules_to_save")
        parts = parts[:i] + parts[i + 2 :]
    parts = [p for p in parts if p != "base_layer"]
    name = ".".join(parts)
    return name.removeprefix("base_model.model.")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """Look through DDP (``.module``), FSDP2 root (:class:`rlvr.fsdp.FSDPRoot`) and
    ``torch.compile`` (``._orig_mod``) wrappers."""
    from rlvr.fsdp import FSDPRoot

    while True:
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, FSDPRoot)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        else:
            return model


@torch.no_grad()
def hf_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainer's current weights under the base model's Hugging Face names, detached.

    peft/LoRA models: W = W_base + (alpha / r) B A per wrapped layer (computed, the trainer's model
    is left untouched), names stripped of ``base_model.model.`` and ``.base_layer``. Tied tensors
    (``lm_head.weight`` sharing the embedding) appear under every name; :meth:`VLLMEngine.sync_weights`
    keeps the names the checkpoint has. DDP (``.module``) and ``torch.compile`` (``._orig_mod``)
    wrappers are looked through.

    FSDP2-sharded models: the values are the sharded parameters themselves (tied names share one
    object); :func:`rlvr.fsdp.full_tensors` gathers them one at a time as they are sent.
    """
    from rlvr.fsdp import is_sharded

    model = _unwrap(model)
    if is_sharded(model):
        if _is_peft(model):
            raise ModelError("weight sync: LoRA adapters on an FSDP2-sharded model are not supported")
        return dict(model.state_dict(keep_vars=True))
    state = model.state_dict(keep_vars=False)
    if not _is_peft(model):
        return {k: v.detach() for k, v in state.items()}
    deltas = _lora_deltas(model)
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        base = _peft_base_name(name)
        if base is None:
            continue
        delta = deltas.get(name)
        out[base] = (tensor + delta.to(tensor.dtype)) if delta is not None else tensor.detach()
    return out


def checkpoint_shapes(model_path: str) -> dict[str, tuple[int, ...]] | None:
    """``{name: shape}`` of the tensors in ``model_path``'s safetensors files (None if it has none)."""
    files = sorted(Path(model_path).glob("*.safetensors")) if Path(model_path).is_dir() else []
    if not files:
        return None
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as sf:
            for k in sf.keys():
                shapes[k] = tuple(sf.get_slice(k).get_shape())
    return shapes


def _alias_key(t: torch.Tensor):
    """Tensors with equal keys are one tensor under two names (tied weights). A sharded (DTensor)
    parameter is recognised by identity: its local shard may be empty, so has no distinct address."""
    from torch.distributed.tensor import DTensor

    return ("id", id(t)) if isinstance(t, DTensor) else t.data_ptr()


def select_weights(weights: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]] | None):
    """Check ``weights`` against the checkpoint's ``expected`` names/shapes; return the list to send.

    Names the checkpoint lacks are dropped when they alias a tensor that is sent (tied embeddings);
    any other mismatch -- missing names, unknown names, wrong shapes -- raises ``RuntimeError``
    before the engine is touched, since a partial load would leave it on a mix of old and new weights.
    """
    if expected is None:
        return list(weights.items())
    sent_ptrs = {_alias_key(v) for k, v in weights.items() if k in expected}
    missing = sorted(set(expected) - set(weights))
    unknown = sorted(k for k, v in weights.items() if k not in expected and _alias_key(v) not in sent_ptrs)
    bad_shape = sorted(f"{k} {tuple(v.shape)} != {expected[k]}" for k, v in weights.items()
                       if k in expected and tuple(v.shape) != expected[k])
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unknown:
        problems.append(f"{len(unknown)} not in the engine's checkpoint (e.g. {', '.join(unknown[:3])})")
    if bad_shape:
        problems.append(f"{len(bad_shape)} with another shape (e.g. {'; '.join(bad_shape[:3])})")
    if problems:
        raise RuntimeError("weight sync refused, the trainer's weights do not match the engine's model: "
                           + "; ".join(problems))
    return [(k, v) for k, v in weights.items() if k in expected]


# ----------------------------------------------------------------------------- the engine


class VLLMEngine:
    """:class:`~rlvr.rollout.base.RolloutEngine` backed by a colocated ``vllm.LLM``.

    ``model_path``: local Hugging Face model directory (e.g. ``rlvr.models.resolve_model_path(name)``).
    ``tokenizer``: a transformers tokenizer (used for the sync probe; vLLM loads its own from
    ``model_path`` otherwise). ``dtype``: vLLM's (``"auto"``, ``"float32"``, ``"bfloat16"``...).
    Memory: ``kv_cache_memory_bytes`` (default 1 GiB on CPU, where vLLM's memory-fraction default
    fails) or ``gpu_memory_utilization``. ``enable_sleep_mode``: ``"auto"`` = where the platform
    supports it (CUDA/ROCm/XPU). ``verify_tol``: sync fingerprint tolerance (None: by dtype).
    ``serving_threads``: torch threads while vLLM runs (None: leave the count as it is); the
    trainer's own count is restored after every engine call.
    """

    def __init__(self, model_path: str, tokenizer=None, *, dtype: str = "auto", max_model_len: int = 4096,
                 kv_cache_memory_bytes: int | None = None, gpu_memory_utilization: float | None = None,
                 tensor_parallel_size: int = 1, enable_sleep_mode: bool | str = "auto",
                 enforce_eager: bool = False, seed: int = 0, verify_tol: float | None = None,
                 serving_threads: int | None = None, **llm_kwargs: Any):
        vllm = import_vllm()
        from vllm.platforms import current_platform

        if not Path(model_path).is_dir():
            raise ModelError(f"vLLM engine: model directory {model_path!r} does not exist")
        if enable_sleep_mode == "auto":
            enable_sleep_mode = bool(current_platform.is_sleep_mode_available())
        memory: dict[str, Any] = {}
        if kv_cache_memory_bytes is not None:
            memory["kv_cache_memory_bytes"] = int(kv_cache_memory_bytes)
        elif gpu_memory_utilization is not None:
            memory["gpu_memory_utilization"] = float(gpu_memory_utilization)
        elif current_platform.is_cpu():
            memory["kv_cache_memory_bytes"] = 1 << 30
        self.model_path = str(model_path)
        self.sleep_mode = bool(enable_sleep_mode)
        self.verify_tol = verify_tol
        self.max_model_len = max_model_len
        self.serving_threads = serving_threads
        self.last_sync: dict[str, Any] = {}
        self._asleep = False
        self._broken: str | None = None
        self._vllm = vllm
        # vLLM's CPU worker replaces torch.set_num_threads by a no-op, process-wide (which also
        # defeats its own switch to 1 serving thread). The trainer shares this process: restore it.
        self._set_threads, threads = torch.set_num_threads, torch.get_num_threads()
        llm_kwargs.setdefault("worker_extension_cls", WORKER_EXTENSION)
        # Another extension class (the user's own) lacks rlvr_reload_weights: plain reloads then.
        self._reload_rpc = ("rlvr_reload_weights" if llm_kwargs["worker_extension_cls"] == WORKER_EXTENSION
                            else "reload_weights")
        try:
            self.llm = vllm.LLM(
                model=self.model_path, dtype=dtype, max_model_len=max_model_len, seed=seed,
                tensor_parallel_size=tensor_parallel_size, enable_sleep_mode=self.sleep_mode,
                enforce_eager=enforce_eager, logprobs_mode="processed_logprobs", **memory, **llm_kwargs,
            )
        finally:
            torch.set_num_threads = self._set_threads
            self._set_threads(threads)
        self.tokenizer = tokenizer if tokenizer is not None else self.llm.get_tokenizer()
        self.dtype = self.llm.llm_engine.model_config.dtype
        self.device_type = str(current_platform.device_type)  # "cuda", "cpu", ...
        self.expected_shapes = checkpoint_shapes(self.model_path)
        self.probe_ids: list[int] = list(self.tokenizer(PROBE_TEXT)["input_ids"])

    @contextlib.contextmanager
    def _serving(self):
        """Run vLLM with ``serving_threads`` torch threads (if set), then restore the trainer's count.

        Measured on 2 CPU cores (SmolLM2, bf16): with other jobs competing for the cores, 1 thread
        decoded ~5x faster than 2 (idle OpenMP workers spin-wait between the small ops of a decode
        step); on quiet cores 2 threads were ~25% faster. Hence a knob, default unchanged.
        """
        trainer_threads = torch.get_num_threads()
        if self.serving_threads:
            self._set_threads(self.serving_threads)
        try:
            yield
        finally:
            self._set_threads(trainer_threads)

    @classmethod
    def from_config(cls, section, model_path: str, tokenizer=None, *, dtype: str | None = None, seed: int = 0,
                    **overrides: Any) -> "VLLMEngine":
        """Build from the engine's own config section (``rollout.vllm``, a ``rlvr.config.VLLMConfig``).

        ``dtype`` None: the trainer's own default (bf16 on CUDA, fp32 on CPU; the same dtype keeps
        sampling on-policy). ``overrides`` win over the section (e.g. ``enforce_eager=True`` in tests).
        """
        kwargs: dict[str, Any] = dict(
            dtype=dtype or ("bfloat16" if torch.cuda.is_available() else "float32"),
            kv_cache_memory_bytes=section.kv_cache_memory_bytes, gpu_memory_utilization=section.gpu_memory_utilization,
            tensor_parallel_size=section.tensor_parallel_size, enforce_eager=section.enforce_eager,
            max_model_len=section.max_model_len, serving_threads=section.serving_threads, seed=seed,
        )
        kwargs.update(overrides)
        return cls(model_path, tokenizer, **kwargs)

    # ------------------------------------------------------------------ sampling

    def _request_params(self, params: SamplingParams, seed: int | None):
        return self._vllm.SamplingParams(
            n=params.n, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens,
            seed=seed, stop_token_ids=list(params.stop_token_ids), logprobs=0, skip_special_tokens=True,
        )

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> Rollout:
        """Sample ``params.n`` responses per prompt; groups contiguous (see :class:`Rollout`).

        With ``params.seed`` set, prompt i's request gets seed ``seed + i * n`` and vLLM gives its
        k-th sample ``seed + i * n + k``: every sample has its own reproducible stream.
        """
        for i, p in enumerate(prompts):
            if not p:
                raise ValueError(f"prompt {i} is empty")
        return self._sample([list(p) for p in prompts], [params.max_new_tokens] * len(prompts), params, "prompt")

    def generate_continuations(self, prompts: list[list[int]], partials: list[list[int]],
                               params: SamplingParams) -> Rollout:
        """``params.n`` continuations of each ``prompts[i] + partials[i]`` (one request per prefix,
        given as token ids), at most ``max_new_tokens - len(partials[i])`` tokens each; layout and
        budget: :func:`~rlvr.rollout.base.continuation_limits`; seeds as in :meth:`generate`."""
        limits = continuation_limits(prompts, partials, params)
        return self._sample([list(p) + list(q) for p, q in zip(prompts, partials)], limits, params, "prefix")

    def _sample(self, prompts: list[list[int]], limits: list[int], params: SamplingParams, what: str) -> Rollout:
        """``params.n`` samples of each of ``prompts`` (token ids), those of prompt i at most ``limits[i]``
        tokens long."""
        self._check_usable()
        if self._asleep:
            self.wake_up()
        for i, p in enumerate(prompts):
            if len(p) >= self.max_model_len:
                raise ValueError(f"{what} {i} has {len(p)} tokens, max_model_len is {self.max_model_len}")
        # vLLM refuses n > 1 for greedy requests: send n copies of the prompt instead (same output).
        copies = params.n if params.temperature == 0 else 1
        one = dataclasses.replace(params, n=params.n // copies)
        req = [self._request_params(dataclasses.replace(one, max_new_tokens=limits[i]),
                                    None if params.seed is None else params.seed + i * params.n)
               for i in range(len(prompts)) for _ in range(copies)]
        requests = [{"prompt_token_ids": list(p)} for p in prompts for _ in range(copies)]
        with self._serving():
            outputs = self.llm.generate(requests, req, use_tqdm=False)
        prompt_ids, response_ids, logprobs, finished, group_ids, texts = [], [], [], [], [], []
        for r, out in enumerate(outputs):
            i = r // copies  # prompt index
            for c in sorted(out.outputs, key=lambda c: c.index):
                tokens = list(c.token_ids)
                prompt_ids.append(list(prompts[i]))
                response_ids.append(tokens)
                logprobs.append([float(c.logprobs[j][t].logprob) for j, t in enumerate(tokens)])
                finished.append(c.finish_reason == "stop")
                group_ids.append(i)
                texts.append(c.text)
        return Rollout(prompt_ids, response_ids, logprobs, finished, group_ids, texts)

    def prompt_logprobs(self, token_ids: list[int]) -> torch.Tensor:
        """Engine log-probs ``[T-1]`` of tokens 1..T-1 of ``token_ids`` given their prefixes."""
        self._check_usable()
        sp = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        with self._serving():
            out = self.llm.generate([{"prompt_token_ids": list(token_ids)}], sp, use_tqdm=False)[0]
        return torch.tensor([out.prompt_logprobs[j][t].logprob for j, t in enumerate(token_ids) if j > 0])

    # ------------------------------------------------------------------ weight sync

    def _driver_worker(self):
        """The in-process worker (None when the engine core or workers live in other processes)."""
        core = getattr(self.llm.llm_engine, "engine_core", None)
        executor = getattr(getattr(core, "engine_core", None), "model_executor", None)
        wrapper = getattr(executor, "driver_worker", None)
        return getattr(wrapper, "worker", wrapper)

    def sync_path(self) -> str:
        """Which of :data:`SYNC_PATHS` this vLLM build and configuration support (probed, not assumed)."""
        worker = self._driver_worker()
        if worker is None or not hasattr(worker, "model_runner"):
            return "reload_from_disk"
        model = worker.model_runner.model
        if all(p.numel() > 0 for p in model.parameters()) and hasattr(model, "load_weights"):
            return "load_weights"
        if hasattr(worker, "reload_weights"):
            return "reload_weights"
        raise RuntimeError("this vLLM offers no way to update weights in place (no load_weights on a "
                           "checkpoint-layout model, no worker.reload_weights)")

    def _push(self, path: str, weights: list[tuple[str, torch.Tensor]]) -> None:
        """Load ``weights`` into the engine. Sharded (FSDP2) tensors are gathered one at a time as
        the engine consumes them (:func:`rlvr.fsdp.full_tensors`), never all at once."""
        from rlvr.fsdp import full_tensors

        if path == "load_weights":
            self._driver_worker().model_runner.model.load_weights(full_tensors(weights))
            refresh_tied_head(self._driver_worker().model_runner.model)
        elif path == "reload_weights":
            self._driver_worker().reload_weights(weights_iterator=full_tensors(weights))
            refresh_tied_head(self._driver_worker().model_runner.model)
        else:
            from safetensors.torch import save_file

            # Every worker reloads from this directory (vLLM then records it as the model path;
            # the next sync passes a new one). Files of at most SYNC_FILE_BYTES each, so the CPU
            # copy held at a time is bounded (the engine reads all *.safetensors of the directory).
            with tempfile.TemporaryDirectory(prefix="rlvr-sync-") as tmp:
                part: dict[str, torch.Tensor] = {}
                size, files = 0, 0
                for k, v in full_tensors(weights):
                    part[k] = v.detach().contiguous().cpu()
                    size += part[k].numel() * part[k].element_size()
                    if size >= SYNC_FILE_BYTES:
                        save_file(part, os.path.join(tmp, f"model-{files:05d}.safetensors"))
                        part, size, files = {}, 0, files + 1
                if part or not files:
                    save_file(part, os.path.join(tmp, f"model-{files:05d}.safetensors"))
                self.llm.collective_rpc(self._reload_rpc, kwargs={"weights_path": tmp})

    def reload_checkpoint(self) -> None:
        """The checkpoint's weights again, from ``model_path`` (after a push that failed midway left the
        engine on a mix of old and new weights), and a fresh prefix cache."""
        if self.sync_path() == "reload_from_disk":
            self.llm.collective_rpc(self._reload_rpc, kwargs={"weights_path": self.model_path})
        else:
            worker = self._driver_worker()
            worker.reload_weights(weights_path=self.model_path)
            refresh_tied_head(worker.model_runner.model)
        self.llm.reset_prefix_cache()
        self._broken = None

    def sync_weights(self, model: torch.nn.Module, *, verify: bool = True) -> None:
        """Push ``model``'s current weights into the engine, reset the prefix cache, verify.

        Raises ``RuntimeError`` when the weights do not match the engine's model (before touching it),
        when the push fails (the engine is then unusable: build a new one), or when the fingerprint
        check finds the engine still disagreeing with ``model``. Timing and the fingerprint go to
        ``self.last_sync``.
        """
        self._check_usable()
        if self._asleep:
            self.wake_up()
        t0 = time.perf_counter()
        weights = select_weights(hf_weights(model), self.expected_shapes)
        path = self.sync_path()
        try:
            self._push(path, weights)
        except Exception as e:
            self._broken = f"weight sync via {path} failed midway: {type(e).__name__}: {e}"
            raise RuntimeError(self._broken) from e
        self.llm.reset_prefix_cache()
        self.last_sync = {"path": path, "tensors": len(weights), "time_s": time.perf_counter() - t0}
        if verify:
            self.verify_sync(model)

    @torch.no_grad()
    def trainer_probe_logprobs(self, model: torch.nn.Module) -> torch.Tensor:
        """The trainer model's log-probs ``[T-1]`` of the probe tokens (float32, on CPU)."""
        device = next(model.parameters()).device
        ids = torch.tensor([self.probe_ids], device=device)
        was_training = model.training
        model.eval()
        try:
            logits = model(input_ids=ids).logits[0, :-1].float()
        finally:
            model.train(was_training)
        return logits.log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0].cpu()

    def verify_sync(self, model: torch.nn.Module) -> dict[str, float]:
        """Compare engine and trainer log-probs on the probe text; ``RuntimeError`` if they disagree.

        Fingerprint: d_t = |log p_engine(x_t | x_<t) - log p_train(x_t | x_<t)| over the probe tokens;
        the sync took when mean_t d_t <= tol (default :data:`VERIFY_TOL` of the coarser dtype).
        """
        engine_lp = self.prompt_logprobs(self.probe_ids)
        trainer_lp = self.trainer_probe_logprobs(model)
        diff = (engine_lp - trainer_lp).abs()
        model_dtype = next(model.parameters()).dtype
        tol = self.verify_tol
        if tol is None:
            tol = max(VERIFY_TOL.get(self.dtype, 0.1), VERIFY_TOL.get(model_dtype, 0.1))
        stats = {"probe_diff_mean": float(diff.mean()), "probe_diff_max": float(diff.max()), "probe_tol": tol}
        self.last_sync.update(stats)
        if not stats["probe_diff_mean"] <= tol:
            raise RuntimeError(
                f"weight sync did not take: engine vs trainer log-probs on the probe text differ by "
                f"{stats['probe_diff_mean']:.4g} per token on average (max {stats['probe_diff_max']:.4g}), "
                f"tolerance {tol:g} (engine {self.dtype}, trainer {model_dtype}, path {self.last_sync.get('path')})"
            )
        return stats

    def _check_usable(self) -> None:
        if self._broken:
            raise RuntimeError(f"vLLM engine unusable: {self._broken}")

    # ------------------------------------------------------------------ memory

    def sleep(self, level: int = 1) -> None:
        """Free accelerator memory between rollouts (level 1: offload weights, drop KV cache).

        Only where vLLM supports sleep mode (CUDA); elsewhere a no-op (logged at debug level).
        """
        if not self.sleep_mode:
            log.debug("vLLM sleep mode unavailable on this platform; sleep() is a no-op")
            return
        if not self._asleep:
            self.llm.sleep(level=level)
            self._asleep = True

    def wake_up(self) -> None:
        """Reverse :meth:`sleep` (no-op where sleep mode is unavailable)."""
        if not self.sleep_mode:
            log.debug("vLLM sleep mode unavailable on this platform; wake_up() is a no-op")
            return
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False

    def close(self) -> None:
        """Shut the engine down and drop the model (the object is unusable afterwards).

        With the engine core in another process, the client's socket thread is joined and its
        ZeroMQ context terminated here, so no ZeroMQ thread is still running when the interpreter
        exits (an exit racing that thread could abort the process after all work was done)."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            client = getattr(llm.llm_engine, "engine_core", None)
            if client is not None and hasattr(client, "shutdown"):
                client.shutdown()
            thread = getattr(client, "output_queue_thread", None)
            if thread is not None:
                thread.join(timeout=30)
            ctx = getattr(client, "ctx", None)
            if ctx is not None and not getattr(ctx, "closed", True):
                ctx.destroy(linger=0)
        self._broken = "engine closed"

