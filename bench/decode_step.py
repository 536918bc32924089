"""Where the time of ONE decode step of our engine goes: eager step, CUDA-graph step, the engine's full iteration
(step + sampling + the host sync), the graph recording, against the HBM floor of the step.

    python bench/decode_step.py                                   # CUDA: Qwen2.5-7B shape, batch 64, context 512
    python bench/decode_step.py --batch 128 --context 2048 --profile   # + the top CUDA kernels of an eager step
    python bench/decode_step.py --shape tiny --batch 8 --context 32 --steps 3   # CPU: only the eager lines

Random weights at a real shape (bench/generate.py's SHAPES and build). The KV cache is the one engine.generate
allocates when every row fits whole (one block of max_len positions per row, row b in block b + 1), filled by a real
prefill of `--context` random tokens per row, so every decode step reads real K/V. Each line is the mean over
--steps calls (CUDA events on CUDA), all rows at positions context, context+1, ... as the engine advances them:
  eager step            make_decode_step(model, cache, graphs=False)(tokens, positions): one forward, ~30 kernels
                        per layer launched from Python (the inputs built from python lists, as the engine does);
                        on CUDA each line for model.py's torch elementwise ops, for kernels/fused.py with three
                        q/k/v GEMMs, and with one merged q/k/v GEMM (the engine's default there)
  eager + sample        the engine's iteration without graphs: the step, kernels.sample(temperature=0,
                        with_logprobs=False) as generate() calls it, ids.tolist()
  graph step            make_decode_step(..., graphs=True): inputs copied into the static buffers, one replay
  graph + sample        the engine's iteration with cuda_graphs=True (the same sample and host sync)
  graph record          once per generate call and batch size: a warm-up forward, the capture and one replay (ms,
                        not per step; Triton kernels are already compiled by the eager lines)
  HBM floor             weights read once + every row's KV read once, at --hbm-tb-s (performance.md 1.1)
"ratio vs eager" is the line's time / the eager step's time (0.25x = 4x faster); "x floor" is its time / the floor.
--attention-knobs BLOCK_T,WARPS,STAGES,PER_SM runs the steps with other launch knobs for the decode-attention kernel (a
row of `bench/kernels.py --attention-sweep`; on CUDA only, where that kernel runs).
--profile runs torch.profiler over a few eager steps: the top 25 ops and kernels by self CUDA time, and the kernel
launches and summed kernel time per step; kernel time well under the step time means the step waits on the host.
"""
import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import kernels  # noqa: E402
from kernels import attention  # noqa: E402
from engine import make_decode_step  # noqa: E402
from model import KVCache  # noqa: E402

# bench/generate.py by path: putting bench/ on sys.path would shadow the kernels package with bench/kernels.py
_spec = importlib.util.spec_from_file_location("bench_generate", REPO / "bench" / "generate.py")
bench_generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_generate)


def filled_cache(model, batch, context, max_len, device):
    """engine.generate's cache for whole rows (row b in block b + 1), each row prefilled with `context` tokens."""
    config = model.config
    cache = KVCache(config, batch, max_len, device, model.dtype, model=model, blocks=1 + batch, block_size=max_len)
    cache.in_place = not kernels.fused_decode_attention(device, config.head_dim)  # as the engine: dense path only
    cache.block_table[:, 0] = torch.arange(1, batch + 1, device=device)
    g = torch.Generator(device=device).manual_seed(0)
    per = max(1, 16384 // context)  # rows per prefill forward: the engine's prefill_tokens bound on activations
    for first in range(0, batch, per):
        n = min(per, batch - first)
        ids = torch.randint(1, config.vocab_size, (n, context), device=device, generator=g)
        model(ids, cache=cache, slots=torch.arange(first, first + n, device=device),
              last=torch.full((n,), context - 1, device=device))
    return cache


def ms_per_step(step, steps, device):
    """Mean ms of step(i) for i = 0..steps-1, after two warm-up calls."""
    for i in range(2):
        step(i)
    if device == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(steps):
            step(i)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / steps
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    return (time.perf_counter() - t0) * 1e3 / steps


def profile(step, device, eager_ms, k=5, unit="eager step"):
    """torch.profiler over k calls of step(i) (eager decode steps here; bench/kernels.py profiles sampler calls): the
    top ops/kernels table and the kernel launches and time per call (per `unit`)."""
    from torch.profiler import ProfilerActivity
    cuda = device == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=activities) as prof:
        for i in range(k):
            step(i)
        if cuda:
            torch.cuda.synchronize()
    events = prof.key_averages()
    # "cuda" in a sort key reads as "device" on torch >= 2.4, and is the attribute itself before
    print(events.table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=25))
    if not cuda:
        print(f"profile: {sum(e.count for e in events) / k:.0f} profiled CPU ops per {unit}")
        return
    on_gpu = [e for e in events if str(getattr(e, "device_type", "")).endswith("CUDA")]  # kernels, copies, sets
    name = "self_device_time_total" if hasattr(events[0], "self_device_time_total") else "self_cuda_time_total"
    launches = sum(e.count for e in on_gpu) / k
    copies = sum(e.count for e in on_gpu if e.key.startswith(("Memcpy", "Memset"))) / k
    busy_ms = sum(getattr(e, name) for e in on_gpu) / k / 1e3
    print(f"profile: {launches:.0f} GPU activities per {unit} ({copies:.0f} of them memcpy/memset); GPU busy "
          f"{busy_ms:.2f} ms per {unit} vs {eager_ms:.2f} ms measured ({busy_ms / eager_ms:.0%}); the gap "
          f"{eager_ms - busy_ms:.2f} ms is launch/host overhead")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--shape", default=None, help=f"one of {', '.join(bench_generate.SHAPES)} (default: "
                                                  "qwen2.5-7b on cuda, small on cpu)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--context", type=int, default=512, help="cached positions every row holds before the steps")
    ap.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"], help="default: bf16 cuda, fp32 cpu")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per line (default: 50 cuda, 5 cpu)")
    ap.add_argument("--hbm-tb-s", type=float, default=None, help="peak HBM bandwidth (default: 4.8 on an H200, "
                                                                  "else 3.35, the H100 SXM's)")
    ap.add_argument("--profile", action="store_true", help="torch.profiler over a few eager steps")
    ap.add_argument("--attention-knobs", default=None, metavar="BLOCK_T,WARPS,STAGES,PER_SM",
                    help="decode attention's launch knobs for this run (kernels.attention.LAUNCH; e.g. a row of "
                         "bench/kernels.py --attention-sweep)")
    args = ap.parse_args()
    device, cuda = args.device, args.device == "cuda"
    shape = args.shape or ("qwen2.5-7b" if cuda else "small")
    if shape not in bench_generate.SHAPES:
        ap.error(f"--shape {shape}: unknown; choose one of {', '.join(bench_generate.SHAPES)}")
    if min(args.batch, args.context, 1 if args.steps is None else args.steps) < 1:
        ap.error("--batch, --context and --steps must be >= 1")
    if cuda and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here; use --device cpu")
    if args.attention_knobs is not None:
        try:
            knobs = [int(x) for x in args.attention_knobs.split(",")]
        except ValueError:
            knobs = []
        if len(knobs) != 4 or min(knobs) < 1 or knobs[0] < 16 or knobs[0] & (knobs[0] - 1) or \
                knobs[1] > 32 or knobs[1] & (knobs[1] - 1):  # Triton asserts num_warps is a power of two
            ap.error(f"--attention-knobs {args.attention_knobs}: want BLOCK_T,WARPS,STAGES,PER_SM, four positive "
                     "integers with BLOCK_T a power of two >= 16 and WARPS a power of two <= 32 (e.g. 64,4,3,4)")
        attention.LAUNCH.update(zip(("block_t", "num_warps", "num_stages", "per_sm"), knobs))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype or
                                                                                     ("bf16" if cuda else "fp32")]
    steps = args.steps or (50 if cuda else 5)
    B, T = args.batch, args.context
    gpu = torch.cuda.get_device_name() if cuda else "-"
    hbm = args.hbm_tb_s or (4.8 if "H200" in gpu else 3.35)

    with torch.inference_mode():
        model, _ = bench_generate.build(shape, device, dtype, with_hf=False)
        cache = filled_cache(model, B, T, T + steps + 8, device)
        print(f"shape={shape} batch={B} context={T} steps={steps} device={device} ({gpu}) dtype={str(dtype)[6:]} "
              f"kernels={kernels.backend(device)} in_place={cache.in_place} threads={torch.get_num_threads()} "
              f"torch={torch.__version__} attention={','.join(map(str, attention.LAUNCH.values()))}")
        tokens = torch.randint(1, model.config.vocab_size, (B,), generator=torch.Generator().manual_seed(1)).tolist()

        def engine_step(decode, sample):  # step(i): rows 0..B-1 feed tokens at position T + i, as generate does
            def step(i):
                logits = decode(tokens, [T + i] * B)
                if sample:
                    ids, _ = kernels.sample(logits, temperature=0, with_logprobs=False)
                    ids.tolist()  # the host sync of every engine iteration
            return step

        # On CUDA every line three times: with model.py's torch elementwise ops (cache.fused None), with the fused
        # Triton norm / rotary + KV write / SwiGLU kernels (kernels/fused.py) and three q/k/v GEMMs, and fused with
        # one merged q/k/v GEMM (cache.qkv; the default there)
        variants = ([(" [torch elementwise]", None, {}), (" [fused, 3 q/k/v GEMMs]", cache.fused, {}),
                     (" [fused, merged q/k/v]", cache.fused, cache.qkv)] if cache.fused else [("", None, {})])
        lines, record_ms, errors = [], {}, {}
        fused_module, merged = cache.fused, cache.qkv
        cache.fused, cache.qkv = None, {}
        # the reference: one eager step with model.py's torch ops; every variant's step at the same position (it
        # writes the same K/V) must give the same logits, up to bf16 rounding, before its time means anything
        ref = make_decode_step(model, cache, graphs=False)(tokens, [T] * B).float().clone()
        cache.fused, cache.qkv = fused_module, merged

        def check(tag, logits):
            err = (logits.float() - ref).abs().max().item() / max(ref.abs().max().item(), 1e-6)
            agree = (logits.float().argmax(-1) == ref.argmax(-1)).float().mean().item()
            errors[tag] = (err, agree)
            if not err < 0.1:  # NaN or garbage, not rounding: a broken step must not be timed as a fast one
                sys.exit(f"{tag.strip()}: logits differ from the eager torch step by {err:.1%} of their range")

        for tag, fused, qkv in variants:
            cache.fused, cache.qkv = fused, qkv
            eager = make_decode_step(model, cache, graphs=False)
            check("eager" + tag, eager(tokens, [T] * B))
            lines += [("eager step" + tag, ms_per_step(engine_step(eager, False), steps, device)),
                      ("eager step + sample + tolist (engine, no graphs)" + tag,
                       ms_per_step(engine_step(eager, True), steps, device))]
            if cuda:
                graphed = make_decode_step(model, cache, graphs=True)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                first = graphed(tokens, [T] * B)  # first call: warm-up forward, capture, replay
                torch.cuda.synchronize()
                record_ms[tag] = (time.perf_counter() - t0) * 1e3
                check("graph" + tag, first)
                lines += [("graph step (copy inputs + replay)" + tag,
                           ms_per_step(engine_step(graphed, False), steps, device)),
                          ("graph step + sample + tolist (engine, cuda_graphs=True)" + tag,
                           ms_per_step(engine_step(graphed, True), steps, device))]
        if cuda:
            # the floor at the mean context of the timed steps
            floor_ms = B / bench_generate.roofline_tok_s(shape, B, T + steps / 2, dtype, hbm) * 1e3
            lines.append((f"HBM floor: weights + KV read once at {hbm} TB/s", floor_ms))

        eager_ms = lines[0][1]
        print("| what | ms/step | ratio vs eager | x floor |\n| --- | --- | --- | --- |")
        for what, ms in lines:
            print(f"| {what} | {ms:.3f} | {ms / eager_ms:.2f}x | " + (f"{ms / floor_ms:.2f}x |" if cuda else "- |"))
        if cuda:
            for tag, ms in record_ms.items():
                print(f"| graph record for batch {B} (once, ms total){tag} | {ms:.1f} | - | - |")
            print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        for tag, (err, agree) in errors.items():
            print(f"check: {tag} step's logits vs the eager torch step: max diff {err:.2e} of their range, "
                  f"argmax agrees on {agree:.0%} of rows")
        if args.profile:
            try:
                profile(engine_step(eager, False), device, lines[-5 if cuda else -2][1])  # the last variant's
            except Exception as e:  # a profiler problem must never cost the timings above
                print(f"profile failed: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
