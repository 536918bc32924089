"""Token logprobs (and entropy) fused with the lm_head matmul: the [N, V] logits never exist.

What it fuses. The policy-gradient loss needs, for every response token n,
    logp[n] = log_softmax(hidden[n] @ W.T / T)[target[n]]        hidden [N, D], W [V, D] (lm_head), target [N]
and AZR's entropy bonus needs H[n] = -sum_v p[n, v] log p[n, v]. The naive way materialises logits [N, V]: at
N = 16k tokens and V = 152k that is 10 GB in fp32, plus as much again for softmax and for the backward.

Forward: each program owns BLOCK_N rows and a slice of the vocabulary. For every BLOCK_V vocabulary block it
computes the logits tile with tl.dot over D, and folds it into running statistics (online log-sum-exp):
    m = running max,  s = sum exp(z - m),  e = sum exp(z - m) (z - m),  t = z[target] when it falls in the block
so entropy comes out of the same pass: H = log s - e / s, and lse = m + log s. The [N, splits] partials are
combined in a few tiny torch ops. Memory: O(N * splits); traffic: W is streamed once per row tile (L2 shares it
between the row tiles that run together), hidden once per vocabulary split.

Backward: d logp / dz_v = onehot_v - p_v and dH / dz_v = -p_v (log p_v + H). The logits are recomputed one
vocabulary chunk [N, C] at a time (cuBLAS on GPU), turned into dz in place (a one-pass Triton kernel on GPU,
torch ops on CPU), then dhidden += dz @ W_c and dW_c = dz.T @ hidden. Peak extra memory: two [N, C] fp32 buffers.

The pure-PyTorch path is chunked the same way (so the CPU fallback keeps the memory benefit), and
`token_logprobs_naive` is the plain definition the tests compare against in float64.
"""
import math
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs still get the torch path
    triton = None


def _chunk_size(N, V):
    # ~256 MB of fp32 [N, C] per chunk at most, and never more than 4096 columns (2.7% of Qwen's vocabulary)
    return max(256, min(4096, V, (1 << 26) // max(N, 1)))


def _logits_fp32(h, Wc):
    """h [N, D] @ Wc.T -> [N, C] fp32. On CUDA, bf16/fp16 operands accumulate and are written in fp32 (mm.dtype):
    logits rounded to bf16 would put |z| * 2^-9 of error into every exp(z - lse) of the backward."""
    if h.is_cuda and h.dtype != torch.float32:
        try:
            return torch.mm(h, Wc.T, out_dtype=torch.float32)
        except (RuntimeError, TypeError):  # a torch build without mm.dtype for this dtype: round through bf16
            pass
    return (h @ Wc.T).float()


# ----------------------------------------------------------------------------------------------------------------
# References

def token_logprobs_naive(hidden, weight, targets, temperature=1.0):
    """Definition, for the tests: builds the full [N, V] logits. Returns (logprobs [N], entropy [N])."""
    logp_all = torch.log_softmax((hidden @ weight.T) / temperature, dim=-1)
    return logp_all.gather(1, targets[:, None]).squeeze(1), -(logp_all.exp() * logp_all).sum(-1)


def _forward_torch(hidden, weight, targets, temperature, with_entropy):
    """Chunked forward in torch: online log-sum-exp over vocabulary chunks. Returns (logp, entropy, lse) fp32 [N].
    Two [N, C] buffers live at a time (in-place ops), so peak memory does not depend on V."""
    N, V = hidden.shape[0], weight.shape[0]
    h = hidden.float() if hidden.device.type == "cpu" else hidden          # CPU bf16 matmuls are slow and inexact
    m = torch.full((N,), -math.inf, device=hidden.device)                   # running max of z
    s = torch.zeros(N, device=hidden.device)                                # sum exp(z - m)
    e = torch.zeros(N, device=hidden.device)                                # sum exp(z - m) (z - m)
    t = torch.zeros(N, device=hidden.device)                                # z[target]
    C = _chunk_size(N, V)
    for c0 in range(0, V, C):
        z = _logits_fp32(h, weight[c0:c0 + C].to(h.dtype)).mul_(1.0 / temperature)   # [N, C] scaled logits
        inside = (targets >= c0) & (targets < c0 + z.shape[1])
        t += torch.where(inside, z.gather(1, (targets - c0).clamp(0, z.shape[1] - 1)[:, None]).squeeze(1), 0.0)
        m_new = torch.maximum(m, z.max(-1).values)
        alpha = torch.exp(m - m_new)                                         # 0 on the first chunk
        z.sub_(m_new[:, None])                                               # z - m_new, in place
        ez = z.exp()
        if with_entropy:  # re-centre e on the new max, then add this chunk
            e = alpha * (e + s * (m - m_new).nan_to_num(0.0)) + torch.linalg.vecdot(ez, z)
        s = alpha * s + ez.sum(-1)
        m = m_new
    lse = m + torch.log(s)
    entropy = (torch.log(s) - e / s).clamp(min=0.0) if with_entropy else torch.zeros_like(lse)
    return (t - lse).clamp(max=0.0), entropy, lse


def _logits_grad_torch(z, c0, targets, lse, entropy, dlogp, dH, inv_T, with_entropy):
    """z [N, C] fp32 raw logits of chunk c0 -> d loss / d raw logits, in place (one extra [N, C] buffer)."""
    z.mul_(inv_T).sub_(lse[:, None])                                         # log p
    p = z.exp()
    if with_entropy:                                                         # -dH p (log p + H) - dlogp p
        z.add_(entropy[:, None]).mul_(p).mul_(-dH[:, None]).sub_(p.mul_(dlogp[:, None]))
    else:
        z.copy_(p.mul_(-dlogp[:, None]))
    inside = (targets >= c0) & (targets < c0 + z.shape[1])                  # + dlogp at the target column
    z.scatter_add_(1, (targets - c0).clamp(0, z.shape[1] - 1)[:, None], torch.where(inside, dlogp, 0.0)[:, None])
    return z.mul_(inv_T)


# ----------------------------------------------------------------------------------------------------------------
# Triton kernels

if triton is not None:

    @triton.jit
    def _logprobs_fwd_kernel(h_ptr, w_ptr, tgt_ptr, m_ptr, s_ptr, e_ptr, t_ptr, N, V, D, CHUNK, n_splits, inv_T,
                             WITH_ENTROPY: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
                             BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr):
        # hidden [N, D] and W [V, D] row-major contiguous; targets [N]; m/s/e/t partials [N, n_splits] fp32.
        # Grid (cdiv(N, BLOCK_N), n_splits): program (pn, sp) owns rows pn*BLOCK_N.. and vocabulary
        # [sp*CHUNK, sp*CHUNK + CHUNK). Per BLOCK_V block: logits tile [BN, BV] = sum over D of h @ W.T (fp32
        # accumulate), then the online-softmax update. Nothing [N, V]-sized is written.
        pid_n = tl.program_id(0)
        pid_s = tl.program_id(1)
        rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        tgt = tl.load(tgt_ptr + rows, mask=row_ok, other=-1)
        dd = tl.arange(0, BLOCK_D)
        m = tl.full((BLOCK_N,), float("-inf"), tl.float32)
        s = tl.zeros((BLOCK_N,), tl.float32)
        e = tl.zeros((BLOCK_N,), tl.float32)
        t = tl.zeros((BLOCK_N,), tl.float32)
        lo = pid_s * CHUNK
        for v0 in range(lo, lo + CHUNK, BLOCK_V):
            cols = v0 + tl.arange(0, BLOCK_V)
            col_ok = cols < V
            acc = tl.zeros((BLOCK_N, BLOCK_V), tl.float32)
            for d0 in range(0, D, BLOCK_D):
                d_ok = (d0 + dd) < D
                h = tl.load(h_ptr + rows.to(tl.int64)[:, None] * D + (d0 + dd)[None, :],
                            mask=row_ok[:, None] & d_ok[None, :], other=0.0)
                w = tl.load(w_ptr + cols.to(tl.int64)[:, None] * D + (d0 + dd)[None, :],
                            mask=col_ok[:, None] & d_ok[None, :], other=0.0)
                if UPCAST:  # the interpreter gets bf16 arithmetic wrong; on GPU bf16 feeds the tensor cores
                    h = h.to(tl.float32)
                    w = w.to(tl.float32)
                acc = tl.dot(h, tl.trans(w), acc, input_precision=PRECISION)
            z = tl.where(col_ok[None, :], acc * inv_T, float("-inf"))             # [BN, BV] scaled logits
            m_new = tl.maximum(m, tl.max(z, axis=1))
            alpha = tl.exp(m - m_new)                                            # 0 on the first block
            ez = tl.exp(z - m_new[:, None])                                      # padded columns -> 0
            if WITH_ENTROPY:
                shift = tl.where(s > 0, s * (m - m_new), 0.0)
                e = alpha * (e + shift) + tl.sum(tl.where(col_ok[None, :], ez * (z - m_new[:, None]), 0.0), axis=1)
            s = alpha * s + tl.sum(ez, axis=1)
            m = m_new
            t += tl.sum(tl.where(cols[None, :] == tgt[:, None], z, 0.0), axis=1)
        out = rows * n_splits + pid_s
        tl.store(m_ptr + out, m, mask=row_ok)
        tl.store(s_ptr + out, s, mask=row_ok)
        tl.store(e_ptr + out, e, mask=row_ok)
        tl.store(t_ptr + out, t, mask=row_ok)

    @triton.jit
    def _logits_grad_kernel(z_ptr, tgt_ptr, lse_ptr, ent_ptr, dlogp_ptr, dH_ptr, N, C, c0, inv_T,
                            WITH_ENTROPY: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
        # z [N, C] fp32 contiguous raw logits of vocabulary chunk starting at c0, overwritten with dloss/dz.
        # Grid (cdiv(N, BLOCK_N), cdiv(C, BLOCK_C)); one read and one write of the tile.
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        row_ok = rows < N
        msk = row_ok[:, None] & (cols < C)[None, :]
        offs = rows.to(tl.int64)[:, None] * C + cols[None, :]
        logp = tl.load(z_ptr + offs, mask=msk, other=0.0) * inv_T - tl.load(lse_ptr + rows, mask=row_ok)[:, None]
        p = tl.exp(logp)
        dlogp = tl.load(dlogp_ptr + rows, mask=row_ok, other=0.0)
        tgt = tl.load(tgt_ptr + rows, mask=row_ok, other=-1)
        g = dlogp[:, None] * (tl.where((c0 + cols)[None, :] == tgt[:, None], 1.0, 0.0) - p)
        if WITH_ENTROPY:
            dH = tl.load(dH_ptr + rows, mask=row_ok, other=0.0)
            H = tl.load(ent_ptr + rows, mask=row_ok, other=0.0)
            g -= dH[:, None] * p * (logp + H[:, None])
        tl.store(z_ptr + offs, g * inv_T, mask=msk)


def _forward_triton(hidden, weight, targets, temperature, with_entropy):
    """Launcher for the fused forward. Returns (logp, entropy, lse) fp32 [N]."""
    assert hidden.is_contiguous() and weight.is_contiguous() and targets.is_contiguous(), "need contiguous inputs"
    N, D = hidden.shape
    V = weight.shape[0]
    interpret = hidden.device.type == "cpu" or os.environ.get("TRITON_INTERPRET") == "1"
    # GPU tiles: no register spills on sm_90 per `ptxas -v` (128x64 or 64x128 logits tile, 8 warps); the
    # interpreter wants few, large tiles instead
    BN = min(128 if N >= 4096 else 64, max(16, triton.next_power_of_2(N)))
    BV = 512 if interpret else (64 if BN == 128 else 128)
    BD = min(128 if interpret else 64, max(16, triton.next_power_of_2(D)))
    row_tiles = triton.cdiv(N, BN)
    sms = 1 if interpret else torch.cuda.get_device_properties(hidden.device).multi_processor_count
    splits = max(1, min(triton.cdiv(2 * sms, row_tiles), triton.cdiv(V, BV)))
    chunk = triton.cdiv(triton.cdiv(V, splits), BV) * BV
    splits = triton.cdiv(V, chunk)
    m, s, e, t = torch.empty(4, N, splits, device=hidden.device, dtype=torch.float32).unbind(0)
    lowp = hidden.dtype != torch.float32 and weight.dtype != torch.float32   # bf16/fp16 tensor-core dot
    _logprobs_fwd_kernel[(row_tiles, splits)](
        hidden, weight, targets, m, s, e, t, N, V, D, chunk, splits, 1.0 / temperature,
        WITH_ENTROPY=with_entropy, UPCAST=interpret or hidden.dtype != weight.dtype,
        PRECISION="ieee" if not lowp else "tf32", BLOCK_N=BN, BLOCK_V=BV, BLOCK_D=BD,
        num_warps=8)
    # combine the [N, splits] partials (no host sync)
    M = m.max(-1).values
    alpha = torch.exp(m - M[:, None])
    S = (alpha * s).sum(-1)
    lse = M + torch.log(S)
    if with_entropy:
        E = (alpha * (e + s * (m - M[:, None]))).sum(-1)
        entropy = (torch.log(S) - E / S).clamp(min=0.0)
    else:
        entropy = torch.zeros_like(lse)
    return (t.sum(-1) - lse).clamp(max=0.0), entropy, lse


# ----------------------------------------------------------------------------------------------------------------
# autograd glue and entry point

class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, temperature, with_entropy, backend):
        fwd = _forward_triton if backend == "triton" else _forward_torch
        logp, entropy, lse = fwd(hidden, weight, targets, temperature, with_entropy)
        ctx.save_for_backward(hidden, weight, targets, lse, entropy)
        ctx.temperature, ctx.with_entropy, ctx.backend = temperature, with_entropy, backend
        return logp, entropy

    @staticmethod
    def backward(ctx, dlogp, dH):
        hidden, weight, targets, lse, entropy = ctx.saved_tensors
        N, V = hidden.shape[0], weight.shape[0]
        inv_T = 1.0 / ctx.temperature
        # matmuls in the input dtype on GPU (tensor cores), fp32 on CPU
        cdt = torch.float32 if hidden.device.type == "cpu" else hidden.dtype
        h = hidden.to(cdt)
        dlogp, dH = dlogp.float().contiguous(), dH.float().contiguous()
        dh = torch.zeros(N, hidden.shape[1], device=hidden.device, dtype=torch.float32) \
            if ctx.needs_input_grad[0] else None
        dW = torch.empty_like(weight) if ctx.needs_input_grad[1] else None
        C = _chunk_size(N, V)
        for c0 in range(0, V, C):
            Wc = weight[c0:c0 + C].to(cdt)
            z = _logits_fp32(h, Wc)                                              # [N, C] recomputed logits
            if ctx.backend == "triton":
                BNg, BCg = (64, 2048) if z.device.type == "cpu" else (16, 256)   # interpreter: big tiles
                _logits_grad_kernel[(triton.cdiv(N, BNg), triton.cdiv(z.shape[1], BCg))](
                    z, targets, lse, entropy, dlogp, dH, N, z.shape[1], c0, inv_T,
                    WITH_ENTROPY=ctx.with_entropy, BLOCK_N=BNg, BLOCK_C=BCg)
            else:
                _logits_grad_torch(z, c0, targets, lse, entropy, dlogp, dH, inv_T, ctx.with_entropy)
            g = z.to(cdt)
            if dh is not None:
                dh += (g @ Wc).float()
            if dW is not None:
                dW[c0:c0 + C] = (g.T @ h).to(weight.dtype)
        return (dh.to(hidden.dtype) if dh is not None else None), dW, None, None, None, None


def token_logprobs(hidden, weight, targets, temperature=1.0, with_entropy=False, backend="torch"):
    """See kernels.token_logprobs. backend: 'triton' or 'torch' (kernels.backend picks it from the device)."""
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"need hidden [N, D] and weight [V, D], got {tuple(hidden.shape)} and {tuple(weight.shape)}"
                         "; flatten [B, T, D] hidden states to [B*T, D]")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets must be [N]=[{hidden.shape[0]}], got {tuple(targets.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= weight.shape[0]):
        raise ValueError(f"targets must lie in [0, {weight.shape[0]}); mask padding positions out of the loss "
                         "instead of passing ignore indices")
    targets = targets.long().contiguous()
    if hidden.shape[0] == 0:  # no rows (a micro-batch of empty responses): the torch path returns empty tensors
        backend = "torch"
    logp, entropy = _TokenLogprobs.apply(hidden.contiguous(), weight.contiguous(), targets, float(temperature),
                                         bool(with_entropy), backend)
    return (logp, entropy) if with_entropy else logp
