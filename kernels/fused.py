"""The small elementwise work of an inference forward, fused: RMSNorm (with the residual add before it), rotary
embedding plus the KV-cache write, and SwiGLU's silu(gate) * up.

What it fixes. A Qwen2.5-7B decode step is bound by reading the 15 GB of weights (3.2 ms on an H200), yet in plain
torch each of its 28 layers also launches ~30 small kernels: RMSNorm as cast, norm, cast, scale (x2), rotary as
multiply, roll, multiply, add (x2 for q and k), two index_copy_ into the cache, silu and multiply, two residual
adds. Each costs a few microseconds of GPU time even inside a CUDA graph, a few milliseconds per step in all
(bench/decode_step.py measures it). Here a layer's elementwise work is 4 launches: norm, rotary + cache write,
residual add + norm, silu * up (the last residual add stays a torch add).

Exactness. Each kernel computes in fp32 and rounds to the activation dtype wherever the torch code it replaces
rounds (the reference functions below are that torch code), so bf16 results equal the eager model's up to the
order of fp32 sums and the last bit of exp/rsqrt: a bf16 value may differ by a unit or two in the last place, rarely
(two: an fp32 rsqrt a hair off rounds h to the neighbouring bf16 value, and the weight multiply carries it).

    rms_norm(x, weight, eps) -> weight * rms_norm(x.float()).to(x.dtype)                  x [..., D]
    add_rms_norm(x, residual, weight, eps) -> (that of s, s) with s = residual + x
    rotary_cache_write(q, k, v, cos, sin, k_cache, v_cache, write_index) -> q rotated [B, H, hd]; rotated k and v
        written into the cache rows write_index [B*KVH] of the flat [blocks*KVH*block_size, hd] view
    silu_mul(gate, up) -> silu(gate) * up

Dispatch (kernels.fused_layers): the Triton kernels on CUDA, for the engine's forwards (no autograd); training and
CPU run the torch code in model.py. The tests call the kernels under TRITON_INTERPRET=1 against the references.
"""
import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs still get the references
    triton = None


# ----------------------------------------------------------------------------------------------------------------
# References: exactly model.py's torch code (the oracle of the tests)

def rms_norm_reference(x, weight, eps):
    return weight * F.rms_norm(x.float(), weight.shape, eps=eps).to(x.dtype)


def add_rms_norm_reference(x, residual, weight, eps):
    s = residual + x
    return rms_norm_reference(s, weight, eps), s


def rotary_cache_write_reference(q, k, v, cos, sin, k_cache, v_cache, write_index):
    """q [B, 1, H*hd], k, v [B, 1, KVH*hd] (one token per row; may be views into one [B, 1, (H+2*KVH)*hd] projection),
    cos / sin [B, hd] (sin pre-signed, model.rotary_cos_sin); k_cache, v_cache [blocks, KVH, block_size, hd];
    write_index [B*KVH]."""
    B, hd = cos.shape
    q, k = q.view(B, -1, hd), k.view(B, -1, hd)
    c, s = cos[:, None], sin[:, None]
    q = q * c + q.roll(hd // 2, dims=-1) * s  # model.apply_rotary
    k = k * c + k.roll(hd // 2, dims=-1) * s
    k_cache.view(-1, hd).index_copy_(0, write_index, k.reshape(-1, hd))
    v_cache.view(-1, hd).index_copy_(0, write_index, v.reshape(-1, hd))
    return q


def silu_mul_reference(gate, up):
    return F.silu(gate) * up


# ----------------------------------------------------------------------------------------------------------------
# Triton kernels

if triton is not None:

    @triton.jit
    def _round(x, dt: tl.constexpr):
        # fp32 x -> the nearest value of dtype dt (round to nearest, ties to even), still in fp32: where torch rounds
        # an intermediate result. bf16 by integer arithmetic on the fp32 bits, because Triton's interpreter (the
        # CPU tests) truncates in .to(tl.bfloat16); the compiled cast rounds, and then both agree.
        if dt == tl.bfloat16:
            bits = x.to(tl.int32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -65536
            return bits.to(tl.float32, bitcast=True)
        else:
            return x.to(dt).to(tl.float32)

    @triton.jit
    def _rms_norm_kernel(x_ptr, res_ptr, w_ptr, out_ptr, sum_ptr, D, eps, HAS_RES: tl.constexpr,
                         BLOCK_D: tl.constexpr):
        # One program per row of [N, D] (all contiguous). HAS_RES: s = res + x (rounded to the dtype, as torch's add)
        # is stored to sum_ptr and normalised; else x itself is. out = (w * (s * rsqrt(mean(s^2) + eps)).to(dtype)).
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK_D)
        m = cols < D
        s = tl.load(x_ptr + row * D + cols, mask=m, other=0.0).to(tl.float32)
        if HAS_RES:
            s = _round(s + tl.load(res_ptr + row * D + cols, mask=m, other=0.0).to(tl.float32),
                       sum_ptr.dtype.element_ty)
            tl.store(sum_ptr + row * D + cols, s.to(sum_ptr.dtype.element_ty), mask=m)
        h = s * tl.rsqrt(tl.sum(s * s, axis=0) / D + eps)
        h = _round(h, out_ptr.dtype.element_ty)                      # model.RMSNorm casts back before the weight
        w = tl.load(w_ptr + cols, mask=m, other=0.0).to(tl.float32)
        out = _round(w * h, out_ptr.dtype.element_ty)
        tl.store(out_ptr + row * D + cols, out.to(out_ptr.dtype.element_ty), mask=m)

    @triton.jit
    def _rotary_cache_write_kernel(q_ptr, k_ptr, v_ptr, cos_ptr, sin_ptr, kc_ptr, vc_ptr, idx_ptr, q_out_ptr,
                                   stride_q, stride_k, stride_v, H, KVH, HD: tl.constexpr):
        # Program (b, j): row b, head j < H rotates query head j into q_out [B, H, HD]; head j >= H takes KV head
        # j - H: rotates k, stores it and v at cache row idx[b*KVH + j - H] of the flat [rows, HD] caches.
        # q, k, v: row b starts at b * stride_(q|k|v), heads contiguous (views into one merged q/k/v projection).
        # Rounding as model.apply_rotary in the activation dtype: x*cos, roll(x)*sin, their sum, each rounded.
        b = tl.program_id(0).to(tl.int64)
        j = tl.program_id(1)
        d = tl.arange(0, HD)
        rolled = (d + HD // 2) % HD                                   # x.roll(HD/2)[d] = x[(d + HD/2) % HD]
        c = tl.load(cos_ptr + b * HD + d).to(tl.float32)
        s = tl.load(sin_ptr + b * HD + d).to(tl.float32)
        dt = q_out_ptr.dtype.element_ty
        if j < H:
            base = q_ptr + b * stride_q + j * HD
            x = tl.load(base + d).to(tl.float32)
            xr = tl.load(base + rolled).to(tl.float32)
            y = _round(_round(x * c, dt) + _round(xr * s, dt), dt)
            tl.store(q_out_ptr + (b * H + j) * HD + d, y.to(dt))
        else:
            h = j - H
            base = k_ptr + b * stride_k + h * HD
            x = tl.load(base + d).to(tl.float32)
            xr = tl.load(base + rolled).to(tl.float32)
            y = _round(_round(x * c, dt) + _round(xr * s, dt), dt)
            row = tl.load(idx_ptr + b * KVH + h).to(tl.int64)
            tl.store(kc_ptr + row * HD + d, y.to(dt))
            tl.store(vc_ptr + row * HD + d, tl.load(v_ptr + b * stride_v + h * HD + d))

    @triton.jit
    def _silu_mul_kernel(g_ptr, u_ptr, out_ptr, n, BLOCK: tl.constexpr):
        # out = silu(g) * u over n elements; silu rounded to the dtype first, as F.silu(g) * u does
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        g = tl.load(g_ptr + offs, mask=m, other=0.0).to(tl.float32)
        u = tl.load(u_ptr + offs, mask=m, other=0.0).to(tl.float32)
        a = _round(g / (1.0 + tl.exp(-g)), out_ptr.dtype.element_ty)
        tl.store(out_ptr + offs, _round(a * u, out_ptr.dtype.element_ty).to(out_ptr.dtype.element_ty), mask=m)


def _rms_norm(x, residual, weight, eps):
    """(norm of s, s) with s = residual + x; without a residual (norm of x, that same tensor again)."""
    D = x.shape[-1]
    out = torch.empty_like(x)
    summed = torch.empty_like(x) if residual is not None else out  # out: an unused dummy without a residual
    _rms_norm_kernel[(x.numel() // D,)](x, residual if residual is not None else x, weight, out, summed, D, eps,
                                        HAS_RES=residual is not None, BLOCK_D=triton.next_power_of_2(D),
                                        num_warps=8 if D >= 2048 else 4)
    return out, summed


def rms_norm_triton(x, weight, eps):
    """x [..., D] contiguous, weight [D] of x's dtype -> rms_norm_reference(x, weight, eps)."""
    assert x.is_contiguous() and weight.dtype == x.dtype and weight.shape == x.shape[-1:]
    return _rms_norm(x, None, weight, eps)[0]


def add_rms_norm_triton(x, residual, weight, eps):
    """x, residual [..., D] contiguous, same shape and dtype -> add_rms_norm_reference(x, residual, weight, eps)."""
    assert x.is_contiguous() and residual.is_contiguous() and x.shape == residual.shape
    assert residual.dtype == x.dtype == weight.dtype and weight.shape == x.shape[-1:]
    return _rms_norm(x, residual, weight, eps)


def rotary_cache_write_triton(q, k, v, cos, sin, k_cache, v_cache, write_index):
    """Same contract as rotary_cache_write_reference; q, k, v [B, 1, heads*hd] with unit stride along the last
    dimension (any row stride), everything else contiguous, one dtype for activations and caches."""
    B, hd = cos.shape
    H, KVH = q.shape[-1] // hd, k.shape[-1] // hd
    for t in (q, k, v):
        assert t.shape[0] == B and t.numel() == B * t.shape[-1] and t.stride(-1) == 1
    for t in (cos, sin, k_cache, v_cache, write_index):
        assert t.is_contiguous()
    assert q.dtype == k.dtype == v.dtype == cos.dtype == sin.dtype == k_cache.dtype == v_cache.dtype
    assert write_index.numel() == B * KVH and hd & (hd - 1) == 0
    q_out = torch.empty(B, H, hd, dtype=q.dtype, device=q.device)
    _rotary_cache_write_kernel[(B, H + KVH)](q, k, v, cos, sin, k_cache, v_cache, write_index, q_out, q.stride(0),
                                             k.stride(0), v.stride(0), H, KVH, HD=hd,
                                             num_warps=1 if hd <= 128 else 2)
    return q_out


def silu_mul_triton(gate, up):
    """gate, up of one shape and dtype, contiguous -> silu(gate) * up."""
    assert gate.is_contiguous() and up.is_contiguous() and gate.shape == up.shape and gate.dtype == up.dtype
    out = torch.empty_like(gate)
    n = gate.numel()
    _silu_mul_kernel[(triton.cdiv(n, 1024),)](gate, up, out, n, BLOCK=1024)
    return out
