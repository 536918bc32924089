#!/usr/bin/env bash
# Everything a GPU session checks, in one device call of about 9 minutes on one H200 with no network:
#
#     bash bench/gpu.sh          # one log, $OUT/gpu.log ($OUT defaults to ./gpu-out), summary at the end
#
# Stages, in order of what the open issues need measured: env (nvidia-smi, versions, commit), tests (the CUDA tests
# of the kernels and the engine: the sampler and engine changed since the last GPU run), decode (bench/decode_step.py:
# one 7B decode step, eager / CUDA graphs, torch / fused elementwise ops, profile), attn-sweep (the decode-attention
# kernel's launch knobs: bench/kernels.py --attention-sweep), kernels (bench/kernels.py), graphs (bench/generate.py
# at Qwen2.5-7B's shape with CUDA graphs, ours alone, best of 2, then a profiled call per batch), step (bench/step.py on a random checkpoint at
# Qwen2.5-0.5B's shape), generate (the graphs stage against transformers), paged (16-position KV blocks), step-eager
# (the step without CUDA graphs); tests-azr (test_cuda.py's AZR runs) comes before generate.
# GPU_SH_STAGES=decode,tests (say) runs only those. The benchmarks check what they time and exit nonzero when it is
# wrong: generate's rows token-identical to transformers in fp32 (bf16 rows part after near-ties: counted, not
# failed), the kernels against torch (sampling invariants, logprobs,
# entropy and gradients), every decode-step variant against the eager torch step. The --skip-hf stages (graphs,
# paged) and step compare nothing; the tests stages cover those paths.
# Models are random weights at real shapes (no hub on the device); the tests make their own data.
# Each stage runs under its own timeout, also capped by what is left of GPU_SH_BUDGET_S (default 540 s), so the
# script ends in time even when a stage hangs (at most 10 s past the budget: a stage that ignores the timeout's TERM
# is killed 10 s later); a failing stage never stops the next. The summary lists each stage's exit code (124 = timed
# out, 137 = killed after it). One log file, since the device tool brings back at most 8 files. Give the device call
# a timeout_s of at least GPU_SH_BUDGET_S + 30, and lower GPU_SH_BUDGET_S when less device time is left.
# Needs the CUDA build of torch and the other requirements. The lent H200 image has torch, triton, transformers,
# safetensors, tqdm and pytest (seen 2026-11: torch 2.11, triton 3.6, transformers 5.17, older than our pins; the
# env stage prints what ran) but no network, so carry the rest as wheels (see /work/.library/device/README.md):
#     here:  echo /.whl/ >> .git/info/exclude
#            python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#                --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
#                -d .whl math-verify==0.9.0 latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2 \
#                bitsandbytes==0.50.2         # 42 MB in all, under the 64 MiB a call may carry
#     there (carry .whl): python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl \
#            && PYTHONPATH=/tmp/site GPU_SH_COMMIT=<git rev-parse --short HEAD, run here> bash bench/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PY=${PYTHON:-python3}  # the lent H200's image has python3 (with torch) and maybe no `python`
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
LOG=$OUT/gpu.log
: > "$LOG"
export PYTHONUNBUFFERED=1  # lines reach the log as they are printed, also from a stage that times out
unset TRITON_INTERPRET NANOAZR_KERNELS  # the compiled Triton kernels, chosen by the default dispatch
deadline=$((SECONDS + ${GPU_SH_BUDGET_S:-540}))
STAGES=${GPU_SH_STAGES:-env,tests,decode,attn-sweep,kernels,graphs,step,tests-azr,generate,paged,step-eager}
names=() codes=() secs=()

stage() {  # stage NAME LIMIT_S COMMAND...: run under a timeout, append to $LOG, record the exit code
    local name=$1 limit=$2 left=$((deadline - SECONDS)) t0=$SECONDS rc
    shift 2
    [[ ",$STAGES," == *",$name,"* ]] || return 0
    ((limit > left)) && limit=$left
    if ((limit < 20)); then
        echo "=== $name: skipped, ${left}s of the budget left" | tee -a "$LOG"
        names+=("$name") codes+=("skipped") secs+=(0)
        return
    fi
    echo "=== $name (timeout ${limit}s): $*" | tee -a "$LOG"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - t0))s" | tee -a "$LOG"
    names+=("$name") codes+=("$rc") secs+=($((SECONDS - t0)))
}

gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
# the HBM roofline of bench/generate.py: its default is the H100 SXM's 3.35 TB/s; an H200 has 4.8 TB/s
hbm=()
[[ $gpu_name == *H200* ]] && hbm=(--hbm-tb-s 4.8)

# GPU_SH_COMMIT: the commit being measured, from the caller (the lent machine's copy of .git was seen stale: it
# showed the session's first commit plus modified files)
stage env 30 bash -c 'nvidia-smi; echo "commit: ${GPU_SH_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}";
    git status --short 2>/dev/null | head -n 20; date -u
    "$PY" -c "
import torch, triton, transformers
print(\"python\", __import__(\"sys\").version.split()[0], \"torch\", torch.__version__, \"cuda\", torch.version.cuda,
      \"triton\", triton.__version__, \"transformers\", transformers.__version__)
print(\"device\", torch.cuda.get_device_name(), \"capability\", torch.cuda.get_device_capability(),
      \"flash SDPA\", torch.backends.cuda.is_flash_attention_available())
"'

# correctness first (the sampler and engine changed since the last GPU run): every CUDA test of the kernels and the
# engine, compiled kernels, no TRITON_INTERPRET; the long AZR resume runs come after the measurements, in tests-azr
stage tests 180 "$PY" -m pytest -v -p no:cacheprovider tests/test_cuda.py tests/test_kernels.py -k \
    "cuda and not resume_identity and not adamw8bit and not azr and not eval_end_to_end"

# one decode step at Qwen2.5-7B's shape (random bf16 weights, 64 rows x 512 cached positions; then 128 x 2048):
# eager and CUDA-graph steps, with model.py's torch elementwise ops and with kernels/fused.py, against the HBM floor,
# and the top CUDA kernels of an eager step (--profile)
stage decode 120 bash -c '"$PY" bench/decode_step.py --profile && "$PY" bench/decode_step.py --batch 128 --context 2048'

# decode attention, the largest gap to the floor in the decode step's profile (34 us per layer where its K/V take 14 us
# at 8076638): 32 launch configurations on one 7B layer, as replayed CUDA graphs, checked against the torch reference
stage attn-sweep 90 "$PY" bench/kernels.py --attention-sweep

# sampling (B = 1..256, fp32 and bf16), decode attention (7B heads, mixed row lengths) and fused logprobs (N=16384,
# D=3584, V=151936) against the torch baselines (90 s on an H200 at 54070e3 was not enough; 37-43 s at d2cd060), and
# where a sampler call's time goes (top-k + top-p took 10 ms at B=256 where one read of the logits takes 16 us)
stage kernels 150 "$PY" bench/kernels.py --profile

# Qwen2.5-7B shape, random bf16 weights, batches 8, 64 and 128, 256 new tokens, our engine alone with CUDA graphs
# (the CUDA default of azr.py and eval), best of 2 calls each (at 54070e3 its batch 64
# ran at 4,600 tok/s where the decode-step bench implied ~9,000 and e6e1e7f had measured 7,459 here; until be7ae29
# the warm-up used 2 prompts without CUDA graphs, so Triton compiled inside the timed run)
# --profile: one more call per batch, its time by engine range (prefill, graph recording, decode steps, sampling and
# the wait for the GPU) and the GPU's busy share: where generate loses the ~8 points it trails the decode step by
stage graphs 90 "$PY" bench/generate.py --device cuda --shapes qwen2.5-7b --batches 8,64,128 --new-tokens 256 \
    --skip-hf --cuda-graphs --repeats 2 --profile ${hbm[@]+"${hbm[@]}"}


# one AZR step at Qwen2.5-0.5B's shape with random weights (timings only; every response runs to the cap, so the
# cap is lowered to 512 tokens to fit the budget), the GPU run only, CUDA graphs on (azr.py's CUDA default)
stage step 120 "$PY" bench/step.py --gpu-only --gpu-model random:qwen2.5-0.5b --steps 2 -- --max_response_tokens=512

# the long runs of test_cuda.py (resume identity, FSDP 8-bit AdamW resume, the tiny loop, eval), before the
# transformers comparison, paged generation and eager step, which earlier runs have measured
stage tests-azr 240 "$PY" -m pytest -v -p no:cacheprovider tests/test_cuda.py -k \
    "resume_identity or adamw8bit or azr or eval_end_to_end"

# Qwen2.5-7B shape, random bf16 weights, batches 8, 64 and 128, 256 new tokens, our engine with CUDA graphs (the
# CUDA default of azr.py and eval) against transformers' generate(): the two 15.2 GB copies of the weights plus both
# KV caches take under 40 GB of the 139 GB, and transformers' ~256 decode steps per batch take seconds
stage generate 150 "$PY" bench/generate.py --device cuda --shapes qwen2.5-7b --batches 8,64,128 --new-tokens 256 \
    --cuda-graphs ${hbm[@]+"${hbm[@]}"}

# AZR's 16-position pages (a tight budget's layout), CUDA graphs, our engine alone
stage paged 60 "$PY" bench/generate.py --device cuda --shapes qwen2.5-7b --batches 64,128 --new-tokens 256 \
    --skip-hf --cuda-graphs --block-size 16 ${hbm[@]+"${hbm[@]}"}

# the same step with eager decode steps, the baseline of the graphs (last: it runs only if the budget has room left)
stage step-eager 120 "$PY" bench/step.py --gpu-only --gpu-model random:qwen2.5-0.5b --steps 2 -- \
    --max_response_tokens=512 --cuda_graphs=false


echo
echo "=== summary (${gpu_name:-no GPU found}; log $LOG)" | tee -a "$LOG"
failed=0
for i in "${!names[@]}"; do
    printf '%-10s exit %-8s %5ss\n' "${names[$i]}" "${codes[$i]}" "${secs[$i]}" | tee -a "$LOG"
    [[ ${codes[$i]} == 0 ]] || failed=1
done
exit $failed
