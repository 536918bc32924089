"""Where the time of one AZR step goes: seconds per phase (propose, validate, learnability, solve, verify, update),
each phase's share of the step, generated tokens/s and sandbox executions/s.

    python bench/step.py                          # CPU: --preset tiny (tiny random Qwen2, real sandbox, real update)
    python bench/step.py --scripted               # + a run whose rollouts are scripted well-formed answers (seed
                                                  # programs as proposals), so the sandbox phases do real work
    python bench/step.py --steps 5 -- --batch_size=8 --max_response_tokens=64      # extra azr.py flags after --
    python bench/step.py --gpu-model qwen2.5-0.5b  # on a CUDA machine: adds a real Qwen2.5 run (paper preset,
                                                   # smaller batches, see GPU_FLAGS)
    python bench/step.py --gpu-only --gpu-model random:qwen2.5-0.5b --steps 2   # offline GPU machine: random weights
                                                   # at the real shape (bench/generate.py's SHAPES), no hub download

It runs azr.main() for a few steps in a temporary --out folder and reads back metrics.jsonl, so it measures exactly
the code path of a training run. Step 1 includes one-time warm-up (sandbox zygotes, allocator), so the table
averages steps 2..N. The baseline every ratio is taken against is the mean step time of the same run.

--gpu-model random:SHAPE writes a checkpoint with random weights at that Qwen2.5 shape and tiny.py's small tokenizer
(tiny.make_tiny_checkpoint), for machines that cannot reach the model hub. Random weights never sample EOS or a
parseable answer, so every response runs to --max_response_tokens, the sandbox phases have nothing to run, and
rewards, valid rates and accuracies are meaningless: only the phase timings and generated tokens/s count. With no
seed data beside the repo the run skips the seeding phase (--seed_rounds=0), which a random model could never finish.
"""
import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import azr  # noqa: E402

SEEDS = REPO.parent / "shared" / "data" / "azr_seeds" / "7b_coder_seed_io.jsonl"
GPU_FLAGS = ["--preset=paper", "--batch_size=16", "--learnability_samples=4", "--max_response_tokens=1024",
             "--eval_every=0", "--micro_batch=8"]


def scripted_rollout(tokenizer, programs):
    """Rollouts replaced by well-formed answers: proposals are seed programs (valid, so learnability rollouts and
    their checks run), solver answers are fixed guesses (checked, mostly wrong). Generation then costs nothing."""
    def rollout(qwen, prompt_ids, cfg, eos_id, seed, progress=False):
        texts = []
        for i, p in enumerate(prompt_ids):
            prompt, (program, inp) = tokenizer.decode(p), programs[(seed + i) % len(programs)]
            if "## Task: Write a New Python Code Snippet" in prompt:
                answer = f"```python\n{program}\n```\n```input\n{inp}\n```"
            elif "## Task: Give 10 Inputs" in prompt:
                answer = "".join(f"```input\n{k}\n```\n" for k in range(10)) + "```message\nguess\n```"
            elif "# Task: Deduce the Function" in prompt:
                answer = "```python\ndef f(x):\n    return x\n```"
            else:
                answer = f"```{'output' if '# Task: Deduce the Output' in prompt else 'input'}\n{inp}\n```"
            texts.append(f"plan </think> <answer>\n{answer}\n</answer>")
        return [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    return rollout


def random_shape(name):
    """random:SHAPE -> make_tiny_checkpoint overrides for that Qwen2.5 shape, from bench/generate.py's SHAPES (loaded
    by path: putting bench/ on sys.path would shadow the kernels package with bench/kernels.py)."""
    spec = importlib.util.spec_from_file_location("bench_generate", REPO / "bench" / "generate.py")
    shapes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shapes)
    shape = name.removeprefix("random:")
    if shape not in shapes.SHAPES:
        raise SystemExit(f"--gpu-model {name}: unknown shape; use random:SHAPE with SHAPE one of "
                         f"{', '.join(shapes.SHAPES)}")
    D, L, H, KVH, F, V, tied = shapes.SHAPES[shape]
    return dict(hidden_size=D, num_hidden_layers=L, num_attention_heads=H, num_key_value_heads=KVH,
                intermediate_size=F, vocab_size=V, tie_word_embeddings=tied)


def run(flags, steps):
    with tempfile.TemporaryDirectory() as out:
        t0 = time.time()
        azr.main(flags + [f"--out={out}", f"--steps={steps}", f"--save_every={steps + 1}", "--dump_every=0"])
        wall = time.time() - t0
        rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    return rows, wall


def table(name, rows, wall):
    timed = rows[1:] or rows  # skip the warm-up step when there is more than one
    mean = {k: sum(r[k] for r in timed) / len(timed) for k in timed[0] if isinstance(timed[0][k], (int, float))}
    step = mean["time/step"]
    print(f"\n{name}: {len(rows)} steps in {wall:.1f} s wall (incl. start-up), table = mean of steps "
          f"{timed[0]['step']}..{timed[-1]['step']}")
    print(f"{'phase':<14}{'seconds':>10}{'share of step':>16}")
    for phase in azr.PHASES:
        print(f"{phase:<14}{mean[f'time/{phase}']:>10.2f}{mean[f'time/{phase}'] / step:>15.1%}")
    print(f"{'step':<14}{step:>10.2f}{1:>15.1%}")
    print(f"generated tokens/s {mean['tokens_per_s']:.0f}   sandbox executions/s {mean['exec_per_s']:.0f}   "
          f"sequences trained/step {mean['sequences_trained']:.0f}")
    if "gpu_peak_gb/update" in mean:  # this rank's torch.cuda.max_memory_allocated during the update
        print(f"GPU memory peak during the update: {mean['gpu_peak_gb/update']:.1f} GiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--gpu-model", default="qwen2.5-0.5b",
                        help="model for the GPU run (when CUDA is present): a name/folder, or random:SHAPE "
                             "(e.g. random:qwen2.5-0.5b) for random weights at a real shape, made offline")
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU tiny-preset run (needs CUDA)")
    parser.add_argument("--scripted", action="store_true", help="also run with scripted rollouts (sandbox load)")
    parser.add_argument("extra", nargs="*", help="azr.py flags, after --")
    args = parser.parse_args()
    if args.gpu_only and not torch.cuda.is_available():
        parser.error("--gpu-only needs a CUDA device")
    shape = random_shape(args.gpu_model) if args.gpu_model.startswith("random:") else None  # fail before any run
    os.environ.setdefault("NANOAZR_KERNELS", "auto")
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}, {time.strftime('%Y-%m-%d')}")
    seeds = [f"--seed-data={SEEDS}"] if SEEDS.is_file() else []
    if not args.gpu_only:
        rows, wall = run(["--preset=tiny", "--device=cpu"] + seeds + args.extra, args.steps)
        table("tiny preset, CPU", rows, wall)
    if args.scripted and SEEDS.is_file():
        from model import load_tokenizer
        from tiny import make_tiny_checkpoint
        seed_rows = [json.loads(line) for line in SEEDS.read_text().splitlines()]
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = make_tiny_checkpoint(tmp)
            azr.rollout = scripted_rollout(load_tokenizer(ckpt), [(r["snippet"], r["input"]) for r in seed_rows])
            rows, wall = run(["--preset=tiny", "--device=cpu", f"--model={ckpt}", "--max_response_tokens=4096"]
                             + seeds + args.extra, args.steps)
        table("tiny preset, CPU, scripted rollouts (sandbox-bound; tokens/s is meaningless here)", rows, wall)
        return
    if torch.cuda.is_available():
        with tempfile.TemporaryDirectory() as tmp:
            model, flags = args.gpu_model, GPU_FLAGS + seeds
            if shape is not None:
                from tiny import make_tiny_checkpoint
                model = make_tiny_checkpoint(tmp, **shape)
                flags += [] if seeds else ["--seed_rounds=0"]
                print(f"\n{args.gpu_model}: RANDOM WEIGHTS at the real shape, with tiny.py's small tokenizer: every "
                      "response runs to max_response_tokens, rewards/valid rates/accuracies are meaningless, only the "
                      "timings and tokens/s count", flush=True)
            rows, wall = run(flags + [f"--model={model}", "--device=cuda"] + args.extra, args.steps)
        name = args.gpu_model + (" (RANDOM weights: timings only)" if shape is not None else "")
        table(f"{name}, {torch.cuda.get_device_name()}, flags {' '.join(GPU_FLAGS + args.extra)}", rows, wall)


if __name__ == "__main__":
    main()
