"""LiveCodeBench code generation ("lcb"): prompts, program extraction, test execution in our sandbox, verdicts.

Data: `livecodebench/code_generation_lite` records (release_v5 as AZR: test.jsonl .. test5.jsonl), from
--lcb-gen-file or the hub. Each record has question_content, starter_code, public_test_cases and
private_test_cases (JSON text of [{"input", "output", "testtype"}]; the official release stores the private ones as
base64(zlib(pickle(json text)))), and metadata (JSON text with func_name for LeetCode problems).

Prompt (AZR's "AZR" style of its LCB fork, azr-spec.md 9.1): LiveCodeBench's generation instruction, the question,
the starter-code (functional) or stdin/stdout (stdin) format instruction, inside the R1 template ending in
`Assistant: <think>`. The program is the last ```python block of the answer (eval.code.extract_code).

Scoring as LiveCodeBench's grader: a problem passes when every public and private test passes, run in order and
stopping at the first failure, each test under TEST_LIMIT_S and the problem under PROBLEM_LIMIT_S in total.
- stdin tests: the program runs as a script (sandbox script mode: sys.stdin is the test input, prints are captured);
  both outputs are stripped, split into lines and each line stripped; the line counts must match, and each line pair
  must be equal as text or, failing that, as lists of whitespace-separated Decimal numbers (LCB's float handling:
  "0.50" == "0.5", no tolerance beyond that).
- functional tests: LCB's import header + the candidate + a driver that reads one JSON argument per stdin line,
  calls Solution().<func_name>(*args) with the candidate's own prints discarded, and prints json.dumps of the
  result; it passes when that JSON value equals json.loads(expected) (LCB: tuples compared as lists).
"""
import ast
import base64
import io
import json
import pickle
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal, InvalidOperation
from hashlib import sha256

from eval.code import extract_code
from prompts import R1_PREAMBLE

TEST_LIMIT_S = 60.0  # AZR's LCB run: --timeout 60
PROBLEM_LIMIT_S = 60.0  # and at most this much wall time per problem over all its tests
HUB_REPO = "livecodebench/code_generation_lite"
RELEASE_V5_FILES = ["test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl"]
REQUIRED = ["question_content", "starter_code", "public_test_cases", "private_test_cases", "metadata"]

# LiveCodeBench's generation prompt pieces (lcb_runner/prompts/code_generation.py).
SYSTEM = ("You will be given a question (problem specification) and will generate a correct Python program that "
          "matches the specification and passes all tests.")
FORMAT_STARTER = ("### Format: You will use the following starter code to write the solution to the problem and "
                  "enclose your code within delimiters.")
FORMAT_STDIN = ("### Format: Read the inputs from stdin solve the problem and write the answer to stdout (do not "
                "directly test on the sample inputs). Enclose your code within delimiters as follows. Ensure that "
                "when the python program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.")
# LCB prepends these imports to every program it tests (lcb_runner/evaluation/testing_util.py); all are modules
# the sandbox preloads.
IMPORTS = ("from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\n"
           "from heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\nfrom random import *\n"
           "from statistics import *\nfrom itertools import *\nfrom functools import *\nfrom operator import *\n"
           "from io import *\nfrom sys import *\nfrom json import *\nfrom builtins import *\nfrom typing import *\n"
           "import string\nimport re\nimport datetime\nimport collections\nimport heapq\nimport bisect\n"
           "import copy\nimport math\nimport random\nimport statistics\nimport itertools\nimport functools\n"
           "import operator\nimport io\nimport sys\nimport json\nsys.setrecursionlimit(50000)\n")
# Functional driver: the candidate's own prints go to a scratch buffer; only the JSON result reaches the capture.
DRIVER_HEAD = "import io as _nanoazr_io, sys as _nanoazr_sys\n_nanoazr_out = _nanoazr_sys.stdout\n" \
              "_nanoazr_sys.stdout = _nanoazr_io.StringIO()\n"
DRIVER_TAIL = '''
_nanoazr_args = [json.loads(_l) for _l in _nanoazr_sys.stdin.read().split("\\n") if _l.strip()]
_nanoazr_result = Solution().FUNC(*_nanoazr_args)
_nanoazr_sys.stdout = _nanoazr_out
print(json.dumps(_nanoazr_result))
'''


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
    if not kinds <= {"stdin", "functional"} or len(kinds) != 1:
        raise LCBError(f"problem {r.get('question_id', n)} has test types {sorted(kinds)}, expected stdin or "
                       "functional")
    kind = kinds.pop()
    func = meta.get("func_name") or ""
    if kind == "functional" and not func.isidentifier():
        raise LCBError(f"functional problem {r.get('question_id', n)} has no metadata func_name")
    return {"id": str(r.get("question_id", n)), "question": r["question_content"],
            "starter_code": r.get("starter_code") or "", "kind": kind, "func_name": func,
            "tests": [{"input": t["input"], "output": t["output"]} for t in tests],
            "platform": r.get("platform", ""), "contest_date": str(r.get("contest_date", ""))}


# ----------------------------------------------------------------------------------------------------------------
# Prompt and program
# ----------------------------------------------------------------------------------------------------------------

def lcb_prompt(item: dict) -> str:
    """AZR-style LCB prompt: R1 template around LCB's instruction, ending with `Assistant: <think>`."""
    user = f"{SYSTEM}\n\n### Question:\n{item['question']}\n\n"
    if item["starter_code"]:
        user += f"{FORMAT_STARTER}\n```python\n{item['starter_code']}\n```\n\n"
    else:
        user += f"{FORMAT_STDIN}\n```python\n# YOUR CODE HERE\n```\n\n"
    user += "### Answer: (use the provided format with backticks)\n\n"
    return f"{R1_PREAMBLE} User: {user}\nAssistant: <think>"


def program_for(item: dict, code: str) -> str:
    """The script the sandbox runs for one problem: import header + candidate (+ the functional driver)."""
    if item["kind"] == "stdin":
        return IMPORTS + code
    return DRIVER_HEAD + IMPORTS + code + "\n" + DRIVER_TAIL.replace("FUNC", item["func_name"])


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
        if da is None or db is None or da != db:
            return False
    return True


def functional_ok(printed: str, expected: str) -> bool:
    try:
        got = json.loads(printed.strip())
        want = json.loads(expected)
    except (json.JSONDecodeError, ValueError):
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
        ok = total == len(printed) and functional_ok(printed, test["output"])
    return ok, "" if ok else "wrong output"


# ----------------------------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------------------------

def run_tests(item: dict, program: str, sandbox) -> tuple[bool, str]:
    """Tests in order, stopping at the first failure or when the problem's time budget is spent."""
    start = time.monotonic()
    for k, test in enumerate(item["tests"]):
        if time.monotonic() - start > PROBLEM_LIMIT_S:
            return False, f"test {k}: over the {PROBLEM_LIMIT_S:.0f} s problem limit"
        ok, why = test_ok(item, sandbox.run(program, "", stdin=test["input"]), test)
        if not ok:
            return False, f"test {k}: {why}"
    if time.monotonic() - start > PROBLEM_LIMIT_S:
        return False, f"over the {PROBLEM_LIMIT_S:.0f} s problem limit"
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
    """A Sandbox with LCB's per-test limits (60 s CPU and wall), one call per run."""
    from sandbox import Sandbox
    return Sandbox(workers=workers, cpu_s=TEST_LIMIT_S, wall_s=TEST_LIMIT_S, repeat=1)
