"""python -m eval: measure a checkpoint on AZR's benchmarks and print the table beside the paper's (azr-spec.md 9).

    python -m eval --model qwen2.5-7b                                  # all default benchmarks, greedy
    python -m eval --model out/azr/ckpt/step_000200 --benchmarks cruxeval-i,cruxeval-o --limit 50
    python -m eval --model qwen2.5-7b --samples 8 --temperature 0.6    # pass@1 and pass@k for k in 1,2,4,8
    torchrun --nproc_per_node 8 -m eval --model qwen2.5-7b             # problems split across ranks
    python -m eval --check-gold                                        # reference answers through the scorers
    python -m eval --model azr-coder-7b --benchmarks lcb --lcb-gen-file lcb_v5.jsonl   # LiveCodeBench generation

Per benchmark: build prompts (eval.templates / eval.cruxeval), generate through our engine (eval.generation), score
(eval.cruxeval, eval.code, eval.lcb, eval.mathscore), then pass@k, CAvg/MAvg/AVG and the Markdown table (eval.report).
Outputs in --out: samples.jsonl (every prompt, completion, extracted answer and verdict), results.json, results.md.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

from eval import code as codeeval
from eval import cruxeval, data, lcb, mathscore, report, templates
from model import write_atomic

# Maximum new tokens per benchmark family (azr-spec.md 9.1): math 16000; code generation 8096 (AZR's LCB setting;
# upstream EvalPlus defaults to 768, and what AZR's pinned fork used is not public: --max-new-tokens 768 gives
# upstream's cap); CRUXEval 8096 (the training/validation response cap).
MAX_NEW_TOKENS = {"math": 16000, "code": 8096, "cruxeval": 8096, "lcb": 8096}


class ModelError(Exception):
    """The --model argument names no usable checkpoint; str(error) is one line."""


class OutputError(Exception):
    """The --out folder cannot take this run's results; str(error) is one line."""


def check_out(out_dir: Path, overwrite: bool = False) -> None:
    """Check --out before hours of generation, creating nothing: a folder (or a path under a writable one) that holds
    no earlier results (unless overwrite). write_atomic makes the folder when the results are written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir}: is a file, not a folder; pass a folder path")
    existing = next(p for p in (out_dir, *out_dir.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out_dir}: {existing} is not a writable folder; pass a writable path")
    old = [n for n in ("samples.jsonl", "results.json", "results.md") if (out_dir / n).exists()]
    if old and not overwrite:
        raise OutputError(f"--out {out_dir}: already holds {', '.join(old)} of an earlier run; pass another --out, "
                          "or --overwrite to replace them")


def family(benchmark: str) -> str:
    if benchmark in data.CODE_REASONING or benchmark == "lcb-e":
        return "cruxeval"
    if benchmark in data.CODE_GEN:
        return "code"
    if benchmark in data.LCB_GEN:
        return "lcb"
    return "math"


# ----------------------------------------------------------------------------------------------------------------
# Prompts and scoring, one pair of functions per benchmark family
# ----------------------------------------------------------------------------------------------------------------

def build_prompts(benchmark: str, items: list[dict], template: str, tokenizer=None) -> tuple[list[str], bool]:
    """(prompt texts, prefilled) for a benchmark; prefilled says the code prompt ends in an open ```python fence.
    tokenizer: its chat template renders the qwen-boxed code prompt (templates.code_prompt)."""
    fam = family(benchmark)
    if fam == "cruxeval":
        return [cruxeval.cruxeval_prompt(benchmark, it) for it in items], False
    if fam == "lcb":  # AZR's LCB runs always use the "AZR" prompt style (azr-spec.md 9.1), whatever the template
        return [lcb.lcb_prompt(it) for it in items], False
    if fam == "code":
        pairs = [templates.code_prompt(template, codeeval.task_text(benchmark, it), tokenizer) for it in items]
        return [p for p, _ in pairs], bool(pairs and pairs[0][1])
    return [templates.math_prompt(template, it["problem"].strip()) for it in items], False  # as simpleRL strips


def score(benchmark: str, items: list[dict], completions: list[str], sandbox, code_runner, prefilled: bool,
          lcb_sandbox=None, lcb_workers=None) -> list:
    """One {"extracted", "verdict", ...} dict per (item, completion) pair. lcb_sandbox: eval.lcb.lcb_sandbox(n)
    and lcb_workers its n (default: CPU count, as Sandbox's), so no problem's clock runs while it waits for a zygote."""
    fam = family(benchmark)
    if fam == "cruxeval":
        return cruxeval.score_cruxeval(benchmark, items, completions, sandbox)
    if fam == "lcb":
        return lcb.score_lcb(items, completions, lcb_sandbox, workers=lcb_workers or len(os.sched_getaffinity(0)))
    if fam == "code":
        return codeeval.score_code(benchmark, items, completions, code_runner, prefilled)
    out = []
    for it, c in zip(items, completions):
        ans = mathscore.extract_answer(c)
        out.append({"extracted": ans, "verdict": mathscore.math_equal(it["answer"], ans)})
    return out


def gold_completions(benchmark: str, items: list[dict], prefilled: bool) -> list[str]:
    """Completions that carry each item's reference answer in the form the scorer reads (for --check-gold)."""
    fam = family(benchmark)
    if fam == "cruxeval":
        return [cruxeval.gold_completion(benchmark, it) for it in items]
    if fam == "code":
        return [codeeval.gold_completion(benchmark, it, prefilled) for it in items]
    if fam == "lcb":
        missing = [it["id"] for it in items if not it.get("solution")]
        if missing:  # the LiveCodeBench release ships no solutions
            raise data.DataError(f"lcb: --check-gold needs a `solution` field in every record, {len(missing)} "
                                 f"lack one (e.g. {missing[0]}); the official release has none")
        return [lcb.gold_completion(it, it["solution"]) for it in items]
    return [f"The answer follows from the computation above.\nThe final answer is $\\boxed{{{it['answer']}}}$."
            for it in items]


# ----------------------------------------------------------------------------------------------------------------
# Distributed helpers (torchrun): rank r takes problems r, r+W, r+2W, ...; rank 0 gathers
# ----------------------------------------------------------------------------------------------------------------

def dist_setup(device: str = "auto"):
    """(rank, world, device) from torchrun's environment; single process otherwise. device: auto (CUDA when
    present), cuda or cpu."""
    import torch
    if device not in ("auto", "cuda", "cpu"):
        raise ModelError(f"--device {device}: unknown; use auto, cuda or cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda: no CUDA device is visible; use --device cpu (or auto)")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, "cuda" if cuda else "cpu"
    import torch.distributed as dist
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        device = f"cuda:{local}"
    else:
        dist.init_process_group("gloo")
        device = "cpu"
    return dist.get_rank(), world, device


def gather(obj, rank: int, world: int):
    """List of every rank's obj on rank 0 (None elsewhere)."""
    if world == 1:
        return [obj]
    import torch.distributed as dist
    out = [None] * world if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def run_eval(model_path: str, benchmarks: list[str], data_dir, out_dir: Path, template: str | None = None,
             limit: int | None = None, samples: int = 1, temperature: float = 0.0, max_new_tokens: int | None = None,
             lcb_file=None, seed: int = 0, sandbox_workers: int | None = None, progress: bool = True,
             lcb_gen_file=None, device: str = "auto", dtype: str = "auto", cuda_graphs: bool = True,
             overwrite: bool = False) -> dict:
    """Generate, score and report; returns {benchmark: {"pass@k": ..., "n": problems}} (on rank 0; {} elsewhere).
    cuda_graphs: the engine's CUDA-graph decode step, on CUDA only (the CPU decodes eagerly). overwrite: replace the
    results of an earlier run in out_dir (else that is an OutputError, raised before anything is generated)."""
    import torch

    from model import Qwen2, load_tokenizer, resolve_checkpoint
    from sandbox import Sandbox

    if dtype not in ("auto", "float32", "bfloat16"):
        raise ModelError(f"--dtype {dtype}: unknown; use auto, float32 or bfloat16")
    rank, world, device = dist_setup(device)
    out_dir = Path(out_dir)
    if rank == 0:
        check_out(out_dir, overwrite)
    # every rank runs its own sandboxes: share the CPU cores between ranks
    sandbox_workers = sandbox_workers or max(1, len(os.sched_getaffinity(0)) // world)
    template = template or templates.default_template(model_path)
    all_items = {b: data.load_benchmark(b, data_dir, limit, lcb_file, lcb_gen_file)
                 for b in benchmarks}  # fail early on bad data
    try:
        path = resolve_checkpoint(model_path)
    except (FileNotFoundError, ValueError) as e:  # resolve_checkpoint's one-line errors
        raise ModelError(f"--model {model_path}: {e}") from None
    if dtype == "auto":  # bf16 on GPUs (how the paper's harnesses run), fp32 on CPU
        dtype = "bfloat16" if str(device).startswith("cuda") else "float32"
    try:
        model = Qwen2.from_pretrained(path, device=device, dtype=getattr(torch, dtype))
        tokenizer = load_tokenizer(path)
    except (FileNotFoundError, ValueError) as e:  # model.py's one-line checkpoint errors (CheckpointError, ...)
        raise ModelError(f"--model {model_path}: {e}") from None
    if rank == 0:
        print(f"model {model_path} ({path}) on {device} x{world}, template {template}, samples {samples}, "
              f"temperature {temperature}, {dtype}", file=sys.stderr)

    from eval.generation import complete
    records = []
    with Sandbox(workers=sandbox_workers) as sandbox:
        code_runner = codeeval.CodeRunner(workers=sandbox_workers)
        lcb_box = lcb.lcb_sandbox(sandbox_workers) if any(b in data.LCB_GEN for b in benchmarks) else None
        try:
            for b in benchmarks:
                items = all_items[b][rank::world]  # this rank's share
                texts, prefilled = build_prompts(b, items, template, tokenizer)
                cap = max_new_tokens or MAX_NEW_TOKENS[family(b)]
                t0 = time.time()
                outs = complete(model, tokenizer, texts, cap, temperature=temperature, samples=samples, seed=seed,
                                progress=progress and rank == 0,
                                cuda_graphs=cuda_graphs and str(device).startswith("cuda"))
                outs = [[o] for o in outs] if samples == 1 else outs
                flat_items = [it for it in items for _ in range(samples)]
                flat_outs = [o for group in outs for o in group]
                scored = score(b, flat_items, flat_outs, sandbox, code_runner, prefilled, lcb_box, sandbox_workers)
                for j, s in enumerate(scored):
                    records.append({"benchmark": b, "id": flat_items[j]["id"], "sample": j % samples,
                                    "prompt": texts[j // samples], "completion": flat_outs[j], **s})
                if rank == 0:
                    print(f"{b}: {len(items)} problems x {samples} on rank 0 in {time.time() - t0:.0f}s",
                          file=sys.stderr)
        finally:
            code_runner.close()
            if lcb_box is not None:
                lcb_box.close()
    gathered = gather(records, rank, world)
    if world > 1:
        import torch.distributed as dist
        dist.barrier()  # leave together (a rank exiting mid-collective aborts the others)
        dist.destroy_process_group()
    if rank != 0:
        return {}
    # rank r held problems r, r + world, ...: back to problem order, so the files are those of one process
    order = {(b, it["id"]): (i, k) for i, b in enumerate(benchmarks) for k, it in enumerate(all_items[b])}
    records = sorted((r for part in gathered for r in part),
                     key=lambda r: (order[r["benchmark"], r["id"]], r["sample"]))
    ks = sorted({k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if k <= samples} | {samples})  # pass@k reported
    results = {}
    for b in benchmarks:
        per_problem = {}
        for r in records:
            if r["benchmark"] == b:
                per_problem.setdefault(r["id"], []).append(bool(r["verdict"]))
        results[b] = {**report.benchmark_scores(list(per_problem.values()), ks), "n": len(per_problem)}
    table = report.markdown_table(model_path, results, ks)
    write_atomic(out_dir / "samples.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    agg = report.aggregates({b: r["pass@1"] for b, r in results.items()})
    summary = {"model": model_path, "template": template, "samples": samples, "temperature": temperature,
               "limit": limit, "results": results,
               "aggregates": {k: {"value": v, "benchmarks": have, "of": of} for k, (v, have, of) in agg.items()}}
    write_atomic(out_dir / "results.json", json.dumps(summary, indent=2) + "\n")
    write_atomic(out_dir / "results.md", table + "\n")
    print(table)
    print(f"wrote {out_dir}/samples.jsonl, results.json, results.md", file=sys.stderr)
    return results


def check_gold(benchmarks: list[str], data_dir, limit=None, lcb_file=None, sandbox_workers=None,
               lcb_gen_file=None) -> dict:
    """Feed every benchmark's reference answers through its scorer; print and return {benchmark: (passed, total)}."""
    from sandbox import Sandbox
    out = {}
    with Sandbox(workers=sandbox_workers) as sandbox:
        code_runner = codeeval.CodeRunner(workers=sandbox_workers)
        lcb_box = lcb.lcb_sandbox(sandbox_workers) if any(b in data.LCB_GEN for b in benchmarks) else None
        try:
            for b in benchmarks:
                items = data.load_benchmark(b, data_dir, limit, lcb_file, lcb_gen_file)
                # the qwen-boxed code prompt is pre-filled; azr is not: check the prefilled path for humaneval+
                # and the fenced-answer path for the others, so both extraction paths are exercised
                prefilled = b == "humaneval+"
                scored = score(b, items, gold_completions(b, items, prefilled), sandbox, code_runner, prefilled,
                               lcb_box, sandbox_workers)
                passed = sum(s["verdict"] for s in scored)
                out[b] = (passed, len(items))
                failed = [it["id"] for it, s in zip(items, scored) if not s["verdict"]]
                notes = [f"{it['id']}: {s['detail']}" for it, s in zip(items, scored)
                         if s["verdict"] and s.get("detail")]
                print(f"{b}: {passed}/{len(items)} ({100 * passed / len(items):.1f}%)"
                      + (f"  failed: {', '.join(map(str, failed[:10]))}" if failed else "")
                      + (f"  notes: {'; '.join(notes)}" if notes else ""), flush=True)
        finally:
            code_runner.close()
            if lcb_box is not None:
                lcb_box.close()
    return out


def main(argv=None):
    # no prefixes: a misspelled `--benchmark aime24` is an error, not --benchmarks by another name
    p = argparse.ArgumentParser(prog="python -m eval", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--model", help="local checkpoint folder, short name (qwen2.5-7b) or hub id")
    p.add_argument("--benchmarks", default=",".join(data.DEFAULT_BENCHMARKS),
                   help=f"comma-separated, from {','.join(data.ALL_BENCHMARKS)} (lcb-e needs --lcb-file; lcb "
                        "needs --lcb-gen-file or the hub)")
    p.add_argument("--data-dir", default=None, help="benchmark data folder (default: $NANOAZR_DATA or "
                                                    "../shared/data beside the repo; hub download when missing)")
    p.add_argument("--lcb-file", default=None, help="LiveCodeBench-Execution file (jsonl/json/parquet "
                                                     "export of livecodebench/execution) for lcb-e")
    p.add_argument("--lcb-gen-file", default=None, help="LiveCodeBench code generation file (jsonl/json of "
                   "livecodebench/code_generation_lite records) for lcb; default: release_v5 from the hub")
    p.add_argument("--template", choices=templates.TEMPLATES, default=None,
                   help="prompt template (default per model: azr for AZR checkpoints, qwen-boxed for base models)")
    p.add_argument("--limit", type=int, default=None, help="first N problems of each benchmark (quick runs)")
    p.add_argument("--samples", type=int, default=1, help="completions per problem (pass@k for k <= samples)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (the paper's setting)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="override the per-benchmark caps (math 16000, "
                                                                   "code and CRUXEval 8096)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto", help="auto: CUDA when present")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="auto: bfloat16 on CUDA, float32 on CPU")
    p.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True,
                   help="on CUDA, decode steps as CUDA graphs (engine.py; default on; the CPU decodes eagerly)")
    p.add_argument("--out", default=None, help="output folder (default runs/eval/<model>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    p.add_argument("--sandbox-workers", type=int, default=None, help="sandbox processes per rank (default: CPU count / ranks)")
    p.add_argument("--check-gold", action="store_true", help="score the reference answers instead of a model")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    benchmarks = [b.strip() for b in a.benchmarks.split(",") if b.strip()]
    unknown = [b for b in benchmarks if b not in data.ALL_BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {','.join(data.ALL_BENCHMARKS)}")
    for flag in ("limit", "samples", "max_new_tokens", "sandbox_workers"):
        value = getattr(a, flag)
        if value is not None and value < 1:
            p.error(f"--{flag.replace('_', '-')} {value}: must be at least 1")
    if not 0 <= a.temperature < float("inf"):
        p.error(f"--temperature {a.temperature}: must be a finite number >= 0 (0 = greedy)")
    if a.samples > 1 and a.temperature == 0:
        p.error("--samples N > 1 needs --temperature > 0 (greedy samples are identical)")
    try:
        if a.check_gold:
            check_gold(benchmarks, a.data_dir, a.limit, a.lcb_file, a.sandbox_workers, a.lcb_gen_file)
            return 0
        if not a.model:
            p.error("--model is required (or use --check-gold)")
        out = a.out or Path("runs/eval") / f"{Path(str(a.model).rstrip('/')).name}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_eval(a.model, benchmarks, a.data_dir, Path(out), a.template, a.limit, a.samples, a.temperature,
                 a.max_new_tokens, a.lcb_file, a.seed, a.sandbox_workers, progress=not a.no_progress,
                 lcb_gen_file=a.lcb_gen_file, device=a.device, dtype=a.dtype, cuda_graphs=a.cuda_graphs,
                 overwrite=a.overwrite)
    except (data.DataError, ModelError, OutputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
