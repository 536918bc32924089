"""LiveCodeBench code generation ("lcb"): prompts, program extraction, test execution in our sandbox, verdicts.

Sources read (LiveCodeBench/LiveCodeBench is "LCB"; AZR's fork of it lives in LeapLabTHU/Absolute-Zero-Reasoner
evaluation/code_eval/coding/LiveCodeBench, read in its forks FFishy-git/Absolute-Zero-Reasoner and
ulab-uiuc/multi-agent-evolve-clean): lcb_runner/benchmarks/code_generation.py (record layout, decoding),
lcb_runner/prompts/code_generation.py (AZR prompt), lcb_runner/evaluation/testing_util.py and
compute_code_generation_metrics.py (grading, time limits), evaluation/code_eval/scripts/run_lcb_gen.sh (settings).

Data: `livecodebench/code_generation_lite` records, release_v5 (test.jsonl .. test5.jsonl), from --lcb-gen-file or
the hub. AZR's run passes `--release_version release_v5` with no start/end date, so every release_v5 problem counts
(contests May 2023 to early 2025). Each record has question_content, starter_code, public_test_cases and
private_test_cases (JSON text of [{"input", "output", "testtype"}]; when the private ones are not JSON they are
base64(zlib(pickle(JSON text))), which LCB decodes in that order), and metadata (JSON text). As in LCB's
get_evaluation_sample, metadata's func_name decides the problem kind: present -> functional (call-based), absent ->
stdin; the tests run public first, then private.

Prompt (the "AZR" LMStyle of AZR's LCB fork, sent as raw text): SYSTEM_MESSAGE_AZR (the R1 preamble + " User: "),
a new line with "# Task: ...", "Question: {question}", the starter-code (functional) or stdin format instruction
with its ```python block, and "Assistant: <think>". We use prompts.R1_PREAMBLE, our wording of the preamble the model
is trained with; AZR's text differs (see eval/templates.py). The program is the last ```python block of the answer
(eval.code.extract_code); AZR's fork (lcb_runner/utils/extraction_utils.py, seen only in part) also reads the code
from the text inside the last <answer>.

Scoring as LCB's grader: a problem passes when every test passes, run in order and stopping at the first failure,
each test under TEST_LIMIT_S (AZR: --timeout 60) and the problem under LCB's global limit
(TEST_LIMIT_S + 1) * n_tests + 5 s.
- stdin tests: LCB's import header + the program as LCB wraps it (wrapped_script: a final `__main__` guard
  unwrapped, the body inside wrapped_function in a module named tmp_sol), run as a script (sandbox script mode:
  sys.stdin is a StringIO of the test input, prints are captured); both outputs are stripped, split into lines and each line stripped; the line counts must match, and each line pair
  must be equal as text or, failing that, as lists of whitespace-separated Decimal numbers (LCB's float handling:
  "0.50" == "0.5", no tolerance beyond that).
- functional tests: LCB's import header + the candidate + a driver that reads one JSON argument per stdin line (every
  line, as LCB), calls getattr(Solution(), func_name) when the code contains "class Solution" and the top-level
  function otherwise, with the candidate's own prints discarded, and prints json.dumps of the result; it passes when
  that value == json.loads(expected) after a top-level tuple becomes a list (LCB's rule). A result that is not plain
  JSON data (a nested tuple, a set, a dict with non-str keys) never equals LCB's JSON expected value, so the driver
  reports it as unequal instead of letting json.dumps coerce it.
Both kinds: integers up to 50,000 digits (programs and expected values), numpy importable and numpy scalar results
compared by value, a Thread started for its stack size runs its target at once (threads are forbidden; script runs
get a 256 MiB stack), 4 GiB of memory above the zygote (LCB sets none).
Outputs longer than the sandbox returns as text are compared by digest of the normalised text (stdin: exact line
text, no Decimal step; functional: canonical JSON text, so 2 and 2.0 differ there).
"""
import ast
import base64
import io
import json
import pickle
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal, InvalidOperation
from hashlib import sha256

from eval.code import extract_code
from prompts import R1_PREAMBLE

TEST_LIMIT_S = 60.0  # AZR's LCB run: --timeout 60 (LCB's per-test alarm)
HUB_REPO = "livecodebench/code_generation_lite"
RELEASE_V5_FILES = ["test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl"]
REQUIRED = ["question_content", "starter_code", "public_test_cases", "private_test_cases", "metadata"]

# AZR's LCB prompt pieces (AZR's fork, lcb_runner/prompts/code_generation.py: get_azr_question_template_answer and
# LCB's PromptConstants formatting messages).
TASK = ("\n# Task: You will be given a question (problem specification) and will generate a correct Python program "
        "that matches the specification and passes all tests. Your final answer should be wrapped in ```python``` "
        "tags.\n\n")
FORMAT_STARTER = ("You will use the following starter code to write the solution to the problem and enclose your code "
                  "within delimiters.")
FORMAT_STDIN = ("Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on "
                "the sample inputs). Enclose your code within delimiters as follows. Ensure that when the python "
                "program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.")
# LCB prepends these imports to every program it tests (lcb_runner/evaluation/testing_util.py); all are modules
# the sandbox preloads.
IMPORTS = ("from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
           "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\nfrom random import *\n"
           "from statistics import *\nfrom itertools import *\nfrom functools import *\nfrom operator import *\n"
           "from io import *\nfrom sys import *\nfrom json import *\nfrom builtins import *\nfrom typing import *\n"
           "import string\nimport re\nimport datetime\nimport collections\nimport heapq\nimport bisect\n"
           "import copy\nimport math\nimport random\nimport statistics\nimport itertools\nimport functools\n"
           "import operator\nimport io\nimport sys\nimport json\nsys.setrecursionlimit(50000)\n"
           "sys.set_int_max_str_digits(50000)\n"   # LCB's grader raises it for the programs it runs
           # Threads are forbidden in the sandbox; competitive programs start one only for its larger stack
           # (threading.stack_size(1 << 26); Thread(target=main).start()): run its target at once instead (script
           # runs get a large main-thread stack, sandbox.SCRIPT_STACK)
           "import threading as _nanoazr_threading\n"
           "class _NanoazrThread(_nanoazr_threading.Thread):\n"
           "    def start(self):\n        self.run()\n"
           "    def join(self, timeout=None):\n        pass\n"
           "_nanoazr_threading.Thread = _NanoazrThread\n"
           "_nanoazr_threading.stack_size = lambda size=0: 0\n")
# Functional driver. The candidate's own prints go to a scratch buffer; only the JSON result reaches the capture.
# Everything the driver uses goes through _nanoazr_* names bound before the candidate runs, so the candidate's
# globals (a `json` or `print` of its own) cannot change the grading; LCB grades outside the candidate's namespace.
# TARGET is the method of Solution() or the top-level function, chosen as LCB does (`"class Solution" in code`).
DRIVER_HEAD = "import builtins as _nanoazr_b, io as _nanoazr_io, json as _nanoazr_json, sys as _nanoazr_sys\n" \
              "_nanoazr_out = _nanoazr_sys.stdout\n_nanoazr_sys.stdout = _nanoazr_io.StringIO()\n"
DRIVER_TAIL = '''
def _nanoazr_native(v, b=_nanoazr_b):  # numpy scalars (np.int64, np.bool_) equal LCB's expected value: plain them
    if b.type(v).__module__ == "numpy" and b.getattr(v, "ndim", None) == 0:
        return v.item()
    if b.isinstance(v, (b.list, b.tuple)):
        return b.type(v)(_nanoazr_native(x) for x in v)
    if b.isinstance(v, b.dict):
        return {k: _nanoazr_native(x) for k, x in v.items()}
    return v
def _nanoazr_plain(v, b=_nanoazr_b):  # JSON data only: anything else cannot equal LCB's json.loads(expected)
    if v is None or b.isinstance(v, (b.bool, b.int, b.float, b.str)):
        return True
    if b.isinstance(v, b.list):
        return b.all(_nanoazr_plain(x) for x in v)
    if b.isinstance(v, b.dict):
        return b.all(b.isinstance(k, b.str) and _nanoazr_plain(x) for k, x in v.items())
    return False
_nanoazr_args = [_nanoazr_json.loads(_l) for _l in _nanoazr_sys.stdin.read().split("\\n")]
_nanoazr_result = _nanoazr_native(TARGET(*_nanoazr_args))
_nanoazr_sys.stdout = _nanoazr_out
if _nanoazr_b.isinstance(_nanoazr_result, _nanoazr_b.tuple):
    _nanoazr_result = _nanoazr_b.list(_nanoazr_result)
_nanoazr_b.print(_nanoazr_json.dumps(_nanoazr_result, sort_keys=True) if _nanoazr_plain(_nanoazr_result) else
                 "unequal")
'''


if 0 < sys.get_int_max_str_digits() < 50000:  # as LCB's grader: expected values with up to 50,000 digits parse
    sys.set_int_max_str_digits(50000)


class LCBError(ValueError):
    """A record of the LiveCodeBench file is malformed; str(error) is one line."""


# ----------------------------------------------------------------------------------------------------------------
# Records -> items
# ----------------------------------------------------------------------------------------------------------------

class _PlainUnpickler(pickle.Unpickler):
    """The official files pickle a plain JSON string. Refusing every global means a tampered data file can build
    strings, numbers and containers but can never call anything."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a test-case pickle")


def decode_tests(text) -> list[dict]:
    """Test cases from a record field: JSON text (or an already-parsed list), or the official release's
    base64(zlib(pickle(JSON text))) form for private tests. The pickle is read only because that is how the official
    data file the user supplied is stored; this never touches model output."""
    if isinstance(text, list):
        return text
    if not isinstance(text, str):
        raise LCBError(f"test cases are a {type(text).__name__}, expected JSON text")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        raw = zlib.decompress(base64.b64decode(text, validate=False))
    except (ValueError, zlib.error) as e:
        raise LCBError(f"test cases are neither JSON nor base64+zlib ({type(e).__name__})") from None
    try:
        inner = _PlainUnpickler(io.BytesIO(raw)).load()  # a pickled str: no class may be loaded
        return json.loads(inner) if isinstance(inner, (str, bytes)) else inner
    except Exception as e:  # UnpicklingError, EOFError, JSONDecodeError, ...
        raise LCBError(f"compressed test cases do not decode ({type(e).__name__})") from None


def make_item(n: int, r: dict) -> dict:
    meta = r["metadata"]
    meta = json.loads(meta) if isinstance(meta, str) and meta.strip() else (meta or {})
    tests = decode_tests(r["public_test_cases"]) + decode_tests(r["private_test_cases"])
    if not tests:
        raise LCBError(f"problem {r.get('question_id', n)} has no test cases")
    kinds = {t["testtype"] for t in tests}
    if not kinds <= {"stdin", "functional"}:  # LCB's TestType enum rejects anything else
        raise LCBError(f"problem {r.get('question_id', n)} has test types {sorted(kinds)}, expected stdin or "
                       "functional")
    func = meta.get("func_name") or ""
    if not isinstance(func, str):
        raise LCBError(f"problem {r.get('question_id', n)} has a metadata func_name that is not text")
    # LCB grades call-based exactly when metadata names a function (testing_util.run_test: fn_name), whatever the
    # tests' testtype says.
    return {"id": str(r.get("question_id", n)), "question": r["question_content"],
            "starter_code": r.get("starter_code") or "", "kind": "functional" if func else "stdin",
            "func_name": func, "tests": [{"input": t["input"], "output": t["output"]} for t in tests],
            "platform": r.get("platform", ""), "contest_date": str(r.get("contest_date", ""))}


# ----------------------------------------------------------------------------------------------------------------
# Prompt and program
# ----------------------------------------------------------------------------------------------------------------

def lcb_prompt(item: dict) -> str:
    """AZR's LCB prompt (LMStyle.AZR): preamble + " User: ", the task, the question, the format block, and
    "Assistant: <think>" right after the blank line that ends the format block."""
    prompt = f"{R1_PREAMBLE} User: {TASK}Question: {item['question']}\n\n"
    if item["starter_code"]:
        prompt += f"{FORMAT_STARTER}\n```python\n{item['starter_code']}\n```\n\n"
    else:
        prompt += f"{FORMAT_STDIN}\n```python\n# YOUR CODE HERE\n```\n\n"
    return prompt + "Assistant: <think>"


def wrapped_script(code: str) -> str:
    """A stdin program as LCB's grader runs it: a final `if __name__ == '__main__':` block unwrapped (clean_if_name),
    then every top-level statement but the imports moved into `def wrapped_function():` (make_function), which is
    called in a module named tmp_sol. So a name assigned at the top level is a local of that function (a `global`
    in a helper then fails) and a `__main__` guard that is not last never runs, as there. Unparsable code is
    returned as is (it fails either way), and so is code nested deeper than ast.unparse recurses (a 400-term `+`
    chain, a 1,000-branch elif): LCB's clean_if_name and make_function return the code as is on any error."""
    try:
        return _wrapped_script(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code


def _wrapped_script(code: str) -> str:
    body = ast.parse(code).body
    if body and isinstance(body[-1], ast.If) and ast.unparse(body[-1].test).strip() == "__name__ == '__main__'":
        body = body[:-1] + body[-1].body
    imports = [n for n in body if isinstance(n, (ast.Import, ast.ImportFrom))]
    rest = [n for n in body if not isinstance(n, (ast.Import, ast.ImportFrom))] or [ast.Pass()]
    function = ast.FunctionDef(name="wrapped_function", args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[],
                                                                           kw_defaults=[], defaults=[]),
                               body=rest, decorator_list=[], returns=None, type_comment=None)
    module = ast.fix_missing_locations(ast.Module(body=imports + [function], type_ignores=[]))
    return f"__name__ = 'tmp_sol'\n{ast.unparse(module)}\nwrapped_function()\n"


def program_for(item: dict, code: str) -> str:
    """The script the sandbox runs for one problem: import header + candidate (a stdin program wrapped as LCB wraps
    it, wrapped_script; + the functional driver, which calls the method of Solution() when the code has
    "class Solution" and the top-level function otherwise, as LCB)."""
    if item["kind"] == "stdin":
        return IMPORTS + wrapped_script(code)
    name = repr(item["func_name"])  # a Python string literal: the name is looked up, never spliced in as code
    target = f"_nanoazr_b.getattr(Solution(), {name})" if "class Solution" in code else \
        f"_nanoazr_b.globals()[{name}]"
    return DRIVER_HEAD + IMPORTS + code + "\n" + DRIVER_TAIL.replace("TARGET", target)


def gold_completion(item: dict, solution: str) -> str:
    """A completion carrying `solution` in the form extract_code reads (for --check-gold and tests)."""
    return f"I will write the program. </think> <answer>\n```python\n{solution}\n```\n</answer>"


# ----------------------------------------------------------------------------------------------------------------
# Output comparison (LiveCodeBench's grader)
# ----------------------------------------------------------------------------------------------------------------

def stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str):
    try:
        return [Decimal(x) for x in line.split()]
    except (InvalidOperation, ValueError):
        return None


def stdout_ok(printed, total: int, digest: str, expected: str) -> bool:
    """LCB's stdin comparison. Output longer than the sandbox returns as text is compared by its normalised digest
    (exact line text, no Decimal step)."""
    if total > len(printed):
        return sha256("\n".join(stripped_lines(expected)).encode("utf-8", "surrogatepass")).hexdigest() == digest
    got, want = stripped_lines(printed), stripped_lines(expected)
    if len(got) != len(want):
        return False
    for a, b in zip(got, want):
        if a == b:
            continue
        da, db = _decimals(a), _decimals(b)
        try:
            if da is None or db is None or da != db:
                return False
        except InvalidOperation:  # "sNaN" (any case) compared raises: in LCB's grader too, where the test fails
            return False
    return True


def functional_ok(printed: str, total: int, digest: str, expected: str) -> bool:
    """LCB's call-based comparison, prediction == json.loads(expected), on the driver's JSON line. Output longer than
    the sandbox returns as text is compared by digest against the expected value in the driver's canonical JSON."""
    try:
        want = json.loads(expected)
        if total > len(printed):
            return sha256(json.dumps(want, sort_keys=True).encode("utf-8", "surrogatepass")).hexdigest() == digest
        got = json.loads(printed.strip())
    except (json.JSONDecodeError, ValueError, RecursionError):  # (a program printing "[" * 1000 nests too deep)
        return False
    return got == want


def test_ok(item: dict, result, test: dict) -> tuple[bool, str]:
    """(passed, why) for one sandbox Result of one test."""
    if result.status != "ok":
        return False, f"{result.status}: {(result.error or '')[:200]}"
    printed, total, digest = ast.literal_eval(result.value)  # our own decoder's repr of plain builtins
    if item["kind"] == "stdin":
        ok = stdout_ok(printed, total, digest, test["output"])
    else:
        ok = functional_ok(printed, total, digest, test["output"])
    return ok, "" if ok else "wrong output"


# ----------------------------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------------------------

def problem_limit_s(n_tests: int) -> float:
    """LCB's global limit for one problem (compute_code_generation_metrics.check_correctness)."""
    return (TEST_LIMIT_S + 1) * n_tests + 5


def run_tests(item: dict, program: str, sandbox) -> tuple[bool, str]:
    """Tests in order, stopping at the first failure or when the problem's time budget is spent."""
    limit = problem_limit_s(len(item["tests"]))
    start = time.monotonic()
    for k, test in enumerate(item["tests"]):
        if time.monotonic() - start > limit:
            return False, f"test {k}: over the {limit:.0f} s problem limit"
        ok, why = test_ok(item, sandbox.run(program, "", stdin=test["input"]), test)
        if not ok:
            return False, f"test {k}: {why}"
    if time.monotonic() - start > limit:
        return False, f"over the {limit:.0f} s problem limit"
    return True, ""


def score_lcb(items: list[dict], completions: list[str], sandbox, workers: int) -> list[dict]:
    """One {"extracted", "verdict", "detail"} per (item, completion). `sandbox` is lcb_sandbox(workers): problems
    run in parallel, one per zygote (more threads would wait for a zygote on their problem's clock), a problem's
    tests in order."""
    codes = [extract_code(c, prefilled=False) for c in completions]

    def one(k):
        return run_tests(items[k], program_for(items[k], codes[k]), sandbox)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(one, range(len(items))))
    return [{"extracted": code, "verdict": ok, "detail": why} for code, (ok, why) in zip(codes, results)]


def lcb_sandbox(workers=None):
    """A Sandbox with LCB's per-test limits (60 s CPU and wall), one call per run; numpy importable, as in LCB's
    grader process."""
    from sandbox import Sandbox
    return Sandbox(workers=workers, cpu_s=TEST_LIMIT_S, wall_s=TEST_LIMIT_S, repeat=1, extra_modules=("numpy",),
                   mem_mb=4096)   # (LCB sets no memory limit)
