"""Static cost of the sampling kernels' and decode attention's inner loops, without a GPU: compile each kernel at its
launcher's configuration for sm_90 (Triton's pipeline and its bundled ptxas), disassemble the cubin, and count the
instructions in each loop per element (logit, or K/V pair) a thread loads there, against the most an H100 / H200 can
issue per element while reading at HBM speed.

    python bench/sass.py                 # the table; needs triton with its bundled ptxas (not the interpreter)

The budget: an SM issues 4 warp-instructions per clock, so 132 SMs at 1.98 GHz issue ~33.4T thread-instructions/s;
reading e-byte logits at B bytes/s leaves 33.4T * e / B instructions per logit (H200, 4.8 TB/s: ~14 for bf16; H100
SXM, 3.35 TB/s: ~20). A loop above it is compute-bound on that card whatever its memory access; below it, the memory
system decides (this counts instructions, it does not time anything: latency, occupancy and MUFU throughput still
matter). Registers and spills come from ptxas, as the GPU would run the kernel.
"""
import collections
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.pop("TRITON_INTERPRET", None)  # the compiler, not the interpreter
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from kernels import sampling as ks  # noqa: E402

ISSUE_PER_S = 132 * 4 * 32 * 1.98e9  # thread-instructions per second, H100 SXM / H200
BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")


def compile_sm90(fn, signature, constants, **options):
    """(cubin bytes, ptxas -v report) of fn for sm_90, specialised as a launch with 16-byte aligned pointers/sizes."""
    aligned = {"stride_b", "V", "CHUNK", "chunk", "stride_qb", "stride_qh", "stride_tb", "stride_kblk", "stride_kh",
               "stride_kt"}
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n, ty in signature.items()
             if ty.startswith("*") or n in aligned}
    k = triton.compile(ASTSource(fn, signature, constants, attrs), target=GPUTarget("cuda", 90, 32), options=options)
    with tempfile.TemporaryDirectory() as d:
        ptx = os.path.join(d, "k.ptx")
        with open(ptx, "w") as f:
            f.write(k.asm["ptx"])
        report = subprocess.run([os.path.join(BIN, "ptxas"), "-arch=sm_90a", "-v", ptx, "-o", os.path.join(d, "k.o")],
                                capture_output=True, text=True).stderr
    return k.asm["cubin"], report


def instructions(cubin):
    """[(address, opcode, operands)] of the cubin's SASS, the padding NOPs after the last instruction left out."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        sass = subprocess.run([os.path.join(BIN, "cuobjdump"), "-sass", f.name], capture_output=True, text=True,
                              check=True).stdout
    ins = [(int(m.group(1), 16), m.group(2), m.group(3)) for m in
           re.finditer(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)\s*([^;]*);", sass)]
    while ins and ins[-1][1].startswith(("NOP", "BRA")):
        ins.pop()
    return ins


def loops(cubin):
    """[(instructions, Counter of opcodes)] of each innermost loop (a backward branch's body holding no other) in the
    cubin's SASS."""
    ins = instructions(cubin)
    spans = []
    for addr, op, args in ins:
        target = re.search(r"0x([0-9a-f]+)", args) if op.startswith("BRA") else None
        if target and int(target.group(1), 16) < addr:
            spans.append((int(target.group(1), 16), addr))
    out = []
    for lo, hi in spans:
        if not any(lo <= a and b <= hi and (a, b) != (lo, hi) for a, b in spans):
            body = [o.split(".")[0] for a, o, _ in ins if lo <= a <= hi]
            out.append((len(body), collections.Counter(body)))
    return out


def launches():
    """(name, kernel, signature, constants, options, elements a thread loads per loop iteration, bytes per element) at
    the launchers' configurations for a 151,936-token vocabulary on a GPU (see sample_triton, filter_threshold_triton),
    and decode attention's at Qwen2.5-7B's shape (an element: one position x dimension of K and of V, bf16)."""
    from kernels import attention as ka
    L = ka.LAUNCH
    yield ("decode attention (per K and V element pair), bf16, 7B", ka._decode_attention_kernel,
           dict(q_ptr="*bf16", k_ptr="*bf16", v_ptr="*bf16", len_ptr="*i64", table_ptr="*i64", out_ptr="*bf16",
                acc_ptr="*fp32", m_ptr="*fp32", s_ptr="*fp32", scale="fp32", block_size="i32", chunk="i32",
                stride_qb="i32", stride_qh="i32", stride_tb="i32", stride_kblk="i32", stride_kh="i32",
                stride_kt="i32", G="constexpr", HD="constexpr", BLOCK_G="constexpr", BLOCK_T="constexpr",
                IEEE="constexpr", UPCAST="constexpr", SPLIT="constexpr"),
           dict(G=7, HD=128, BLOCK_G=16, BLOCK_T=L["block_t"], IEEE=False, UPCAST=False, SPLIT=True),
           dict(num_warps=L["num_warps"], num_stages=L["num_stages"]), L["block_t"] * 128 // (32 * L["num_warps"]), 4)
    tile = 2048                                                   # sampling._tile() off the interpreter
    for dt, e in (("*bf16", 2), ("*fp32", 4)):
        run = ks.RUN // e
        base = dict(logits_ptr=dt, stride_b="i32", temp_ptr="*fp32", thr_ptr="*fp32", drawn_ptr="*i32")
        for stats in (False, True):  # (with stats: its first step, which main() counts apart from the loop)
            yield (f"partial ({'top-k/top-p first pass: first step, with stats' if stats else 'plain sampling pass'}), "
                   f"{dt[1:]}",
                   ks._sample_partial_kernel,
                   dict(base, part_max_ptr="*fp32", part_sum_ptr="*fp32", part_stats_ptr="*fp32", B="i32", V="i32",
                        CHUNK="i32", n_splits="i32", HAS_THR="constexpr", STATS="constexpr", BLOCK_B="constexpr",
                        BLOCK_R="constexpr", BLOCK_C="constexpr"),
                   dict(HAS_THR=False, STATS=stats, BLOCK_B=1, BLOCK_R=tile // run, BLOCK_C=run), {}, tile // 128, e)
        yield (f"candidates (top-k/top-p marking pass), {dt[1:]}", ks._candidates_kernel,
               dict(logits_ptr=dt, stride_b="i32", temp_ptr="*fp32", topk_ptr="*i64", topp_ptr="*fp32",
                    part_max_ptr="*fp32", part_sum_ptr="*fp32", part_stats_ptr="*fp32", bits_ptr="*i32", B="i32",
                    V="i32", CHUNK="i32", n_splits="i32", n_parts="i32", n_sigma="fp32", BLOCK_B="constexpr",
                    BLOCK_V="constexpr", BLOCK_P="constexpr"),
               dict(BLOCK_B=1, BLOCK_V=tile, BLOCK_P=16), {}, tile // 128, e)
        yield (f"select (re-reads one split), {dt[1:]}", ks._sample_select_kernel,
               dict(base, seed_ptr="*i64", part_max_ptr="*fp32", part_sum_ptr="*fp32", ids_ptr="*i64",
                    logp_ptr="*fp32", B="i32", V="i32", CHUNK="i32", n_splits="i32", HAS_THR="constexpr",
                    BLOCK_B="constexpr", BLOCK_S="constexpr", BLOCK_R="constexpr", BLOCK_C="constexpr"),
               dict(HAS_THR=False, BLOCK_B=1, BLOCK_S=64, BLOCK_R=tile // run, BLOCK_C=run), {}, tile // 128, e)
        for mass, BV in ((False, tile), (True, tile // 4)):
            yield (f"radix pass, {'top-p (mass)' if mass else 'top-k (count)'}, {dt[1:]}", ks._radix_hist_kernel,
                   dict(logits_ptr=dt, stride_b="i32", temp_ptr="*fp32", mxs_ptr="*fp32", prefix_ptr="*i64",
                        thr_key_ptr="*i64", todo_ptr="*i32", count_ptr="*i32", mass_ptr="*fp32", B="i32", V="i32",
                        CHUNK="i32",
                        n_splits="i32", shift="i32", MASS="constexpr", BLOCK_B="constexpr", BLOCK_V="constexpr"),
                   dict(MASS=mass, BLOCK_B=1, BLOCK_V=BV), dict(num_warps=8), BV // 256, e)


def main():
    if not os.path.exists(os.path.join(BIN, "ptxas")):
        sys.exit(f"no ptxas in {BIN}: this triton wheel does not bundle the CUDA tools; install triton from PyPI")
    budget = {tb: ISSUE_PER_S / (tb * 1e12) for tb in (4.8, 3.35)}  # instructions per byte read
    print(f"# the sampling and decode-attention kernels' loops compiled for sm_90; triton {triton.__version__}")
    print("| kernel | registers | spilled bytes | instructions per element | x H200 budget | x H100 SXM budget |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    plain = {}                                                    # dtype -> the plain partial kernel's size
    for name, fn, sig, const, opts, per_thread, e in launches():
        cubin, report = compile_sm90(fn, sig, const, **opts)
        regs = re.search(r"Used (\d+) registers", report)
        spill = sum(int(x) for x in re.findall(r"(\d+) bytes spill stores", report))
        # the loop over the logits is the longest innermost one (the select kernel's fp64 scans are not loops; the
        # radix pass's loop over its items holds the one over the logits)
        n, _ = max(loops(cubin), default=(float("nan"), None))
        if name.startswith("partial (plain"):
            plain[e] = len(instructions(cubin))
        elif name.startswith("partial (top-k"):
            # the statistics sit in a first step before the loop (the same loop as the plain kernel's): that step is
            # what this kernel has beyond the plain one (with the statistics' final sums: an upper bound)
            n = len(instructions(cubin)) - plain[e]
        per = n / per_thread
        print(f"| {name} | {regs.group(1) if regs else '?'} | {spill} | {per:.1f} | {per / (budget[4.8] * e):.2f}x "
              f"| {per / (budget[3.35] * e):.2f}x |", flush=True)


if __name__ == "__main__":
    main()
