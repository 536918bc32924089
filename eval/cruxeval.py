"""CRUXEval-I (abduction: predict an input) and CRUXEval-O (deduction: predict the output), scored like AZR.

AZR measures these in distribution during training (azr-spec.md 9.1): greedy decoding, the solver prompts of its own
abduction/deduction tasks inside the R1 template, the `<answer>` extraction and the sandboxed checks. So here:
  prompt     = prompts.r1_wrap(prompts.solver_prompt(task, {"program": code, "input"/"output": ...}))
  prediction = prompts.parse_prediction(task, prompts.parse_response(completion)[1])
  verdict    = sandbox.check_deduction([(gold_output, prediction)], pure=False) or
               sandbox.check_abduction([(code, gold_output, prediction)], pure=False)
(pure=False: any expression is a prediction, as in AZR's executor and CRUXEval's harness; the RL loop's own checks
are stricter.) A predicted input that AZR's executor cannot score (a line break, a trailing comment) is wrong, so is
a predicted output that its eval cannot parse as captured (a line break, then indentation), and a predicted output
may not call f (the checker's f is an identity stand-in, not the task's program). The format check
is recorded but does not gate the verdict (AZR's validation scores the extracted answer only).

`evaluate_cruxeval(model, tokenizer, sandbox, data_dir, ...)` is the entry point azr.py calls every few steps.
"""
from prompts import parse_prediction, parse_response, r1_wrap, solver_prompt
from sandbox import eval_text_fails, pasted_call_fails

# LiveCodeBench-Execution (lcb-e, with --lcb-file) is input prediction in AZR's validation data (problem_type code_i),
# scored as CRUXEval-I, on the program as AZR prepares it (eval.data.azr_lcb_program).
TASK = {"cruxeval-i": "abduction", "cruxeval-o": "deduction", "lcb-e": "abduction"}


def cruxeval_prompt(benchmark: str, item: dict) -> str:
    """Prompt text for one CRUXEval item (benchmark 'cruxeval-i', 'cruxeval-o' or 'lcb-e')."""
    task = TASK[benchmark]
    entry = {"program": item["code"]}
    entry["output" if task == "abduction" else "input"] = item["output" if task == "abduction" else "input"]
    return r1_wrap(solver_prompt(task, entry))


def gold_completion(benchmark: str, item: dict) -> str:
    """A completion that states the reference answer in the requested format (for --check-gold and tests)."""
    fence, value = ("input", item["input"]) if TASK[benchmark] == "abduction" else ("output", item["output"])
    return f" The answer follows. </think> <answer>\n```{fence}\n{value}\n```\n</answer>"


def score_cruxeval(benchmark: str, items: list[dict], completions: list[str], sandbox) -> list[dict]:
    """One {"extracted", "format_ok", "verdict"} per (item, completion) pair, checked in one sandbox batch."""
    task = TASK[benchmark]
    parsed = [parse_response(c) for c in completions]
    preds = [parse_prediction(task, answer) for _, answer in parsed]
    raw = [parse_prediction(task, answer, raw=True) for _, answer in parsed]
    if task == "deduction":  # AZR evaluates the raw output text (azr.executor_fails)
        verdicts = sandbox.check_deduction([(it["output"], p) for it, p in zip(items, preds)], pure=False)
        verdicts = [v and not eval_text_fails(r) for v, r in zip(verdicts, raw)]
    else:  # AZR pastes the raw input into `gold == f(<input>)` and evaluates that line alone (azr.executor_fails)
        verdicts = sandbox.check_abduction([(it["code"], it["output"], p) for it, p in zip(items, preds)],
                                           pure=False)
        verdicts = [v and not pasted_call_fails(r) for v, r in zip(verdicts, raw)]
    return [{"extracted": p, "format_ok": bool(fmt), "verdict": bool(v)}
            for (fmt, _), p, v in zip(parsed, preds, verdicts)]


def evaluate_cruxeval(model, tokenizer, sandbox, data_dir, limit=None, max_new_tokens=8096, progress=False,
                      cuda_graphs=False, rank=0, world=1) -> dict:
    """Greedy CRUXEval-I/O accuracy of `model`: {"cruxeval-i": acc, "cruxeval-o": acc}, each in [0, 1].

    limit: first N problems of each (None = all 800). max_new_tokens is capped so that prompt + completion fits the
    model's context. rank, world: under torchrun with the whole model on every rank (azr.py; under FSDP the weights
    gathered), each rank generates and checks problems rank, rank + world, ... and the counts are summed over the
    default process group (a CPU tensor: its gloo side), so every rank returns the same scores: 8 ranks decode the
    1,600 prompts (up to 8,096 greedy tokens each) in an eighth of the time one rank would.
    """
    from eval.data import load_benchmark
    from eval.generation import complete

    out = {}
    for benchmark in ("cruxeval-i", "cruxeval-o"):
        items = load_benchmark(benchmark, data_dir, limit)[rank::world]
        texts = [cruxeval_prompt(benchmark, it) for it in items]
        completions = complete(model, tokenizer, texts, max_new_tokens, temperature=0.0, progress=progress,
                               cuda_graphs=cuda_graphs) if items else []
        scored = score_cruxeval(benchmark, items, completions, sandbox) if items else []
        hits, n = sum(s["verdict"] for s in scored), len(scored)
        if world > 1:
            import torch
            import torch.distributed as dist
            counts = torch.tensor([hits, n], dtype=torch.float64)
            dist.all_reduce(counts)
            hits, n = counts.tolist()
        out[benchmark] = hits / n
    return out
