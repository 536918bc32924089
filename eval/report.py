"""Scores -> numbers: the unbiased pass@k estimator, the paper's aggregates, and the Markdown table beside the paper.

Paper numbers are azr-spec.md 9.2 (Table 1) and 9.3 (Table 5), pass@1 in %, greedy decoding. The paper's CAvg is the
mean of HumanEval+, MBPP+ and LiveCodeBench (v1-5); MAvg the mean of the six math benchmarks; AVG = (CAvg + MAvg) / 2.
CRUXEval-I/O are in-distribution metrics that the paper only plots, so they have no paper column.
"""
import math
import re

PAPER_COLUMNS = ["humaneval+", "mbpp+", "lcb", "aime24", "aime25", "amc23", "math500", "minerva", "olympiadbench",
                 "CAvg", "MAvg", "AVG"]
PAPER = {  # key: normalised model name (see paper_key)
    "qwen2.5-7b": [73.2, 65.3, 17.5, 6.7, 3.3, 37.5, 64.8, 25.0, 27.7, 52.0, 27.5, 39.8],
    "azr-base-7b": [71.3, 69.1, 25.3, 13.3, 13.3, 52.5, 74.4, 38.2, 38.5, 55.2, 38.4, 46.8],
    "qwen2.5-coder-7b": [80.5, 69.3, 19.9, 6.7, 3.3, 40.0, 54.0, 17.3, 21.9, 56.6, 23.9, 40.2],
    "azr-coder-7b": [83.5, 69.6, 31.7, 20.0, 10.0, 57.5, 72.6, 36.4, 38.2, 61.6, 39.1, 50.4],
    "qwen2.5-7b-instruct": [75.0, 68.5, 25.5, 13.3, 6.7, 52.5, 76.4, 35.7, 37.6, 56.3, 37.0, 46.7],
    "qwen2.5-coder-3b": [67.1, 65.9, 20.0, 3.3, 3.3, 20.0, 51.0, 18.4, 16.6, 51.2, 18.8, 35.0],
    "azr-coder-3b": [71.3, 69.0, 24.4, 3.3, 3.3, 37.5, 62.0, 26.1, 27.0, 54.9, 26.5, 40.7],
    "qwen2.5-coder-14b": [76.8, 71.7, 31.4, 0.0, 0.0, 37.5, 54.8, 10.7, 18.5, 60.0, 20.2, 40.1],
    "azr-coder-14b": [80.5, 71.2, 39.0, 23.3, 20.0, 65.0, 78.6, 32.0, 39.3, 63.6, 43.0, 53.3],
    "qwen2.5-14b": [78.0, 66.7, 21.7, 6.7, 3.3, 35.0, 66.2, 28.3, 32.4, 55.5, 28.7, 42.1],
    "azr-base-14b": [70.7, 68.8, 35.2, 10.0, 20.0, 62.5, 76.2, 40.4, 42.5, 58.2, 41.9, 50.1],
    "llama-3.1-8b": [31.7, 53.7, 0.0, 0.0, 0.0, 2.5, 10.6, 5.5, 2.1, 28.5, 3.4, 16.0],
}
CODE_AVG = ["humaneval+", "mbpp+", "lcb"]
MATH_AVG = ["aime24", "aime25", "amc23", "math500", "minerva", "olympiadbench"]


def paper_key(model_name: str) -> str | None:
    """Map a model name / hub id / path to a PAPER key, or None. 'Qwen/Qwen2.5-Coder-7B' -> 'qwen2.5-coder-7b',
    'andrewzh/Absolute_Zero_Reasoner-Coder-7b' -> 'azr-coder-7b'."""
    name = str(model_name).rstrip("/").lower()
    # hub cache paths look like .../models--Qwen--Qwen2.5-7B/snapshots/<hash>
    m = re.search(r"models--[^/]+--([^/]+)", name)
    name = m.group(1) if m else name.split("/")[-1]
    name = name.replace("absolute_zero_reasoner", "azr").replace("_", "-").replace("meta-llama-", "llama-")
    # the paper writes Qwen2.5-7B-Coder; hub ids write Qwen2.5-Coder-7B
    name = re.sub(r"^qwen2\.5-(\d+b)-coder", r"qwen2.5-coder-\1", name)
    return name if name in PAPER else None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), for n samples of which c are correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    # product form avoids huge binomials: C(n-c,k)/C(n,k) = prod_{i=n-c+1}^{n} (1 - k/i)
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def benchmark_scores(verdicts: list[list[bool]], ks: list[int]) -> dict:
    """verdicts: per problem, one bool per sample -> {"pass@k": mean over problems} for each k <= samples."""
    n = min(len(v) for v in verdicts)
    return {f"pass@{k}": sum(pass_at_k(len(v), sum(v), k) for v in verdicts) / len(verdicts)
            for k in ks if k <= n}


def aggregates(pass1: dict) -> dict:
    """CAvg / MAvg / AVG (fractions) over the benchmarks present; each entry also says how many it averaged."""
    out = {}
    for name, group in (("CAvg", CODE_AVG), ("MAvg", MATH_AVG)):
        have = [pass1[b] for b in group if b in pass1]
        if have:
            out[name] = (sum(have) / len(have), len(have), len(group))
    if "CAvg" in out and "MAvg" in out:  # counts: both groups together, so a partial CAvg shows in AVG too
        c, m = out["CAvg"], out["MAvg"]
        out["AVG"] = ((c[0] + m[0]) / 2, c[1] + m[1], c[2] + m[2])
    return out


def markdown_table(model_name: str, results: dict, ks: list[int]) -> str:
    """results: {benchmark: {"pass@1": x, ..., "n": problems}} -> Markdown table with the paper column when known."""
    key = paper_key(model_name)
    paper = dict(zip(PAPER_COLUMNS, PAPER[key])) if key else {}
    kcols = [f"pass@{k}" for k in ks if k != 1 and any(f"pass@{k}" in r for r in results.values())]
    head = ["benchmark", "problems", "pass@1 (ours)"] + kcols + [f"paper ({key})" if key else "paper"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b, r in results.items():
        row = [b, str(r["n"]), f"{100 * r['pass@1']:.1f}"] + [
            f"{100 * r[c]:.1f}" if c in r else "" for c in kcols] + [
            f"{paper[b]:.1f}" if b in paper else "n/a"]
        lines.append("| " + " | ".join(row) + " |")
    agg = aggregates({b: r["pass@1"] for b, r in results.items()})
    for name, (value, have, of) in agg.items():
        # an average over fewer benchmarks than the paper's is not the paper's number: no paper value beside it
        note = f" ({have}/{of} benchmarks)" if have < of else ""
        row = [name + note, "", f"{100 * value:.1f}"] + [""] * len(kcols) + [
            "n/a" if name not in paper else f"{paper[name]:.1f}" if not note else "not comparable"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
