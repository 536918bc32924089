"""Decode attention over the engine's paged KV cache: one new query token per sequence, each at its own length.

What it fixes. The engine keeps sequence b's K/V in the cache blocks its row of the block table lists (model.KVCache:
position t in block block_table[b, t // block_size] at offset t % block_size). A dense decode step (the torch
reference below, and what SDPA would do with a mask) gathers and reads every row up to the LONGEST row. AZR's batches
mix 50-token answers with 8k-token ones, so most of those reads are padding: with 64 rows at a mean of 1k tokens and
one at 8k, the dense step reads 8x the cache it needs (for Qwen2.5-7B, ~29 GB per step instead of ~3.7 GB, more
than the 15 GB of weights). The Triton kernel reads exactly lengths[b] positions of row b, block by block.

    q [B, H, hd], k_cache / v_cache [blocks, KVH, block_size, hd] (one layer), lengths [B] int64,
    block_table [>= B, max_blocks] int64 -> out [B, H, hd] = softmax(q . K[:len] / sqrt(hd)) @ V[:len], per query
    head, GQA (H = G * KVH)

One program per (row, KV head, chunk of SPLIT_T positions) streams that chunk's K/V in BLOCK_T positions (looking up
each position's block) with an online softmax (running max, sum, and accumulator, all fp32) for the G query heads
sharing the KV head, so K/V are read once per KV head, not once per query head. Scores and softmax stay in fp32
whatever the cache dtype (training's SDPA keeps them in fp32 too). When the cache's rows can be longer than one
chunk, a second kernel combines the chunks' partial softmaxes (flash-decoding), so a few long rows still spread
over the whole GPU; chunks past a row's length return at once.

Dispatch (kernels.decode_attention): the Triton kernel on CUDA tensors with a power-of-two head_dim >= 16 (unless
NANOAZR_KERNELS=torch); everywhere else the reference, which is also the test oracle. Under TRITON_INTERPRET=1 the
engine still uses the reference on CPU (the interpreter would make every decode step of the test suite 100x slower);
the tests call the kernel directly.
"""
import math
import os

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


def decode_plan(lengths, block_table, L, KVH, block_size, dtype, in_place=False):
    """What the dense reference needs for one decode step, built once and shared by all layers: the additive mask
    [B, 1, 1, L] (0 where position < lengths[b], -inf after) and the rows [B*KVH*L] of the flat [blocks*KVH*bs, hd]
    view of a layer's cache holding positions 0..L-1 of each row, in [B, KVH, L] order: row (b, h, t) is
    (block_table[b, t // bs] * KVH + h) * bs + t % bs. in_place: row b's K/V are the single block b + 1 (the
    engine's whole-row layout on CPU), read as a view with no gather; rows is then None."""
    B, device = lengths.shape[0], lengths.device
    t = torch.arange(L, device=device)
    mask = torch.full((B, 1, 1, L), float("-inf"), dtype=dtype, device=device)
    mask.masked_fill_((t[None, :] < lengths[:, None])[:, None, None], 0.0)
    if in_place:
        return mask, None
    blocks = block_table[:B, t // block_size]  # [B, L]
    rows = (blocks[:, None] * KVH + torch.arange(KVH, device=device)[:, None]) * block_size + t % block_size
    return mask, rows.view(-1)


def decode_attention_reference(q, k_cache, v_cache, lengths, block_table, plan=None):
    """Dense decode attention in torch (the CPU path and the oracle). q [B, H, hd]; plan: decode_plan(...) for this
    step when the caller built it (the model builds it once per step for all layers); else built here for
    L = max(lengths) (a host sync). Each row's first L positions are gathered from its blocks into [B, KVH, L, hd]
    (the cache must hold finite values there: positions past a row's length get weight 0, and 0 x NaN is NaN).
    Grouped-query attention without repeating K/V: the G = H/KVH query heads sharing a KV head are the rows of one
    matmul per (sequence, KV head)."""
    B, H, hd = q.shape
    KVH, bs = k_cache.shape[1], k_cache.shape[2]
    G = H // KVH
    if plan is None:
        plan = decode_plan(lengths, block_table, int(lengths.max()), KVH, bs, q.dtype)
    mask, rows = plan
    L = mask.shape[-1]
    # one gather per tensor, straight into [B, KVH, L, hd] (index_select: several times faster than advanced
    # indexing on CPU)
    if rows is None:  # in place: row b is block b + 1, [B, KVH, L, hd] views, no copy
        K, V = k_cache[1:B + 1, :, :L], v_cache[1:B + 1, :, :L]
    else:
        K = k_cache.view(-1, hd).index_select(0, rows).view(B, KVH, L, hd)
        V = v_cache.view(-1, hd).index_select(0, rows).view(B, KVH, L, hd)
    qg = q.view(B, KVH, G, hd)
    if qg.is_cuda and qg.dtype != torch.float32 and BMM_OUT_DTYPE:
        # bf16 in, fp32 scores out (cuBLAS accumulates in fp32 anyway); [B, KVH, L, hd] -> [B*KVH, L, hd] stays a view
        scores = torch.bmm(qg.reshape(B * KVH, G, hd), K.reshape(B * KVH, L, hd).transpose(1, 2),
                           out_dtype=torch.float32).view(B, KVH, G, L)
    else:
        scores = qg @ K.transpose(-1, -2)  # [B, KVH, G, L]
    scores = scores * (1.0 / math.sqrt(hd)) + mask
    p = torch.softmax(scores, dim=-1, dtype=torch.float32)  # fp32 softmax whatever the scores' dtype
    p = p if p.dtype == q.dtype else p.to(q.dtype)
    return (p @ V).view(B, H, hd)


if triton is not None:

    @triton.jit
    def _decode_attention_kernel(q_ptr, k_ptr, v_ptr, len_ptr, table_ptr, out_ptr, acc_ptr, m_ptr, s_ptr, scale,
                                 block_size, chunk, stride_qb, stride_qh, stride_tb, stride_kblk, stride_kh, stride_kt,
                                 G: tl.constexpr, HD: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_T: tl.constexpr,
                                 IEEE: tl.constexpr, UPCAST: tl.constexpr, SPLIT: tl.constexpr):
        # Program (b, h, c): row b, KV head h, query heads h*G .. h*G+G-1 (padded to BLOCK_G >= 16 rows for tl.dot),
        # positions c*chunk .. c*chunk+chunk-1 of the row (those below its length). q/out [B, H, HD] share strides;
        # k/v [blocks, KVH, block_size, HD] share strides (unit stride along HD); table [slots, max_blocks] (unit
        # stride along the blocks). SPLIT: store the unnormalised partials acc [B, H, S, HD], m, s [B, H, S] (fp32)
        # for the combine kernel; else write out = acc / s (then the grid has one chunk per row). UPCAST: fp32 dots
        # (the interpreter, which gets bf16 arithmetic wrong); else a bf16/fp16 cache feeds the tensor cores as it
        # is, with p rounded to the cache's dtype for p @ v as the reference does (fp32 tiles of K and V took twice
        # the registers and held the kernel at ~1.3 TB/s on an H200, d2cd060).
        b = tl.program_id(0)
        h = tl.program_id(1)
        c = tl.program_id(2)
        n = tl.load(len_ptr + b)
        lo = c * chunk
        hi = tl.minimum(lo + chunk, n)
        g = tl.arange(0, BLOCK_G)
        d = tl.arange(0, HD)
        q_offs = b * stride_qb + (h * G + g)[:, None] * stride_qh + d[None, :]
        q = tl.load(q_ptr + q_offs, mask=(g < G)[:, None], other=0.0)                     # [BG, HD]
        if UPCAST:
            q = q.to(tl.float32)
        row_table = table_ptr + b.to(tl.int64) * stride_tb
        m = tl.full((BLOCK_G,), float("-inf"), tl.float32)   # running max of the scores
        s = tl.zeros((BLOCK_G,), tl.float32)                 # running sum of exp(score - m)
        acc = tl.zeros((BLOCK_G, HD), tl.float32)            # running sum of exp(score - m) * v
        for start in range(lo, hi, BLOCK_T):
            t = start + tl.arange(0, BLOCK_T)
            ok = t < hi
            blk = tl.load(row_table + t // block_size, mask=ok, other=0).to(tl.int64)          # [BT] block ids
            offs = (blk * stride_kblk + h * stride_kh + (t % block_size) * stride_kt)[:, None] + d[None, :]
            k = tl.load(k_ptr + offs, mask=ok[:, None], other=0.0)                          # [BT, HD]
            v = tl.load(v_ptr + offs, mask=ok[:, None], other=0.0)
            if UPCAST:
                k = k.to(tl.float32)
                v = v.to(tl.float32)
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
                acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m = m_new
        if SPLIT:  # a chunk past the row's length stores m = -inf, s = 0, acc = 0: the combine gives it weight 0
            part = (b * (G * tl.num_programs(1)) + h * G + g) * tl.num_programs(2) + c     # [BG] into [B, H, S]
            tl.store(m_ptr + part, m, mask=g < G)
            tl.store(s_ptr + part, s, mask=g < G)
            tl.store(acc_ptr + part.to(tl.int64)[:, None] * HD + d[None, :], acc, mask=(g < G)[:, None])
        else:
            out = acc / s[:, None]
            tl.store(out_ptr + q_offs, out.to(out_ptr.dtype.element_ty), mask=(g < G)[:, None])

    @triton.jit
    def _decode_attention_combine_kernel(acc_ptr, m_ptr, s_ptr, out_ptr, stride_ob, stride_oh, S, G: tl.constexpr,
                                         HD: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_S: tl.constexpr):
        # Program (b, h): the G query heads of KV head h, out[b, head] = sum_c e^(m_c - M) acc_c / sum_c e^(m_c - M)
        # s_c over the row's S chunks (M = max_c m_c; chunk 0 always holds positions, so M is finite), BLOCK_S chunks
        # at a time. A program per KV head, not per query head: 7x fewer, each still tiny, where a grid of B x H
        # programs was paced by starting them (6.3 us per layer of a 64-row 7B step on an H200, 8076638).
        b = tl.program_id(0)
        h = tl.program_id(1)
        g = tl.arange(0, BLOCK_G)
        head = h * G + g                                                                   # [BG]
        first = (b * (G * tl.num_programs(1)) + head) * S                                  # [BG] into [B, H, S]
        M = tl.full((BLOCK_G,), float("-inf"), tl.float32)
        for c0 in range(0, S, BLOCK_S):
            c = c0 + tl.arange(0, BLOCK_S)
            ok = (g < G)[:, None] & (c < S)[None, :]                                       # [BG, BS]
            M = tl.maximum(M, tl.max(tl.load(m_ptr + first[:, None] + c[None, :], mask=ok, other=float("-inf")), 1))
        M = tl.where(M > float("-inf"), M, 0.0)                                            # (padding heads)
        num = tl.zeros((BLOCK_G, HD), tl.float32)
        den = tl.zeros((BLOCK_G,), tl.float32)
        d = tl.arange(0, HD)
        for c0 in range(0, S, BLOCK_S):
            c = c0 + tl.arange(0, BLOCK_S)
            ok = (g < G)[:, None] & (c < S)[None, :]
            part = first[:, None] + c[None, :]                                             # [BG, BS]
            m = tl.load(m_ptr + part, mask=ok, other=float("-inf"))
            w = tl.where(m > float("-inf"), tl.exp(m - M[:, None]), 0.0)                   # [BG, BS]
            den += tl.sum(w * tl.load(s_ptr + part, mask=ok, other=0.0), axis=1)
            acc = tl.load(acc_ptr + part.to(tl.int64)[:, :, None] * HD + d[None, None, :], mask=ok[:, :, None],
                          other=0.0)                                                       # [BG, BS, HD]
            num += tl.sum(w[:, :, None] * acc, axis=1)
        out = num / tl.where(den > 0, den, 1.0)[:, None]                                   # [BG, HD]
        tl.store(out_ptr + b * stride_ob + head[:, None] * stride_oh + d[None, :], out.to(out_ptr.dtype.element_ty),
                 mask=(g < G)[:, None])


# Positions of a row per program: rows the cache can hold longer than this are split over several programs and
# combined (flash-decoding). AZR's tails are a few rows of up to 8k positions: one program per (row, KV head) would
# leave most of the GPU idle (4 rows x 4 KV heads = 16 programs for 132 SMs) and walk 8k positions serially.
SPLIT_T = 1024

# The kernel's launch knobs: positions per loop step, warps, software-pipeline stages, and programs to aim for per SM
# (decode_chunks). Triton's defaults and 4 per SM until a sweep says otherwise: bench/kernels.py --attention-sweep
# times the alternatives on one layer, bench/decode_step.py --attention-knobs runs whole decode steps with others.
LAUNCH = dict(block_t=64, num_warps=4, num_stages=3, per_sm=4)


def decode_chunks(B, KVH, capacity, split=SPLIT_T, programs=0):
    """(S, chunk): each row's positions 0..capacity-1 in S chunks of `chunk` positions (a multiple of 64), one program
    each. At most `split` positions per chunk; and while B x KVH x S programs are fewer than `programs` (4 per SM on
    CUDA), smaller chunks, down to 128 positions. Why the second rule: a program walks its chunk serially, each 64
    positions waiting on a block-table load, then the K/V loads, then two dots, so a step of 64 rows x 4 KV heads x
    512 positions ran at a sixth of the HBM bandwidth with one chunk per row (41 us per layer, an H200, 54070e3)."""
    S = -(-capacity // split)
    if B * KVH * S < programs:
        S = max(S, min(-(-programs // (B * KVH)), -(-capacity // 128)))
    per_chunk = -(-capacity // S)              # ceil(capacity / S) positions ...
    chunk = -(-per_chunk // 64) * 64           # ... rounded up to whole BLOCK_T = 64 steps
    return -(-capacity // chunk), chunk


def _target_programs(device):
    return LAUNCH["per_sm"] * torch.cuda.get_device_properties(device).multi_processor_count \
        if device.type == "cuda" else 0


def decode_attention_triton(q, k_cache, v_cache, lengths, block_table, split=SPLIT_T, programs=None, block_t=None,
                            num_warps=None, num_stages=None):
    """Launcher: same contract as decode_attention_reference (no plan needed: each row reads lengths[b] positions).
    fp32 caches use IEEE fp32 dots (exact to the reference's rounding); bf16/fp16 use tensor cores, fp32 accumulation.
    Each row's positions are split into chunks (decode_chunks: split = most positions per chunk, programs = how many
    programs to aim for, default LAUNCH's per SM on CUDA); the chunks past a row's length return at once, and with
    more than one chunk a second kernel combines their partial softmaxes. The chunks come from the table's shape, not
    the lengths: no host sync (CUDA graphs). block_t (positions per loop step), num_warps, num_stages: LAUNCH's
    unless given."""
    B, H, hd = q.shape
    KVH, bs = k_cache.shape[1], k_cache.shape[2]
    assert q.stride(-1) == 1 and k_cache.stride(-1) == 1 and k_cache.stride() == v_cache.stride()
    assert block_table.stride(-1) == 1 and split % 64 == 0
    assert hd >= 16 and hd & (hd - 1) == 0, f"head_dim {hd}: the kernel needs a power of two >= 16"
    out = torch.empty_like(q)
    block_t = LAUNCH["block_t"] if block_t is None else block_t
    num_warps = LAUNCH["num_warps"] if num_warps is None else num_warps
    num_stages = LAUNCH["num_stages"] if num_stages is None else num_stages
    G = H // KVH
    programs = _target_programs(q.device) if programs is None else programs
    S, chunk = decode_chunks(B, KVH, block_table.shape[1] * bs, split, programs)
    part = [torch.empty(B, H, S, *shape, dtype=torch.float32, device=q.device) for shape in ((hd,), (), ())] \
        if S > 1 else [out] * 3  # acc [B, H, S, hd], m and s [B, H, S]; unused with one chunk
    _decode_attention_kernel[(B, KVH, S)](
        q, k_cache, v_cache, lengths, block_table, out, *part, 1.0 / math.sqrt(hd), bs, chunk,
        q.stride(0), q.stride(1), block_table.stride(0), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        G=G, HD=hd, BLOCK_G=max(16, triton.next_power_of_2(G)), BLOCK_T=block_t, IEEE=q.dtype == torch.float32,
        UPCAST=os.environ.get("TRITON_INTERPRET", "0") == "1", SPLIT=S > 1, num_warps=num_warps, num_stages=num_stages)
    if S > 1:
        _decode_attention_combine_kernel[(B, KVH)](*part, out, out.stride(0), out.stride(1), S, G=G, HD=hd,
                                                   BLOCK_G=triton.next_power_of_2(G),
                                                   BLOCK_S=min(8, max(2, triton.next_power_of_2(S))))
    return out
