"""nanoAZR's hot-path kernels: fused sampling, fused token logprobs, and the engine's decode attention.

    from kernels import sample, token_logprobs, decode_attention
    ids, logprobs = sample(logits, temperature=1.0, top_k=0, top_p=1.0, generator=g)   # [B], [B]
    logp = token_logprobs(hidden, lm_head_weight, targets)                             # [N], differentiable
    logp, entropy = token_logprobs(hidden, lm_head_weight, targets, with_entropy=True)
    out = decode_attention(q, k_cache, v_cache, lengths, block_table)                  # [B, H, hd]
    fused_layers(device)  # whether the engine's forwards fuse norm / rotary / SwiGLU (kernels/fused.py)

Each call picks a backend from the tensor's device:
- CUDA tensors run the Triton kernels;
- CPU tensors run the pure-PyTorch references (chunked, so the memory benefit holds on CPU too), or the Triton
  kernels under the interpreter when TRITON_INTERPRET=1 was set before triton was imported (how the tests and CI
  exercise the real kernels on a machine without a GPU).
The env var NANOAZR_KERNELS=torch|triton|auto (default auto) overrides the choice, e.g. NANOAZR_KERNELS=torch makes
slow end-to-end tests skip the (100-400x slower) interpreter.

Importing this package is cheap and has no side effects: triton is imported only when a Triton kernel first runs.
(bitsandbytes probes `from kernels import get_kernel` for the unrelated Hugging Face `kernels` package; that name
is deliberately absent, so the probe fails the way it expects.)
"""
import functools
import os

import torch

__all__ = ["sample", "token_logprobs", "decode_attention", "fused_decode_attention", "decode_plan", "fused_layers",
           "backend"]


@functools.cache
def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def backend(device) -> str:
    """'triton' or 'torch': which implementation `sample` and `token_logprobs` use for tensors on `device`. The
    decode attention and the fused layers also need a CUDA device (fused_decode_attention, fused_layers)."""
    device = torch.device(device)
    choice = os.environ.get("NANOAZR_KERNELS", "auto")
    if choice not in ("auto", "torch", "triton"):
        raise ValueError(f"NANOAZR_KERNELS={choice!r} is not valid; use torch, triton or auto")
    interpret = os.environ.get("TRITON_INTERPRET", "0") == "1"
    if choice == "torch":
        return "torch"
    if choice == "triton":
        if not _triton_importable():
            raise RuntimeError("NANOAZR_KERNELS=triton but triton is not installed; pip install triton")
        if device.type != "cuda" and not interpret:
            raise RuntimeError("NANOAZR_KERNELS=triton on a CPU tensor needs TRITON_INTERPRET=1 in the environment "
                               "before Python starts")
        return "triton"
    if device.type == "cuda" and _triton_importable():
        return "triton"
    if device.type == "cpu" and interpret and _triton_importable():
        return "triton"
    return "torch"


def sample(logits, temperature=1.0, top_k=0, top_p=1.0, generator=None, with_logprobs=True):
    """Draw one token per row of `logits` [B, V] (float32/bf16/fp16).

    temperature, top_k, top_p: python scalars or per-row tensors [B]. temperature 0 = greedy (argmax, first index
    on ties); top_k 0 = off; top_p 1 = off. top-k is applied first, top-p on the renormalised top-k mass; tokens
    tied with the boundary value are all kept. generator: a torch.Generator on the logits' device (the same
    generator state gives the same tokens); None uses the device's default generator.

    Returns (ids [B] int64, logprobs [B] float32): each logprob is log p(id) under the distribution the id was
    drawn from (temperature applied, top-k/top-p renormalised), always <= 0. Greedy rows return the model's own
    log_softmax(logits)[id] at temperature 1 with no filtering (a point mass would only ever say 0). Tokens whose
    logit is -inf (masked or padded vocabulary) are never drawn; a row that is entirely -inf returns id 0 and
    logprob -inf. with_logprobs=False returns (ids, None): the CPU path then skips the normaliser, which is most of
    a greedy step's sampling (the Triton kernels compute it on the way anyway).
    """
    from . import sampling
    sampling._check_logits(logits)
    if logits.shape[0] == 0:  # no rows: nothing to draw (the kernels' grids would be empty)
        ids = torch.empty(0, dtype=torch.int64, device=logits.device)
        return ids, (torch.empty(0, dtype=torch.float32, device=logits.device) if with_logprobs else None)
    if backend(logits.device) == "triton":
        ids, logp = sampling.sample_triton(logits, temperature, top_k, top_p, generator)
        return ids, (logp if with_logprobs else None)
    return sampling.sample_reference(logits, temperature, top_k, top_p, generator, with_logprobs)


def token_logprobs(hidden, weight, targets, temperature=1.0, with_entropy=False):
    """log_softmax(hidden @ weight.T / temperature)[n, targets[n]] without ever building the [N, V] logits.

    hidden [N, D], weight [V, D] (the lm_head weight), targets [N] int64 in [0, V); temperature a python float > 0.
    Returns logprobs [N] float32 (every one <= 0), and entropy [N] float32 of each row's softmax when
    with_entropy=True. Differentiable w.r.t. hidden and weight (the backward recomputes logits chunk by chunk).
    """
    from . import logprobs
    return logprobs.token_logprobs(hidden, weight, targets, temperature, with_entropy,
                                   backend=backend(hidden.device))


def decode_attention(q, k_cache, v_cache, lengths, block_table, plan=None):
    """One decode step of attention over the paged KV cache, each row at its own length.

    q [B, H, hd]; k_cache, v_cache [blocks, KVH, block_size, hd] (one layer; H a multiple of KVH); lengths [B] int64,
    the visible positions of each row (its new token's K/V already written); block_table [>= B, max_blocks] int64:
    position t of row b is at k_cache[block_table[b, t // block_size], :, t % block_size]. Returns [B, H, hd] in q's
    dtype. The Triton kernel runs on CUDA only (it reads each row's own length; head_dim a power of two >= 16, as in
    every Qwen2.5); CPU tensors, the interpreter included, take the dense torch reference (kernels/attention.py),
    which uses `plan` (decode_plan(...) of this step) when given: a plan selects the dense path.
    """
    from . import attention
    if plan is None and fused_decode_attention(q.device, q.shape[-1]):  # a plan is only built for the dense path
        return attention.decode_attention_triton(q, k_cache, v_cache, lengths, block_table)
    return attention.decode_attention_reference(q, k_cache, v_cache, lengths, block_table, plan)


def fused_decode_attention(device, head_dim) -> bool:
    """Whether decode_attention runs the Triton kernel on this device (then it needs no plan): where the fused
    layers run, for a power-of-two head_dim >= 16 (tl.dot's shapes)."""
    return fused_layers(device) and head_dim >= 16 and head_dim & (head_dim - 1) == 0


def decode_plan(lengths, block_table, L, KVH, block_size, dtype, in_place=False):
    """The dense path's per-step mask and gather rows (kernels.attention.decode_plan), built once for all layers."""
    from . import attention
    return attention.decode_plan(lengths, block_table, L, KVH, block_size, dtype, in_place)


def fused_layers(device) -> bool:
    """Whether the engine's forwards (model.KVCache) run kernels/fused.py's Triton kernels for RMSNorm, rotary + KV
    write and SwiGLU: on CUDA with the Triton backend. Training and CPU forwards run model.py's torch code."""
    device = torch.device(device)
    return device.type == "cuda" and backend(device) == "triton"
