"""Decode attention over the engine's KV cache: one new query token per sequence, each sequence at its own length.

What it fixes. The engine keeps sequence b in cache slot b, positions 0..lengths[b]-1. A dense decode step (the torch
reference below, and what SDPA would do with a mask) reads K and V up to the LONGEST row for every row. AZR's batches
mix 50-token answers with 8k-token ones, so most of those reads are padding: with 64 rows at a mean of 1k tokens and
one at 8k, the dense step reads 8x the cache it needs (for Qwen2.5-7B, ~29 GB per step instead of ~3.7 GB, more
than the 15 GB of weights). The Triton kernel reads exactly lengths[b] positions of row b.

    q [B, H, hd], k_cache / v_cache [slots, KVH, max_len, hd] (one layer; rows 0..B-1 in use), lengths [B] int64
    -> out [B, H, hd] = softmax(q . K[:len] / sqrt(hd)) @ V[:len], per query head, GQA (H = G * KVH)

One program per (row, KV head) streams that row's K/V in BLOCK_T positions with an online softmax (running max,
sum, and accumulator, all fp32) for the G query heads sharing the KV head, so K/V are read once per KV head, not
once per query head. Scores and softmax stay in fp32 whatever the cache dtype (training's SDPA keeps them in fp32
too). No split over the length (flash-decoding): B x KVH programs already fill the GPU at AZR's batch sizes.

Dispatch: the Triton kernel on CUDA tensors (unless NANOAZR_KERNELS=torch); everywhere else the reference, which
is also the test oracle. Under TRITON_INTERPRET=1 the engine still uses the reference on CPU (the interpreter
would make every decode step of the test suite 100x slower); the tests call the kernel directly.
"""
import math

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs still get the reference
    triton = None


def _bmm_has_out_dtype() -> bool:
    """Whether torch.bmm takes out_dtype (fp32 out of bf16/fp16 inputs, a CUDA kernel): checked on meta tensors, so a
    PyTorch without it falls back to rounded scores instead of failing."""
    try:
        a = torch.empty(1, 1, 1, dtype=torch.bfloat16, device="meta")
        return torch.bmm(a, a, out_dtype=torch.float32).dtype == torch.float32
    except (TypeError, RuntimeError, NotImplementedError):
        return False


BMM_OUT_DTYPE = _bmm_has_out_dtype()


def decode_mask(lengths, L, dtype):
    """lengths [B] -> additive mask [B, 1, 1, L]: 0 where position < lengths[b], -inf after."""
    visible = torch.arange(L, device=lengths.device)[None, :] < lengths[:, None]  # [B, L]
    mask = torch.full((lengths.shape[0], 1, 1, L), float("-inf"), dtype=dtype, device=lengths.device)
    return mask.masked_fill_(visible[:, None, None], 0.0)


def decode_attention_reference(q, k_cache, v_cache, lengths, mask=None):
    """Dense decode attention in torch (the CPU path and the oracle). q [B, H, hd]; mask: decode_mask(lengths, L) when
    the caller already built it (the model builds it once per step for all layers); L = its last dimension, else
    max(lengths) (a host sync). Grouped-query attention without repeating K/V: the G = H/KVH query heads sharing a
    KV head are the rows of one matmul per (sequence, KV head)."""
    B, H, hd = q.shape
    KVH = k_cache.shape[1]
    G = H // KVH
    if mask is None:
        mask = decode_mask(lengths, int(lengths.max()), q.dtype)
    L = mask.shape[-1]
    K, V = k_cache[:B, :, :L], v_cache[:B, :, :L]  # [B, KVH, L, hd] views, no copy
    qg = q.view(B, KVH, G, hd)
    if qg.is_cuda and qg.dtype != torch.float32 and BMM_OUT_DTYPE:
        # bf16 in, fp32 scores out (cuBLAS accumulates in fp32 anyway); [B, KVH, L, hd] -> [B*KVH, L, hd] stays a view
        scores = torch.bmm(qg.reshape(B * KVH, G, hd), K.reshape(B * KVH, L, hd).transpose(1, 2),
                           out_dtype=torch.float32).view(B, KVH, G, L)
    else:
        scores = qg @ K.transpose(-1, -2)  # [B, KVH, G, L]
    scores = scores * (1.0 / math.sqrt(hd)) + mask
    p = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    return (p @ V).view(B, H, hd)


if triton is not None:

    @triton.jit
    def _decode_attention_kernel(q_ptr, k_ptr, v_ptr, len_ptr, out_ptr, scale,
                                 stride_qb, stride_qh, stride_kb, stride_kh, stride_kt,
                                 G: tl.constexpr, HD: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_T: tl.constexpr,
                                 IEEE: tl.constexpr):
        # Program (b, h): row b, KV head h, query heads h*G .. h*G+G-1 (padded to BLOCK_G >= 16 rows for tl.dot).
        # q/out [B, H, HD] share strides; k/v [slots, KVH, max_len, HD] share strides (unit stride along HD).
        b = tl.program_id(0)
        h = tl.program_id(1)
        n = tl.load(len_ptr + b)
        g = tl.arange(0, BLOCK_G)
        d = tl.arange(0, HD)
        q_offs = b * stride_qb + (h * G + g)[:, None] * stride_qh + d[None, :]
        q = tl.load(q_ptr + q_offs, mask=(g < G)[:, None], other=0.0).to(tl.float32)      # [BG, HD]
        kv_base = b.to(tl.int64) * stride_kb + h * stride_kh
        m = tl.full((BLOCK_G,), float("-inf"), tl.float32)   # running max of the scores
        s = tl.zeros((BLOCK_G,), tl.float32)                 # running sum of exp(score - m)
        acc = tl.zeros((BLOCK_G, HD), tl.float32)            # running sum of exp(score - m) * v
        for start in range(0, n, BLOCK_T):
            t = start + tl.arange(0, BLOCK_T)
            ok = t < n
            offs = kv_base + t[:, None] * stride_kt + d[None, :]
            k = tl.load(k_ptr + offs, mask=ok[:, None], other=0.0).to(tl.float32)           # [BT, HD]
            v = tl.load(v_ptr + offs, mask=ok[:, None], other=0.0).to(tl.float32)
            if IEEE:
                z = tl.dot(q, tl.trans(k), input_precision="ieee") * scale                  # [BG, BT]
            else:
                z = tl.dot(q, tl.trans(k)) * scale
            z = tl.where(ok[None, :], z, float("-inf"))
            m_new = tl.maximum(m, tl.max(z, axis=1))
            alpha = tl.exp(m - m_new)
            p = tl.exp(z - m_new[:, None])
            s = s * alpha + tl.sum(p, axis=1)
            if IEEE:
                acc = acc * alpha[:, None] + tl.dot(p, v, input_precision="ieee")
            else:
                acc = acc * alpha[:, None] + tl.dot(p, v)
            m = m_new
        out = acc / s[:, None]
        tl.store(out_ptr + q_offs, out.to(out_ptr.dtype.element_ty), mask=(g < G)[:, None])


def decode_attention_triton(q, k_cache, v_cache, lengths):
    """Launcher: same contract as decode_attention_reference (no mask needed: each row reads lengths[b] positions).
    fp32 caches use IEEE fp32 dots (exact to the reference's rounding); bf16/fp16 use tensor cores, fp32 accumulation.
    """
    B, H, hd = q.shape
    KVH = k_cache.shape[1]
    assert q.stride(-1) == 1 and k_cache.stride(-1) == 1 and k_cache.stride() == v_cache.stride()
    assert hd >= 16 and hd & (hd - 1) == 0, f"head_dim {hd}: the kernel needs a power of two >= 16"
    out = torch.empty_like(q)
    G = H // KVH
    _decode_attention_kernel[(B, KVH)](
        q, k_cache, v_cache, lengths, out, 1.0 / math.sqrt(hd), q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), G=G, HD=hd,
        BLOCK_G=max(16, triton.next_power_of_2(G)), BLOCK_T=64, IEEE=q.dtype == torch.float32)
    return out
