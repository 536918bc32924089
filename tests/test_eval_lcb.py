"""LiveCodeBench code generation (eval/lcb.py) and the sandbox's script mode it runs on: gold solutions pass and
wrong ones fail on a made-up 3-problem file (stdin, functional, float output), script-mode confinement and output
caps, --check-gold through the CLI, and one-line errors for missing or malformed files."""
import ast
import base64
import json
import pickle
import re
import zlib

import pytest

from eval import data, lcb, report
from eval.__main__ import build_prompts, gold_completions, main, score
from sandbox import CAPTURE_KEEP, Sandbox


def _compressed(tests):  # the official release's private-test encoding: base64(zlib(pickle(json text)))
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def _tests(pairs, kind):
    return [{"input": i, "output": o, "testtype": kind} for i, o in pairs]


STDIN_GOLD = "import sys\nfor line in sys.stdin.read().split('\\n'):\n    if line.strip():\n" \
             "        a, b = map(int, line.split())\n        print(a + b)\n"
FUNC_GOLD = "class Solution:\n    def addAll(self, nums: List[int], k: int) -> List[int]:\n" \
            "        print('debug output is ignored')\n        return [x + k for x in nums]\n"
FLOAT_GOLD = "n = int(input())\nprint(n / 2, '  ')\nprint()\n"   # 1.5 vs expected 1.50; trailing blanks

RECORDS = [
    {"question_title": "sum", "question_content": "Print a+b for each line.", "platform": "atcoder",
     "question_id": "p1", "contest_id": "c1", "contest_date": "2024-01-01T00:00:00", "starter_code": "",
     "difficulty": "easy", "public_test_cases": json.dumps(_tests([("1 2\n", "3\n")], "stdin")),
     "private_test_cases": _compressed(_tests([("5 5\n10 -3\n", "10\n7\n")], "stdin")),
     "metadata": "{}", "solution": STDIN_GOLD},
    {"question_title": "add all", "question_content": "Add k to every element.", "platform": "leetcode",
     "question_id": "p2", "contest_id": "c2", "contest_date": "2024-02-01T00:00:00",
     "starter_code": "class Solution:\n    def addAll(self, nums: List[int], k: int) -> List[int]:\n        ",
     "difficulty": "easy", "public_test_cases": json.dumps(_tests([("[1, 2]\n3", "[4, 5]")], "functional")),
     "private_test_cases": json.dumps(_tests([("[]\n1", "[]"), ("[-1]\n1", "[0]")], "functional")),
     "metadata": json.dumps({"func_name": "addAll"}), "solution": FUNC_GOLD},
    {"question_title": "half", "question_content": "Print n/2.", "platform": "codeforces", "question_id": "p3",
     "contest_id": "c3", "contest_date": "2024-03-01T00:00:00", "starter_code": "", "difficulty": "easy",
     "public_test_cases": json.dumps(_tests([("3\n", "1.50\n")], "stdin")),
     "private_test_cases": json.dumps(_tests([("8\n", "4.0")], "stdin")), "metadata": "{}",
     "solution": FLOAT_GOLD},
]
WRONG = ["import sys\nfor line in sys.stdin:\n    a, b = map(int, line.split())\n    print(a - b)\n",
         "class Solution:\n    def addAll(self, nums, k):\n        return nums\n",
         "n = int(input())\nprint(n / 2 + 0.01)\n"]


@pytest.fixture
def lcb_file(tmp_path):
    path = tmp_path / "lcb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return path


@pytest.fixture(scope="module")
def lcb_box():
    with lcb.lcb_sandbox(workers=2) as sb:
        yield sb


def _completion(code):
    return lcb.gold_completion(None, code)


def test_items_and_prompt(lcb_file):
    items = data.load_benchmark("lcb", lcb_gen_file=lcb_file)
    assert [it["kind"] for it in items] == ["stdin", "functional", "stdin"]
    assert items[0]["tests"][1] == {"input": "5 5\n10 -3\n", "output": "10\n7\n"}   # decompressed private test
    assert items[1]["func_name"] == "addAll" and len(items[1]["tests"]) == 3
    p = lcb.lcb_prompt(items[1])
    assert p.endswith("```\n\nAssistant: <think>") and "def addAll" in p and "\n\nQuestion: Add k" in p
    assert "Read the inputs from stdin" in lcb.lcb_prompt(items[0])
    for template in ("azr", "qwen-boxed"):  # LCB always gets AZR's own prompt, whatever the model's template
        assert build_prompts("lcb", items, template) == ([lcb.lcb_prompt(it) for it in items], False)


def test_gold_passes_wrong_fails(lcb_file, lcb_box):
    items = data.load_benchmark("lcb", lcb_gen_file=lcb_file)
    gold = score("lcb", items, [_completion(it["solution"]) for it in items], None, None, False, lcb_box)
    assert [s["verdict"] for s in gold] == [True, True, True], [s["detail"] for s in gold]
    wrong = score("lcb", items, [_completion(w) for w in WRONG], None, None, False, lcb_box)
    assert [s["verdict"] for s in wrong] == [False, False, False]
    assert all(s["detail"].startswith("test 0: wrong output") for s in wrong)
    # a program that crashes, loops past nothing, or prints the right answer only on the public test fails
    sneaky = "x = input()\nprint(3 if x.strip() == '1 2' else 0)\n"
    bad = score("lcb", items[:1] * 2, [_completion("raise ValueError('no')"), _completion(sneaky)], None, None,
                False, lcb_box)
    assert bad[0]["detail"].startswith("test 0: exception: ValueError") and bad[1]["detail"].startswith("test 1")


def test_stdout_comparison_follows_lcb():
    assert lcb.stdout_ok("3 \n\n", 4, "", "3")                 # stripped lines
    assert lcb.stdout_ok("0.5 2\n", 6, "", "0.50 2.0")         # Decimal equality per token
    assert not lcb.stdout_ok("0.5\n", 4, "", "0.51")
    assert not lcb.stdout_ok("1\n2\n", 4, "", "1 2")           # line structure matters
    assert not lcb.stdout_ok("3\n4\n", 4, "", "3") and not lcb.stdout_ok("3\n", 2, "", "3\n4")  # extra/missing lines
    assert not lcb.stdout_ok("abc\n", 4, "", "abd") and not lcb.stdout_ok("1 x\n", 4, "", "1.0 x")  # not numbers
    assert lcb.functional_ok("[1, 2]\n", 7, "", "[1,2]") and not lcb.functional_ok("[1, 2]", 6, "", "[2, 1]")
    assert lcb.functional_ok("2\n", 2, "", "2.0") and lcb.functional_ok("true\n", 5, "", "1")  # Python ==, as LCB
    assert not lcb.functional_ok("unequal\n", 8, "", "[]")


def test_script_mode_confinement_and_caps():
    with Sandbox(workers=1, cpu_s=5, wall_s=5) as sb:
        ok = sb.run("import sys\nprint(input()[::-1])\nprint(sys.stdin.read().upper(), end='')", "", stdin="abc\nxy")
        assert ok.status == "ok" and ok.value.startswith("('cba\\nXY', 6, ")
        # printing to the real stdout escapes nothing: it is captured like any output and not part of the value
        esc = sb.run("import sys\nsys.stdout = sys.__stdout__\nprint('hi')", "", stdin="")
        assert esc.status == "ok" and esc.value.startswith("('', 0, ") and esc.stdout == "hi\n"
        assert sb.run("print(open('/etc/hostname').read())", "", stdin="").status == "forbidden"
        assert sb.run("import os\nos.fork()", "", stdin="").status == "forbidden"
        assert sb.run("import socket\nsocket.socket()", "", stdin="").status == "forbidden"
        assert sb.run("while True:\n    pass", "", stdin="").status == "timeout"
        # floods: into the capture (ends as output_limit even if the program swallows the error) and the real pipe
        flood = sb.run("while True:\n    try:\n        print('x' * 100000)\n    except BaseException:\n        pass",
                       "", stdin="")
        assert flood.status == "output_limit"
        assert sb.run("print('x' * 10 ** 8)", "", stdin="").status == "output_limit"
        assert sb.run("import sys\nwhile True:\n    sys.__stdout__.write('y' * 65536)", "", stdin="").status == \
            "output_limit"
        # long output: capped text + total + normalised digest, which the grader compares
        big = sb.run("for i in range(20000):\n    print(i, ' ')", "", stdin="")
        text, total, digest = ast.literal_eval(big.value)
        assert len(text) == CAPTURE_KEEP and total > CAPTURE_KEEP
        expected = "".join(f"{i}\n" for i in range(20000))
        assert lcb.stdout_ok(text, total, digest, expected) and not lcb.stdout_ok(text, total, digest, expected + "1")
        # wide characters: 30,000 euro signs are 90 KB of UTF-8, over one record item; the text kept is shorter
        wide = sb.run("print('\\u20ac' * 30000)", "", stdin="")
        assert wide.status == "ok", wide
        text, total, digest = ast.literal_eval(wide.value)
        assert total == 30001 and text == "\u20ac" * (CAPTURE_KEEP // 4)
        assert lcb.stdout_ok(text, total, digest, "\u20ac" * 30000) and not lcb.stdout_ok(text, total, digest, "x")
        # 65,535 bytes of UTF-8 (under MAX_RECORD, but no room for the rest of the record): the quarter too
        edge = sb.run("print('\u20ac' * 21845, end='')", "", stdin="")
        assert edge.status == "ok", edge
        assert ast.literal_eval(edge.value)[:2] == ("\u20ac" * (CAPTURE_KEEP // 4), 21845)
        # the ordinary call path is unchanged, and stdin needs empty args
        assert tuple(sb.run("def f(x):\n    return x + 1", "1")) == ("ok", "2", None)
        assert sb.run("print(1)", "1", stdin="").status == "rejected"
        assert [r.value[:6] for r in sb.run_many([("print(input())", "")] * 2, stdin=["a", "b"])] == \
            ["('a\\n'", "('b\\n'"]


def test_check_gold_cli(lcb_file, capsys):
    assert main(["--check-gold", "--benchmarks", "lcb", "--lcb-gen-file", str(lcb_file),
                 "--sandbox-workers", "2"]) == 0
    assert "lcb: 3/3 (100.0%)" in capsys.readouterr().out
    items = data.load_benchmark("lcb", lcb_gen_file=lcb_file)
    items[1]["solution"] = None  # the official release ships none: --check-gold says so instead of scoring nothing
    with pytest.raises(data.DataError, match=r"needs a `solution` field in every record, 1 lack one \(e.g. p2\)"):
        gold_completions("lcb", items, False)


def test_missing_and_malformed_files(tmp_path, capsys, monkeypatch):
    import huggingface_hub

    def offline(*a, **k):
        raise ConnectionError("offline")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(data.DataError, match=r"hub is unreachable for livecodebench/code_generation_lite .*"
                                             r"--lcb-gen-file") as e:
        data.load_benchmark("lcb")
    assert "\n" not in str(e.value)
    with pytest.raises(data.DataError, match=r"no-such.jsonl: file not found"):
        data.load_benchmark("lcb", lcb_gen_file=tmp_path / "no-such.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_content": "q"}\n')
    with pytest.raises(data.DataError, match=r"record 1 lacks field\(s\) starter_code"):
        data.load_benchmark("lcb", lcb_gen_file=bad)
    bad.write_text(json.dumps({**RECORDS[0], "private_test_cases": "bm90IHpsaWI="}) + "\n")
    with pytest.raises(data.DataError, match=r"record 1: test cases are neither JSON nor base64\+zlib"):
        data.load_benchmark("lcb", lcb_gen_file=bad)
    bad.write_text(json.dumps({**RECORDS[0], "public_test_cases": json.dumps(_tests([("1", "1")], "file"))}) + "\n")
    with pytest.raises(data.DataError, match=r"problem p1 has test types \['file', 'stdin'\]"):
        data.load_benchmark("lcb", lcb_gen_file=bad)
    for fields, words in (({"public_test_cases": "[]", "private_test_cases": "[]"}, "problem p1 has no test cases"),
                          ({"private_test_cases": 7}, "test cases are a int, expected JSON text"),
                          ({"metadata": json.dumps({"func_name": ["f"]})},
                           "problem p1 has a metadata func_name that is not text")):
        bad.write_text(json.dumps({**RECORDS[0], **fields}) + "\n")
        with pytest.raises(data.DataError, match=rf"record 1: {re.escape(words)}"):
            data.load_benchmark("lcb", lcb_gen_file=bad)
    # test cases already parsed (a json export of the dataset stores lists): used as they are
    bad.write_text(json.dumps({**RECORDS[0], "private_test_cases": _tests([("5 5\n", "10\n")], "stdin")}) + "\n")
    assert data.load_benchmark("lcb", lcb_gen_file=bad)[0]["tests"][1] == {"input": "5 5\n", "output": "10\n"}
    assert main(["--check-gold", "--benchmarks", "lcb", "--lcb-gen-file", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "x.json: file not found" in err and "\n" not in err



# An exception escaping a grader thread ends the whole evaluation (score_lcb's pool re-raises it, and eval's records
# are written only at the end): degenerate output or programs must be failed tests instead.

def test_signaling_nan_output_is_wrong_not_an_error():
    """A printed "sNaN" (any case) compared as a Decimal raised InvalidOperation; LCB's grader fails the test."""
    assert not lcb.stdout_ok("sNaN\n", 5, "", "1\n") and not lcb.stdout_ok("1 2\n", 4, "", "snan 2\n")
    assert lcb.stdout_ok("sNaN\n", 5, "", "sNaN\n") and lcb.stdout_ok("1.50\n", 5, "", "1.5\n")


def test_deeply_nested_functional_output_is_wrong_not_an_error():
    """A printed "[" * 1000 read as JSON raised RecursionError."""
    deep = "[" * 1000 + "]" * 1000
    assert not lcb.functional_ok(deep, len(deep), "", "[1]") and lcb.functional_ok("[1]", 3, "", "[1]")


def test_program_deeper_than_unparse_runs_as_is():
    """ast.unparse raised RecursionError on a stdin program with a 400-term `+` chain or a 1,000-branch elif. LCB's
    clean_if_name and make_function return the code unchanged on any error, and so does wrapped_script."""
    concat = "s = " + " + ".join(f"'{i}'" for i in range(400)) + "\nprint(s)\n"
    elifs = "x = int(input())\nif x == 0:\n    print(0)\n" + "".join(f"elif x == {i}:\n    print({i})\n"
                                                                  for i in range(1, 1000))
    for code in (concat, elifs):
        assert lcb.wrapped_script(code) == code
    assert lcb.wrapped_script("print(1 + 2)\n") == "__name__ = 'tmp_sol'\ndef wrapped_function():\n" \
        "    print(1 + 2)\nwrapped_function()\n"

def test_cavg_includes_lcb():
    agg = report.aggregates({"humaneval+": 0.9, "mbpp+": 0.6, "lcb": 0.3})
    assert agg["CAvg"][1:] == (3, 3) and agg["CAvg"][0] == pytest.approx(0.6)
    assert report.PAPER_COLUMNS.index("lcb") == 2 and report.PAPER["azr-coder-7b"][2] == 31.7


def test_test_case_pickle_cannot_call_anything():
    """The official private tests are base64(zlib(pickle(json))); a tampered file must not run code on load."""
    import base64
    import os
    import pickle
    import zlib
    from eval import lcb
    evil = base64.b64encode(zlib.compress(pickle.dumps(os.getpid))).decode()
    with pytest.raises(lcb.LCBError, match="do not decode"):
        lcb.decode_tests(evil)


# ------------------------------------------------------------------------------------------------------------------
# One problem exactly in the layout of livecodebench/code_generation_lite (release_v5), as LiveCodeBench's
# CodeGenerationProblem reads it: every field a string; public tests JSON text; private tests JSON text or
# base64(zlib(pickle(JSON text))); metadata JSON text whose func_name makes the problem call-based.

OFFICIAL_FUNCTIONAL = {
    "question_title": "count-pairs-whose-sum-is-less-than-target",
    "question_content": "Given a 0-indexed integer array nums of length n and an integer target, return the number "
                        "of pairs (i, j) where 0 <= i < j < n and nums[i] + nums[j] < target.",
    "platform": "leetcode", "question_id": "2917", "contest_id": "biweekly-contest-111",
    "contest_date": "2023-08-19T00:00:00", "difficulty": "easy",
    "starter_code": "class Solution:\n    def countPairs(self, nums: List[int], target: int) -> int:\n        ",
    "public_test_cases": json.dumps(_tests([("[-1, 1, 2, 3, 1]\n2", "3"), ("[-6, 2, 5, -2, -7, -1, 3]\n-2", "10")],
                                           "functional")),
    "private_test_cases": _compressed(_tests([("[1]\n5", "0"), ("[5, 5, 5]\n11", "3")], "functional")),
    "metadata": json.dumps({"func_name": "countPairs"}),
}
COUNT_PAIRS = "class Solution:\n    def countPairs(self, nums: List[int], target: int) -> int:\n" \
              "        n = len(nums)\n" \
              "        return sum(nums[i] + nums[j] < target for i in range(n) for j in range(i + 1, n))\n"


def test_official_record_layout_prompt_and_grading(tmp_path, lcb_box):
    from prompts import R1_PREAMBLE
    path = tmp_path / "official.jsonl"
    path.write_text(json.dumps(OFFICIAL_FUNCTIONAL) + "\n")
    [item] = data.load_benchmark("lcb", lcb_gen_file=path)
    assert item["kind"] == "functional" and item["func_name"] == "countPairs"
    assert [t["input"] for t in item["tests"]] == ["[-1, 1, 2, 3, 1]\n2", "[-6, 2, 5, -2, -7, -1, 3]\n-2", "[1]\n5",
                                                    "[5, 5, 5]\n11"]   # public first, then the decoded private
    # AZR's LCB prompt (LMStyle.AZR of its LiveCodeBench fork), word for word
    assert lcb.lcb_prompt(item) == (
        f"{R1_PREAMBLE} User: \n# Task: You will be given a question (problem specification) and will generate a "
        "correct Python program that matches the specification and passes all tests. Your final answer should be "
        "wrapped in ```python``` tags.\n\nQuestion: " + OFFICIAL_FUNCTIONAL["question_content"] + "\n\n"
        "You will use the following starter code to write the solution to the problem and enclose your code within "
        "delimiters.\n```python\n" + OFFICIAL_FUNCTIONAL["starter_code"] + "\n```\n\nAssistant: <think>")
    stdin_item = {**item, "starter_code": ""}
    assert lcb.lcb_prompt(stdin_item).endswith(
        "Question: " + OFFICIAL_FUNCTIONAL["question_content"] + "\n\nRead the inputs from stdin solve the problem and "
        "write the answer to stdout (do not directly test on the sample inputs). Enclose your code within delimiters "
        "as follows. Ensure that when the python program runs, it reads the inputs, runs the algorithm and writes "
        "output to STDOUT.\n```python\n# YOUR CODE HERE\n```\n\nAssistant: <think>")

    top_level = "def countPairs(nums, target):\n    return sum(a + b < target for a, b in combinations(nums, 2))\n"
    shadowing = "json = None\nprint = None\n" + COUNT_PAIRS      # the driver's own names are not the candidate's
    # a 1-tuple becomes [count], which is not the expected count
    as_tuple = COUNT_PAIRS.replace("return sum(", "return (sum(").replace("n))\n", "n)),)\n")
    candidates = [COUNT_PAIRS, top_level, shadowing, as_tuple]
    got = score("lcb", [item] * 4, [_completion(c) for c in candidates], None, None, False, lcb_box)
    assert [g["verdict"] for g in got] == [True, True, True, False], [g["detail"] for g in got]
    assert got[3]["detail"] == "test 0: wrong output"


def test_functional_results_compare_as_lcb(tmp_path, lcb_box):
    """LCB: prediction == json.loads(expected) after a top-level tuple becomes a list; nothing else is coerced."""
    def item(expected):
        return {"id": "x", "kind": "functional", "func_name": "f", "tests": [{"input": "3", "output": expected}]}
    cases = [("def f(n):\n    return (n, n)\n", "[3, 3]", True),           # top-level tuple -> list
             ("def f(n):\n    return [(n, n)]\n", "[[3, 3]]", False),      # nested tuple stays a tuple in LCB
             ("def f(n):\n    return {n: 1}\n", '{"3": 1}', False),        # int key != str key
             ("def f(n):\n    return {'a': n, 'b': [n]}\n", '{"b": [3], "a": 3}', True),
             ("def f(n):\n    return {n}\n", "[3]", False),                # a set is not a list
             ("def f(n):\n    return n / 1\n", "3", True),                 # 3.0 == 3
             ("def f(n):\n    return list(range(n * 10000))\n",            # longer than the sandbox returns as text
              json.dumps(list(range(30000))), True),
             ("def f(n):\n    return list(range(n * 10000))\n", json.dumps(list(range(29999)) + [0]), False)]
    for code, expected, want in cases:
        it = item(expected)
        ok, why = lcb.run_tests(it, lcb.program_for(it, code), lcb_box)
        assert ok is want, (code, expected, why)


def test_problem_time_limit_is_lcbs_global_timeout():
    assert lcb.TEST_LIMIT_S == 60
    assert lcb.problem_limit_s(1) == 66 and lcb.problem_limit_s(10) == 615   # (timeout + 1) * tests + 5


def test_problem_time_limit_stops_the_tests(monkeypatch):
    """A problem's tests stop once its global limit is spent: before the next test, or after the last one."""
    import types

    from sandbox import Result
    clock = [0.0]
    monkeypatch.setattr(lcb, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))

    class Box:  # every test passes and takes `seconds`
        def run(self, program, args, stdin=None):
            clock[0] += seconds
            return Result("ok", repr(("3\n", 2, "")))
    for n, seconds, verdict in ((1, 60, (True, "")), (1, 100, (False, "over the 66 s problem limit")),
                                (3, 100, (False, "test 2: over the 188 s problem limit"))):
        clock[0] = 0.0
        assert lcb.run_tests(_item("stdin", [("1 2", "3")] * n), "print(3)", Box()) == verdict, (n, seconds)


def _item(kind, pairs, func=""):
    return {"id": "x", "kind": kind, "func_name": func, "tests": [{"input": i, "output": o} for i, o in pairs]}


@pytest.mark.parametrize("code, kind, pairs, func, passes", [
    # the threading idiom for a larger stack (threads are forbidden in the sandbox: the target runs at once)
    ("import sys, threading\ndef main():\n    a, b = map(int, input().split())\n    print(a + b)\n"
     "threading.stack_size(1 << 26)\nt = threading.Thread(target=main)\nt.start()\nt.join()\n",
     "stdin", [("1 2\n", "3\n")], "", True),
    # deep recursion in the main thread of a script (sys.setrecursionlimit(50000) in LCB's header)
    ("def d(n):\n    return 0 if n == 0 else 1 + d(n - 1)\nprint(d(int(input())))\n", "stdin",
     [("30000\n", "30000\n")], "", True),
    ("print(10 ** int(input()))\n", "stdin", [("4999\n", "1" + "0" * 4999 + "\n")], "", True),  # LCB: 50,000 digits
    # stdin is a StringIO, as LCB patches it: no .buffer, and no newline translation
    ("import sys\na, b = map(int, sys.stdin.buffer.read().split())\nprint(a + b)\n", "stdin", [("1 2\n", "3\n")], "",
     False),
    ("print(len(input()))\n", "stdin", [("abc\r\n", "4\n")], "", True),
    # LCB runs a stdin program's body inside a function: `global` in a helper misses the top-level name, a guard
    # that is not last never runs, a final guard is unwrapped
    ("def add():\n    global total\n    total += b\na, b = map(int, input().split())\ntotal = a\nadd()\nprint(total)\n",
     "stdin", [("1 2\n", "3\n")], "", False),
    ("def main():\n    print(sum(map(int, input().split())))\nif __name__ == '__main__':\n    main()\nx = 1\n",
     "stdin", [("1 2\n", "3\n")], "", False),
    ("def main():\n    print(sum(map(int, input().split())))\nif __name__ == \"__main__\":\n    main()\n",
     "stdin", [("1 2\n", "3\n")], "", True),
    # numpy scalars equal the expected value (LCB compares with ==)
    ("import numpy as np\nclass Solution:\n    def add(self, a, b):\n        return [np.int64(a) + b, np.bool_(a)]\n",
     "functional", [("1\n2", "[3, true]")], "add", True),
])
def test_programs_graded_as_lcb(code, kind, pairs, func, passes, lcb_box):
    item = _item(kind, pairs, func)
    assert lcb.run_tests(item, lcb.program_for(item, code), lcb_box)[0] is passes


def test_lcb_limits_and_module_level_imports(lcb_box):
    """As LCB's grader: 4 GiB of memory above the zygote (LCB sets none; the sandbox default is 1 GiB), the imports
    of a stdin program stay at module level (a star import inside wrapped_function would not compile), and an
    expected value of more than 4,300 digits parses in the trainer."""
    for code, pairs in (("print(len(bytes(1536 << 20)))\n", [("\n", f"{1536 << 20}\n")]),
                        ("from math import *\nprint(floor(float(input())))\n", [("2.5\n", "2\n")])):
        item = _item("stdin", pairs)
        assert lcb.run_tests(item, lcb.program_for(item, code), lcb_box)[0], code
    big = "1" + "0" * 4999
    assert lcb.functional_ok(big + "\n", len(big) + 1, "", big) and not lcb.functional_ok("1\n", 2, "", big)


def test_run_eval_on_lcb_with_the_tiny_model(tiny_ckpt, lcb_file, tmp_path, monkeypatch):
    """`python -m eval --benchmarks lcb`: the model's completions are graded in LCB's own sandbox, which is closed
    at the end; the results name the benchmark."""
    from eval.__main__ import run_eval
    monkeypatch.setenv("NANOAZR_KERNELS", "torch")
    boxes = []

    def recording_sandbox(workers=None):
        box = Sandbox(workers=1, cpu_s=lcb.TEST_LIMIT_S, wall_s=lcb.TEST_LIMIT_S, repeat=1, selftest=False)
        boxes.append(box)
        return box
    monkeypatch.setattr(lcb, "lcb_sandbox", recording_sandbox)
    results = run_eval(str(tiny_ckpt), ["lcb"], None, tmp_path / "out", limit=1, max_new_tokens=4, sandbox_workers=1,
                       progress=False, lcb_gen_file=lcb_file, device="cpu")
    assert results["lcb"]["n"] == 1 and results["lcb"]["pass@1"] == 0.0
    (record,) = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert record["prompt"] == lcb.lcb_prompt(data.load_benchmark("lcb", lcb_gen_file=lcb_file)[0])
    assert len(boxes) == 1 and boxes[0]._closed
