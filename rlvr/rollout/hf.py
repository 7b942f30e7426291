"""Embedded rollout engine: our own decode loop over a transformers model and its KV cache.

Why not ``model.generate``: the trainer needs the exact log-probability of each sampled token under
the distribution it was drawn from, and full control of the sampler (seeding, top-p, stops).

Per step, with logits ``z [B, V]`` of the last position:

* temperature ``t > 0``: ``q = softmax(topp(z / t))`` where ``topp`` keeps the smallest set of
  tokens whose probability under ``softmax(z / t)`` reaches ``top_p`` (the rest get -inf);
  ``y ~ q`` and the returned log-prob is ``log q(y)`` -- the distribution actually sampled from.
  With ``top_p = 1`` and ``t = 1`` this equals :func:`rlvr.models.sequence_logprobs` at temperature 1.
* ``t = 0``: greedy, ``y = argmax z``; the returned log-prob is ``log softmax(z)[y]``.

Prompts are left-padded; position ids are ``cumsum(mask) - 1``, as in
:func:`rlvr.models.sequence_logprobs`, so recomputed log-probs match the sampler's.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from rlvr.models import position_ids_from_mask
from rlvr.rollout.base import Rollout, SamplingParams, continuation_limits


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set to -inf the logits ``[B, V]`` outside the nucleus (smallest set with mass >= top_p)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    outside = (probs.cumsum(dim=-1) - probs) >= top_p  # mass before this token already reaches top_p
    mask = torch.zeros_like(outside).scatter(-1, order, outside)
    return logits.masked_fill(mask, float("-inf"))


def sample_next(logits: torch.Tensor, temperature: float, top_p: float, generator=None):
    """Draw one token per row from logits ``[B, V]``; returns (tokens [B], logprobs [B] float32)."""
    logits = logits.float()
    if temperature == 0:
        tokens = logits.argmax(dim=-1)
        logp = F.log_softmax(logits, dim=-1)
    else:
        logp = F.log_softmax(top_p_filter(logits / temperature, top_p), dim=-1)
        tokens = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
    return tokens, logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into ``input_ids [B, P]`` and ``attention_mask [B, P]``."""
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), P), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, P - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[i, P - len(p) :] = 1
    return ids.to(device), mask.to(device)


class _Capture:
    """Records the hidden states entering block ``block`` (the output of block ``block - 1``) on
    every forward while active; ``block`` None records nothing."""

    def __init__(self, model: torch.nn.Module, block: int | None):
        self.model, self.block, self.outputs, self._handle = model, block, [], None

    def __enter__(self):
        if self.block is not None:
            from rlvr.models import block_list

            blocks = block_list(self.model)[2]
            if not 1 <= self.block < len(blocks):
                raise ValueError(f"capture_block must be in [1, {len(blocks) - 1}], got {self.block}")
            self._handle = blocks[self.block - 1].register_forward_hook(self._hook)
        return self

    def _hook(self, module, args, output):
        self.outputs.append((output[0] if isinstance(output, tuple) else output).detach())

    def take(self) -> torch.Tensor | None:
        """The oldest recorded output (the prefill), or None when not capturing."""
        return self.outputs.pop(0) if self.block is not None else None

    def take_all(self) -> list[torch.Tensor]:
        out, self.outputs = self.outputs, []
        return out

    def __exit__(self, *exc):
        if self._handle is not None:
            self._handle.remove()
        self.outputs = []
        return False


class HFEngine:
    """:class:`~rlvr.rollout.base.RolloutEngine` that samples from ``model`` in-process.

    ``micro_batch_size`` samples are decoded together (prompts repeated ``n`` times, groups kept
    contiguous). The engine shares the module with the trainer, so ``sync_weights`` does nothing.

    Prefill runs each distinct prompt once (its samples share its keys and values) and, when the
    distinct prompts of a micro-batch begin with the same ``share_prefix_min`` or more tokens (a
    chat template's system turn, a few-shot example), runs that common prefix once for all of them
    (:meth:`_prefill`); 0 turns that off. Either way each row attends to exactly its own prompt's
    tokens at the same positions, so samples and log-probs equal those of a plain left-padded
    prefill up to float rounding.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, *, micro_batch_size: int = 64, share_prefix_min: int = 16):
        if micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {micro_batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.micro_batch_size = micro_batch_size
        self.share_prefix_min = share_prefix_min
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def sync_weights(self, model: torch.nn.Module) -> None:
        """No-op: the engine samples from the trainer's own module."""

    def stop_ids(self, params: SamplingParams) -> list[int]:
        """EOS of the tokenizer and of the model's generation config, plus ``params.stop_token_ids``."""
        ids = {self.tokenizer.eos_token_id, *params.stop_token_ids}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        return sorted(i for i in ids if i is not None)

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> Rollout:
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("generate needs a non-empty list of non-empty prompts (token id lists)")
        return self._sample([list(p) for p in prompts], [params.max_new_tokens] * len(prompts), params,
                            params.capture_block)

    def generate_continuations(self, prompts: list[list[int]], partials: list[list[int]],
                               params: SamplingParams) -> Rollout:
        """``params.n`` continuations of each ``prompts[i] + partials[i]``, at most
        ``max_new_tokens - len(partials[i])`` tokens each (:func:`~rlvr.rollout.base.continuation_limits`).
        The prefix is prefilled like a prompt (left-padded among the batch's other prefixes, one
        prefill shared by its samples); no hidden states are captured."""
        limits = continuation_limits(prompts, partials, params)
        return self._sample([list(p) + list(q) for p, q in zip(prompts, partials)], limits, params, None)

    def _sample(self, prompts: list[list[int]], limits: list[int], params: SamplingParams, capture: int | None):
        """``params.n`` samples of each prompt, sample j of prompt i at most ``limits[i]`` tokens."""
        samples = [p for p in prompts for _ in range(params.n)]
        sample_limits = [m for m in limits for _ in range(params.n)]
        group_ids = [g for g in range(len(prompts)) for _ in range(params.n)]
        device = next(self.model.parameters()).device
        gen = None
        if params.seed is not None:
            gen = torch.Generator(device=device).manual_seed(params.seed)
        stops = torch.tensor(self.stop_ids(params), device=device)
        was_training = self.model.training
        self.model.eval()
        responses, logprobs, finished, hidden = [], [], [], []
        try:
            with torch.no_grad(), _Capture(self.model, capture) as cap:
                for s in range(0, len(samples), self.micro_batch_size):
                    chunk = slice(s, s + self.micro_batch_size)
                    r, lp, f, h = self._decode(samples[chunk], sample_limits[chunk], params, stops, gen, cap)
                    responses += r
                    logprobs += lp
                    finished += f
                    hidden += h
        finally:
            self.model.train(was_training)
        texts = self.tokenizer.batch_decode(responses, skip_special_tokens=True)
        return Rollout(samples, responses, logprobs, finished, group_ids, texts,
                       hidden=hidden if capture is not None else None)

    def _prefill(self, unique: list[list[int]], device, cap: _Capture):
        """Run the distinct prompts ``unique`` through the model into a new KV cache.

        Returns ``(cache, logits [U, V] of each prompt's last token, attention mask [U, L] of the
        cache's positions, position id [U, 1] of each prompt's last token, prompt states)``, the last
        a list of each prompt's captured hidden states ``[len(p), H]`` (None when not capturing).

        Plain: the prompts left-padded into ``[U, P]``. Shared prefix: when the prompts begin with
        the same ``c >= share_prefix_min`` tokens (leaving each at least one token of its own), the
        prefix runs once as a batch of one (positions ``0 .. c-1``), its keys and values are copied
        to the U rows, and the rest of each prompt follows, left-padded after the prefix (cache layout
        ``[prefix | padding | own tokens]``, positions ``c ..``, padding masked). Every row's queries
        see the same keys at the same positions as in the plain layout.
        """
        U = len(unique)
        c = len(os.path.commonprefix(unique)) if U > 1 and self.share_prefix_min > 0 else 0
        c = min(c, min(len(p) for p in unique) - 1)
        cache = DynamicCache(config=self.model.config)
        if c < max(self.share_prefix_min, 1):
            ids, mask = left_pad(unique, self.pad_id, device)  # [U, P]
            pos = position_ids_from_mask(mask)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos,
                             past_key_values=cache, use_cache=True, logits_to_keep=1)
            h = cap.take()  # [U, P, H] or None
            states = None if h is None else [h[u, h.shape[1] - len(p):] for u, p in enumerate(unique)]
            return cache, out.logits[:, -1, :], mask, pos[:, -1:], states
        prefix_pos = torch.arange(c, device=device)[None]  # [1, c]
        self.model(input_ids=torch.tensor([unique[0][:c]], device=device), attention_mask=torch.ones_like(prefix_pos),
                   position_ids=prefix_pos, past_key_values=cache, use_cache=True, logits_to_keep=1)
        head = cap.take()  # [1, c, H] or None
        cache.reorder_cache(torch.zeros(U, dtype=torch.long, device=device))  # [1, ...] -> [U, ...]
        ids, own = left_pad([p[c:] for p in unique], self.pad_id, device)  # [U, S]
        mask = torch.cat([own.new_ones(U, c), own], 1)  # [U, c + S]
        own_pos = c + position_ids_from_mask(own)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=own_pos,
                         past_key_values=cache, use_cache=True, logits_to_keep=1)
        tail = cap.take()  # [U, S, H] or None
        states = None if head is None else [torch.cat([head[0], tail[u, tail.shape[1] - (len(p) - c):]])
                                            for u, p in enumerate(unique)]
        return cache, out.logits[:, -1, :], mask, own_pos[:, -1:], states

    def _decode(self, prompts, limits: list[int], params: SamplingParams, stops: torch.Tensor, gen, cap: _Capture):
        """Prefill each distinct prompt once (:meth:`_prefill`), share its KV cache with its group's
        samples, then sample one token per step with the cache; row b stops after ``limits[b]`` tokens."""
        index: dict[tuple[int, ...], int] = {}
        rows = [index.setdefault(tuple(p), len(index)) for p in prompts]  # sample -> distinct prompt
        cache, last_logits, umask, last_pos, prompt_states = self._prefill([list(p) for p in index], stops.device, cap)
        sel = torch.tensor(rows, device=stops.device)
        if len(index) < len(prompts):
            cache.reorder_cache(sel)  # [U, ...] -> [B, ...]: each sample gets its prompt's keys/values
        logits, mask, next_pos = last_logits[sel], umask[sel], last_pos[sel] + 1
        done = torch.zeros(len(prompts), dtype=torch.bool, device=stops.device)
        limit = torch.tensor(limits, device=stops.device)
        tokens, logps = [], []
        for step in range(max(limits)):
            tok, lp = sample_next(logits, params.temperature, params.top_p, gen)
            tok = tok.masked_fill(done, self.pad_id)  # finished rows only emit padding
            tokens.append(tok)
            logps.append(lp)
            done |= torch.isin(tok, stops) | (limit <= step + 1)
            if bool(done.all()):
                break
            mask = torch.cat([mask, mask.new_ones(len(prompts), 1)], dim=1)
            out = self.model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos,
                             past_key_values=cache, use_cache=True, logits_to_keep=1)
            logits = out.logits[:, -1, :]
            next_pos = next_pos + 1
        responses, lps, finished = self._trim(torch.stack(tokens, 1), torch.stack(logps, 1), stops, limit)
        hidden = []
        if prompt_states is not None:
            steps = cap.take_all()  # each [B, 1, H]: the states of response tokens 0, 1, ...
            H = prompt_states[0].shape[-1]
            dec = torch.cat(steps, 1) if steps else prompt_states[0].new_zeros((len(prompts), 0, H))
            for i, r in enumerate(responses):
                hidden.append(torch.cat([prompt_states[rows[i]], dec[i, : max(len(r) - 1, 0)]], 0))
        return responses, lps, finished, hidden

    @staticmethod
    def _trim(tokens: torch.Tensor, logps: torch.Tensor, stops: torch.Tensor, limit: torch.Tensor):
        """Cut each row ``[L]`` after its first stop token among its first ``limit`` tokens (the
        padding a row emits after its limit is no stop); rows without one are truncated there."""
        inside = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < limit[:, None]
        is_stop = torch.isin(tokens, stops) & inside  # [B, L]
        finished = is_stop.any(dim=1)
        lengths = torch.where(finished, is_stop.int().argmax(dim=1) + 1, limit.clamp(max=tokens.shape[1]))
        tokens, logps, lengths = tokens.tolist(), logps.tolist(), lengths.tolist()
        return ([t[:n] for t, n in zip(tokens, lengths)], [lp[:n] for lp, n in zip(logps, lengths)],
                finished.tolist())
