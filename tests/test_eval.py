"""eval/: answer extraction and math equivalence, pass@k, data errors, gold-vs-wrong verdicts on every benchmark
(sandboxed for code), and an end-to-end run of the tiny model through `python -m eval`."""
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from eval import code as codeeval
from eval import cruxeval, data, mathscore, report, templates
from eval.__main__ import ModelError, OutputError, gold_completions, main, run_eval, score


# ------------------------------------------------------------------------------------------------------------------
# Math: extraction and equivalence

@pytest.mark.parametrize("completion, expected", [
    ("so $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("first \\boxed{3} then \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("<think>try \\boxed{4}</think> <answer>7</answer>", "7"),                   # azr: answer tag wins
    ("<think>..</think> <answer>so \\boxed{12} it is</answer>", "12"),          # azr_boxed: boxed inside the tag
    ("we get \\fbox{5} in the end", "5"),
    ("The answer is: 42.", "42"),
    ("3 apples and then 17 pears", "17"),                                         # last-number fallback
    ("no digits here", ""),
    ("cut off \\boxed{\\frac{1}{", "1"),  # unbalanced box falls through to the last number
    ("so \\boxed{3}, wait \\boxed{\\frac{1}{", "3"),     # a cut-off last box falls back to the complete one
    ("The answer is: **12**", "12"),                      # markdown bold around the answer
])
def test_extract_answer(completion, expected):
    assert mathscore.extract_answer(completion) == expected


@pytest.mark.parametrize("gold, answer, equal", [
    ("\\frac{1}{2}", "0.5", True),
    ("\\dfrac{3}{4}", "0.75", True),
    ("\\frac12", "1/2", True),
    ("10", "10\\text{ cm}", True),                                # units
    ("x = 3", "3", True),
    ("27", "27.0", True),
    ("(1,2]", "(1, 2]", True),                                    # intervals
    ("[1,2)", "(1,2]", False),
    ("3, 5", "5,3", True),                                        # multiple answers, any order
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", True),
    ("\\text{Evelyn}", "Evelyn", True),
    ("5", "6", False),
    ("\\frac{1}{2}", "0.51", False),
    ("3, 5", "3", False),
    ("7", "", False),
    ("4.5e33", "4.5 \\times 10^{33}", True),                       # Minerva's E notation (58 of 272 answers)
    ("1e-5", "0.00001", True),
    ("3e6", "3 \\cdot 10^6", True),
    ("4.5e33", "4.6 \\times 10^{33}", False),
    ("1e-5", "1e5", False),
])
def test_math_equal(gold, answer, equal):
    assert mathscore.math_equal(gold, answer) is equal


def test_gold_answer_fields():
    assert mathscore.gold_answer("amc23", {"answer": 27.0}) == "27"
    assert mathscore.gold_answer("olympiadbench", {"final_answer": ["$\\frac{3}{2}$"]}) == "\\frac{3}{2}"
    for empty in ({"answer": None}, {"answer": " "}):  # a null reference is a data error, never the gold "None"
        with pytest.raises(ValueError, match="empty"):
            mathscore.gold_answer("amc23", empty)
    assert mathscore.gold_answer("math500", {"solution": "so \\boxed{2} and \\boxed{\\frac{1}{4}}."}) == "\\frac{1}{4}"


@pytest.mark.parametrize("raw, answer, equal", [
    ("69$,$84", "69, 84", True),                     # OlympiadBench multi-answers: `$` separates the parts
    ("69$,$84", "69", False),                        # (math-verify read only the first part before)
    ("-1$,$2$,$-2", "-1, 2, -2", True),
    ("-1$,$2$,$-2", "2", False),
    ("f(x)=x$,$f(x)=2-x", "f(x)=x, f(x)=2-x", True),
])
def test_olympiadbench_multi_answer_golds(raw, answer, equal):
    gold = mathscore.gold_answer("olympiadbench", {"final_answer": [raw]})
    assert "$" not in gold and mathscore.math_equal(gold, answer) is equal


@pytest.mark.parametrize("gold, answer, equal", [
    ("\\$36", "36", True), ("\\$18.90", "18.90", True), ("\\$32,\\!348", "32348", True), ("\\$36", "35", False),
    ("36", "\\$36", True),
])
def test_currency_signs_are_not_math_delimiters(gold, answer, equal):  # MATH500's \$36, \$18.90, \$32,\!348
    assert mathscore.math_equal(gold, answer) is equal


@pytest.mark.parametrize("name", data.MATH)  # not "benchmark": pytest-benchmark owns that fixture name
def test_math_gold_passes_wrong_fails(name, data_dir):
    items = data.load_benchmark(name, data_dir, limit=4)
    gold = score(name, items, gold_completions(name, items, False), None, None, False)
    assert all(s["verdict"] for s in gold)
    # each item answered with another item's (different) reference answer
    answers = [it["answer"] for it in items]
    wrong = [f"\\boxed{{{next(a for a in answers[i + 1:] + answers[:i] if a != answers[i])}}}" for i in range(4)]
    assert not any(s["verdict"] for s in score(name, items, wrong, None, None, False))


# ------------------------------------------------------------------------------------------------------------------
# pass@k and the report

def test_pass_at_k_matches_the_combinatorial_definition():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert report.pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
    assert report.pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert report.pass_at_k(10, 0, 5) == 0.0 and report.pass_at_k(10, 6, 5) == 1.0
    with pytest.raises(ValueError):
        report.pass_at_k(3, 4, 1)


def test_scores_aggregates_and_table():
    scores = report.benchmark_scores([[True, False], [False, False], [True, True]], [1, 2, 4])
    assert scores == {"pass@1": pytest.approx(0.5), "pass@2": pytest.approx(2 / 3)}  # k=4 > n samples: omitted
    agg = report.aggregates({"humaneval+": 0.8, "mbpp+": 0.6, "aime24": 0.1, "math500": 0.5})
    assert agg["CAvg"][0] == pytest.approx(0.7) and agg["MAvg"][0] == pytest.approx(0.3)
    assert agg["AVG"][0] == pytest.approx(0.5)
    uneven = report.aggregates({"humaneval+": 0.8, "aime24": 0.1, "math500": 0.5})
    assert uneven["AVG"][0] == pytest.approx((0.8 + 0.3) / 2)  # the mean of CAvg and MAvg, not of the benchmarks
    assert report.paper_key("Qwen/Qwen2.5-Coder-7B") == "qwen2.5-coder-7b"
    assert report.paper_key("andrewzh2/Absolute_Zero_Reasoner-Base-7b") == "azr-base-7b"
    table = report.markdown_table("Qwen/Qwen2.5-7B", {"humaneval+": {"pass@1": 0.7, "n": 164}}, [1])
    assert "| humaneval+ | 164 | 70.0 | 73.2 |" in table
    assert "| CAvg (1/3 benchmarks) |  | 70.0 | not comparable |" in table
    assert agg["AVG"][1:] == (4, 9)  # 2 of 3 code + 2 of 6 math benchmarks: AVG says it is partial too
    full = {b: {"pass@1": 0.5, "n": 1} for b in report.CODE_AVG + report.MATH_AVG}
    assert "| AVG |  | 50.0 | 39.8 |" in report.markdown_table("Qwen/Qwen2.5-7B", full, [1])


def test_templates():
    assert templates.default_template("Qwen/Qwen2.5-7B") == "qwen-boxed"
    assert templates.default_template("andrewzh/Absolute_Zero_Reasoner-Coder-7b") == "azr_boxed"
    assert templates.default_template("runs/azr/step_100") == "azr"
    assert templates.math_prompt("azr", "1+1?").endswith("User: 1+1?\nAssistant:")
    assert "\\boxed{}" in templates.math_prompt("qwen-boxed", "1+1?")
    text, prefilled = templates.code_prompt("qwen-boxed", "def f(x):\n    pass")
    assert prefilled and text.endswith("```python\n")
    for template in ("azr", "azr_boxed"):  # the R1 template, the code read from the fenced answer
        text, prefilled = templates.code_prompt(template, "def f(x):\n    pass\n")
        assert not prefilled and text == (f"{templates.R1_PREAMBLE} User: {templates.CODE_INSTRUCTION}\n```\n"
                                          "def f(x):\n    pass\n```\nAssistant:")
    for bad in (lambda: templates.math_prompt("qwen", "1+1?"), lambda: templates.code_prompt("qwen", "def f(): pass")):
        with pytest.raises(ValueError, match="unknown template 'qwen'; choose from azr, azr_boxed, qwen-boxed"):
            bad()


def test_code_prompt_uses_the_tokenizers_chat_template():
    """EvalPlus renders its chat prompt with the evaluated tokenizer's template (its default system turn
    included) and cuts the pre-filled answer after the opening ```python fence."""
    class Tok:
        chat_template = "x"

        def apply_chat_template(self, messages, tokenize):
            assert not tokenize
            return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
    text, prefilled = templates.code_prompt("qwen-boxed", "def f(x):\n    pass\n", Tok())
    assert prefilled and text == (f"<user>{templates.CODE_INSTRUCTION}\n```\ndef f(x):\n    pass\n```\n</user>"
                                  f"<assistant>{templates.CODE_RESPONSE_PREFIX}\n```python\n")
    assert templates.code_prompt("qwen-boxed", "def f(x):\n    pass\n", object())[0].startswith(templates.QWEN_SYSTEM)


def test_template_texts_are_the_official_ones():
    """Word for word: qwen-boxed as the simpleRL-reason harness's PROMPT_TEMPLATES entry, the code prompt as EvalPlus's
    make_raw_chat_prompt renders it with a Qwen chat template (see eval/templates.py for the sources)."""
    from prompts import R1_PREAMBLE
    assert templates.math_prompt("qwen-boxed", "What is $1+1$?") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is $1+1$?\nPlease reason step by step, and put your final answer within "
        "\\boxed{}.<|im_end|>\n<|im_start|>assistant\n")
    text, prefilled = templates.code_prompt("qwen-boxed", "\ndef add(a, b):\n    \"\"\"Sum.\"\"\"\n")
    assert prefilled and text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "Please provide a self-contained Python script that solves the following problem in a markdown code block:\n"
        "```\ndef add(a, b):\n    \"\"\"Sum.\"\"\"\n```\n<|im_end|>\n<|im_start|>assistant\n"
        "Below is a Python script with a self-contained function that solves the problem and passes corresponding "
        "tests:\n```python\n")
    # azr / azr_boxed: our reading of azr-spec 9.1 (AZR's own template file is not public in the index we read)
    assert templates.math_prompt("azr", "Q?") == f"{R1_PREAMBLE} User: Q?\nAssistant:"
    assert templates.math_prompt("azr_boxed", "Q?") == \
        f"{R1_PREAMBLE} User: Q?\nThe final answer will be extracted from \\boxed{{}}.\nAssistant:"


# ------------------------------------------------------------------------------------------------------------------
# Data files: clear one-line errors

def test_missing_and_malformed_files(tmp_path, monkeypatch):
    import huggingface_hub

    def offline(*a, **k):
        raise ConnectionError("offline")
    monkeypatch.setattr(huggingface_hub, "list_repo_files", offline)
    with pytest.raises(data.DataError, match=r"no file at .*aime24/test.jsonl and the Hugging Face hub is "
                                             r"unreachable") as e:
        data.load_benchmark("aime24", tmp_path)
    assert "\n" not in str(e.value)

    (tmp_path / "aime24").mkdir()
    (tmp_path / "aime24" / "test.jsonl").write_text('{"problem": "p", "answer": "1"}\n{"problem": oops}\n')
    with pytest.raises(data.DataError, match=r"aime24/test.jsonl: line 2 is not valid JSON"):
        data.load_benchmark("aime24", tmp_path)

    (tmp_path / "aime24" / "test.jsonl").write_text('{"problem": "p"}\n')
    with pytest.raises(data.DataError, match=r"lacks field\(s\) answer"):
        data.load_benchmark("aime24", tmp_path)

    (tmp_path / "olympiadbench").mkdir()
    (tmp_path / "olympiadbench" / "test.jsonl").write_text('{"question": "q", "final_answer": ["1"]}\n'
                                                           '{"question": "q", "final_answer": []}\n')
    with pytest.raises(data.DataError, match=r"test.jsonl: record 2: no reference answer .*; fix or remove"):
        data.load_benchmark("olympiadbench", tmp_path)

    (tmp_path / "mbppplus").mkdir()
    (tmp_path / "mbppplus" / "MbppPlus.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(data.DataError, match=r"MbppPlus.jsonl.gz: cannot read"):
        data.load_benchmark("mbpp+", tmp_path)

    with pytest.raises(data.DataError, match="--lcb-file"):
        data.load_benchmark("lcb-e", tmp_path)

    # a folder the user named must exist (no slow hub fallback); the default folder may be absent (then: the hub)
    with pytest.raises(data.DataError, match=r"data directory .*nowhere does not exist; pass --data-dir") as e:
        data.load_benchmark("aime24", tmp_path / "nowhere")
    monkeypatch.setenv("NANOAZR_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(data.DataError, match="NANOAZR_DATA"):
        data.load_benchmark("aime24")
    monkeypatch.delenv("NANOAZR_DATA")
    monkeypatch.setattr(data, "REPO", tmp_path / "repo")  # default ../shared/data beside it: absent -> the hub
    with pytest.raises(data.DataError, match="Hugging Face hub is unreachable"):
        data.load_benchmark("aime24")


def test_cli_reports_bad_data_in_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "amc23").mkdir()
    (tmp_path / "amc23" / "test.jsonl").write_text("[1, 2]\n")
    assert main(["--model", "unused", "--benchmarks", "amc23", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "amc23/test.jsonl: record 1 is a list" in err and "\n" not in err
    assert main(["--model", str(tmp_path / "no-such-ckpt"), "--benchmarks", "aime24", "--limit", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --model") and "not found" in err and "\n" not in err
    if not torch.cuda.is_available():
        assert main(["--model", "unused", "--benchmarks", "aime24", "--device", "cuda"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --device cuda: no CUDA device") and "\n" not in err
    (tmp_path / "a-file").write_text("keep me\n")  # --out is checked before any model or data is touched
    assert main(["--model", "unused", "--benchmarks", "aime24", "--out", str(tmp_path / "a-file")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --out {tmp_path / 'a-file'}: is a file, not a folder; pass a folder path"
    assert (tmp_path / "a-file").read_text() == "keep me\n"
    assert main(["--model", str(tmp_path / "no-such-ckpt"), "--benchmarks", "aime24", "--limit", "1",
                 "--out", str(tmp_path / "new" / "out")]) == 2
    assert not (tmp_path / "new").exists()  # a failed run leaves no empty output folder
    assert main(["--model", "unused", "--benchmarks", "aime24", "--out", str(tmp_path / "a-file" / "sub")]) == 2
    assert "is not a writable folder" in capsys.readouterr().err
    for flag, value in (("--limit", "0"), ("--samples", "0"), ("--max-new-tokens", "0"), ("--sandbox-workers", "-1"),
                        ("--temperature", "nan")):
        with pytest.raises(SystemExit) as e:
            main(["--model", "unused", flag, value])
        assert e.value.code == 2 and f"{flag} {value}: must be" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:   # a prefix of a flag is not that flag (--benchmark is no --benchmarks)
        main(["--model", "unused", "--benchmark", "aime24"])
    assert e.value.code == 2 and "unrecognized arguments: --benchmark aime24" in capsys.readouterr().err
    for argv, words in ((["--model", "unused", "--benchmarks", "aime24,aime2024"],
                         "unknown benchmark(s) aime2024; choose from"),
                        (["--model", "unused", "--samples", "4"], "--samples N > 1 needs --temperature > 0"),
                        (["--benchmarks", "aime24"], "--model is required (or use --check-gold)")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and words in capsys.readouterr().err, argv


def test_run_eval_refuses_bad_arguments_and_broken_models(tiny_ckpt, data_dir, tmp_path):
    """run_eval's own checks (the API azr.py and scripts call, without argparse's choices), and a model folder whose
    weights do not load: one-line ModelErrors, before anything is generated or written."""
    quick = dict(limit=1, max_new_tokens=1, sandbox_workers=1, progress=False)
    with pytest.raises(ModelError, match="--dtype fp16: unknown; use auto, float32 or bfloat16"):
        run_eval(str(tiny_ckpt), ["aime24"], data_dir, tmp_path / "a", dtype="fp16", **quick)
    with pytest.raises(ModelError, match="--device tpu: unknown; use auto, cuda or cpu"):
        run_eval(str(tiny_ckpt), ["aime24"], data_dir, tmp_path / "b", device="tpu", **quick)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in Path(tiny_ckpt).iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes((Path(tiny_ckpt) / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(ModelError, match=rf"^--model {broken}: .*truncated or corrupt") as e:
        run_eval(str(broken), ["aime24"], data_dir, tmp_path / "c", device="cpu", **quick)
    assert "\n" not in str(e.value) and not (tmp_path / "c" / "results.json").exists()



def test_device_and_dtype_flags(tiny_ckpt, data_dir, tmp_path, capsys, torch_path_one_thread):
    results = run_eval(str(tiny_ckpt), ["aime24"], data_dir, tmp_path / "bf16", limit=1, max_new_tokens=4,
                       progress=False, device="cpu", dtype="bfloat16")
    assert results["aime24"]["n"] == 1
    log = capsys.readouterr().err
    assert "on cpu x1" in log and "bfloat16" in log
    before = (tmp_path / "bf16" / "results.json").read_text()
    with pytest.raises(OutputError, match="already holds samples.jsonl, results.json, results.md"):
        run_eval(str(tiny_ckpt), ["aime24"], data_dir, tmp_path / "bf16", limit=1, max_new_tokens=4, progress=False)
    assert (tmp_path / "bf16" / "results.json").read_text() == before  # an earlier run's results are never lost
    results = run_eval(str(tiny_ckpt), ["aime24"], data_dir, tmp_path / "bf16", limit=1, max_new_tokens=2,
                       progress=False, overwrite=True)
    assert results["aime24"]["n"] == 1


def test_scorers_on_degenerate_completions():
    """Completions on which the old regexes and scans took seconds each (quadratic) or crashed: right answers now."""
    n = 40000
    assert mathscore.last_boxed("\\boxed{" * (n // 7)) is None
    assert mathscore.last_boxed("\\boxed{12} then \\boxed{\\frac{1}{2}} and \\boxed{cut") == "\\frac{1}{2}"
    assert mathscore.extract_answer("<answer>" + "\\boxed{" * (n // 7)).startswith("\\boxed{")
    assert not mathscore.math_equal("42", "1e" + "0" * n + "x")
    assert not mathscore.math_equal("42", "\\text{" * (n // 6)) and not mathscore.math_equal("42", "x" * n)
    assert mathscore.math_equal("1e5", "1e00005") and mathscore.math_equal("100000", "1e+05")
    assert codeeval.extract_code("```" + " \t" * (n // 2), False) == "```" + " \t" * (n // 2)  # no fence: as is
    assert codeeval.extract_code("```py \nx = 1\n```", False) == "x = 1\n"
    for nested in ("-" * n + "1", "1+" * (n // 2) + "1", "a" + ".b" * (n // 2)):  # ast.parse: Memory/RecursionError
        assert codeeval.sanitize(nested) == nested



def _seconds(fn, *args):
    """Wall time of one call with the garbage collector off: inside the full suite a collection of its heap (~0.3 s)
    could land in either call being compared."""
    import gc
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        fn(*args)
        return time.perf_counter() - t0
    finally:
        gc.enable()


def test_sanitize_keeps_a_shared_line_once():
    """A 64 KiB answer of `a=1;` on one line: each kept statement brought the whole line, a 1 GiB program (2.3 GiB of
    evaluator memory and 5 s; score_code holds every candidate at once). A line now comes once."""
    one_line = "def g():\n    return a\n" + "a=1;" * 16000 + "\n"
    assert codeeval.sanitize(one_line, "g") == one_line
    assert codeeval.sanitize("import os; import sys\nx = 1; y = 2\ndef g():\n    return x\n", "g") == \
        "import os; import sys\nx = 1; y = 2\ndef g():\n    return x\n"


def test_math_equal_refuses_to_run_outside_the_main_thread():
    """math-verify's timeouts are SIGALRM-based: in a worker thread its parse raised, and every answer silently fell
    back to the string match (`\\frac{1}{2}` against `0.5` scored wrong). Now that is an error, not a quiet 0."""
    from concurrent.futures import ThreadPoolExecutor
    assert mathscore.math_equal("\\frac{1}{2}", "0.5")
    with ThreadPoolExecutor(1) as pool, pytest.raises(RuntimeError, match="main thread"):
        pool.submit(mathscore.math_equal, "\\frac{1}{2}", "0.5").result()

def test_sanitize_cuts_lines_as_the_parser_counts_them():
    """str.splitlines breaks at a form feed or U+2028 inside a string literal, which Python's parser does not: every
    statement after it was cut from the wrong lines, and a correct program became a SyntaxError."""
    code = 'def g():\n    return "a\x0cb\u2028c"\n\ndef f(x):\n    return g() + str(x)\nprint(f(1))\n'
    ns = {}
    exec(codeeval.sanitize(code, "f"), ns)
    assert ns["f"](2) == "a\x0cb\u2028c2"

def test_sanitize_is_linear_in_the_number_of_definitions():
    """16,000 `a=1` lines (64 KiB): membership in the list of definitions, per statement, took 1.4 s (quadratic; at
    32,000 lines ~20x the time of as many lines without definitions, against ~2x now: the bound leaves room for a
    noisy machine, which once made it 6x inside the full suite)."""
    n = 32000
    t_bad = min(_seconds(codeeval.sanitize, "a=1\n" * n, "g") for _ in range(2))
    t_flat = min(_seconds(codeeval.sanitize, "a+1\n" * n, "g") for _ in range(2))  # same size, no definitions
    assert t_bad < 8 * t_flat + 0.1, (t_bad, t_flat)

def test_mbpp_inputs_get_evalplus_types(data_dir):
    items = {it["id"]: it for it in data.load_benchmark("mbpp+", data_dir)}
    assert isinstance(items["Mbpp/124"]["inputs"][0][1], complex)
    assert isinstance(items["Mbpp/580"]["inputs"][0], tuple)
    assert all(isinstance(a[0], tuple) for a in items["Mbpp/2"]["inputs"])
    assert len(items["Mbpp/793"]["inputs"]) == items["Mbpp/793"]["n_base"]  # its plus_input is `{}`


# ------------------------------------------------------------------------------------------------------------------
# Code: extraction and EvalPlus comparison rules (no sandbox)

def test_extract_and_sanitize():
    assert codeeval.extract_code("    return x\n```\nmore text", True) == "    return x\n"
    fenced = "<think>```python\nbad\n```</think> <answer>```python\ndef g():\n    return 1\n```</answer>"
    assert codeeval.extract_code(fenced, False) == "def g():\n    return 1\n"
    program = ("import math\ndef g(x):\n    return x\nprint(g(2))\nassert g(1) == 2\n"
               "if __name__ == '__main__':\n    g(3)\n")
    assert codeeval.sanitize(program) == "import math\ndef g(x):\n    return x\n"


def test_extract_code_prefers_the_last_block_inside_the_answer():
    """Not prefilled: the last fenced block inside the last <answer> wins over earlier drafts and over fences written
    after </answer>; without an answer tag, the last fenced block anywhere."""
    draft, final, after = "def g():\n    return 0\n", "def g():\n    return 1\n", "def g():\n    return 2\n"
    text = (f"<think>x</think> <answer>```python\n{draft}```\nbetter:\n```python\n{final}```</answer>\n"
            f"```python\n{after}```")
    assert codeeval.extract_code(text, False) == final
    assert codeeval.extract_code(f"```python\n{draft}```\n```python\n{final}```", False) == final


def test_candidate_is_the_answer_alone():
    """As EvalPlus takes a chat model's answer: the task prompt is never prepended, prefilled or not, so a missing
    helper (HumanEval/32's `poly`) or a bare body fails; sanitize keeps the imports and what the entry point
    reaches, and drops demo lines that would run (`result = add(1)`, `n = int(input())`)."""
    item = {"entry_point": "find_zero", "prompt": "import math\n\ndef poly(xs, x):\n    return 0\n\n\n"
                                                  "def find_zero(xs):\n    \"\"\"doc\"\"\"\n"}
    completion = "def find_zero(xs):\n    return poly(xs, 0)\n```\n"
    assert codeeval.candidate_program(item, completion, True) == "def find_zero(xs):\n    return poly(xs, 0)\n"
    assert "def poly" not in codeeval.candidate_program(item, "<answer>```python\n" + completion, False)
    add = {"entry_point": "add", "prompt": "def add(x, y):\n"}
    answer = ("</think> <answer>\n```python\nimport re\nMOD = 7\nUNUSED = 1\n\ndef helper(v):\n    return v % MOD\n\n"
              "def add(x, y):\n    return helper(x + y)\n\nresult = add(1)\nn = int(input())\n```\n</answer>")
    assert codeeval.candidate_program(add, answer, False) == (
        "import re\nMOD = 7\ndef helper(v):\n    return v % MOD\ndef add(x, y):\n    return helper(x + y)\n")


def test_output_ok_follows_evalplus():
    ok = lambda out: ("ok", repr(out), type(out).__name__, 0.0)  # noqa: E731
    value = lambda v: ("value", v)  # noqa: E731
    assert codeeval.output_ok("mbpp+", "g", (), value(1.0), ok(1.0 + 1e-7), 0.0)        # floats: atol 1e-6
    assert not codeeval.output_ok("mbpp+", "g", (), value(1.0), ok(1.001), 0.0)
    assert codeeval.output_ok("mbpp+", "g", (), value([1.0, 2.0]), ok([1.0, 2.00001]), 1e-4)
    assert not codeeval.output_ok("mbpp+", "g", (), value([1.0, 2.0]), ok((1.0, 2.00001)), 1e-4)  # type differs
    assert not codeeval.output_ok("mbpp+", "g", (), value([1, 2]), ok((1, 2)), 0.0)
    assert codeeval.output_ok("mbpp+", "similar_elements", (), value((4, 5)), ok((5, 4)), 0.0)   # set oracle
    assert codeeval.output_ok("humaneval+", "find_zero", ([-6, 11, -6, 1],), value(1.0), ok(2.0), 1e-4)
    assert not codeeval.output_ok("humaneval+", "find_zero", ([-6, 11, -6, 1],), value(1.0), ok(2.5), 1e-4)
    assert codeeval.output_ok("mbpp+", "check_str", (), ("notnone", True), ("ok", "<re.Match ...>", "Match", 0), 0)
    assert not codeeval.output_ok("mbpp+", "check_str", (), ("notnone", True), ("ok", "None", "NoneType", 0), 0)
    assert not codeeval.output_ok("mbpp+", "g", (), value(1), ("error", "ZeroDivisionError", "", 0.0), 0.0)
    assert codeeval.parse_value("[nan, -inf, {1, 2}, (3+4j)]")[1] == float("-inf")


def test_output_ok_float_lists_of_another_length_fail():
    """allclose broadcasts ([1.0] against [1.0, 1.0] is True): the length check must come first."""
    ok = lambda out: ("ok", repr(out), type(out).__name__, 0.0)  # noqa: E731
    assert not codeeval.output_ok("mbpp+", "g", (), ("value", [1.0, 1.0]), ok([1.0]), 0.0)
    assert not codeeval.output_ok("humaneval+", "g", (), ("value", [2.0, 2.0, 2.0]), ok([2.0]), 1e-3)


def test_output_ok_sum_div_oracle():
    """Mbpp/295 (sum_div): EvalPlus also accepts 0, and nothing else that differs."""
    ok = lambda out: ("ok", repr(out), type(out).__name__, 0.0)  # noqa: E731
    assert codeeval.output_ok("mbpp+", "sum_div", (8,), ("value", 7), ok(0), 0.0)
    assert not codeeval.output_ok("mbpp+", "sum_div", (8,), ("value", 7), ok(1), 0.0)
    assert not codeeval.output_ok("mbpp+", "g", (8,), ("value", 7), ok(0), 0.0)  # only for that task


def test_output_ok_other_mbpp_oracles_and_fingerprints():
    """Mbpp/581 and Mbpp/558 also accept their oracle's value; Mbpp/164 accepts anything; re.Match tasks compare
    "is not None"; a huge output (fingerprinted by the driver) matches by its fingerprint alone."""
    ok = lambda out, kind=None: ("ok", repr(out), kind or type(out).__name__, 0.0)  # noqa: E731
    assert codeeval.output_ok("mbpp+", "surface_Area", (3, 4), ("value", 33), ok(35), 0.0)  # 9 + 6 * sqrt(18.25)
    assert not codeeval.output_ok("mbpp+", "surface_Area", (3, 4), ("value", 33), ok(34), 0.0)
    assert codeeval.output_ok("mbpp+", "digit_distance_nums", (123, 5), ("value", 4), ok(5), 0.0)  # 123 vs 005
    assert not codeeval.output_ok("mbpp+", "digit_distance_nums", (123, 5), ("value", 4), ok(6), 0.0)
    assert codeeval.output_ok("mbpp+", "are_equivalent", (36, 57), ("value", False), ok(True), 0.0)
    assert not codeeval.output_ok("mbpp+", "g", (36, 57), ("value", False), ok(True), 0.0)
    match = codeeval.expected_value("mbpp+", "check_str", ("ok", "<re.Match object; span=(0, 1)>", "Match", 0.0))
    assert match == ("notnone", True)
    assert codeeval.output_ok("mbpp+", "check_str", ("a",), match, ok("<re.Match object>", "Match"), 0.0)
    assert not codeeval.output_ok("mbpp+", "check_str", ("a",), match, ok(None), 0.0)
    assert codeeval.expected_value("humaneval+", "g", ("ok", "<re.Match>", "Match", 0.0))[0] == "value"  # MBPP only
    big = codeeval.expected_value("humaneval+", "g", ("ok", "33220:7:9", "int-fingerprint", 0.0))
    assert big == ("fingerprint", "int-fingerprint:33220:7:9")
    assert codeeval.output_ok("humaneval+", "g", (), big, ("ok", "33220:7:9", "int-fingerprint", 0.0), 0.0)
    assert not codeeval.output_ok("humaneval+", "g", (), big, ("ok", "33220:7:8", "int-fingerprint", 0.0), 0.0)
    assert not codeeval.output_ok("humaneval+", "g", (), big, ("ok", "33220:7:9", "repr-fingerprint", 0.0), 0.0)
    assert not codeeval.output_ok("humaneval+", "g", (), ("value", 1), ("ok", "<object>", "object", 0.0), 0.0)
    unreadable = codeeval.expected_value("humaneval+", "g", ("ok", "<object at 0x1>", "object", 0.0))
    assert not codeeval.output_ok("humaneval+", "g", (), unreadable, ("ok", "<object at 0x2>", "object", 0.0), 0.0)


def test_code_runner_chunks_and_records(monkeypatch):
    """run_job: an input too big to send is "excluded" (the others still run); a result over the sandbox's record cap
    (bad_output) halves the inputs per call and retries; a result that is not the driver's records is no records."""
    from sandbox import Result
    calls = []

    class Box:
        def run(self, code, args):
            inputs = codeeval.parse_value(args)[0]
            calls.append(len(inputs))
            if len(inputs) > 2:
                return Result("bad_output", error="result record over the cap")
            return Result("ok", repr([("ok", repr(a[0]), "int", 0.0, 0.0) for a in inputs]))
    runner = codeeval.CodeRunner(workers=1)
    monkeypatch.setattr(runner, "sandbox", lambda limit: Box())
    assert runner.run([]) == []
    big = "x" * codeeval.MAX_INPUT_TEXT
    records = runner.run_job(("def g(x):\n    return x", "g", [(1,), (2,), (big,), (4,), (5,), (6,), (7,)], 10.0,
                              0.0))
    assert [r[0] for r in records] == ["ok", "ok", "excluded", "ok", "ok", "ok", "ok"]
    assert [r[1] for r in records if r[0] == "ok"] == ["1", "2", "4", "5", "6", "7"]
    assert "over the sandbox's argument cap" in records[2][1]
    assert calls == [2, 4, 2, 2], calls  # 2 before the big one; then 4 (over the cap) -> 2 + 2
    assert codeeval._records(Result("ok", "[1, 2]")) is None  # not 5-tuples
    assert codeeval._records(Result("ok", "('ok', '1', 'int', 0.0, 0.0)")) is None  # one record, not a list of them
    assert codeeval._records(Result("ok", "5")) is None
    assert codeeval._records(Result("ok", "[('ok', '1', 'int', 0.5)]")) is None  # the driver's time is missing
    assert codeeval._records(Result("ok", "[('ok', '1', 'int', 0.5, 0.1)]")) == [("ok", "1", "int", 0.5, 0.1)]


def test_code_time_budget_of_the_plus_run(monkeypatch):
    """The plus inputs' time counts against the plus run's own budget (min(60 s, sum of limits) + 1 s): fast base
    inputs and 6 plus inputs of 11 s (66 s > 61 s) pass base but not plus."""
    item = {"id": "T/0", "entry_point": "g", "inputs": [(1,)] * 12, "n_base": 6, "atol": 0.0, "prompt": "",
            "canonical_solution": ""}
    ref = ("ok", "1", "int", 2.0)
    monkeypatch.setattr(codeeval, "reference_outputs", lambda b, items, runner: {"T/0": {
        "ok": True, "time": [2.0] * 12, "overhead": [0.0] * 12,
        "expected": [codeeval.expected_value("humaneval+", "g", ref)] * 12}})

    class Runner:
        def run(self, jobs):
            return [[("ok", "1", "int", 0.1)] * 6 + [("ok", "1", "int", 11.0)] * 6 for _ in jobs]
    out = codeeval.score_code("humaneval+", [item], ["```python\ndef g(x):\n    return 1\n```"], Runner(), False)[0]
    assert out["base"] and not out["verdict"] and out["detail"].startswith("input 11: over the time limit")


def _score_with(monkeypatch, ref_seconds, records):
    """score_code of one 1-base + 1-plus item whose reference took ref_seconds per input, on the given records."""
    item = {"id": "T/1", "entry_point": "g", "inputs": [(1,), (2,)], "n_base": 1, "atol": 0.0, "prompt": "",
            "canonical_solution": ""}
    exp = codeeval.expected_value("humaneval+", "g", ("ok", "1", "int", ref_seconds))
    monkeypatch.setattr(codeeval, "reference_outputs", lambda b, items, runner: {"T/1": {
        "ok": True, "time": [ref_seconds] * 2, "overhead": [0.0] * 2, "expected": [exp] * 2}})

    class Runner:
        def run(self, jobs):
            return [list(records) for _ in jobs]
    return codeeval.score_code("humaneval+", [item], ["```python\ndef g(x):\n    return 1\n```"], Runner(), False)[0]


def test_code_time_limit_is_eight_times_the_reference(monkeypatch):
    """Per input max(10 s, 8 x the reference's time): a 2 s reference allows 16 s, so 12 s passes and 17 s does not."""
    assert _score_with(monkeypatch, 2.0, [("ok", "1", "int", 12.0)] * 2)["verdict"]
    assert not _score_with(monkeypatch, 2.0, [("ok", "1", "int", 17.0)] * 2)["verdict"]
    assert not _score_with(monkeypatch, 0.5, [("ok", "1", "int", 12.0)] * 2)["verdict"]  # floor 10 s


def test_code_inputs_over_the_argument_cap_are_skipped(monkeypatch):
    """An input too big to send ("excluded" for the reference and everyone) counts as passed, and is reported."""
    out = _score_with(monkeypatch, 0.1, [("ok", "1", "int", 0.1), ("excluded", "too big", "", 0.0)])
    assert out["verdict"] and "1 input(s) over the sandbox's argument cap skipped" in out["detail"]


def test_py_source_round_trips_awkward_values():
    """Input source text must rebuild the same value with the same types: 1-tuples, empty sets, nan/inf, complex."""
    for v in [(1,), set(), [set(), {1}], {"k": (2,)}, (), float("inf"), float("-inf"), complex(1, -2), b"x"]:
        back = eval(codeeval.py_source(v))
        assert back == v and type(back) is type(v), v
    assert math.isnan(eval(codeeval.py_source(float("nan"))))


def test_sanitize_keeps_decorators():
    code = "import functools\n@functools.lru_cache(None)\ndef g(n):\n    return n\nprint(g(3))\n"
    assert codeeval.sanitize(code) == "import functools\n@functools.lru_cache(None)\ndef g(n):\n    return n\n"


# ------------------------------------------------------------------------------------------------------------------
# Sandboxed benchmarks: the reference answers pass, wrong ones fail

@pytest.fixture(scope="module")
def sandbox():
    from sandbox import Sandbox
    with Sandbox(workers=2) as sb:
        yield sb


@pytest.fixture(scope="module")
def code_runner(tmp_path_factory):
    old = codeeval.CACHE_DIR
    codeeval.CACHE_DIR = tmp_path_factory.mktemp("eval-cache")  # fresh reference outputs, computed in the test
    runner = codeeval.CodeRunner(workers=2)
    yield runner
    runner.close()
    codeeval.CACHE_DIR = old


@pytest.mark.parametrize("name", ["cruxeval-i", "cruxeval-o"])
def test_cruxeval_gold_passes_wrong_fails(name, data_dir, sandbox):
    benchmark = name
    items = data.load_benchmark(benchmark, data_dir, limit=4)
    gold = cruxeval.score_cruxeval(benchmark, items, [cruxeval.gold_completion(benchmark, it) for it in items],
                                   sandbox)
    assert all(s["verdict"] and s["format_ok"] for s in gold)
    shifted = [items[(i + 1) % 4] for i in range(4)]  # another item's answer
    wrong = cruxeval.score_cruxeval(benchmark, items, [cruxeval.gold_completion(benchmark, it) for it in shifted],
                                    sandbox)
    assert not any(s["verdict"] for s in wrong)
    no_answer = cruxeval.score_cruxeval(benchmark, items[:1], ["I think it is 3 </think>"], sandbox)
    assert no_answer[0]["verdict"] is False and no_answer[0]["format_ok"] is False


def test_cruxeval_prompt_shows_the_right_half():
    """CRUXEval-O shows the input (predict the output), CRUXEval-I the output (predict the input), never both."""
    item = {"code": "def f(x):\n    return x * 2", "input": "'IN-21'", "output": "'OUT-42'"}
    o, i = cruxeval.cruxeval_prompt("cruxeval-o", item), cruxeval.cruxeval_prompt("cruxeval-i", item)
    assert "'IN-21'" in o and "'OUT-42'" not in o
    assert "'OUT-42'" in i and "'IN-21'" not in i
    assert o.endswith("Assistant: <think>") and "def f(x)" in o


def test_cruxeval_accepts_any_expression_as_prediction(sandbox):
    """Benchmark scoring is not the RL loop's purity check: any expression is a prediction (pure=False), as in
    CRUXEval's harness and AZR's executor."""
    item = {"id": "t", "code": "def f(x):\n    return x + 1", "input": "2", "output": "3"}
    expr = "__import__('math').floor(2.5)"
    out = cruxeval.score_cruxeval("cruxeval-o", [item], [f"</think> <answer>\n```output\n{expr} + 1\n```</answer>"],
                                  sandbox)
    inp = cruxeval.score_cruxeval("cruxeval-i", [item], [f"</think> <answer>\n```input\n{expr}\n```</answer>"],
                                  sandbox)
    assert out[0]["verdict"] and inp[0]["verdict"]


def test_cruxeval_scores_what_azrs_executor_scores(sandbox):
    """A predicted input with a line break or a trailing comment never scores in AZR's executor (it evaluates
    `gold == f(<input>)` as one last line); a predicted output may not call f, which the checker only stands in for."""
    item = {"id": "t", "code": "def f(a, b):\n    return a + b", "input": "1, 2", "output": "3"}
    answers = ["1, 2", "1,\n2", "1, 2  # my guess", "1, 2\n"]  # the last one pasted as captured: two lines
    got = cruxeval.score_cruxeval("cruxeval-i", [item] * 4,
                                  [f"</think> <answer>\n```input\n{a}\n```</answer>" for a in answers], sandbox)
    assert [g["verdict"] for g in got] == [True, False, False, False]
    digit = {"id": "u", "code": "def f(s):\n    return s.isdigit()", "input": "'abc'", "output": "False"}
    got = cruxeval.score_cruxeval("cruxeval-o", [digit] * 2, [f"</think> <answer>\n```output\n{a}\n```</answer>"
                                                              for a in ("False", "f('abc') == 'x'")], sandbox)
    assert [g["verdict"] for g in got] == [True, False]


def test_cruxeval_o_scores_what_azrs_eval_parses(sandbox):
    """AZR's validation scores a predicted output by eval of the text as captured (unstripped): an indented closing
    fence leaves a line break and indentation, which eval cannot parse; brackets spanning lines are fine (unlike a
    pasted input)."""
    item = {"id": "t", "code": "def f(a, b):\n    return [a, b]", "input": "1, 2", "output": "[1, 2]"}
    got = cruxeval.score_cruxeval("cruxeval-o", [item] * 3, [f"</think> <answer>\n```output\n{v}\n{c}```</answer>"
                                                             for v, c in (("[1, 2]", ""), ("[1, 2]", "    "),
                                                                          ("[1,\n 2]", ""))], sandbox)
    assert [g["verdict"] for g in got] == [True, False, True]


def test_livecodebench_execution_file(tmp_path, sandbox):
    """LCB-Execution as AZR's validation data has it: input prediction on the program with `def NAME(` renamed to
    `def f(` (the definition only), AZR's import lines added and typing's List etc. lowered."""
    records = [{"id": "a", "function_name": "addOne", "code": "def addOne(n: int) -> int:\n    return n + 1",
                "input": "addOne(n = 3)", "output": "4"},
               {"id": "b", "code": "def pair(s: str) -> List[int]:\n    return [len(Counter(s)), len(s)]",
                "input": "pair(s = 'aab')", "output": "[2, 3]"}]   # the name from the call when the field is absent
    path = tmp_path / "lcb_exec.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    items = data.load_benchmark("lcb-e", lcb_file=path)
    assert [it["input"] for it in items] == ["n = 3", "s = 'aab'"]
    assert items[1]["code"] == ("from collections import Counter\ndef f(s: str) -> list[int]:\n"
                                "    return [len(Counter(s)), len(s)]")
    prompt = cruxeval.cruxeval_prompt("lcb-e", items[0])
    assert "def f(n: int)" in prompt and "addOne" not in prompt and "```output\n4\n```" in prompt
    gold = cruxeval.score_cruxeval("lcb-e", items, [cruxeval.gold_completion("lcb-e", it) for it in items], sandbox)
    assert [s["verdict"] for s in gold] == [True, True]
    wrong = cruxeval.score_cruxeval("lcb-e", items, [cruxeval.gold_completion("lcb-e", it) for it in items[::-1]],
                                    sandbox)
    assert [s["verdict"] for s in wrong] == [False, False]
    assert data.azr_lcb_program("def g(x):\n    return g(x - 1) if x else 0", "g") == \
        "def f(x):\n    return g(x - 1) if x else 0"   # as AZR: recursion through the old name then fails


def test_code_time_budget_per_run(monkeypatch):
    """EvalPlus runs the base and the plus inputs as two checks, each within min(60 s, sum of its inputs' limits)
    + 1 s (not 60 s for both together). Reference: 2 s per input -> 16 s limits; 6 base + 6 plus inputs."""
    item = {"id": "T/0", "entry_point": "g", "inputs": [(1,)] * 12, "n_base": 6, "atol": 0.0, "prompt": "",
            "canonical_solution": ""}
    ref = ("ok", "1", "int", 2.0)
    monkeypatch.setattr(codeeval, "reference_outputs", lambda b, items, runner: {"T/0": {
        "ok": True, "time": [2.0] * 12, "overhead": [0.0] * 12,
        "expected": [codeeval.expected_value("humaneval+", "g", ref)] * 12}})

    class Runner:  # each candidate takes `seconds` per input
        def __init__(self, seconds):
            self.seconds = seconds

        def run(self, jobs):
            return [[("ok", "1", "int", self.seconds)] * 12 for _ in jobs]
    code = ["```python\ndef g(x):\n    return 1\n```"]
    assert codeeval.score_code("humaneval+", [item], code, Runner(9.5), False)[0]["verdict"]  # 57 + 57 s: in time
    late = codeeval.score_code("humaneval+", [item], code, Runner(11.0), False)[0]  # 66 s > 61 s in the base run
    assert not late["verdict"] and "over the time limit" in late["detail"]


# HumanEval/32 exercises the find_zero oracle, Mbpp/2 the set oracle and tuple inputs.
@pytest.mark.parametrize("name, ids", [("humaneval+", ["HumanEval/0", "HumanEval/32", "HumanEval/53"]),
                                            ("mbpp+", ["Mbpp/2", "Mbpp/3", "Mbpp/4"])])
def test_code_gold_passes_wrong_fails(name, ids, data_dir, code_runner):
    benchmark = name
    items = [it for it in data.load_benchmark(benchmark, data_dir) if it["id"] in ids]
    expect = [True] * len(items)
    if benchmark == "humaneval+" and sys.version_info >= (3, 12):
        # From Python 3.12 sum() of floats is compensated: the reference's Newton steps (through the task's `poly`)
        # and the |poly(x)| <= 1e-4 check (EvalPlus's, also a sum) come out otherwise, and 7 of HumanEval/32's plus
        # inputs fail, as in EvalPlus itself on 3.12 (README, Evaluation)
        expect[1] = False
    for prefilled in (True, False):
        gold = codeeval.score_code(benchmark, items, [codeeval.gold_completion(benchmark, it, prefilled)
                                                      for it in items], code_runner, prefilled)
        assert [s["verdict"] for s in gold] == expect, [s["detail"] for s in gold]
    # wrong: off by one on the last input only (base passes, plus fails) / a crash / no code at all
    first = items[0]
    last = codeeval.py_source(list(first["inputs"][-1]))
    tweak = (f"```python\n{first['prompt']}{first['canonical_solution']}\n_real = {first['entry_point']}\n"
             f"def {first['entry_point']}(*a):\n    return None if list(a) == {last} else _real(*a)\n```")
    crash = f"```python\ndef {first['entry_point']}(*a):\n    return 1 // 0\n```"
    wrong = codeeval.score_code(benchmark, [first] * 3, [tweak, crash, "I cannot solve this."], code_runner, False)
    assert [s["verdict"] for s in wrong] == [False, False, False]
    assert wrong[0]["base"] is True and "wrong output" in wrong[0]["detail"]
    assert wrong[1]["base"] is False and "ZeroDivisionError" in wrong[1]["detail"]
    # a bare function body is no solution, prefilled or not (EvalPlus never prepends the task to a chat answer)
    body = first["canonical_solution"]  # HumanEval's is the body under the prompt's signature (MBPP's is a def)
    if benchmark != "humaneval+":
        return
    for prefilled, text in ((True, body + "\n```"), (False, f"```python\n{body}\n```")):
        assert [s["verdict"] for s in codeeval.score_code(benchmark, [first], [text], code_runner, prefilled)] \
            == [False]
    # candidates may import numpy, as in EvalPlus's process (an evalplus dependency)
    numpy = f"```python\nimport numpy as np\n{first['prompt']}{first['canonical_solution']}\n```"
    assert codeeval.score_code(benchmark, [first], [numpy], code_runner, False)[0]["verdict"]


def test_gold_completions_of_cruxeval_and_code_pass(data_dir, sandbox, code_runner):
    """--check-gold's completions for CRUXEval and the code benchmarks (prefilled or not) score as correct
    (test_eval_lcb checks LiveCodeBench's, and test_math_gold_passes_wrong_fails the math ones)."""
    for benchmark, prefilled, task in (("cruxeval-i", False, None), ("cruxeval-o", False, None),
                                       ("humaneval+", True, "HumanEval/0"), ("mbpp+", False, "Mbpp/2")):
        items = [it for it in data.load_benchmark(benchmark, data_dir, None if task else 2) if task in (None, it["id"])]
        scored = score(benchmark, items, gold_completions(benchmark, items, prefilled), sandbox, code_runner, prefilled)
        assert len(items) in (1, 2) and all(s["verdict"] for s in scored), (benchmark, scored)


def test_check_gold_cli_without_lcb(data_dir, capsys):
    """`python -m eval --check-gold` on benchmarks that need no LiveCodeBench sandbox (none is made, none closed)."""
    assert main(["--check-gold", "--benchmarks", "aime24", "--limit", "1", "--sandbox-workers", "1",
                 "--data-dir", str(data_dir)]) == 0
    assert "aime24: 1/1 (100.0%)" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------------------------
# End to end with the tiny model

@pytest.fixture
def torch_path_one_thread(monkeypatch):
    monkeypatch.setenv("NANOAZR_KERNELS", "torch")  # the engine's sampler, not the Triton interpreter
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_end_to_end_tiny_model(tiny_ckpt, data_dir, tmp_path, code_runner, torch_path_one_thread):
    out = tmp_path / "run"
    results = run_eval(str(tiny_ckpt), data.DEFAULT_BENCHMARKS, data_dir, out, limit=2, max_new_tokens=12,
                       sandbox_workers=1, progress=False)
    assert set(results) == set(data.DEFAULT_BENCHMARKS)
    assert all(r["n"] == 2 and 0.0 <= r["pass@1"] <= 1.0 for r in results.values())
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 2 * len(data.DEFAULT_BENCHMARKS)
    assert all({"benchmark", "id", "prompt", "completion", "extracted", "verdict"} <= set(r) for r in records)
    summary = json.loads((out / "results.json").read_text())
    assert summary["template"] == "qwen-boxed" and set(summary["aggregates"]) == {"CAvg", "MAvg", "AVG"}
    assert summary["aggregates"]["CAvg"]["benchmarks"] == 2 and summary["aggregates"]["CAvg"]["of"] == 3  # no lcb
    assert "| cruxeval-o | 2 |" in (out / "results.md").read_text()

    # sampling: 3 samples per problem at temperature 1 -> pass@1 and pass@2 reported
    sampled = run_eval(str(tiny_ckpt), ["aime24"], data_dir, tmp_path / "sampled", template="azr", limit=2,
                       samples=3, temperature=1.0, max_new_tokens=8, progress=False)
    assert set(sampled["aime24"]) == {"pass@1", "pass@2", "pass@3", "n"}
    lines = (tmp_path / "sampled" / "samples.jsonl").read_text().splitlines()
    # problem by problem, each problem's samples in order (mutation round 7: sorting the gathered records by sample
    # first interleaved the problems, and `sorted(...)` here hid it; the torchrun test draws one sample)
    assert [json.loads(x)["sample"] for x in lines] == [0, 1, 2, 0, 1, 2]


def test_torchrun_splits_the_problems_and_writes_what_one_process_does(tiny_ckpt, data_dir, tmp_path):
    """`torchrun -m eval`: each rank decodes and scores its share (problems r, r + world, ...), rank 0 gathers, and
    the files are those of one process, records in problem order (3 problems on 2 ranks: an uneven split)."""
    env = {**os.environ, "NANOAZR_KERNELS": "torch", "OMP_NUM_THREADS": "1", "NANOAZR_DATA": str(data_dir)}
    flags = ["-m", "eval", f"--model={tiny_ckpt}", "--benchmarks=cruxeval-o,aime24", "--limit=3",
             "--max-new-tokens=6", "--sandbox-workers=1", "--no-progress", "--device=cpu"]
    repo = Path(__file__).resolve().parent.parent
    for n in (1, 2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"] if n > 1 \
            else [sys.executable]
        proc = subprocess.run(cmd + flags + [f"--out={tmp_path / str(n)}"], env=env, capture_output=True, text=True,
                              timeout=240, cwd=repo)
        assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("samples.jsonl", "results.md"):
        assert (tmp_path / "2" / name).read_text() == (tmp_path / "1" / name).read_text(), name
    one, two = (json.loads((tmp_path / str(n) / "results.json").read_text()) for n in (1, 2))
    assert two["results"] == one["results"] and [r["n"] for r in one["results"].values()] == [3, 3]
    ids = [json.loads(line)["id"] for line in (tmp_path / "1" / "samples.jsonl").read_text().splitlines()]
    assert ids[:3] == [it["id"] for it in data.load_benchmark("cruxeval-o", data_dir, 3)]


def test_evaluate_cruxeval_for_the_training_loop(tiny_ckpt, data_dir, sandbox, torch_path_one_thread):
    from model import Qwen2, load_tokenizer
    model = Qwen2.from_pretrained(str(tiny_ckpt))
    acc = cruxeval.evaluate_cruxeval(model, load_tokenizer(str(tiny_ckpt)), sandbox, data_dir, limit=2,
                                     max_new_tokens=8)
    assert set(acc) == {"cruxeval-i", "cruxeval-o"} and all(0.0 <= v <= 1.0 for v in acc.values())
    # the engine's static (CUDA-graph) decode step, eager on the CPU: the same greedy completions, the same scores
    assert cruxeval.evaluate_cruxeval(model, load_tokenizer(str(tiny_ckpt)), sandbox, data_dir, limit=2,
                                      max_new_tokens=8, cuda_graphs=True) == acc


def test_evaluate_cruxeval_decodes_greedily_and_scores_gold(data_dir, sandbox, monkeypatch):
    """In-loop CRUXEval: greedy decoding (temperature 0) of the R1-wrapped solver prompts; gold answers score 1."""
    import eval.generation
    calls = []

    def fake_complete(model, tokenizer, texts, max_new_tokens, temperature=None, **kwargs):
        calls.append((texts, temperature))
        bench = "cruxeval-i" if len(calls) == 1 else "cruxeval-o"
        items = data.load_benchmark(bench, data_dir, 2)
        assert texts == [cruxeval.cruxeval_prompt(bench, it) for it in items]
        return [cruxeval.gold_completion(bench, it) for it in items]
    monkeypatch.setattr(eval.generation, "complete", fake_complete)
    acc = cruxeval.evaluate_cruxeval(None, None, sandbox, data_dir, limit=2, max_new_tokens=8)
    assert acc == {"cruxeval-i": 1.0, "cruxeval-o": 1.0}
    assert [t for _, t in calls] == [0.0, 0.0]


def test_math_file_with_a_problem_field(tmp_path):
    """Hub copies name the problem field "problem" where the local file says "question" (OlympiadBench)."""
    (tmp_path / "olympiadbench").mkdir()
    (tmp_path / "olympiadbench" / "test.jsonl").write_text(
        json.dumps({"id": 7, "problem": "What is 1+2?", "final_answer": ["$3$"]}) + "\n")
    items = data.load_benchmark("olympiadbench", tmp_path)
    assert items == [{"id": "7", "problem": "What is 1+2?", "answer": "3"}]


def test_read_jsonl_skips_blank_lines(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n  \n{"a": 2}\n\n')
    assert data.read_jsonl(path) == [{"a": 1}, {"a": 2}]


def test_read_json_lists_and_empty_files(tmp_path):
    """A .json file is one JSON list of records; anything else, and a file without records, is a one-line error."""
    path = tmp_path / "x.json"
    path.write_text('[{"a": 1}, {"a": 2}]')
    assert data.read_jsonl(path) == [{"a": 1}, {"a": 2}]
    for text, words in (('[{"a": 1},', r"x.json: not valid JSON \(.*\); re-download the file"),
                        ('{"a": 1}', "x.json: expected a JSON list of records"), ("[]", "x.json: no records")):
        path.write_text(text)
        with pytest.raises(data.DataError, match=words):
            data.read_jsonl(path)
    (tmp_path / "blank.jsonl").write_text("\n \n")
    with pytest.raises(data.DataError, match="blank.jsonl: no records"):
        data.read_jsonl(tmp_path / "blank.jsonl")


def test_parquet_files_and_malformed_records(tmp_path, monkeypatch):
    """Parquet copies need pyarrow (one line without it); LiveCodeBench-Execution's whole call is cut to its
    arguments (other text is kept as is); a record of the wrong shape is a one-line DataError naming the benchmark."""
    import sys
    import types
    path = tmp_path / "lcbe.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(data.DataError, match=r"lcbe.parquet: parquet file needs pyarrow \(pip install pyarrow\)"):
        data.load_benchmark("lcb-e", lcb_file=path)
    rows = [{"id": 1, "code": "def g(a):\n    return a", "input": "g(a = 3)", "output": "3", "function_name": "g"},
            {"id": 2, "code": "def g(a):\n    return a", "input": "a = 4", "output": "4", "function_name": "g"}]
    table = types.SimpleNamespace(to_pylist=lambda: rows)
    parquet = types.SimpleNamespace(read_table=lambda p: table if Path(p) == path else None)
    monkeypatch.setitem(sys.modules, "pyarrow", types.SimpleNamespace(parquet=parquet))
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", parquet)
    items = data.load_benchmark("lcb-e", lcb_file=path)
    assert [(it["id"], it["code"], it["input"]) for it in items] == [("1", "def f(a):\n    return a", "a = 3"),
                                                                     ("2", "def f(a):\n    return a", "a = 4")]
    rows[1] = {"id": 3, "code": "x", "input": "no call here", "output": "1"}  # no function_name, and no call
    with pytest.raises(data.DataError, match=r"lcbe.parquet: malformed record for lcb-e \(AttributeError"):
        data.load_benchmark("lcb-e", lcb_file=path)
    with pytest.raises(data.DataError, match="unknown benchmark 'aime'; choose from cruxeval-i,"):
        data.raw_records("aime", tmp_path)


def test_code_inputs_stored_as_json_text(tmp_path):
    """Hub parquet copies of HumanEval+/MBPP+ store base_input/plus_input as JSON text; anything but a list (once
    parsed) is a one-line error."""
    record = {"task_id": "HumanEval/0", "prompt": "def g(x):\n", "entry_point": "g",
              "canonical_solution": "    return x\n", "base_input": "[[1], [2]]", "plus_input": [[3]], "atol": 0}
    (tmp_path / "humanevalplus").mkdir()
    path = tmp_path / "humanevalplus" / "HumanEvalPlus.jsonl.gz"
    import gzip
    path.write_bytes(gzip.compress((json.dumps(record) + "\n").encode()))
    (item,) = data.load_benchmark("humaneval+", tmp_path)
    assert item["inputs"] == [[1], [2], [3]] and item["n_base"] == 2
    path.write_bytes(gzip.compress((json.dumps({**record, "plus_input": "7"}) + "\n").encode()))
    with pytest.raises(data.DataError, match="HumanEval/0 plus_input is a int, expected a list"):
        data.load_benchmark("humaneval+", tmp_path)


def test_math_extraction_and_gold_details():
    """The last <answer> tag wins; a trailing period is not part of a text answer; OlympiadBench's reference is the
    first element of final_answer."""
    assert mathscore.extract_answer("<answer>1</answer> hmm, no: <answer>2</answer>") == "2"
    assert mathscore.math_equal("\\text{Monday}", "Monday.")
    assert mathscore.gold_answer("olympiadbench", {"final_answer": ["$3$", "$4$"]}) == "3"
    assert mathscore.last_boxed("so \\boxed{4}, or is it \\boxed") == "4"  # a bare last \\boxed: the box before
    assert not mathscore.math_equal("3", "\\$")  # nothing left to parse once the currency sign goes
    assert mathscore.math_equal("\\(\\frac{1}{2}\\)", "0.5")  # already delimited: parsed as it is
    with pytest.raises(ValueError, match="no \\\\boxed{} in the 'solution' field"):
        mathscore.gold_answer("math500", {"solution": "The answer is 3."})


def test_math_verify_errors_are_not_a_match(monkeypatch):
    """math-verify raising (on pathological input) while parsing or comparing means "not equal", never a crash."""
    def boom(*a, **k):
        raise RuntimeError("math-verify failed")
    assert mathscore.math_equal("1/2", "0.5")
    monkeypatch.setattr(mathscore, "verify", boom)
    assert not mathscore.math_equal("1/2", "0.5")
    monkeypatch.setattr(mathscore, "parse", boom)
    assert mathscore._parse("1/2") == [] and not mathscore.math_equal("1/2", "0.5")
    assert mathscore.math_equal("\\frac{1}{2}", "\\dfrac{1}{2}")  # the string fallback still matches


def test_hub_download_prefers_the_test_split(tmp_path, monkeypatch):
    """Without a local file, the hub repo's test-split jsonl is read (not train, not the README)."""
    import huggingface_hub
    got = []
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda repo, repo_type=None: [
        "README.md", "data/train.jsonl", "data/test.jsonl", "data/test.parquet", "data/validation.json"])

    def download(repo, filename, repo_type=None):
        got.append((repo, filename))
        path = tmp_path / "dl.jsonl"
        path.write_text(json.dumps({"problem": "1+1?", "answer": 2}) + "\n")
        return str(path)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    items = data.load_benchmark("aime24", tmp_path)  # an existing folder without aime24/test.jsonl
    assert got == [("HuggingFaceH4/aime_2024", "data/test.jsonl")] and items[0]["answer"] == "2"
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda repo, repo_type=None: ["README.md", "x.py"])
    with pytest.raises(data.DataError, match="aime24: hub repo HuggingFaceH4/aime_2024 has no jsonl/json/parquet file"):
        data.load_benchmark("aime24", tmp_path)


def test_lcb_from_the_hub(tmp_path, monkeypatch):
    """Without --lcb-gen-file, lcb reads every release_v5 file from the hub, in order."""
    import huggingface_hub
    from eval import lcb
    tests = json.dumps([{"input": "1\n", "output": "1\n", "testtype": "stdin"}])
    record = {"question_content": "q", "starter_code": "", "public_test_cases": tests, "private_test_cases": "[]",
              "metadata": "{}"}
    got = []

    def download(repo, filename, repo_type=None):
        got.append((repo, filename, repo_type))
        path = tmp_path / filename
        path.write_text(json.dumps({**record, "question_id": filename}) + "\n")
        return str(path)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    records, where = data.raw_records("lcb")
    assert got == [(lcb.HUB_REPO, f, "dataset") for f in lcb.RELEASE_V5_FILES]
    assert [r["question_id"] for r in records] == lcb.RELEASE_V5_FILES and where == f"{lcb.HUB_REPO} release_v5 (hub)"


def test_default_template_knows_a_training_checkpoint_by_its_files(tmp_path):
    # an azr.py checkpoint under an --out whose path does not say "azr" is still evaluated on the R1 template
    ckpt = tmp_path / "run1" / "ckpt" / "step_000500"
    ckpt.mkdir(parents=True)
    assert "azr" not in str(ckpt).lower()
    (ckpt / "config.json").write_text("{}")
    assert templates.default_template(str(ckpt)) == "qwen-boxed"  # a plain HF folder: a base model
    (ckpt / "state.json").write_text("{}")
    (ckpt / "buffers.json").write_text("{}")
    assert templates.default_template(str(ckpt)) == "azr"
    assert templates.default_template("Qwen/Qwen2.5-7B") == "qwen-boxed"
    # base weights kept inside a clone named nanoAZR are still a base model
    assert templates.default_template("/home/me/nanoAZR/models/Qwen2.5-7B") == "qwen-boxed"
    assert templates.default_template("out/azr-7b/ckpt/step_000500") == "azr"


def test_default_template_only_coder_7b_is_boxed():
    assert templates.default_template("andrewzh/Absolute_Zero_Reasoner-Coder-3b") == "azr"
    assert templates.default_template("andrewzh/Absolute_Zero_Reasoner-Coder-7b") == "azr_boxed"
    assert templates.default_template("Qwen/Qwen2.5-Coder-7B") == "qwen-boxed"


def test_stop_ids_include_the_chat_end_of_turn():
    """Generation stops at EOS and at <|endoftext|> / <|im_end|> when the vocabulary has them."""
    from eval.generation import stop_ids

    class Tok:
        eos_token_id = 3

        def get_vocab(self):
            return {"<|endoftext|>": 5, "<|im_end|>": 6, "a": 1}
    assert stop_ids(Tok()) == [3, 5, 6]


def test_complete_fits_the_context_and_regroups_samples(monkeypatch):
    """complete(): max_new_tokens is lowered to fit the LONGEST prompt in the context; with samples > 1 each
    prompt's completions come back together, in order; special tokens are kept in the decoded text."""
    import types

    import eval.generation as gen
    seen = {}

    def fake_generate(model, flat, max_new_tokens, **kwargs):
        seen["max_new_tokens"], seen["flat"] = max_new_tokens, flat
        return [[i] for i in range(len(flat))]

    class Tok:
        eos_token_id = None

        def encode(self, text, add_special_tokens=False):
            return [1] * len(text)

        def decode(self, ids, skip_special_tokens=True):
            seen["skip"] = skip_special_tokens
            return f"c{ids[0]}"

        def get_vocab(self):
            return {}
    monkeypatch.setattr(gen, "generate", fake_generate)
    model = types.SimpleNamespace(config=types.SimpleNamespace(max_position_embeddings=20))
    out = gen.complete(model, Tok(), ["aaaaa", "bbbbbbbbbbbb"], 100, samples=2)
    assert seen["max_new_tokens"] == 8 and seen["skip"] is False
    assert seen["flat"] == [[1] * 5, [1] * 5, [1] * 12, [1] * 12]
    assert out == [["c0", "c1"], ["c2", "c3"]]
    assert gen.complete(model, Tok(), [], 100) == []
    with pytest.raises(ValueError, match="a prompt of 20 tokens does not fit the model's context of 20 tokens"):
        gen.complete(model, Tok(), ["a" * 20, "b"], 5)


def test_container_fingerprint_is_the_crc_of_every_items_repr():
    """The driver fingerprints a big container 4,096 items per crc32 call (item by item, Mbpp/255's reference took
    27 s of CPU and timed out): the same CRC as item by item, across batch boundaries, after subclasses and numpy
    values become plain; any one item changed anywhere changes it."""
    import collections
    import zlib
    import numpy as np
    ns = {}
    exec(codeeval.DRIVER.replace("ENTRY", "None"), ns)
    P = collections.namedtuple("P", "x y")
    out = [(i, str(i), [i * 0.5]) for i in range(9000)] + [P(1, 2), np.int64(7), (True, P(3, "a"))] * 10

    def naive(items):
        crc = 0
        for item in items:
            crc = zlib.crc32((repr(ns["_nanoazr_plain"](item)) + ",").encode(), crc)
        return crc
    plain = [(i, str(i), [i * 0.5]) for i in range(9000)] + [(1, 2), 7, (True, (3, "a"))] * 10
    assert ns["_nanoazr_encode"](out) == (f"list:9030:{naive(plain)}", "container-fingerprint")
    assert ns["_nanoazr_encode"](tuple(out))[0] == f"tuple:9030:{naive(plain)}"
    d = {i: (i, P(i, i)) for i in range(5000)}
    assert ns["_nanoazr_encode"](d)[0] == f"dict:5000:{naive([(i, (i, (i, i))) for i in range(5000)])}"
    for k in (0, 4095, 4096, 9029):
        changed = list(out)
        changed[k] = (-1,)
        assert ns["_nanoazr_encode"](changed) != ns["_nanoazr_encode"](out)


def test_driver_reports_its_own_time_apart_from_the_inputs(monkeypatch):
    """Each record carries the input's time (the entry point alone, what the per-input limit judges) and the driver's
    own time on it (deep copy of the arguments, encoding of the output), on a clock each step advances by its own
    amount."""
    import types
    clock = [0.0]
    fake_time = types.SimpleNamespace(perf_counter=lambda: clock[0])

    def step(seconds, value):
        clock[0] += seconds
        return value
    monkeypatch.setitem(sys.modules, "time", fake_time)
    monkeypatch.setitem(sys.modules, "copy", types.SimpleNamespace(deepcopy=lambda a: step(100.0, a)))
    ns = {"g": lambda x: step(1.0, 1 // x)}   # 1 s in the entry point (none when it raises)
    exec(codeeval.DRIVER.replace("ENTRY", "g"), ns)
    encode = ns["_nanoazr_encode"]
    ns["_nanoazr_encode"] = lambda out: step(10.0, encode(out))
    assert ns["f"]([(1,), (0,), (2,)], 1e9) == [("ok", "1", "int", 1.0, 110.0), ("error", "ZeroDivisionError", "",
                                                                                 0.0, 100.0)]


def test_call_limit_covers_the_references_driver_time(monkeypatch):
    """The sandbox call's CPU limit (a backstop) leaves the verdict to the per-input limits even where the driver's
    own work on an input outweighs the input's time (Mbpp/255: 0.8 s in the function, ~12 s encoding its 1.7M
    tuples; the 10 s tier's 26 s left its reference a 2x margin): twice the budget, one input at its limit and the
    reference's largest overhead. A fraction of a second of overhead keeps the tier."""
    item = {"id": "T/4", "entry_point": "g", "inputs": [(1,), (2,)], "n_base": 1, "atol": 0.0, "prompt": "",
            "canonical_solution": ""}
    exp = codeeval.expected_value("mbpp+", "g", ("ok", "1", "int", 0.1, 0.0))
    monkeypatch.setattr(codeeval, "reference_outputs", lambda b, items, runner: {"T/4": {
        "ok": True, "time": [0.1, 0.8], "overhead": [0.0, 12.5], "expected": [exp] * 2}})
    jobs = []

    class Runner:
        def run(self, batch):
            jobs.extend(batch)
            return [[("ok", "1", "int", 0.1, 0.0), ("ok", "1", "int", 0.8, 12.5)] for _ in batch]
    assert codeeval.score_code("mbpp+", [item], ["```python\ndef g(x):\n    return 1\n```"], Runner(), False)[0][
        "verdict"]
    assert codeeval.call_limit(*jobs[0][3:]) >= 2 * (codeeval.CALL_BUDGET_S + codeeval.MIN_TIME_LIMIT_S + 12.5)
    assert codeeval.call_limit(10.0, 0.9) == codeeval.call_limit(10.0, 0.0) >= 2 * (codeeval.CALL_BUDGET_S + 10.9)


def test_reference_cache_follows_the_driver(tmp_path, monkeypatch):
    """Cached reference outputs are keyed by the driver that encoded them too: a cache from another version of the
    encoding would fail every candidate."""
    monkeypatch.setattr(codeeval, "CACHE_DIR", tmp_path)
    item = {"id": "T/3", "entry_point": "g", "inputs": [(1,)], "n_base": 1, "atol": 0.0, "prompt": "",
            "canonical_solution": "def g(x):\n    return 1\n"}
    calls = []

    class Runner:
        def run(self, jobs):
            calls.append(len(jobs))
            return [[("ok", "1", "int", 0.1, 0.0)] for _ in jobs]
    for _ in range(2):
        assert codeeval.reference_outputs("humaneval+", [item], Runner())["T/3"]["ok"]
    assert calls == [1]   # the second came from the cache
    monkeypatch.setattr(codeeval, "DRIVER", codeeval.DRIVER + "\n")
    codeeval.reference_outputs("humaneval+", [item], Runner())
    assert calls == [1, 1] and len(list(tmp_path.iterdir())) == 2


def test_reference_runs_and_failures(tmp_path, monkeypatch):
    """A reference whose only non-ok inputs are too big to send ("excluded") is usable and cached; one that fails
    in the sandbox is not cached and fails every candidate with that reason."""
    monkeypatch.setattr(codeeval, "CACHE_DIR", tmp_path)
    item = {"id": "T/2", "entry_point": "g", "inputs": [(1,), (2,)], "n_base": 1, "atol": 0.0, "prompt": "",
            "canonical_solution": "def g(x):\n    return 1\n"}

    class Runner:
        def __init__(self, records):
            self.records = records

        def run(self, jobs):
            return [list(self.records) for _ in jobs]
    refs = codeeval.reference_outputs("humaneval+", [item], Runner([("ok", "1", "int", 0.1, 0.0),
                                                                    ("excluded", "big", "", 0.0, 0.0)]))
    assert refs["T/2"]["ok"] and len(list(tmp_path.iterdir())) == 1
    for f in tmp_path.iterdir():
        f.unlink()
    failing = Runner([("ok", "1", "int", 0.1, 0.0), ("timeout", "wall", "", 60.0, 0.0)])
    assert not codeeval.reference_outputs("humaneval+", [item], failing)["T/2"]["ok"] and not list(tmp_path.iterdir())
    out = codeeval.score_code("humaneval+", [item], ["```python\ndef g(x):\n    return 1\n```"], failing, False)[0]
    assert not out["verdict"] and out["detail"] == "reference solution failed in the sandbox"


def test_boxed_without_braces():
    assert mathscore.extract_answer("so the result is \\boxed 5 and not 7") == "5"  # no braces, as the harness accepts


def test_sanitize_follows_every_name_an_assignment_binds():
    """A tuple, starred or annotated assignment defines each name it binds, so the entry point reaches it."""
    code = ("LO, (HI, *REST) = 1, (5, 6)\nW: int = 2\nX = 9\ndef g(v):\n    return min(max(v, LO), HI) * W + len(REST)\n"
            "print(g(3))\n")
    assert codeeval.sanitize(code, "g") == ("LO, (HI, *REST) = 1, (5, 6)\nW: int = 2\n"
                                            "def g(v):\n    return min(max(v, LO), HI) * W + len(REST)\n")


def test_empty_olympiadbench_gold_is_a_data_error():
    """An OlympiadBench final answer with nothing but `$` signs and spaces is a data error, never the gold ""."""
    for raw in ("", "$ $", "$$"):
        with pytest.raises(ValueError, match="empty"):
            mathscore.gold_answer("olympiadbench", {"final_answer": [raw]})


def test_lcb_execution_programs_get_azrs_import_lines(sandbox):
    """AZR's add_imports as ported: each line goes in front of the program when its trigger text occurs (here
    `comb(`, `inf)`, `gcd`), in the table's order, and a `from typing import List` lowered with List stays valid;
    the prepared program runs."""
    code = "from typing import List\ndef g(a: List[int]) -> int:\n    return comb(5, 2) + gcd(4, 6) + min(a, default=inf)"
    prepared = data.azr_lcb_program(code, "g")
    assert prepared == ("from math import comb\nfrom math import inf\nfrom math import gcd\nfrom typing import List\n"
                        "def f(a: list[int]) -> int:\n    return comb(5, 2) + gcd(4, 6) + min(a, default=inf)")
    assert cruxeval.score_cruxeval("lcb-e", [{"id": "c", "code": prepared, "input": "[20]", "output": "32"}],
                                   ["</think> <answer>\n```input\n[20]\n```\n</answer>"], sandbox)[0]["verdict"]


def test_math_problems_are_stripped_in_the_prompt():
    """As simpleRL's evaluation builds math prompts: the problem text is stripped first."""
    from eval.__main__ import build_prompts
    for template in templates.TEMPLATES:
        padded = build_prompts("math500", [{"problem": "\n  What is 1 + 1? \n"}], template)
        assert padded == build_prompts("math500", [{"problem": "What is 1 + 1?"}], template), template
