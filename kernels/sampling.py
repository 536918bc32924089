"""Fused next-token sampling: temperature, top-k, top-p and greedy without sorting the vocabulary.

What it fuses. The textbook sampler runs softmax -> sort -> cumsum -> mask -> renormalise -> torch.multinomial: about
ten passes over [B, V] plus a [B, V] sort (and a host sync inside multinomial). Here:

1. Plain temperature sampling (the AZR rollout path) reads the logits once, plus ~3% of them again. A first kernel
   splits each row's vocabulary over many programs (split-vocab: B x splits programs fill the GPU even at B=1); each
   keeps an online log-sum-exp of its slice of z = logits / T: one exp per logit and nothing else. A second kernel
   draws by inversion of the cumulative distribution: per row, u = U * total mass with ONE uniform U, the split
   holding u found from the splits' masses, then only that split (<= 4,096 columns) is read again: the run of 256
   columns (bf16) holding u from the runs' masses, then that run's exp(z - max) summed until u is passed. Why not
   the exponential race (Gumbel-max, argmax z_i - log E_i), which needs no second read: it draws a random number and
   takes two logarithms per logit, which made it compute-bound (554 GB/s on an H200 at B=256, commit e6e1e7f), while
   inversion does the one exp the logprob's normaliser needs anyway.
2. top-k / top-p only need a THRESHOLD on the logits: the kept set is {i : logit_i >= tau}, found without sorting
   in one of two ways, then step 1 runs with the threshold as a mask (for the rows not drawn in a).
   a. Candidates (the fast path). The first pass of step 1 also gives each row's max M, mass, and a mean and spread
      (from a sample: each split's first step); a second pass marks, in a bitmask of 32-column words, the few logits
      above a floor (by default the level above which a Gaussian bulk of V logits leaves ~2k: LLM logits are such a
      bulk plus the few informative tokens that top-k / top-p keep; for top-p alone never above
      M - log((V - 1) / ((1 - p) * mass)) - 1, below which all tokens together hold less than 1 - p of the mass). When
      those candidates hold the kept set (at least k of them for top-k; at least top_p of the row's mass for top-p
      alone) and fit in CANDIDATES slots, one program per row lists them from the bitmask (word bit counts, a prefix
      sum, then one round per bit a word holds), reads their logits, and finds the threshold among them: the
      largest key t with count(key >= t) >= k, then with mass(key >= t) >= top_p of what top-k kept, bit by bit (16
      steps for bf16, fewer for the leading bits the candidates share). Exact either way: the check is, the floor
      is only a guess. That program also draws the row's token (the same uniform U as step 1's select kernel,
      inverted over the kept candidates in column order: the same token), and step 1 skips the row.
   b. Radix select, for the rows the candidates do not serve (a flat row, a top-k larger than its candidates): on
      the 32-bit order-preserving integer key of each float, passes of 4 bits each, every pass histograms the 16
      next digits of the elements that still match the prefix found so far (counts for top-k, softmax mass for
      top-p) and descends into the bucket that holds the k-th element / the top_p mass boundary. fp32 logits take
      8 passes; bf16 logits (what the engine passes on GPUs) only 4, and fp16 5, because their keys have 16 / 19
      significant bits and the rest follows from the sign bit. Exact in a fixed number of passes, O(B) extra
      memory. Each pass is split over the vocabulary like step 1 (splits write partial histograms, then a small
      kernel per row block sums them and descends), so a pass keeps the whole GPU busy even at B=1, where one
      program per row walking its 152k logits took milliseconds. Its passes run for every call (no host sync
      decides), on a grid of a few programs per SM that skip, without reading, what has no such row.

Instructions per logit decide as much as bytes: an H200 streams 2.4G bf16 logits/s (4.8 TB/s) while its 132 SMs
issue ~33T thread-instructions/s, so a pass stays memory-bound below ~14 instructions per bf16 logit (~28 fp32).
Hence every kernel here reduces across lanes once per program, not once per tile (a barrier and a shared-memory
round trip per tile, and for the histograms a [tile, 16] one-hot summed per tile: ~250 instructions per logit for
counts, ~640 for masses). Compiled for sm_90 (bench/sass.py counts them): the partial kernel ~12.5 per bf16 logit in
its loop (its first step, with the statistics the candidate path needs, <= ~24), the candidate marking pass ~9 (a
compare and a shift per logit, then a word per 32 columns; copying the candidates aside instead cost ~33: a prefix
sum over the tile and two scattered stores per logit, which Triton lays out apart from the loads: a shared-memory
round trip per logit), a top-k (count) pass ~23, a top-p (mass) pass ~80, as 16 buckets cost a compare, a select and
an add each. Both candidate passes also pay a fixed cost per program (set-up, the floor's arithmetic, final sums:
~520 instructions per thread in the marking pass), hence their long splits (FILTER_SCAN): ~14 and ~11 per logit
executed at B = 256. So top-p by candidates takes ~2 reads' worth of time on an H200 plus the per-row search; by
radix ~25.

Memory traffic per call, logits [B, V] of e bytes: plain = 1.03 reads (B*V*e) + O(B * splits). top-k and/or top-p
with every row served by its candidates = 2 reads (the first pass, the marking pass) + the candidates' own logits
again + O(B * (V / 32 + CANDIDATES)).
A row the candidates miss adds the radix select's passes for its block: P passes per filter, P = 4 for bf16 and 8 for
fp32 (the threshold kernel cannot keep a 152k row in registers, so each pass re-reads it; rows that fit in L2 make
these re-reads cheaper than HBM reads).

Randomness: per-row seeds drawn from the caller's torch.Generator as a device tensor (no host sync, CUDA-graph
friendly); U is 53 bits from two Philox outputs of the row's seed and the scan inside a split sums in fp64, but u
ranges over the splits' fp32 partial masses, so a token's probability is right to about 1e-7 of its split's mass,
not of its own p (with logits [0, -17], token 1's p = 4e-8 is lost in 1 + 4e-8 = 1 and never drawn; the torch
reference draws the column against its chunk's own fp64 total, so there every p down to ~1e-16 holds). The token
depends only on (row seed, logits), not on the split layout (up to rounding at a token boundary), so every GPU
draws the same tokens from the same seed. The torch reference uses the same inversion, in two levels (see _invert).

Conventions (the same in the Triton kernels and the PyTorch reference below):
- temperature 0 = greedy (argmax, first index on ties); its logprob is log_softmax(logits)[id] at T=1, unfiltered.
- top-k first, then top-p on the renormalised top-k mass; every token tied with the boundary value is kept.
- NaN logits count as -inf; -inf tokens are never drawn; an all -inf row returns id 0 with logprob -inf; a row
  holding +inf returns its first +inf with logprob -inf (no finite distribution to report).
"""
import functools
import math
import os
import statistics

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs still get the reference
    triton = None


# ----------------------------------------------------------------------------------------------------------------
# Argument handling shared by both paths

def _check_logits(logits):
    if logits.dim() != 2:
        raise ValueError(f"logits must be [B, V], got shape {tuple(logits.shape)}; flatten leading dims first")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a float tensor, got {logits.dtype}")
    if logits.shape[1] == 0:
        raise ValueError("logits have an empty vocabulary (V = 0): nothing to sample")


def _rows(value, B, dtype, device, name):
    """A python scalar or a [B] / 0-d tensor -> a [B] tensor of `dtype` on `device`."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            value = value.reshape(1).expand(B)
        if tuple(value.shape) != (B,):
            raise ValueError(f"{name} must be a python scalar or a [B]=[{B}] tensor, got shape {tuple(value.shape)}")
        return value.to(device=device, dtype=dtype)
    if torch.device(device).type == "cuda" and torch.cuda.is_current_stream_capturing():
        return torch.full((B,), value, dtype=dtype, device=device)  # a fill recorded in a graph: not for the cache
    return _constant_rows(value, B, dtype, torch.device(device))


@functools.lru_cache(maxsize=64)
def _constant_rows(value, B, dtype, device):
    """[B] filled with a python scalar, made once: the engine samples every decode step with the same knobs, and three
    fills per call were three kernel launches of the few that sampling costs. Never written to (the kernels and the
    reference only read the knobs)."""
    return torch.full((B,), value, dtype=dtype, device=device)


def _static_flags(logits, temperature, top_k, top_p):
    """(greedy_only, has_topk, has_topp) decided from python-scalar knobs; tensor knobs must assume anything."""
    V = logits.shape[1]
    greedy_only = not isinstance(temperature, torch.Tensor) and temperature == 0
    has_topk = isinstance(top_k, torch.Tensor) or 0 < top_k < V
    has_topp = isinstance(top_p, torch.Tensor) or top_p < 1
    return greedy_only, has_topk, has_topp


def _knob_rows(logits, temperature, top_k, top_p):
    """(T, k, p): the knobs as [B] tensors (float32, int64, float32). Python-scalar knobs are validated; tensor knobs
    are trusted (checking them would need a host sync) and clamped into range instead."""
    if not isinstance(temperature, torch.Tensor) and not temperature >= 0:  # NaN too
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if not isinstance(top_k, torch.Tensor) and (top_k < 0 or int(top_k) != top_k):
        raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {top_k}")
    if not isinstance(top_p, torch.Tensor) and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (1 = off), got {top_p}")
    B, dev = logits.shape[0], logits.device
    # clamping keeps out-of-range tensor knobs meaningful: top_p <= 0 means "the top token only" (python knobs are
    # valid already, so they skip the clamp kernels)
    T, k, p = (_rows(temperature, B, torch.float32, dev, "temperature"), _rows(top_k, B, torch.int64, dev, "top_k"),
               _rows(top_p if isinstance(top_p, torch.Tensor) else max(top_p, 1e-6), B, torch.float32, dev, "top_p"))
    return (T.clamp(min=0.0) if isinstance(temperature, torch.Tensor) else T,
            k.clamp(min=0) if isinstance(top_k, torch.Tensor) else k,
            p.clamp(min=1e-6, max=1.0) if isinstance(top_p, torch.Tensor) else p)


# ----------------------------------------------------------------------------------------------------------------
# PyTorch reference: the CPU fallback and the test oracle (sorts, because clarity is its job)

def filter_threshold_reference(z, top_k, top_p):
    """Smallest kept value of each row of z [B, V] (scaled logits) under top-k then top-p; -inf keeps everything."""
    B, V = z.shape
    zs = z.sort(dim=-1, descending=True).values                                   # [B, V]
    k = top_k.clamp(0, V)
    thr_k = zs.gather(1, (k - 1).clamp(min=0)[:, None]).squeeze(1)
    thr_k = torch.where((k > 0) & (k < V), thr_k, -math.inf)
    # top-p on what top-k left: tau = zs[j] for the first j whose cumulative mass reaches top_p. Ties need no care:
    # mass(z >= zs[j]) >= cums[j] reaches top_p, and every larger value ends its tie group before j.
    probs = torch.softmax(zs.masked_fill(zs < thr_k[:, None], -math.inf), dim=-1).nan_to_num(0.0)
    cums = probs.cumsum(-1)
    first = (cums < top_p[:, None] * cums[:, -1:]).sum(-1).clamp(max=V - 1)
    thr_p = torch.where(top_p < 1, zs.gather(1, first[:, None]).squeeze(1), -math.inf)
    return torch.maximum(thr_k, thr_p)


REF_CHUNK = 128  # columns per chunk of the reference's two-level argmax and inversion (the kernels' CHUNK is a split)


def _first_argmax(zc, m):
    """argmax(-1) of zc [B, C, REF_CHUNK] viewed as [B, C*REF_CHUNK], whose row maxima are m [B]: the first index
    holding the maximum. Two short passes (which chunk, then where in it): on CPU torch's argmax carries an index
    through its reduction and runs ~15x slower than amax ([32, 8192] fp32, 1 thread: 222 vs 15 us)."""
    B = zc.shape[0]
    c = (zc.amax(-1) == m[:, None]).int().argmax(-1)                                  # [B] first chunk with the max
    j = (zc[torch.arange(B, device=zc.device), c] == m[:, None]).int().argmax(-1)   # [B] first column in it
    return c * REF_CHUNK + j


def _invert(pc, mass, generator):
    """Draw one column per row of pc [B, C, REF_CHUNK] (unnormalised probabilities; mass [B, C] its chunk sums) by
    inversion, in two levels: a chunk with probability proportional to its mass, then a column of it in proportion
    to its own. Two uniforms per row instead of one per column: on CPU drawing V uniforms and their logarithms cost
    10x the rest of sampling. The cumulative sums are float64, and U <= 1 - 2^-53 (torch.rand's float64 grid) makes
    U * total round below total, so the chosen chunk and column always have positive mass: a zero-probability
    (masked) column is never drawn. Rows with no finite mass are the caller's to replace (the indices are clamped
    only to stay in range)."""
    B, C, _ = pc.shape
    U = torch.rand(B, 2, generator=generator, dtype=torch.float64, device=pc.device)
    cdf = mass.double().cumsum(-1)                                                    # [B, C]
    c = torch.searchsorted(cdf, U[:, :1] * cdf[:, -1:], right=True).clamp_(max=C - 1)[:, 0]
    inside = pc[torch.arange(B, device=pc.device), c].double().cumsum(-1)             # [B, REF_CHUNK]
    j = torch.searchsorted(inside, U[:, 1:] * inside[:, -1:], right=True).clamp_(max=REF_CHUNK - 1)[:, 0]
    return c * REF_CHUNK + j


def sample_reference(logits, temperature=1.0, top_k=0, top_p=1.0, generator=None, with_logprobs=True):
    """Same contract as kernels.sample, in plain PyTorch: the CPU sampler of the engine, so kept lean (one [B, V]
    buffer worked in place: on CPU a fresh 40 MB tensor costs more in page faults than the arithmetic on it; the sort
    only when a filter is on). Like the Triton kernels it draws by inversion of the cumulative distribution: O(B)
    random numbers rather than one per logit, which on CPU is what matters most."""
    _check_logits(logits)
    T, k, p = _knob_rows(logits, temperature, top_k, top_p)
    greedy_only, has_topk, has_topp = _static_flags(logits, temperature, top_k, top_p)
    greedy = T <= 0
    B, V = logits.shape
    scaled = isinstance(temperature, torch.Tensor) or temperature not in (0, 1)
    scale = torch.where(greedy, 1.0, T)[:, None] if scaled else None         # [B, 1]

    def scaled_logits(x):  # x [B, n] float32 (a copy): NaN counts as -inf; divided by the temperature, in place
        x.nan_to_num_(nan=-math.inf, posinf=math.inf, neginf=-math.inf)
        return x.div_(scale) if scaled else x

    # z [B, C*REF_CHUNK]: the float32 copy, -inf columns padding V to whole chunks; zv its first V columns (a view)
    z = torch.nn.functional.pad(logits.float(), (0, -V % REF_CHUNK), value=-math.inf)
    zv = scaled_logits(z[:, :V])
    if (has_topk or has_topp) and not greedy_only:
        thr = torch.where(greedy, -math.inf, filter_threshold_reference(zv, k, p))  # greedy rows: no filtering
        zv.masked_fill_(zv < thr[:, None], -math.inf)
    zc = z.view(B, -1, REF_CHUNK)
    if z.numel() > 1 << 16:
        m = z.amax(-1)                                                        # [B]
        argmax = _first_argmax(zc, m)
    else:  # small: torch's one pass beats the two-level search's extra ops
        m, argmax = z.max(-1)
    if greedy_only and not with_logprobs:
        return argmax, None
    # z becomes the unnormalised probabilities exp(z - m), as exp2((z - m) * log2(e)) (torch's CPU exp2 is 3x faster
    # than its exp)
    pc = zc.sub_(m[:, None, None]).mul_(1 / math.log(2)).exp2_()              # [B, C, REF_CHUNK]
    mass = pc.sum(-1)                                                         # [B, C]
    total = mass.sum(-1)
    # A finite max puts exp2(0) = 1 in the sum; an all -inf row or a +inf logit makes it NaN (-inf - -inf, inf - inf)
    finite = total > 0
    # inversion; greedy rows, and rows with no finite maximum take the argmax
    ids = argmax if greedy_only else torch.where(greedy | ~finite, argmax, _invert(pc, mass, generator))
    if not with_logprobs:
        return ids, None
    # z[ids] (z holds probabilities now; the argmax's logit is the max)
    z_id = m if greedy_only else scaled_logits(logits.gather(1, ids[:, None]).float()).squeeze(1)
    logp = (z_id - m - torch.log(total)).clamp(max=0.0)
    return ids, torch.where(finite, logp, -math.inf)


# ----------------------------------------------------------------------------------------------------------------
# Triton kernels

if triton is not None:

    @triton.jit
    def _ukey(x):
        # fp32 [..] -> uint32 with the same order as the floats: the bits of a negative float are all flipped (larger
        # magnitude sorts lower), a positive one's sign bit is set. NaN must be -inf already (the caller's job).
        # x + 0.0 turns -0.0 into +0.0 (and nothing else): the two are equal floats, so they share a key; else a -0.0
        # tied with a +0.0 top-k boundary would count as below it when top-p sums the mass top-k kept
        bits = (x + 0.0).to(tl.int32, bitcast=True)
        return bits.to(tl.uint32, bitcast=True) ^ tl.where(bits < 0, 0xFFFFFFFF, 0x80000000).to(tl.uint32)

    @triton.jit
    def _key_float(key):
        # the inverse of _ukey: a key (uint32 or int64 in [0, 2^32)) -> the fp32 it stands for (the map is an
        # involution once the sign bit is flipped back)
        s = (key.to(tl.int64) - 2147483648).to(tl.int32)
        return (s ^ ((s >> 31) & 0x7FFFFFFF)).to(tl.float32, bitcast=True)

    @triton.jit
    def _uniform53(seed, BLOCK_B: tl.constexpr):
        # [BLOCK_B] fp64 U in [0, 1 - 2^-53] from two 32-bit Philox outputs of each row's seed: U * total rounds
        # below total (see _invert), so the draw never lands past the last token with mass
        r_hi = tl.randint(seed, tl.zeros((BLOCK_B,), tl.int32))
        r_lo = tl.randint(seed, tl.full((BLOCK_B,), 1, tl.int32))
        return ((r_hi >> 5).to(tl.float64) * 67108864.0 + (r_lo >> 6).to(tl.float64)) * 1.1102230246251565e-16

    @triton.jit
    def _radix_hist_kernel(logits_ptr, stride_b, temp_ptr, mxs_ptr, prefix_ptr, thr_key_ptr, todo_ptr, count_ptr,
                           mass_ptr, B, V, CHUNK, n_splits, shift, MASS: tl.constexpr, BLOCK_B: tl.constexpr,
                           BLOCK_V: tl.constexpr):
        # One radix pass of the top-k / top-p threshold search, split over the vocabulary like the sampler:
        # program (pb, s) histograms digit (key >> shift) & 15 of the logits in rows pb*BLOCK_B.. and columns
        # s*CHUNK..+CHUNK whose key's higher digits equal the row's prefix found so far. count [B, n_splits, 16]
        # int32 out; MASS (top-p): also mass [B, n_splits, 16] fp32, the softmax mass exp(z - max z) of those
        # logits among the ones top-k keeps (key >= thr_key), with z = logit / T and the row's max z in mxs [B].
        # Every lane keeps its own histogram of the columns it loads and the lanes are summed once, at the end:
        # summing [BLOCK_V, 16] one-hots every step cost ~250 instructions per logit (counts) and ~640 (mass) on
        # sm_90, 20-45x what memory speed allows. Counts are packed 4 bits per digit into two int32 words per lane
        # (a lane sees at most CHUNK / BLOCK_V <= 15 columns, the launcher checks). Tiles are [BLOCK_B, 1, BLOCK_V]
        # so that a column's 16 mass slots live in the thread that loaded it (no layout conversion in the loop).
        # Only rows with todo [B] = 1 need the pass (the candidate path found the others' thresholds), and usually
        # none does: so the grid is a few programs per SM that walk the (row block, split) items, and an item
        # without such a row reads nothing (a grid of B x splits programs that all return costs microseconds).
        for item in range(tl.program_id(0), tl.cdiv(B, BLOCK_B) * n_splits, tl.num_programs(0)):
            pid_b = item // n_splits
            pid_s = item % n_splits
            rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
            row_ok = rows < B
            row_base = logits_ptr + rows.to(tl.int64)[:, None, None] * stride_b             # [BB, 1, 1]
            prefix = tl.load(prefix_ptr + rows, mask=row_ok, other=0).to(tl.uint32)[:, None, None]
            buckets = tl.arange(0, 16)[None, :, None]                                       # [1, 16, 1]
            count_lo = tl.zeros((BLOCK_B, 1, BLOCK_V), tl.int32)   # digits 0-7, 4 bits each
            count_hi = tl.zeros((BLOCK_B, 1, BLOCK_V), tl.int32)   # digits 8-15
            mass = tl.zeros((BLOCK_B, 16, BLOCK_V), tl.float32)
            if MASS:
                T = tl.load(temp_ptr + rows, mask=row_ok, other=1.0).to(tl.float32)
                scale = (1.0 / tl.where(T > 0, T, 1.0))[:, None, None]
                mxs = tl.load(mxs_ptr + rows, mask=row_ok, other=0.0)
                mxs = tl.where(mxs > float("-inf"), mxs, 0.0)[:, None, None]
                thr_key = tl.load(thr_key_ptr + rows, mask=row_ok, other=0).to(tl.uint32)[:, None, None]
            todo = tl.load(todo_ptr + rows, mask=row_ok, other=0)
            lo = pid_s * CHUNK
            for start in range(lo, lo + CHUNK * tl.max(todo, axis=0), BLOCK_V):
                cols = start + tl.arange(0, BLOCK_V)[None, None, :]
                m = row_ok[:, None, None] & (cols < V)
                x = tl.load(row_base + cols, mask=m, other=float("-inf")).to(tl.float32)
                x = tl.where(x == x, x, float("-inf"))
                key = _ukey(x)
                digits = key >> shift                             # (a uint32 shifted by 32 would be undefined)
                match = m & ((digits >> 4) == prefix)
                if MASS:
                    match = match & (key >= thr_key)
                digit = (digits & 15).to(tl.int32)
                one = tl.where(match, 1 << ((digit & 7) * 4), 0)
                count_lo += tl.where(digit < 8, one, 0)
                count_hi += tl.where(digit < 8, 0, one)
                if MASS:
                    # exp(z - max z) as exp2((z - max) * log2 e) with the select between the multiply and the subtract
                    # (else fused into an fma: not 0 at the max for huge z, see the select kernel)
                    w = tl.exp2((tl.where(match, x * scale, float("-inf")) - mxs) * 1.4426950408889634)
                    mass += tl.where(digit == buckets, w, 0.0)
            word = tl.where(buckets < 8, count_lo, count_hi)                                # [BB, 16, BV]
            count = tl.sum((word >> ((buckets & 7) * 4)) & 15, axis=2)                      # [BB, 16]
            out = (rows[:, None] * n_splits + pid_s) * 16 + tl.arange(0, 16)[None, :]
            tl.store(count_ptr + out, count, mask=row_ok[:, None])
            if MASS:
                tl.store(mass_ptr + out, tl.sum(mass, axis=2), mask=row_ok[:, None])

    @triton.jit
    def _radix_descend_kernel(count_ptr, mass_ptr, prefix_ptr, need_k_ptr, need_p_ptr, topk_ptr, topp_ptr,
                              thr_key_ptr, thr_ptr, todo_ptr, B, V, n_splits, MASS: tl.constexpr,
                              FIRST: tl.constexpr, LAST_BITS: tl.constexpr, WRITE_THR: tl.constexpr,
                              BLOCK_B: tl.constexpr, BLOCK_S: tl.constexpr):
        # After a _radix_hist_kernel pass: sum each row's split histograms and descend into the digit holding the
        # k-th largest logit (top-k) or the top_p mass boundary (MASS), appending it to the row's prefix. FIRST: the
        # phase's first pass (need starts at k, or at top_p times the kept mass). LAST_BITS > 0 on the phase's last
        # pass: the prefix is then the threshold key's top bits (LAST_BITS = 4 * passes), written to thr_key;
        # WRITE_THR also converts the final key to the threshold logit thr [B] fp32, for the rows with todo = 1.
        rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
        row_ok = rows < B
        todo = tl.load(todo_ptr + rows, mask=row_ok, other=0)
        buckets = tl.arange(0, 16)
        splits = tl.arange(0, BLOCK_S)
        offs = (rows[:, None, None] * n_splits + splits[None, :, None]) * 16 + buckets[None, None, :]
        ok = row_ok[:, None, None] & (splits < n_splits)[None, :, None]
        hist = tl.sum(tl.load(count_ptr + offs, mask=ok, other=0), axis=1).to(tl.int64)   # [BB, 16]
        prefix = tl.load(prefix_ptr + rows, mask=row_ok, other=0)
        thr_key = tl.load(thr_key_ptr + rows, mask=row_ok, other=0)
        if MASS:
            mass = tl.sum(tl.load(mass_ptr + offs, mask=ok, other=0.0), axis=1)          # [BB, 16]
            p = tl.load(topp_ptr + rows, mask=row_ok, other=1.0).to(tl.float32)
            if FIRST:
                need = p * tl.sum(mass, axis=1)                                  # top_p of the top-k mass
            else:
                need = tl.load(need_p_ptr + rows, mask=row_ok, other=0.0)
            above = tl.sum(mass, axis=1)[:, None] - tl.cumsum(mass, axis=1) + mass     # mass of digit >= b
            b = tl.max(tl.where(above >= need[:, None], buckets[None, :], -1), axis=1)
            # rounding can leave `need` a hair above the prefix's mass: then keep the whole prefix
            lowest = tl.min(tl.where(hist > 0, buckets[None, :], 15), axis=1)
            b = tl.where(b >= 0, b, lowest)
            need -= tl.sum(tl.where(buckets[None, :] > b[:, None], mass, 0.0), axis=1)
            tl.store(need_p_ptr + rows, need, mask=row_ok)
            prefix = prefix * 16 + b
            if LAST_BITS > 0:
                thr_key = tl.where(p < 1.0, tl.maximum(thr_key, prefix << (32 - LAST_BITS)), thr_key)
        else:
            k = tl.load(topk_ptr + rows, mask=row_ok, other=0).to(tl.int64)
            if FIRST:
                need = k
            else:
                need = tl.load(need_k_ptr + rows, mask=row_ok, other=0)
            above = tl.sum(hist, axis=1)[:, None] - tl.cumsum(hist, axis=1) + hist     # count of digit >= b
            b = tl.max(tl.where(above >= need[:, None], buckets[None, :], -1), axis=1)
            need -= tl.sum(tl.where(buckets[None, :] > b[:, None], hist, 0), axis=1)
            tl.store(need_k_ptr + rows, need, mask=row_ok)
            prefix = prefix * 16 + b
            if LAST_BITS > 0:
                # the found digits are the key's top bits; low bits 0 map back to a float in (next lower value, it].
                # Not below _ukey(-inf) = 8388607: when k passes the row's finite logits the k-th is -inf, and -inf's
                # top 16 (bf16) or 20 (fp16) bits with the rest 0 are a NaN key, which would mask the whole row
                thr_key = tl.where((k > 0) & (k < V), tl.maximum(prefix << (32 - LAST_BITS), 8388607), thr_key)
        tl.store(prefix_ptr + rows, prefix, mask=row_ok)
        tl.store(thr_key_ptr + rows, thr_key, mask=row_ok)
        if WRITE_THR:
            tl.store(thr_ptr + rows, _key_float(thr_key), mask=row_ok & (todo != 0))

    @triton.jit
    def _filter_rows(temp_ptr, topk_ptr, topp_ptr, part_max_ptr, part_sum_ptr, part_stats_ptr, rows, row_ok, V,
                     n_parts, n_sigma, BLOCK_P: tl.constexpr):
        # What the candidate kernels need of rows [BB], from the first pass's split partials [B, n_parts] (max,
        # mass, stats): the scale 1/T, top_k, top_p, which filters are on, whether the candidate path applies
        # (active), the max scaled logit M, the mass S = sum exp(z - M), and the floor: candidates are z >= floor.
        # The floor is the higher of two levels. A bound, for top-p alone: a token below M - c holds < exp(-c) of
        # the max's mass, so with c = log((V - 1) / ((1 - top_p) S)) + 1 all of them together hold less than
        # (1 - top_p) S / e, and the kept set lies above M - c whatever the row. A guess: mean + n_sigma * std of
        # the row's z, above which a Gaussian bulk of V logits leaves about a quarter of the candidate slots (LLM
        # logits are such a bulk plus a few informative outliers, which is where top-k and top-p keep their
        # tokens). Either can be wrong for a row (too many candidates, or too few of them); the threshold kernel
        # checks, and the radix select takes the rows that fail.
        T = tl.load(temp_ptr + rows, mask=row_ok, other=0.0)
        scale = 1.0 / tl.where(T > 0, T, 1.0)
        k = tl.load(topk_ptr + rows, mask=row_ok, other=0)
        p = tl.load(topp_ptr + rows, mask=row_ok, other=1.0)
        part = rows[:, None] * n_parts + tl.arange(0, BLOCK_P)[None, :]                 # [BB, BP]
        ok = row_ok[:, None] & (tl.arange(0, BLOCK_P) < n_parts)[None, :]
        mx = tl.load(part_max_ptr + part, mask=ok, other=float("-inf"))
        sm = tl.load(part_sum_ptr + part, mask=ok, other=0.0)
        M = tl.max(mx, axis=1)
        finite = (M > float("-inf")) & (M < float("inf"))
        M = tl.where(finite, M, 0.0)
        S = tl.sum(tl.where(mx == M[:, None], sm, sm * tl.exp(mx - M[:, None])), axis=1)
        S = tl.where(S > 0, S, 1.0)                                          # (rows without a finite logit)
        n = tl.maximum(tl.sum(tl.load(part_stats_ptr + part * 3, mask=ok, other=0.0), axis=1), 1.0)
        mean = tl.sum(tl.load(part_stats_ptr + part * 3 + 1, mask=ok, other=0.0), axis=1) / n
        var = tl.sum(tl.load(part_stats_ptr + part * 3 + 2, mask=ok, other=0.0), axis=1) / n - mean * mean
        use_k = (k > 0) & (k < V)
        use_p = p < 1.0
        active = row_ok & (T > 0) & finite & (use_k | use_p)
        c = tl.log((V - 1) / ((1.0 - tl.where(use_p, p, 0.0)) * S)) + 1.0
        lower = tl.where(use_p & ~use_k, M - tl.maximum(c, 0.0), float("-inf"))   # (top-k: >= k candidates do)
        spread = tl.where(n_sigma > float("-inf"), n_sigma, 0.0) * tl.sqrt(tl.maximum(var, 0.0))
        guess = tl.where(n_sigma > float("-inf"), mean + spread, float("-inf"))
        floor = tl.minimum(tl.maximum(lower, guess), M)    # (the max is always a candidate)
        return scale, k, p, use_k, use_p, active, M, S, tl.where(active, floor, float("inf"))

    @triton.jit
    def _candidates_kernel(logits_ptr, stride_b, temp_ptr, topk_ptr, topp_ptr, part_max_ptr, part_sum_ptr,
                           part_stats_ptr, bits_ptr, B, V, CHUNK, n_splits, n_parts, n_sigma, BLOCK_B: tl.constexpr,
                           BLOCK_V: tl.constexpr, BLOCK_P: tl.constexpr):
        # The top-k / top-p fast path's one pass: program (pb, s) marks the logits of rows pb*BLOCK_B.. in columns
        # s*CHUNK..+CHUNK whose z is >= the row's floor (see _filter_rows): bit c % 32 of word c // 32 of the row's
        # bitmask, bits [B, n_splits * CHUNK / 32] int32, dense (the threshold kernel lists the marked columns).
        # Rows the fast path does not apply to mark nothing; a block without such a row reads nothing. ~9
        # instructions per bf16 logit in the loop on sm_90 (~11 with the set-up, on FILTER_SCAN's splits), under
        # what an H200 issues at memory speed: copying the candidates aside here instead (a prefix sum over the
        # tile, then two scattered stores per logit, which Triton gives a layout of their own: a shared-memory round
        # trip per logit) took ~33.
        pid_b = tl.program_id(0)
        pid_s = tl.program_id(1)
        rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
        row_ok = rows < B
        scale, k, p, use_k, use_p, active, M, S, floor = _filter_rows(
            temp_ptr, topk_ptr, topp_ptr, part_max_ptr, part_sum_ptr, part_stats_ptr, rows, row_ok, V, n_parts,
            n_sigma, BLOCK_P)
        floor = tl.maximum(floor, -3.4028234663852886e38)[:, None]   # z >= floor is then False for -inf and NaN
        row_base = logits_ptr + rows.to(tl.int64)[:, None] * stride_b                   # [BB, 1]
        row_words = bits_ptr + rows.to(tl.int64)[:, None] * (n_splits * (CHUNK // 32))  # [BB, 1]
        lane = tl.arange(0, 32)[None, None, :]
        lo = pid_s * CHUNK
        for start in range(lo, lo + CHUNK * tl.max(active.to(tl.int32), axis=0), BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)[None, :]
            x = tl.load(row_base + cols, mask=row_ok[:, None] & (cols < V), other=float("-inf")).to(tl.float32)
            hit = tl.reshape(x * scale[:, None] >= floor, (BLOCK_B, BLOCK_V // 32, 32))
            words = tl.sum(hit.to(tl.int32) << lane, axis=2)                           # [BB, BV / 32]
            tl.store(row_words + start // 32 + tl.arange(0, BLOCK_V // 32)[None, :], words, mask=row_ok[:, None])

    @triton.jit
    def _popcount(v):
        # set bits of each int32 (two's complement), by adding neighbouring fields (per word, not per logit: cheap)
        v = v - ((v >> 1) & 0x55555555)
        v = (v & 0x33333333) + ((v >> 2) & 0x33333333)
        v = (v + (v >> 4)) & 0x0F0F0F0F
        return (v * 0x01010101) >> 24

    @triton.jit
    def _candidate_threshold_kernel(bits_ptr, idx_ptr, logits_ptr, stride_b, temp_ptr, topk_ptr, topp_ptr,
                                    part_max_ptr, part_sum_ptr, part_stats_ptr, seed_ptr, thr_ptr, todo_ptr,
                                    drawn_ptr, ids_ptr, logp_ptr, B, V, n_words, n_parts, n_sigma,
                                    KEY_BITS: tl.constexpr, DRAW: tl.constexpr, BLOCK_B: tl.constexpr,
                                    BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_P: tl.constexpr):
        # Rows pid*BLOCK_B..: the top-k / top-p threshold from the row's candidates alone, exact whenever they hold
        # the kept set: at least k of them (top-k), or with top-p alone at least top_p of the row's mass S; and no
        # more of them than the BLOCK_N slots. Then thr [B] is the smallest kept logit (-inf: keep all) and todo [B]
        # = 0; rows that fail get todo = 1 (the radix select's). First the candidates' columns, in column order,
        # from the row's bitmask (n_words words) into idx [B, BLOCK_N] int32: each word's first slot from a prefix
        # sum of the words' bit counts, then one round per bit a word holds (~5 for 2k candidates in a 152k row):
        # every word stores its lowest set bit's column and clears it. Their logits are then read from the row.
        # Both searches build the threshold's key bit by bit from the top, over the KEY_BITS bits a key of the
        # logits' dtype has (16 for bf16): the largest key t with count(key >= t) >= k, then the largest t with
        # mass(key >= t) >= top_p times the mass top-k kept, as the reference's sorted cumulative sum picks it
        # (tokens tied with the boundary are kept). DRAW: the rows it serves also draw their token here, as the
        # select kernel would (the same uniform U from the row's seed, inverted over the kept candidates in column
        # order, fp64 sums), into ids / logp, with drawn [B] = 1: sampling then never reads their logits again.
        rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
        row_ok = rows < B
        scale, k, p, use_k, use_p, active, M, S, floor = _filter_rows(
            temp_ptr, topk_ptr, topp_ptr, part_max_ptr, part_sum_ptr, part_stats_ptr, rows, row_ok, V, n_parts,
            n_sigma, BLOCK_P)
        row_idx = idx_ptr + rows.to(tl.int64)[:, None] * BLOCK_N                        # [BB, 1]
        count = tl.zeros((BLOCK_B,), tl.int32)                    # candidates listed so far
        for w0 in range(0, n_words * tl.max(active.to(tl.int32), axis=0), BLOCK_W):
            w = w0 + tl.arange(0, BLOCK_W)[None, :]
            words = tl.load(bits_ptr + rows.to(tl.int64)[:, None] * n_words + w, mask=active[:, None] & (w < n_words),
                            other=0)                                                   # [BB, BW]
            c = _popcount(words)
            slot = count[:, None] + tl.cumsum(c, axis=1) - c      # each word's first slot
            for r in range(0, tl.max(tl.max(c, axis=1), axis=0)):
                low = words & -words                              # the lowest set bit (int32 wraps: 1 << 31 too)
                tl.store(row_idx + slot, w * 32 + _popcount(low - 1), mask=(low != 0) & (slot < BLOCK_N))
                words = words ^ low
                slot = slot + 1
            count += tl.sum(c, axis=1)
        tl.debug_barrier()                                        # idx is read below by other threads
        j = tl.arange(0, BLOCK_N)[None, :]
        ok = active[:, None] & (j < count[:, None])
        col = tl.load(row_idx + j, mask=ok, other=0)                                    # [BB, BN]
        x = tl.load(logits_ptr + rows.to(tl.int64)[:, None] * stride_b + col, mask=ok,
                    other=float("-inf")).to(tl.float32)
        key = _ukey(x)
        # exp(z - M) with the select between the multiply and the subtract, as the radix select's: fused into
        # fma(x, scale, -M) (sm_90) it is not 1 at the max but exp of z's rounding error, 0 or inf once |z| >= 2^31
        # (logits 3e30 at T = 0.7, 1e10 at T = 1.3): a top-k kept mass of 0 made need 0 and the threshold a NaN
        w = tl.exp2((tl.where(ok, x * scale[:, None], float("-inf")) - M[:, None]) * 1.4426950408889634)
        # Every candidate key lies in [lo, hi], and so does each threshold: the leading bits lo and hi share are
        # the threshold's too, and the searches start below them (a row's candidates within one sign and a few
        # octaves share ~8 of a bf16 key's 16 bits: half the steps)
        ones = tl.full((BLOCK_B,), 4294967295, tl.uint32)
        lo = tl.min(tl.where(ok, key, ones[:, None]), axis=1)
        hi = tl.max(tl.where(ok, key, 0), axis=1)
        shared = tl.zeros((BLOCK_B,), tl.int32)
        for i in range(0, 31):
            shared += (((lo ^ hi) >> (31 - i)) == 0).to(tl.int32)
        first = tl.min(tl.where(active, tl.minimum(shared, KEY_BITS), KEY_BITS), axis=0)  # the block's first step
        base = lo & (ones ^ (ones >> first))                        # (no ~: the interpreter lacks it for uint32)
        top = tl.full((BLOCK_B,), 2147483648, tl.uint32)
        t_k = base
        for i in range(first, KEY_BITS * tl.max((active & use_k).to(tl.int32), axis=0)):
            trial = t_k | (top >> i)
            n_ge = tl.sum((ok & (key >= trial[:, None])).to(tl.int32), axis=1)
            t_k = tl.where(n_ge >= k, trial, t_k)
        t_k = tl.where(use_k, t_k, 0)
        kept = ok & (key >= t_k[:, None])
        need = p * tl.where(use_k, tl.sum(tl.where(kept, w, 0.0), axis=1), S)
        t_p = base
        for i in range(first, KEY_BITS * tl.max((active & use_p).to(tl.int32), axis=0)):
            trial = t_p | (top >> i)
            mass = tl.sum(tl.where(kept & (key >= trial[:, None]), w, 0.0), axis=1)
            t_p = tl.where(mass >= need, trial, t_p)
        t_p = tl.where(use_p, t_p, 0)
        fits = count <= BLOCK_N
        fits &= tl.where(use_k, tl.sum(ok.to(tl.int32), axis=1) >= k, tl.sum(w, axis=1) >= need)
        todo = active & ~fits
        t = tl.maximum(t_k, t_p)
        thr = tl.where(active, _key_float(t), float("-inf"))
        tl.store(thr_ptr + rows, thr, mask=row_ok & ~todo)
        tl.store(todo_ptr + rows, todo.to(tl.int32), mask=row_ok)
        if DRAW:
            # u = U * kept mass; the token is the first kept candidate whose cumulative mass passes u (one with
            # mass: a rounding past the end takes the last such candidate)
            drawn = active & fits
            # kept: x >= thr, as the masked pass compares (the same set as key >= t: -0.0 and +0.0 share a key)
            wk = tl.where(x >= thr[:, None], w, 0.0).to(tl.float64)                    # [BB, BN] kept mass
            total = tl.sum(wk, axis=1)
            u = _uniform53(tl.load(seed_ptr + rows, mask=row_ok, other=0), BLOCK_B) * total
            hit = tl.min(tl.where((tl.cumsum(wk, axis=1) > u[:, None]) & (wk > 0), j, BLOCK_N), axis=1)
            hit = tl.where(hit < BLOCK_N, hit, tl.max(tl.where(wk > 0, j, -1), axis=1))
            at = j == hit[:, None]
            tok = tl.sum(tl.where(at, col, 0), axis=1)
            x_tok = tl.sum(tl.where(at, x, 0.0), axis=1)
            logp = tl.minimum(x_tok * scale - M - tl.log(tl.where(total > 0, total, 1.0).to(tl.float32)), 0.0)
            tl.store(ids_ptr + rows, tok.to(tl.int64), mask=row_ok & drawn)
            tl.store(logp_ptr + rows, logp, mask=row_ok & drawn)
            tl.store(drawn_ptr + rows, drawn.to(tl.int32), mask=row_ok)

    @triton.jit
    def _lse_step(row_base, row_ok, cols, V, thr, scale, run_max, acc):
        # One step of the partial kernel: the logits at cols [1, BR, BC] of rows [BB] -> their z (kept scaled logits,
        # else -inf), and each run's online log-sum-exp (run_max [BB, BR], acc [BB, BR, BC]) updated with them.
        x = tl.load(row_base + cols, mask=row_ok[:, None, None] & (cols < V), other=float("-inf"))
        # masked columns load -inf; filtered and NaN logits (NaN >= thr is False) become -inf. z - max is 0 exactly
        # at the max (no fused multiply-add across the select), and exp(d) = exp2(d * log2 e) as tl.exp computes it,
        # without its extra denormal handling: ~12 instructions per bf16 logit on sm_90
        z = tl.where(x.to(tl.float32) >= thr, x.to(tl.float32) * scale, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(z, axis=2))
        safe = tl.where(new_max > float("-inf"), new_max, 0.0)
        rescale = tl.exp2((run_max - safe) * 1.4426950408889634)
        acc = acc * rescale[:, :, None] + tl.exp2((z - safe[:, :, None]) * 1.4426950408889634)
        return new_max, acc, z

    @triton.jit
    def _sample_partial_kernel(logits_ptr, stride_b, temp_ptr, thr_ptr, drawn_ptr, part_max_ptr, part_sum_ptr,
                               part_stats_ptr, B, V, CHUNK, n_splits, HAS_THR: tl.constexpr, STATS: tl.constexpr,
                               BLOCK_B: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        # logits [B, V]; temp/thr [B]; part_max/part_sum [B, n_splits] (contiguous) out.
        # Grid (cdiv(B, BLOCK_B), n_splits): program (pb, s) takes rows pb*BLOCK_B.. and columns s*CHUNK..+CHUNK and
        # keeps an online log-sum-exp (max, sum of exp(z - max)) of the kept scaled logits z: one exp per logit, no
        # random numbers, so the pass runs at memory speed. Greedy rows (T=0) use z = logit, no filter. NaN and
        # filtered logits count as -inf; +inf logits count 1 each against a +inf max (the select kernel then takes
        # the first of them). A step loads [BLOCK_B, BLOCK_R, BLOCK_C] (BLOCK_R runs of BLOCK_C columns, a run per
        # warp) and keeps one (max, sum) per run: the reductions stay inside a warp, with no barrier per step (one
        # across the warps at the end), so a warp's loads are never held up by the block's slowest warp.
        # STATS (the top-k / top-p path): also the count, sum and sum of squares of the finite z of the split's
        # first step, part_stats [B, n_splits, 3], from which the marking pass estimates where the row's bulk lies.
        # HAS_THR: rows with drawn [B] = 1 have their token already (the candidate path): a block of only such rows
        # reads nothing.
        pid_b = tl.program_id(0)
        pid_s = tl.program_id(1)
        rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
        row_ok = rows < B
        row_base = logits_ptr + rows.to(tl.int64)[:, None, None] * stride_b             # [BB, 1, 1]
        T = tl.load(temp_ptr + rows, mask=row_ok, other=1.0).to(tl.float32)
        greedy = T <= 0
        scale = (1.0 / tl.where(greedy, 1.0, T))[:, None, None]
        if HAS_THR:
            thr = tl.load(thr_ptr + rows, mask=row_ok, other=float("-inf"))
            thr = tl.where(greedy, float("-inf"), thr)[:, None, None]
        else:
            thr = tl.full((BLOCK_B, 1, 1), float("-inf"), tl.float32)
        run = tl.arange(0, BLOCK_R)[None, :, None] * BLOCK_C + tl.arange(0, BLOCK_C)[None, None, :]  # [1, BR, BC]
        run_max = tl.full((BLOCK_B, BLOCK_R), float("-inf"), tl.float32)
        acc = tl.zeros((BLOCK_B, BLOCK_R, BLOCK_C), tl.float32)  # each lane's sum of exp(z - run_max), summed last
        lo = pid_s * CHUNK
        span = CHUNK
        if HAS_THR:
            span = CHUNK * (1 - tl.min(tl.load(drawn_ptr + rows, mask=row_ok, other=1), axis=0))
        first = lo
        if STATS:
            # the split's first step apart, with each lane's count, sum and sum of squares of its finite z: a sample
            # of the split (a 152k row on an H200: all of it at B <= 4, a ninth at B = 64 and a fifteenth at B = 256,
            # with FILTER_SCAN's splits of 9 and 15 steps) is enough for a guess, and the statistics cost ~6
            # instructions per logit, half again what the rest of the loop does
            run_max, acc, z = _lse_step(row_base, row_ok, lo + run, V, thr, scale, run_max, acc)
            fin = (z > float("-inf")) & (z < float("inf"))
            zf = tl.where(fin, z, 0.0)
            n_fin = fin.to(tl.float32)
            s1 = zf
            s2 = zf * zf
            first = lo + BLOCK_R * BLOCK_C
        for start in range(first, lo + span, BLOCK_R * BLOCK_C):
            run_max, acc, _ = _lse_step(row_base, row_ok, start + run, V, thr, scale, run_max, acc)
        # the runs' (max, sum) -> the split's, as the select kernel combines the splits'. A +inf logit leaves NaN
        # sums: the select kernel then reads only the maxima (it takes the row's first +inf)
        run_sum = tl.sum(acc, axis=2)
        mx = tl.max(run_max, axis=1)
        safe = tl.where(mx > float("-inf"), mx, 0.0)
        sm = tl.sum(run_sum * tl.exp2((run_max - safe[:, None]) * 1.4426950408889634), axis=1)
        out = rows * n_splits + pid_s
        tl.store(part_max_ptr + out, mx, mask=row_ok)
        tl.store(part_sum_ptr + out, sm, mask=row_ok)
        if STATS:
            tl.store(part_stats_ptr + out * 3, tl.sum(tl.sum(n_fin, axis=2), axis=1), mask=row_ok)
            tl.store(part_stats_ptr + out * 3 + 1, tl.sum(tl.sum(s1, axis=2), axis=1), mask=row_ok)
            tl.store(part_stats_ptr + out * 3 + 2, tl.sum(tl.sum(s2, axis=2), axis=1), mask=row_ok)

    @triton.jit
    def _sample_select_kernel(logits_ptr, stride_b, temp_ptr, thr_ptr, drawn_ptr, seed_ptr, part_max_ptr,
                              part_sum_ptr, ids_ptr, logp_ptr, B, V, CHUNK, n_splits, HAS_THR: tl.constexpr,
                              BLOCK_B: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_R: tl.constexpr,
                              BLOCK_C: tl.constexpr):
        # Rows pid*BLOCK_B..: combine each row's split partials into its max M and total mass, then draw by
        # inversion: u = U * total with one 53-bit uniform U from Philox(row seed); the token is the first whose
        # cumulative mass exceeds u. The split holding u comes from the partials; only that split's <= CHUNK logits
        # are read again, in runs of BLOCK_C columns: first the run holding u from the runs' masses (fp64 sums),
        # then that run's columns (an fp64 scan over BLOCK_C columns, not the whole split). Greedy rows (T=0), and
        # rows whose max is not finite, take the first token equal to M instead. ids [B] int64, logp [B] fp32 out.
        rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
        row_ok = rows < B
        row_base = logits_ptr + rows.to(tl.int64)[:, None] * stride_b            # [BB, 1]
        T = tl.load(temp_ptr + rows, mask=row_ok, other=1.0).to(tl.float32)
        greedy = T <= 0
        scale = 1.0 / tl.where(greedy, 1.0, T)
        if HAS_THR:
            thr = tl.where(greedy, float("-inf"), tl.load(thr_ptr + rows, mask=row_ok, other=float("-inf")))
        else:
            thr = tl.full((BLOCK_B,), float("-inf"), tl.float32)
        s_idx = tl.arange(0, BLOCK_S)
        s_ok = row_ok[:, None] & (s_idx < n_splits)[None, :]
        part = rows[:, None] * n_splits + s_idx[None, :]                         # [BB, BS]
        mx = tl.load(part_max_ptr + part, mask=s_ok, other=float("-inf"))
        sm = tl.load(part_sum_ptr + part, mask=s_ok, other=0.0)
        M = tl.max(mx, axis=1)                                                   # [BB]
        finite = (M > float("-inf")) & (M < float("inf"))
        pick_max = greedy | ~finite
        safe = tl.where(finite, M, 0.0)
        mass = tl.where(mx == M[:, None], sm, sm * tl.exp(mx - safe[:, None])).to(tl.float64)  # [BB, BS]
        total = tl.sum(mass, axis=1)
        u = _uniform53(tl.load(seed_ptr + rows, mask=row_ok, other=0), BLOCK_B) * total
        s_draw = tl.min(tl.where(s_ok & (tl.cumsum(mass, axis=1) > u[:, None]), s_idx[None, :], BLOCK_S), axis=1)
        s_max = tl.min(tl.where(s_ok & (mx == M[:, None]), s_idx[None, :], BLOCK_S), axis=1)
        s = tl.minimum(tl.where(pick_max, s_max, s_draw), n_splits - 1)          # [BB] the split to read
        before = tl.sum(tl.where(s_idx[None, :] < s[:, None], mass, 0.0), axis=1)
        target = tl.where(pick_max, 0.0, u - before)                             # u's place inside split s
        # exp(z - M) as exp2((z - M) * log2 e), the partial kernel's form: not exp2(z * log2 e - M * log2 e), which
        # the compiler fuses into fma(z, log2 e, -M * log2 e) (sm_90): not 0 at z = M but M * log2 e's rounding error
        # (-6e21 at M = 1e30: p = 0 for the max and the draw falls back to column 0), z * log2 e overflows to inf
        # for |z| > 2.4e38 (inf - inf = NaN), and an error of |z| * 2^-24 in the exponent biases the draw against the
        # partials' masses (z ~ 1e6, as logits ~ 1000 at T = 1e-3: a token's probability off by a quarter)

        # level 1: the run of BLOCK_C columns holding the target. hit: its first column (-1: not found yet), with
        # the mass before it; last: the last run with mass (where rounding past the split's end lands)
        r_idx = tl.arange(0, BLOCK_R)
        run_cols = r_idx[None, :, None] * BLOCK_C + tl.arange(0, BLOCK_C)[None, None, :]   # [1, BR, BC]
        hit = tl.full((BLOCK_B,), -1, tl.int32)
        hit_before = tl.zeros((BLOCK_B,), tl.float64)
        last = tl.zeros((BLOCK_B,), tl.int32)
        last_before = tl.zeros((BLOCK_B,), tl.float64)
        acc = tl.zeros((BLOCK_B,), tl.float64)                                   # mass before this step
        span = CHUNK
        if HAS_THR:  # (a block of rows the candidate path drew skips its split, reading one unused run per row)
            span = CHUNK * (1 - tl.min(tl.load(drawn_ptr + rows, mask=row_ok, other=1), axis=0))
        for start in range(0, span, BLOCK_R * BLOCK_C):
            first_col = s * CHUNK + start                                        # [BB]
            cols = first_col[:, None, None] + run_cols
            m = row_ok[:, None, None] & (cols < V)
            x = tl.load(row_base[:, :, None] + cols, mask=m, other=float("-inf")).to(tl.float32)
            z = tl.where(x >= thr[:, None, None], x * scale[:, None, None], float("-inf"))
            p = tl.where(pick_max[:, None, None], (z == M[:, None, None]).to(tl.float32),
                         tl.exp2((z - safe[:, None, None]) * 1.4426950408889634))
            rm = tl.sum(tl.where(m, p, 0.0).to(tl.float64), axis=2)             # [BB, BR] each run's mass
            c = tl.cumsum(rm, axis=1) + acc[:, None]
            r_hit = tl.min(tl.where((c > target[:, None]) & (rm > 0), r_idx[None, :], BLOCK_R), axis=1)
            new = (hit < 0) & (r_hit < BLOCK_R)
            hit = tl.where(new, first_col + r_hit * BLOCK_C, hit)
            hit_before = tl.where(new, tl.sum(tl.where(r_idx[None, :] == r_hit[:, None], c - rm, 0.0), axis=1),
                                  hit_before)
            r_last = tl.max(tl.where(rm > 0, r_idx[None, :], -1), axis=1)
            has = r_last >= 0
            last = tl.where(has, first_col + r_last * BLOCK_C, last)
            last_before = tl.where(has, tl.sum(tl.where(r_idx[None, :] == r_last[:, None], c - rm, 0.0), axis=1),
                                   last_before)
            acc += tl.sum(rm, axis=1)
        found_run = hit >= 0
        col0 = tl.where(found_run, hit, last)
        before_run = tl.where(found_run, hit_before, last_before)
        # level 2: the columns of that run, cumulative mass in fp64
        cols = col0[:, None] + tl.arange(0, BLOCK_C)[None, :]                   # [BB, BC]
        m = row_ok[:, None] & (cols < V)
        x = tl.load(row_base + cols, mask=m, other=float("-inf")).to(tl.float32)
        z = tl.where(x >= thr[:, None], x * scale[:, None], float("-inf"))
        p = tl.where(pick_max[:, None], (z == M[:, None]).to(tl.float32),
                     tl.exp2((z - safe[:, None]) * 1.4426950408889634))
        p = tl.where(m, p, 0.0)
        c = tl.cumsum(p.to(tl.float64), axis=1) + before_run[:, None]
        # (p > 0: a target a rounding below 0 must still not land on a zero-mass column)
        found = tl.min(tl.where((c > target[:, None]) & (p > 0), cols, V), axis=1)
        last_col = tl.max(tl.where(p > 0, cols, -1), axis=1)
        tok = tl.where(found < V, found, tl.maximum(last_col, 0))
        x_tok = tl.load(logits_ptr + rows.to(tl.int64) * stride_b + tok, mask=row_ok, other=0.0).to(tl.float32)
        logp = tl.minimum(x_tok * scale - M - tl.log(total.to(tl.float32)), 0.0)   # clamp the rounding above 0
        logp = tl.where(finite & (total > 0), logp, float("-inf"))
        if HAS_THR:  # rows the candidate path drew keep their token
            row_ok &= tl.load(drawn_ptr + rows, mask=row_ok, other=1) == 0
        tl.store(ids_ptr + rows, tok.to(tl.int64), mask=row_ok)
        tl.store(logp_ptr + rows, logp, mask=row_ok)


SCAN = 4096  # most columns per split: what the select kernel re-reads of each row (~3% of a 152k row)
RUN = 512    # bytes per warp-local run of the partial and select kernels: a 16-byte load in each of 32 lanes
CANDIDATES = 8192  # slots per row of the top-k / top-p candidate path (a power of 2; 0: the radix select alone)
# most columns per split of the candidate path's two passes, whose splits no select kernel re-reads: a program's fixed
# costs (set-up, _filter_rows, final sums: ~520 instructions per thread in the marking pass, whose loop takes ~144 per
# step of 2,048 columns) then spread over ~15 steps instead of 2 (sm_90, bf16: ~11 instead of ~26 per logit)
FILTER_SCAN = 8 * SCAN


def _tile():
    # elements a program touches per step: register-friendly on GPU, large under the interpreter (numpy likes it)
    return 65536 if os.environ.get("TRITON_INTERPRET", "0") == "1" else 2048


def _sms(device):
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1


def _splits(V, BV, row_tiles, device, n=None, most=SCAN):
    """Columns per program of a split-vocabulary kernel and the number of splits: enough programs to cover every SM
    a few times, splits of at most `most` columns, each a multiple of BV columns (n: ask for n splits instead)."""
    if n is None:
        n = max(triton.cdiv(4 * _sms(device), row_tiles), triton.cdiv(V, most))
    n = max(1, min(n, triton.cdiv(V, BV)))
    chunk = triton.cdiv(triton.cdiv(V, n), BV) * BV
    return chunk, triton.cdiv(V, chunk)


def _partials(logits, T, thr, has_thr, num_splits=None, stats=False, drawn=None, most=SCAN):
    """The sampler's first pass: each split's (max, sum of exp(z - max)) of the kept scaled logits, [B, n_splits]
    each, with the layout (chunk, n_splits, BV) the select kernel must follow; stats: also the (count, sum, sum of
    squares) of the finite z of each split's first step, [B, n_splits, 3] (else None). has_thr: rows with drawn [B] =
    1 are skipped. most: the most columns per split (see _splits)."""
    assert not (stats and has_thr), "the statistics' first step reads every row, drawn or not"
    B, V = logits.shape
    BV = min(max(triton.next_power_of_2(V), 16), _tile())
    BB = max(1, min(triton.next_power_of_2(B), _tile() // BV))
    row_tiles = triton.cdiv(B, BB)
    chunk, n_splits = _splits(V, BV, row_tiles, logits.device, num_splits, most)
    part_max = torch.empty(B, n_splits, device=logits.device, dtype=torch.float32)
    part_sum = torch.empty_like(part_max)
    part_stats = torch.empty(B, n_splits, 3, device=logits.device, dtype=torch.float32) if stats else None
    BC = min(BV, RUN // logits.element_size())
    _sample_partial_kernel[(row_tiles, n_splits)](logits, logits.stride(0), T, thr, T if drawn is None else drawn,
                                                  part_max, part_sum, part_stats if stats else part_max, B, V, chunk,
                                                  n_splits,
                                                  HAS_THR=has_thr, STATS=stats, BLOCK_B=BB, BLOCK_R=BV // BC,
                                                  BLOCK_C=BC)
    return part_max, part_sum, part_stats, chunk, n_splits, BV


def _key_bits(dtype):
    """The bits of a logit's key that can differ (its significant bits, 19 for fp16, rounded up to whole 4-bit radix
    digits): the rest follows from them."""
    return {torch.bfloat16: 16, torch.float16: 20}.get(dtype, 32)


@functools.lru_cache(maxsize=64)
def _n_sigma(V, candidates):
    """How many standard deviations above the mean a Gaussian bulk of V logits leaves candidates / 4 of them
    (-inf: the vocabulary is small enough for every logit to be a candidate)."""
    frac = candidates / (4 * V)
    return statistics.NormalDist().inv_cdf(1 - frac) if frac < 0.5 else -math.inf


def _candidate_threshold(logits, T, k, p, part_max, part_sum, part_stats, candidates, draw=None):
    """Launcher of the top-k / top-p fast path (one more read of the logits): thr [B] fp32 for the rows whose kept
    set lies among their candidates, and todo [B] int32, 1 for the rows left to the radix select. draw = (seeds,
    ids, logp): those rows also draw their token into ids / logp; then also returns drawn [B] int32 (1: drawn)."""
    B, V = logits.shape
    dev = logits.device
    BV = min(max(triton.next_power_of_2(V), 32), _tile())                   # whole 32-bit words of the bitmask
    BB = max(1, min(triton.next_power_of_2(B), _tile() // BV))
    row_tiles = triton.cdiv(B, BB)
    chunk, n_splits = _splits(V, BV, row_tiles, dev, most=FILTER_SCAN)
    n_words = n_splits * chunk // 32
    n_parts = part_max.shape[1]
    BP = triton.next_power_of_2(n_parts)
    n_sigma = _n_sigma(V, candidates)
    bits = torch.empty(B, n_words, device=dev, dtype=torch.int32)
    _candidates_kernel[(row_tiles, n_splits)](logits, logits.stride(0), T, k, p, part_max, part_sum, part_stats, bits,
                                              B, V, chunk, n_splits, n_parts, n_sigma, BLOCK_B=BB, BLOCK_V=BV,
                                              BLOCK_P=BP)
    BN = min(candidates, max(16, triton.next_power_of_2(V)))                 # slots per row: 8,192 on a GPU
    BBt = max(1, min(triton.next_power_of_2(B), 4 * _tile() // BN))          # [BBt, BN] per program
    BW = min(triton.next_power_of_2(n_words), max(1, _tile() // (2 * BBt)))  # [BBt, BW] bitmask words per step
    idx = torch.empty(B, BN, device=dev, dtype=torch.int32)
    thr = torch.empty(B, device=dev, dtype=torch.float32)
    todo = torch.empty(B, device=dev, dtype=torch.int32)
    drawn = torch.empty(B, device=dev, dtype=torch.int32) if draw else todo          # (todo: an unused dummy)
    seeds, ids, logp = draw if draw else (T, T, T)
    _candidate_threshold_kernel[(triton.cdiv(B, BBt),)](bits, idx, logits, logits.stride(0), T, k, p, part_max,
                                                        part_sum, part_stats, seeds, thr, todo, drawn, ids, logp, B,
                                                        V, n_words, n_parts, n_sigma, KEY_BITS=_key_bits(logits.dtype),
                                                        DRAW=draw is not None, BLOCK_B=BBt, BLOCK_N=BN, BLOCK_W=BW,
                                                        BLOCK_P=BP, num_warps=16)
    # (16 warps: one program per SM either way, as [8,192] slots take the register file, but half the work per
    # thread: 128 registers without spills on sm_90, listing rounds of ~44 and search steps of ~97-129 instructions)
    return (thr, todo, drawn) if draw else (thr, todo)


def filter_threshold_triton(logits, T, k, p, has_topk=True, has_topp=True, candidates=None):
    """Launcher: the smallest kept (unscaled) logit per row [B] fp32 under top-k then top-p; -inf = keep all.
    First the candidate path (candidates: slots per row, default CANDIDATES; 0 skips it): one pass over the logits
    marks each row's few logits above a floor in a bitmask, and a per-row program lists them, reads their logits and
    finds the threshold among them when they hold the kept set. The rows where they do not (todo) take the radix
    select (_radix_threshold). Both start from the sampler's partial kernel: each row's max scaled logit and mass
    (and mean and spread, for the floor)."""
    assert logits.stride(-1) == 1, "logits columns must be contiguous"
    return _threshold(logits, T, k, p, has_topk, has_topp, CANDIDATES if candidates is None else candidates)[0]


def _threshold(logits, T, k, p, has_topk, has_topp, candidates, draw=None):
    """filter_threshold_triton's steps -> (thr [B], drawn [B] int32 or None). draw = (seeds, ids, logp): the rows the
    candidate path serves also draw their token (drawn = 1)."""
    B, dev = logits.shape[0], logits.device
    part_max, part_sum, part_stats = _partials(logits, T, T, False, stats=candidates > 0, most=FILTER_SCAN)[:3]
    if candidates:
        thr, todo, *drawn = _candidate_threshold(logits, T, k, p, part_max, part_sum, part_stats, candidates, draw)
    else:
        thr = torch.empty(B, device=dev, dtype=torch.float32)
        todo = torch.ones(B, device=dev, dtype=torch.int32)
        drawn = [torch.zeros(B, device=dev, dtype=torch.int32)] if draw else []
    _radix_threshold(logits, T, k, p, has_topk, has_topp, part_max, thr, todo)
    return thr, (drawn[0] if draw else None)


def _radix_threshold(logits, T, k, p, has_topk, has_topp, part_max, thr, todo):
    """Launcher of the radix select: writes thr [B] for the rows with todo [B] = 1. Passes of 4 bits, each a
    histogram over the whole GPU (splits of the vocabulary, as the sampler) and a per-row descend; part_max: the
    first pass's split maxima (top-p's masses are exp(z - max z))."""
    B, V = logits.shape
    dev = logits.device
    passes = _key_bits(logits.dtype) // 4
    prefix = torch.zeros(B, device=dev, dtype=torch.int64)
    thr_key = torch.full((B,), 8388607, device=dev, dtype=torch.int64)   # _ukey(-inf): keep everything
    need_k = torch.empty(B, device=dev, dtype=torch.int64)
    need_p = torch.empty(B, device=dev, dtype=torch.float32)
    mxs = part_max.amax(-1) if has_topp else T                               # (T: an unused dummy)
    phases = ([False] if has_topk else []) + ([True] if has_topp else [])
    for phase, use_mass in enumerate(phases):
        # top-k's passes only count: tiles of _tile() columns (16-byte loads per lane). top-p's also keep 16 float
        # masses per column in registers: a quarter of that
        tile = _tile() // (4 if use_mass else 1)
        BV = min(max(triton.next_power_of_2(V), 16), tile)
        BB = max(1, min(triton.next_power_of_2(B), tile // BV))
        row_tiles = triton.cdiv(B, BB)
        chunk, n_splits = _splits(V, BV, row_tiles, dev, most=min(SCAN, 15 * BV))
        assert chunk // BV <= 15, "a lane's packed 4-bit digit counts would overflow"
        BS = max(triton.next_power_of_2(n_splits), 2)
        BBd = max(1, min(triton.next_power_of_2(B), _tile() // (16 * BS)))   # descend: [BBd, BS, 16] partials
        count = torch.empty(B, n_splits, 16, device=dev, dtype=torch.int32)
        mass = torch.empty(B, n_splits, 16, device=dev, dtype=torch.float32) if use_mass else count  # (a dummy)
        if phase:
            prefix.zero_()
        programs = min(row_tiles * n_splits, 4 * _sms(dev))                   # each walks its share of the items
        for i in range(passes):
            _radix_hist_kernel[(programs,)](logits, logits.stride(0), T, mxs, prefix, thr_key, todo, count, mass, B,
                                            V, chunk, n_splits, 28 - 4 * i, MASS=use_mass, BLOCK_B=BB, BLOCK_V=BV,
                                            num_warps=8)  # 8: no spills, sm_90
            last = i == passes - 1
            _radix_descend_kernel[(triton.cdiv(B, BBd),)](count, mass, prefix, need_k, need_p, k, p, thr_key, thr,
                                                          todo, B, V, n_splits, MASS=use_mass, FIRST=i == 0,
                                                          LAST_BITS=4 * passes if last else 0,
                                                          WRITE_THR=last and phase == len(phases) - 1,
                                                          BLOCK_B=BBd, BLOCK_S=BS)
    return thr


def sample_triton(logits, temperature=1.0, top_k=0, top_p=1.0, generator=None, num_splits=None):
    """Launcher: same contract as kernels.sample. num_splits overrides the split-vocab count (tests use it)."""
    _check_logits(logits)
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    assert logits.stride(-1) == 1, "logits columns must be contiguous"
    B, V = logits.shape
    dev = logits.device
    T, k, p = _knob_rows(logits, temperature, top_k, top_p)
    # one seed per row from the caller's generator, as a device tensor: no host sync, capturable
    seeds = torch.randint(0, 2**31 - 1, (B,), device=dev, generator=generator, dtype=torch.int64)
    # python-scalar knobs decide statically which filters exist (constexpr flags); tensor knobs may hold anything
    greedy_only, has_topk, has_topp = _static_flags(logits, temperature, top_k, top_p)
    has_thr = (has_topk or has_topp) and not greedy_only

    ids = torch.empty(B, device=dev, dtype=torch.int64)
    logp = torch.empty(B, device=dev, dtype=torch.float32)
    thr = drawn = T                                                           # (T: unused dummies without filters)
    if has_thr:  # the threshold; the rows the candidate path serves are drawn there too
        thr, drawn = _threshold(logits, T, k, p, has_topk, has_topp, CANDIDATES, draw=(seeds, ids, logp))
    # the other rows: the masked pass, then the select kernel re-reads one split per row, in that pass's layout
    part_max, part_sum, _, chunk, num_splits, BV = _partials(logits, T, thr, has_thr, num_splits, drawn=drawn)
    # at least 16 split slots: Triton 3.6 cannot lower the fp64 cumsum over a [rows, 2] tile (an assertion in
    # ScanOpToLLVM; an H200 with a vocabulary of one split, reproduced by compiling for sm_90 on the CPU)
    BS = max(triton.next_power_of_2(num_splits), 16)
    BBs = max(1, min(triton.next_power_of_2(B), _tile() // BV, 4096 // BS))
    BC = min(BV, RUN // logits.element_size())
    _sample_select_kernel[(triton.cdiv(B, BBs),)](logits, logits.stride(0), T, thr, drawn, seeds, part_max, part_sum,
                                                  ids, logp, B, V, chunk, num_splits, HAS_THR=has_thr, BLOCK_B=BBs,
                                                  BLOCK_S=BS, BLOCK_R=BV // BC, BLOCK_C=BC)
    return ids, logp
