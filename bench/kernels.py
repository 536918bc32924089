"""Benchmark kernels/ against the plain-torch baselines, on the same inputs, in one run; prints tables.

    python bench/kernels.py                  # CPU: the torch paths (chunked logprobs memory ratio, times)
    python bench/kernels.py --tokens 16384   # GPU: Triton kernels, cold L2, CUDA events
    python bench/kernels.py --profile        # + where a sampler call's time goes (torch.profiler, per mode)
    python bench/kernels.py --attention-sweep   # GPU: decode attention's launch knobs, one table, nothing else

Baselines:
- sampling: softmax -> sort -> cumsum top-p mask -> renormalise -> torch.multinomial (what HF/vLLM did before
  sorting-free samplers); plain temperature sampling: softmax -> torch.multinomial.
- logprobs: log_softmax(hidden @ W.T / T).gather(targets) (+ entropy from the same log_softmax), autograd backward.
- decode attention (GPU only; the CPU path is the baseline itself): dense grouped-query matmuls over every row up to
  the longest row, under a mask.
GB/s for sampling counts one read of the logits (the single-pass floor; top-k/top-p paths read them more often) in the
GPU time of our call replayed as a CUDA graph: the bandwidth the kernels reach, without the host's launch gaps, which
the engine hides behind the decode step it queued first (ms columns: eager calls, as the engine makes them).
Decode attention runs inside the recorded decode step, so its rows time graph replays for both sides.
Peak memory: torch.cuda.max_memory_allocated above the inputs on GPU; on CPU the growth of the process's peak RSS
(VmHWM) during one forward+backward, measured in a fresh child process per variant, inputs already built.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kernels  # noqa: E402


# ----------------------------------------------------------------------------------------------------------------
# baselines

def sample_sort_baseline(logits, temperature=1.0, top_k=0, top_p=1.0):
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_k > 0 or top_p < 1:
        sp, si = probs.sort(dim=-1, descending=True)
        if top_k > 0:
            sp[:, top_k:] = 0
        sp = sp / sp.sum(-1, keepdim=True)
        sp[(sp.cumsum(-1) - sp) >= top_p] = 0                     # drop tokens after the mass reached top_p
        return si.gather(1, torch.multinomial(sp, 1)).squeeze(1)
    return torch.multinomial(probs, 1).squeeze(1)


def logprobs_naive(hidden, weight, targets, with_entropy=True):
    logp_all = torch.log_softmax((hidden @ weight.T).float(), dim=-1)
    lp = logp_all.gather(1, targets[:, None]).squeeze(1)
    return (lp, -(logp_all.exp() * logp_all).sum(-1)) if with_entropy else lp


def _loss(out):
    return out[0].sum() + 1e-3 * out[1].sum() if isinstance(out, tuple) else out.sum()


# ----------------------------------------------------------------------------------------------------------------
# timing

def time_gpu(fn, reps=100, graph=False):
    """Median ms over reps, L2 flushed (a 256 MB write) before each rep. graph: time replays of fn captured as a CUDA
    graph, as the engine runs decode attention (inside the recorded decode step): a call of a few tens of microseconds
    launched from Python is otherwise timed with the host's launch gaps, which moved it 2x between two H200 hosts."""
    flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    for _ in range(3):
        fn()
    if graph:
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        stream = torch.cuda.current_stream()
        try:
            with torch.cuda.graph(g):
                fn()
        except Exception:
            # torch.cuda.graph's __exit__ skips restoring the caller's stream when capture_end raises: restore it,
            # so a caller that falls back to eager timing does not keep running on the capture stream
            torch.cuda.set_stream(stream)
            raise
        fn = g.replay
    times = []
    for _ in range(reps):
        flush.zero_()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def peak_gpu_mb(fn):
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def time_cpu(fn, reps=3):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def logprob_inputs(N, D, V, dtype, device):
    g = torch.Generator(device=device).manual_seed(0)
    hidden = torch.randn(N, D, device=device, dtype=dtype, generator=g).requires_grad_()
    weight = (torch.randn(V, D, device=device, dtype=dtype, generator=g) * 0.02).requires_grad_()
    targets = torch.randint(0, V, (N,), device=device, generator=g)
    return hidden, weight, targets


def child_peak_cpu(variant, N, D, V):
    """Run in a fresh process: peak RSS growth (MB) of one forward+backward of `variant`."""
    torch.manual_seed(0)
    hidden, weight, targets = logprob_inputs(N, D, V, torch.float32, "cpu")
    fn = {"naive": lambda: logprobs_naive(hidden, weight, targets),
          "chunked": lambda: kernels.token_logprobs(hidden, weight, targets, with_entropy=True)}[variant]
    small = logprob_inputs(4, D, 300, torch.float32, "cpu")       # warm-up: load code paths, not memory
    {"naive": logprobs_naive, "chunked": lambda h, w, t: kernels.token_logprobs(h, w, t, with_entropy=True)}[
        variant](*small)
    before = _peak_rss_kb()
    _loss(fn()).backward()
    return (_peak_rss_kb() - before) / 1024


def _peak_rss_kb():
    # VmHWM of this process image (ru_maxrss would carry the parent's peak across fork+exec on Linux)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def check_sample(logits, ids, logp, top_k=0, top_p=1.0):
    """What must hold for a correct sampler, whatever the random draw: ids in range with nonzero probability, inside
    the top-k set, and logprobs finite, <= 0, equal to log_softmax at T=1 without filters and no lower with them
    (renormalising a kept set only raises a token's probability)."""
    V = logits.shape[1]
    assert ids.shape == (logits.shape[0],) and bool(((ids >= 0) & (ids < V)).all()), "sampled ids out of range"
    assert bool(torch.isfinite(logp).all()) and bool((logp <= 1e-6).all()), "logprobs not finite and <= 0"
    full = torch.log_softmax(logits.double(), -1).gather(1, ids[:, None])[:, 0]
    if top_k == 0 and top_p >= 1:
        torch.testing.assert_close(logp.double(), full, atol=2e-3, rtol=0, msg="logprobs != log_softmax at T=1")
    else:
        assert bool((logp.double() >= full - 2e-3).all()), "a filtered logprob is below the unfiltered one"
    if top_k:
        kth = logits.float().topk(top_k, -1).values[:, -1]
        assert bool((logits.float().gather(1, ids[:, None])[:, 0] >= kth).all()), "a token outside the top-k"


def check_logprobs(h, w, t):
    """Ours against the naive log_softmax: values, entropy and both gradients, before anything is timed."""
    tol = dict(atol=2e-3, rtol=1e-3) if h.dtype == torch.float32 else dict(atol=5e-2, rtol=2e-2)
    grads = []
    for fn in (lambda: logprobs_naive(h, w, t), lambda: kernels.token_logprobs(h, w, t, with_entropy=True)):
        h.grad = w.grad = None
        out = fn()
        _loss(out).backward()
        grads.append((out[0].detach().float(), out[1].detach().float(), h.grad.float(), w.grad.float()))
    for name, a, b in zip(("logprobs", "entropy", "d hidden", "d weight"), *grads):
        scale = b.abs().max().clamp(min=1e-6)  # gradients: compare relative to their own size
        torch.testing.assert_close(a / scale, b / scale, **tol, msg=f"{name}: ours differs from the naive baseline")
    h.grad = w.grad = None


# ----------------------------------------------------------------------------------------------------------------

def lm_like_logits(B, V, device, dtype, generator=None):
    """Rows shaped like a language model's: a Gaussian bulk (std 2.5) plus 50 informative tokens 8-20 above it, where
    top-k / top-p find their threshold among a few thousand candidates. Plain Gaussian rows (torch.randn * 3) keep
    ~30% of the vocabulary at top-p 0.9: no candidate set holds that, and they take the radix select."""
    x = torch.randn(B, V, generator=generator) * 2.5
    top = torch.rand(B, V, generator=generator).topk(50, dim=-1).indices            # 50 random columns per row
    x.scatter_add_(1, top, 8 + 12 * torch.rand(B, 50, generator=generator))
    return x.to(device=device, dtype=dtype)


def bench_sampling(device, dtype, batches, V):
    rows = []
    for B in batches:
        gauss = torch.randn(B, V, device=device, dtype=dtype) * 3
        lm = lm_like_logits(B, V, device, dtype, torch.Generator().manual_seed(B))
        g = torch.Generator(device=device).manual_seed(0)
        top_p, both = dict(top_p=0.9), dict(top_k=50, top_p=0.9)
        modes = (("T=1", gauss, dict()), ("top-p 0.9, LLM-like rows", lm, top_p),
                 ("top-k 50 + top-p 0.9, LLM-like rows", lm, both), ("top-p 0.9, Gaussian rows (radix)", gauss, top_p),
                 ("top-k 50 + top-p 0.9, Gaussian rows (radix)", gauss, both))
        for name, logits, kw in modes:
            check_sample(logits, *kernels.sample(logits, generator=g, **kw), **kw)
            ours = lambda: kernels.sample(logits, generator=g, **kw)
            base = lambda: sample_sort_baseline(logits, **kw)
            if device == "cuda":
                t_ours, t_base = time_gpu(ours), time_gpu(base)
                m_ours, m_base = peak_gpu_mb(ours), peak_gpu_mb(base)
                try:  # the GPU's own time (the default generator: a CUDA graph records its Philox offsets)
                    t_gpu = time_gpu(lambda: kernels.sample(logits, **kw), graph=True)
                except RuntimeError as e:
                    print(f"# sample {name} B={B}: CUDA graph capture failed ({e}); GB/s from the eager time")
                    t_gpu = t_ours
            else:
                t_ours, t_base = time_cpu(ours), time_cpu(base)
                m_ours = m_base = float("nan")
            gbs = B * V * logits.element_size() / (t_gpu * 1e-3) / 1e9 if device == "cuda" else float("nan")
            rows.append((f"sample {name}", f"B={B}", t_base, t_ours, gbs, m_base, m_ours))
    return rows


def bench_decode_attention(device, dtype):
    """One layer of a Qwen2.5-7B decode step (28 query heads, 4 KV heads, head_dim 128) over a paged cache (16-position
    blocks, shuffled as a busy pool leaves them) whose rows have mixed lengths, as in AZR's batches: the dense
    baseline (kernels' torch path: gathers every row up to the longest) against the Triton kernel (each row read to
    its own length through the block table). GB/s counts the K/V bytes the rows need."""
    from kernels import attention
    rows = []
    H, KVH, hd, bs = 28, 4, 128, 16
    for name, lens in (("64 rows of 512", [512] * 64), ("64 rows of 1k", [1024] * 64),
                       ("63 rows of 1k + 1 of 8k", [1024] * 63 + [8192]),
                       ("4 rows of 8k", [8192] * 4)):
        B, max_len = len(lens), max(lens)
        lengths = torch.tensor(lens, device=device)
        per_row = -(-max_len // bs)
        n_blocks = 1 + sum(-(-n // bs) for n in lens)
        order = (1 + torch.randperm(n_blocks - 1)).tolist()
        table = torch.zeros(B, per_row, dtype=torch.long)
        for b, n in enumerate(lens):
            table[b, : -(-n // bs)] = torch.tensor([order.pop() for _ in range(-(-n // bs))])
        table = table.to(device)
        q = torch.randn(B, H, hd, device=device, dtype=dtype)
        k = torch.randn(n_blocks, KVH, bs, hd, device=device, dtype=dtype)
        v = torch.randn_like(k)
        plan = attention.decode_plan(lengths, table, max_len, KVH, bs, dtype)  # built once per step by the model
        base = lambda: attention.decode_attention_reference(q, k, v, lengths, table, plan)
        ours = lambda: kernels.decode_attention(q, k, v, lengths, table)  # no plan: the Triton kernel on CUDA
        torch.testing.assert_close(ours().float(), base().float(), atol=2e-2, rtol=2e-2)
        t_base, t_ours = time_gpu(base, graph=True), time_gpu(ours, graph=True)
        need = 2 * sum(lens) * KVH * hd * k.element_size()
        rows.append((f"decode attention, {name}", f"H={H} KVH={KVH} hd={hd}", t_base, t_ours,
                     need / (t_ours * 1e-3) / 1e9, float("nan"), float("nan")))
    return rows


def attention_sweep(device="cuda", shapes=((64, 512, 512), (128, 2048, 2048), (64, 512, 16)), dtype=torch.bfloat16,
                    timer=lambda fn: time_gpu(fn, graph=True)):
    """The decode-attention kernel's launch knobs on a GPU (block_t x num_warps x num_stages x programs per SM), each
    timed as a replayed CUDA graph against the default launch on one layer of a Qwen2.5-7B decode step: 64 rows x 512
    and 128 x 2048 positions in whole-row blocks (the engine's layout when every row fits, as bench/decode_step.py),
    and 64 x 512 in shuffled 16-position blocks (a tight budget's pages). Every variant is checked against the torch
    reference. Prints one table, fastest first by their summed time; the defaults' row is marked. shapes: (rows,
    positions, block size); device and timer let the tests run it on the CPU under the interpreter."""
    from triton.runtime.errors import OutOfResources
    from kernels import attention
    H, KVH, hd = 28, 4, 128
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device == "cuda" else 1
    cases = []
    for B, n, bs in shapes:
        per_row = -(-n // bs)
        table = (1 + torch.randperm(B * per_row)).view(B, per_row).to(device)   # shuffled blocks, none is block 0
        k = torch.randn(1 + B * per_row, KVH, bs, hd, device=device, dtype=dtype)
        v, q = torch.randn_like(k), torch.randn(B, H, hd, device=device, dtype=dtype)
        lengths = torch.full((B,), n, device=device)
        ref = attention.decode_attention_reference(q, k, v, lengths, table).float()
        cases.append((f"{B} x {n}, {'whole rows' if bs == n else f'{bs}-position blocks'}", (q, k, v, lengths, table),
                      ref))
    default = (attention.LAUNCH["block_t"], attention.LAUNCH["num_warps"], attention.LAUNCH["num_stages"],
               attention.LAUNCH["per_sm"])
    results, wrong = [], []
    for block_t in (64, 128):
        for warps in (4, 8):
            for stages in (2, 3):
                for per_sm in (1, 2, 4, 8):  # 1: one chunk per row at 64 rows x 4 KV heads (no combine)
                    knobs = (block_t, warps, stages, per_sm)
                    ms = []
                    for _, args, ref in cases:
                        fn = lambda: attention.decode_attention_triton(*args, programs=per_sm * sms, block_t=block_t,
                                                                       num_warps=warps, num_stages=stages)
                        try:
                            out = fn()
                        except OutOfResources:  # more shared memory than a block may have: not a candidate
                            ms.append(float("inf"))
                            continue
                        try:
                            torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)
                        except AssertionError as e:  # report it and go on: one bad launch must not lose the table
                            wrong.append((knobs, str(e).splitlines()[0]))
                            ms.append(float("inf"))
                            continue
                        ms.append(timer(fn))
                    results.append((sum(ms), knobs, ms))
                    # each launch as it is measured: a stage timeout still leaves what was done in the log
                    print("# " + ",".join(map(str, knobs)) + ": " + " ".join(f"{m:.4f}" for m in ms), flush=True)
    print("| block_t | num_warps | num_stages | programs per SM | " + " | ".join(c[0] + " ms" for c in cases)
          + " | sum ms |")
    print("| ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in cases) + " | ---: |")
    for total, knobs, ms in sorted(results):
        mark = " (default)" if knobs == default else ""
        print("| " + " | ".join(map(str, knobs)) + mark + " | " + " | ".join(f"{m:.4f}" for m in ms)
              + f" | {total:.4f} |", flush=True)
    for knobs, what in wrong:
        print(f"WRONG: block_t,num_warps,num_stages,per_sm = {knobs}: {what}")
    if wrong:
        raise SystemExit(f"{len(wrong)} launch(es) of the sweep differ from the torch reference")


def bench_logprobs(device, dtype, N, D, V):
    rows = []
    h, w, t = logprob_inputs(N, D, V, dtype, device)
    check_logprobs(h, w, t)
    for what in ("fwd", "fwd+bwd"):
        def run(fn):  # fwd: called under no_grad below; fwd+bwd: loss and backward
            return fn if what == "fwd" else lambda: _loss(fn()).backward()
        naive = run(lambda: logprobs_naive(h, w, t))
        ours = run(lambda: kernels.token_logprobs(h, w, t, with_entropy=True))
        if device == "cuda":
            with torch.no_grad() if what == "fwd" else torch.enable_grad():
                t_base, t_ours = time_gpu(naive, reps=10), time_gpu(ours, reps=10)
                m_base, m_ours = peak_gpu_mb(naive), peak_gpu_mb(ours)
        else:
            ctx = torch.no_grad() if what == "fwd" else torch.enable_grad()
            with ctx:
                t_base, t_ours = time_cpu(naive, reps=2), time_cpu(ours, reps=2)
            m_base = m_ours = float("nan")
            if what == "fwd+bwd":
                peak = {}
                for variant in ("naive", "chunked"):  # median of 3 fresh processes (allocator noise)
                    runs = [subprocess.run([sys.executable, __file__, "--child", variant, str(N), str(D), str(V)],
                                           capture_output=True, text=True, check=True) for _ in range(3)]
                    peak[variant] = statistics.median(
                        json.loads(r.stdout.strip().splitlines()[-1])["peak_mb"] for r in runs)
                m_base, m_ours = peak["naive"], peak["chunked"]
        rows.append((f"logprobs+entropy {what}", f"N={N} D={D} V={V}", t_base, t_ours, float("nan"), m_base, m_ours))
        if what == "fwd+bwd" and device == "cuda":
            # the same peaks less the two gradients both sides must produce (d hidden, d weight): the working memory
            grads = (h.numel() * h.element_size() + w.numel() * w.element_size()) / 2**20
            rows.append((f"logprobs+entropy {what}, less the gradients", f"N={N} D={D} V={V}", t_base, t_ours,
                         float("nan"), m_base - grads, m_ours - grads))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=None, help="N for logprobs (default 16384 GPU, 512 CPU)")
    ap.add_argument("--dim", type=int, default=None, help="hidden size D (default 3584 GPU = Qwen2.5-7B, 64 CPU)")
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--profile", action="store_true",
                    help="also torch.profiler over 5 sampler calls per mode (the largest batch, bf16 on a GPU)")
    ap.add_argument("--attention-sweep", action="store_true",
                    help="GPU only: time the decode-attention kernel's launch knobs (and nothing else)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if min([args.vocab] + [x for x in (args.tokens, args.dim) if x is not None]) < 1:
        ap.error("--tokens, --dim and --vocab must be >= 1")
    if args.child:
        variant, N, D, V = args.child[0], *map(int, args.child[1:])
        print(json.dumps({"peak_mb": child_peak_cpu(variant, N, D, V)}))
        return
    cuda = torch.cuda.is_available()
    if args.attention_sweep:
        if not cuda or kernels.backend("cuda") != "triton":
            ap.error("--attention-sweep needs a CUDA GPU and the compiled Triton kernels")
        print(f"# decode-attention launch knobs on {torch.cuda.get_device_name()}; torch {torch.__version__}; "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        attention_sweep()
        return
    device = "cuda" if cuda else "cpu"
    where = torch.cuda.get_device_name() if cuda else f"CPU, {os.cpu_count()} cores"
    print(f"# kernels bench on {where}; backend={kernels.backend(device)}; torch {torch.__version__}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| what | shape | baseline ms | ours ms | speedup | ours GB/s (1 read) | baseline peak MB | ours peak MB "
          "| peak ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    if cuda:  # rows print as each group finishes (a stage timeout on the GPU box keeps what is done)
        groups = [lambda: bench_sampling(device, torch.float32, (1, 8, 64, 256), args.vocab),
                  lambda: bench_sampling(device, torch.bfloat16, (1, 8, 64, 256), args.vocab),
                  lambda: bench_decode_attention(device, torch.bfloat16),
                  lambda: bench_logprobs(device, torch.bfloat16, args.tokens or 16384, args.dim or 3584, args.vocab)]
    else:
        groups = [lambda: bench_sampling(device, torch.float32, (1, 8), args.vocab),
                  lambda: bench_logprobs(device, torch.float32, args.tokens or 512, args.dim or 64, args.vocab)]
    for group in groups:
        for what, shape, tb, to, gbs, mb, mo in group():
            ratio = f"{mo / mb:.1%}" if mb == mb and mo == mo and mb > 0 else "-"
            gb = f"{gbs:.1f}" if gbs == gbs else "-"
            mbs = f"{mb:.0f}" if mb == mb else "-"
            mos = f"{mo:.0f}" if mo == mo else "-"
            print(f"| {what} | {shape} | {tb:.2f} | {to:.2f} | {tb / to:.2f}x | {gb} | {mbs} | {mos} | {ratio} |",
                  flush=True)
    if args.profile:
        profile_sampling(device, torch.bfloat16 if cuda else torch.float32, 256 if cuda else 8, args.vocab)


def profile_sampling(device, dtype, B, V):
    """Where a sampler call's time goes, per mode: bench/decode_step.py's profile (top kernels by GPU time, launches
    and GPU-busy time per call against the measured call)."""
    spec = importlib.util.spec_from_file_location("bench_decode_step", Path(__file__).with_name("decode_step.py"))
    decode_step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(decode_step)
    gauss = torch.randn(B, V, device=device, dtype=dtype) * 3
    lm = lm_like_logits(B, V, device, dtype, torch.Generator().manual_seed(B))
    both = dict(top_k=50, top_p=0.9)
    for name, logits, kw in (("T=1", gauss, dict()), ("top-k 50 + top-p 0.9, LLM-like rows", lm, both),
                             ("top-k 50 + top-p 0.9, Gaussian rows (radix)", gauss, both)):
        call = lambda i: kernels.sample(logits, **kw)
        ms = time_gpu(lambda: call(0)) if device == "cuda" else time_cpu(lambda: call(0))
        print(f"\nprofile of sample {name}, B={B}, {str(dtype)[6:]} logits, {ms:.3f} ms per call:")
        try:
            decode_step.profile(call, device, ms, unit="sampler call")
        except Exception as e:  # a profiler problem must never cost the timings above
            print(f"profile failed: {type(e).__name__}: {e}")

if __name__ == "__main__":
    main()
