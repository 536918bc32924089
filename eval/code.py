"""HumanEval+ / MBPP+: extract the program, run it in our sandbox, compare outputs.

Scoring follows EvalPlus, the harness AZR used (azr-spec.md 9.1):
- The reference solution (`prompt + canonical_solution`) runs on every base and plus input once, in the sandbox;
  its outputs and per-input run times are cached on disk (keyed by the data file's content and the driver).
- A candidate passes a task when, on every input, it returns without error and its output equals the reference
  output: Python `==` on the values; for float outputs `allclose` with rtol 1e-7 and the task's `atol` (1e-6 when
  the task gives 0), requiring the same type and length; plus EvalPlus's per-task oracles (MBPP set-equality and
  not-None tasks, Mbpp/164/295/558/581, HumanEval/32 `find_zero` checked through the polynomial). `plus` = base and
  plus inputs, the number AZR reports; `base` is recorded too.
- Time limits as EvalPlus with AZR's flags: per input max(10 s, 8 x the reference's time), and the base inputs and
  the plus inputs as two runs, each within min(60 s, the sum of its inputs' limits) + 1 s.
- The program is the answer's code alone, sanitized as EvalPlus does (imports and what the entry point reaches;
  demo calls, prints and `input()` lines dropped); the task prompt is never prepended. numpy is importable.

How a program runs: the sandbox calls `f(inputs)` on a program made of the candidate code and a small driver `f`
(below) that calls the entry point on each input (deep-copied), and returns, per input, the status, the repr of the
output, its type name, the elapsed time and the driver's own time on it (deep copy, encoding). Only that plain data
crosses back; the comparison is done here on values rebuilt from the reprs with a literal-only parser (never `eval`),
so an output object cannot fake equality.
Inputs go to the child in chunks that fit the sandbox's argument cap, each call working at most CALL_BUDGET_S
before returning; a chunk whose result is too big for the sandbox is halved and retried.
"""
import ast
import hashlib
import json
import math
import os
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from prompts import extract_answer as answer_tag_text

MIN_TIME_LIMIT_S = 10.0  # AZR's `evalplus.evaluate --min-time-limit 10.0`
TIME_FACTOR = 8.0  # `--gt-time-limit-factor 8.0`
TASK_LIMIT_S = 60.0  # EvalPlus's EVALPLUS_TIMEOUT_PER_TASK default
CHUNK = 64  # most inputs per sandbox call
CALL_BUDGET_S = 2.0  # the driver starts no new input after this many seconds; the rest go to the next call
MAX_INPUT_TEXT = 1 << 20  # argument text per sandbox call; the largest MBPP+ input (Mbpp/301) is 102k characters
LIMIT_TIERS = (10.0, 30.0, 60.0, 120.0)  # per-input limits rounded up to one of these (one sandbox per tier)
BIG = 2000  # containers longer than this are fingerprinted element by element instead of repr'd whole
CACHE_DIR = Path(os.environ.get("NANOAZR_CACHE", Path.home() / ".cache" / "nanoazr")) / "eval"

# EvalPlus's per-task oracles for MBPP+ (by entry point): outputs compared as sets, or only "is not None".
MBPP_SET_EQ = {"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
               "intersection_array", "find_dissimilar", "Diff"}
MBPP_NOT_NONE = {"check_str", "text_match_three", "text_starta_endb"}

# The driver appended to every program (ENTRY is replaced by the entry point's name). `_nanoazr_entry` is bound
# before the driver takes the name `f`, so an entry point that is itself called `f` (HumanEval/106) still works.
DRIVER = '''
_nanoazr_entry = ENTRY


_nanoazr_simple = frozenset((int, float, str, bool, bytes, complex, type(None)))


def _nanoazr_plain(x, depth=0):
    # Subclasses of dict/list/tuple/set (Counter, defaultdict, OrderedDict, namedtuple) become their builtin base
    # and numpy scalars/arrays Python numbers/lists, so that the repr is a literal; `==` against the reference is
    # unchanged by this for those types.
    t = type(x)
    if t in _nanoazr_simple or depth > 50:
        return x
    if (t is tuple or t is list) and all(type(v) in _nanoazr_simple for v in x):
        return x   # (already plain: the common case, e.g. Mbpp/255's 1.7M tuples of 77 strings)
    if t.__module__ == "numpy" and hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, dict):
        return dict((k, _nanoazr_plain(v, depth + 1)) for k, v in x.items())
    if isinstance(x, list):
        return [_nanoazr_plain(v, depth + 1) for v in x]
    if isinstance(x, tuple):
        return tuple(_nanoazr_plain(v, depth + 1) for v in x)
    if isinstance(x, frozenset):
        return frozenset(x)
    if isinstance(x, set):
        return set(x)
    return x


def _nanoazr_encode(out):
    # -> (text, kind): the repr of the plain value, or a fingerprint when the repr would be huge or slow to build
    # (a million-digit int in HumanEval/83, 1.6M tuples in Mbpp/255); fingerprints are compared for equality.
    import itertools as _itertools
    import zlib as _zlib
    if type(out) is int and out.bit_length() > 10000:
        return "%d:%d:%d" % (out.bit_length(), out % (2**61 - 1), out % (2**89 - 1)), "int-fingerprint"
    if isinstance(out, (list, tuple, set, frozenset, dict)) and len(out) > BIG:
        # the CRC of "repr(item)," for every item, 4,096 items per crc32 call. The cost counts against the call's
        # CPU limit (not the input's time): Mbpp/255's ~900 MB of item reprs took 27 s item by item on a 2-core
        # VM, over the 26 s limit of its tier, so the reference solution itself timed out; batched, ~12 s, which
        # the record's last field reports and call_limit provides for.
        items, crc = iter(out.items() if isinstance(out, dict) else out), 0
        while True:
            batch = [repr(_nanoazr_plain(item)) for item in _itertools.islice(items, 4096)]
            if not batch:
                break
            crc = _zlib.crc32((",".join(batch) + ",").encode("utf-8", "surrogatepass"), crc)
        return "%s:%d:%d" % (type(out).__name__, len(out), crc), "container-fingerprint"
    try:
        import sys as _sys
        _sys.set_int_max_str_digits(0)
    except Exception:
        pass
    text = repr(_nanoazr_plain(out))
    if len(text) > 20000:
        data = text.encode("utf-8", "surrogatepass")
        return "%d:%d:%d" % (len(data), _zlib.crc32(data), _zlib.adler32(data)), "repr-fingerprint"
    return text, type(out).__name__


def f(_nanoazr_inputs, _nanoazr_budget):
    import copy as _copy
    import time as _time
    _records, _start = [], _time.perf_counter()
    for _args in _nanoazr_inputs:
        _tc = _time.perf_counter()
        if _records and _tc - _start > _nanoazr_budget:
            break  # out of this call's time budget: the caller sends the remaining inputs again
        _args = _copy.deepcopy(_args)
        _t0 = _time.perf_counter()
        try:
            _out = _nanoazr_entry(*_args)
            _t1 = _time.perf_counter()
            _text, _kind = _nanoazr_encode(_out)
            # (the last field: the driver's own time on this input, which the input's time limit leaves out)
            _records.append(("ok", _text, _kind, _t1 - _t0, _t0 - _tc + _time.perf_counter() - _t1))
        except BaseException as _e:
            _records.append(("error", type(_e).__name__, "", _time.perf_counter() - _t0, _t0 - _tc))
            break  # the task has failed; skip its remaining inputs
    return _records
'''.replace("BIG", str(BIG))


# ----------------------------------------------------------------------------------------------------------------
# Prompts and program extraction
# ----------------------------------------------------------------------------------------------------------------

def task_text(benchmark: str, item: dict) -> str:
    """The problem statement given to the model: the function signature + docstring (HumanEval) or the MBPP text."""
    return item["prompt"]


# (one run of blanks before the newline, or two with the tag between: `[ \t]*(?:tag)?[ \t]*` splits a long run of
# blanks in quadratically many ways when no newline follows)
FENCE_RE = re.compile(r"```[ \t]*(?:(?:python3?|py)[ \t]*)?\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_code(completion: str, prefilled: bool) -> str:
    """Program text from a completion. prefilled: the prompt ended inside an open ```python fence, so the code is
    everything up to the closing fence. Otherwise the last fenced block inside the last <answer> (R1 template),
    else the last fenced block anywhere, else the whole completion."""
    if prefilled:
        return completion.split("```")[0]
    answer = answer_tag_text(completion)
    for text in (answer, completion):
        blocks = FENCE_RE.findall(text) if text else []
        if blocks:
            return blocks[-1]
    unclosed = re.search(r"```[ \t]*(?:(?:python3?|py)[ \t]*)?\n(.*)$", completion, re.DOTALL | re.IGNORECASE)
    return unclosed.group(1) if unclosed else (answer or completion)


def _defined_names(node) -> list:
    """Names a top-level function, class or assignment defines."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def sanitize(code: str, entry_point: str | None = None) -> str:
    """EvalPlus's sanitizer: keep the top-level imports, and the functions, classes and assignments that the entry
    point reaches (all of them when entry_point is None); drop example calls, prints, asserts, `input()` lines and
    `if __name__ == "__main__":` blocks, which would otherwise run and fail. Unparseable code is returned as is."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):  # the last two: pathologically nested code
        return code
    imports = (ast.Import, ast.ImportFrom)
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
                                                   ast.AnnAssign))]
    uses = {}  # defined name -> the names its definition mentions
    for n in defs:
        for name in _defined_names(n):
            uses.setdefault(name, set()).update(m.id for m in ast.walk(n) if isinstance(m, ast.Name))
    reached, todo = {entry_point}, [entry_point]
    while todo:
        for name in uses.get(todo.pop(), ()):
            if name not in reached:
                reached.add(name)
                todo.append(name)
    # kept statements sharing a line (`a=1;a=1;...`) bring that line once: once each made a 64 KiB one-liner a 1 GiB
    # program (and a set, not a list: membership in `defs` per statement was quadratic in the statement count)
    # (lines as ast numbers them: str.splitlines also breaks at \f, \v, \x1c-\x1e, \x85, \u2028 and \u2029, which
    # may sit in a string literal, and every later statement would then be cut from the wrong lines)
    lines, parts, last, defs = re.split(r"\r\n|\r|\n", code), [], 0, set(defs)
    for node in tree.body:
        if isinstance(node, imports) or (node in defs and (entry_point is None or
                                                           set(_defined_names(node)) & reached)):
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            if node.end_lineno > last:
                parts.append("\n".join(lines[max(start, last + 1) - 1:node.end_lineno]))
                last = node.end_lineno
    return "\n".join(parts) + "\n"


def candidate_program(item: dict, completion: str, prefilled: bool) -> str:
    """The program to test: the extracted code, sanitized with the entry point as EvalPlus does. It is the whole
    solution, as EvalPlus takes a chat model's: its prompt shows the task and pre-fills the answer's ```python fence
    (our qwen-boxed code prompt), but the task is never prepended to the answer, so a bare body or a missing helper
    (HumanEval/32's `poly`) fails."""
    return sanitize(extract_code(completion, prefilled), item["entry_point"])


def gold_completion(benchmark: str, item: dict, prefilled: bool) -> str:
    """A completion carrying the reference solution, in the form `extract_code` reads (for --check-gold, tests)."""
    program = item["prompt"] + item["canonical_solution"]
    if prefilled:
        return program + "\n```\nThe function above solves the task."
    return f"I will write the function. </think> <answer>\n```python\n{program}\n```\n</answer>"


# ----------------------------------------------------------------------------------------------------------------
# Values: Python source for inputs, literal-only parsing of outputs
# ----------------------------------------------------------------------------------------------------------------

def py_source(x) -> str:
    """Python source text that rebuilds x (lists, tuples, dicts, sets, str/bytes/int/float/complex/bool/None),
    including nan/inf and empty sets, which repr cannot round-trip."""
    if isinstance(x, float):
        if math.isnan(x):
            return "float('nan')"
        if math.isinf(x):
            return "float('inf')" if x > 0 else "float('-inf')"
        return repr(x)
    if isinstance(x, complex):
        return f"complex({py_source(x.real)}, {py_source(x.imag)})"
    if isinstance(x, list):
        return "[" + ", ".join(py_source(v) for v in x) + "]"
    if isinstance(x, tuple):
        return "(" + "".join(py_source(v) + ", " for v in x) + ")"
    if isinstance(x, set):
        return "{" + ", ".join(py_source(v) for v in x) + "}" if x else "set()"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{py_source(k)}: {py_source(v)}" for k, v in x.items()) + "}"
    return repr(x)


class _SpecialFloats(ast.NodeTransformer):
    # repr() writes nan / inf / -inf as bare names, which literal_eval refuses; turn them into constants
    def visit_Name(self, node):
        if node.id in ("nan", "inf"):
            return ast.copy_location(ast.Constant(float(node.id)), node)
        return node


_UNPARSEABLE = object()


def parse_value(text: str):
    """Value from a repr string, literals only (plus nan/inf); _UNPARSEABLE for anything else."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # ints longer than 4300 digits are legitimate outputs here
    try:
        return ast.literal_eval(_SpecialFloats().visit(ast.parse(text, mode="eval")))
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return _UNPARSEABLE
    finally:
        sys.set_int_max_str_digits(limit)


# ----------------------------------------------------------------------------------------------------------------
# Output comparison (EvalPlus semantics)
# ----------------------------------------------------------------------------------------------------------------

def _poly(xs, x):
    return sum(c * math.pow(x, i) for i, c in enumerate(xs))


def _surface_area(base_edge, height):  # Mbpp/581 oracle: slant height from the perpendicular height
    slant = math.sqrt((base_edge / 2) ** 2 + height ** 2)
    return round(base_edge ** 2 + 2 * base_edge * slant)


def _digit_distance(a, b):  # Mbpp/558 oracle: pad to equal length with leading zeros
    sa, sb = str(a), str(b)
    n = max(len(sa), len(sb))
    return sum(abs(int(x) - int(y)) for x, y in zip(sa.zfill(n), sb.zfill(n)))


def _is_floats(x) -> bool:
    return isinstance(x, float) or (isinstance(x, (list, tuple)) and bool(x) and all(isinstance(v, float) for v in x))


def expected_value(benchmark: str, entry_point: str, record):
    """What a reference record is compared by: ("fingerprint", text), ("notnone", bool) or ("value", value)."""
    status, text, kind = record[:3]
    if kind.endswith("fingerprint"):
        return ("fingerprint", kind + ":" + text)
    if benchmark == "mbpp+" and entry_point in MBPP_NOT_NONE and kind != "bool":
        # EvalPlus keeps only "is not None" for these tasks (their outputs are re.Match objects)
        return ("notnone", kind != "NoneType")
    return ("value", parse_value(text))


def output_ok(benchmark: str, entry_point: str, args, expected, record, atol: float) -> bool:
    """Does one candidate record ("ok", text, kind, seconds, ...) match `expected` (from expected_value)?"""
    status, text, kind = record[:3]
    if status != "ok":
        return False
    how, exp = expected
    if how == "fingerprint":
        return kind + ":" + text == exp
    if how == "notnone":
        return parse_value(text) == exp if kind == "bool" else exp == (kind != "NoneType")
    out = parse_value(text)
    if out is _UNPARSEABLE or exp is _UNPARSEABLE:
        return False
    try:
        if benchmark == "humaneval+" and entry_point == "find_zero":
            return isinstance(out, (int, float)) and abs(_poly(*args, out)) <= atol
        exact = out == exp
        if benchmark == "mbpp+":
            if entry_point == "are_equivalent":  # Mbpp/164: EvalPlus accepts any returned value
                exact = True
            elif entry_point == "sum_div":  # Mbpp/295
                exact = exact or out == 0
            elif entry_point == "surface_Area":  # Mbpp/581
                exact = exact or out == _surface_area(*args)
            elif entry_point == "digit_distance_nums":  # Mbpp/558
                exact = exact or out == _digit_distance(*args)
            elif entry_point in MBPP_SET_EQ:
                exact = set(out) == set(exp)
        if atol == 0 and _is_floats(exp):
            atol = 1e-6
        if exact or atol == 0:
            return bool(exact)
        if type(out) is not type(exp):
            return False
        if isinstance(exp, (list, tuple)) and len(out) != len(exp):
            return False
        return bool(np.allclose(out, exp, rtol=1e-7, atol=atol))
    except Exception:  # unhashable members for set(), non-numeric allclose, ...: not a match
        return False


# ----------------------------------------------------------------------------------------------------------------
# Running programs in the sandbox
# ----------------------------------------------------------------------------------------------------------------

def call_limit(input_limit: float, overhead: float = 0.0) -> float:
    """CPU limit of one sandbox call whose inputs may each take up to `input_limit` seconds, and the driver up to
    `overhead` seconds more on one input (deep copy, encoding: the reference's, which the input's time leaves out;
    Mbpp/255's 1.7M tuples take ~12 s to encode after 0.8 s in the function, and its tier's 26 s left the reference
    a 2x margin). One run of f does at most the budget plus one input and its overhead; the limit is twice that
    (plus 2 s, which covers an overhead's fraction of a second) so that the per-input time limits, enforced inside
    the call, decide every verdict and the sandbox's CPU limit is only a backstop. (CodeRunner's sandboxes call f once,
    repeat=1.)"""
    need = input_limit + int(overhead)
    tier = next((t for t in LIMIT_TIERS if t >= need), LIMIT_TIERS[-1])
    return 2 * (CALL_BUDGET_S + tier) + 2


class CodeRunner:
    """Runs (program, entry point, inputs, per-input limit) jobs in sandboxes sized for code benchmarks: one
    Sandbox per limit tier (created on first use; 4 GiB address space, wall limit twice the CPU limit because the
    machine may be shared). Jobs run concurrently, one thread each, up to twice the sandbox's worker count."""

    def __init__(self, workers=None):
        self.workers = workers or len(os.sched_getaffinity(0))
        self._sandboxes = {}
        self._lock = threading.Lock()

    def sandbox(self, limit: float):
        with self._lock:
            if limit not in self._sandboxes:
                from sandbox import Sandbox
                # repeat=1: one call of f (benchmark tests need no determinism probe, and it halves the cost)
                self._sandboxes[limit] = Sandbox(workers=self.workers, cpu_s=limit, wall_s=2 * limit + 5,
                                                 mem_mb=4096, repeat=1, max_args=MAX_INPUT_TEXT,
                                                 extra_modules=("numpy",))  # EvalPlus's process has numpy
            return self._sandboxes[limit]

    def close(self):
        with self._lock:
            for sb in self._sandboxes.values():
                sb.close()
            self._sandboxes = {}

    def run(self, jobs: list[tuple]) -> list[list]:
        """jobs: (program, entry_point, inputs, input_limit_s, overhead_s) (see call_limit). Returns per job one
        record (status, text, kind, seconds, the driver's seconds) per input, in order (see run_job)."""
        if not jobs:
            return []
        with ThreadPoolExecutor(min(len(jobs), 2 * self.workers)) as pool:
            return list(pool.map(self.run_job, jobs))

    def run_job(self, job: tuple) -> list:
        """One job, call after call: each sandbox call gets the next inputs that fit the argument cap (at most
        `size`) and returns records for those it finished within CALL_BUDGET_S; the next call continues after them.
        The job stops at its first failing input (the rest get ("skipped", ...)); a killed call (CPU/wall limit,
        memory) fails it at that point. A result over the sandbox's record cap halves `size` and retries. An input
        whose source text is longer than the sandbox's argument cap cannot be sent: ("excluded", ...)."""
        program, entry, inputs, input_limit, overhead = job
        cap = MAX_INPUT_TEXT - 16
        limit = call_limit(input_limit, overhead)
        sb = self.sandbox(limit)
        code = program + "\n" + DRIVER.replace("ENTRY", entry)
        srcs = [py_source(list(a)) for a in inputs]
        records, size = [], CHUNK
        while len(records) < len(srcs):
            pos = len(records)
            if len(srcs[pos]) + 2 > cap:  # too big to send: skipped for the reference and for every candidate
                records.append(("excluded", f"input source is {len(srcs[pos])} characters, over the sandbox's "
                                            "argument cap", "", 0.0, 0.0))
                continue
            hi, total = pos, 2
            while hi < len(srcs) and hi - pos < size and total + len(srcs[hi]) + 2 <= cap:
                total += len(srcs[hi]) + 2
                hi += 1
            res = sb.run(code, "[" + ", ".join(srcs[pos:hi]) + f"], {CALL_BUDGET_S}")
            got = _records(res)
            if got is None and res.status == "bad_output" and hi - pos > 1:
                size = max(1, (hi - pos) // 2)
                continue
            if not got:  # timeout, memory, crash, rejected, ...: the task fails at this input
                got = [(res.status, str(res.error or "")[:200], "", limit, 0.0)]
            records += got[:hi - pos]
            if records[-1][0] != "ok":
                break
        return _pad_records(records, len(inputs))


def _records(res):
    """The driver's list of records from a sandbox Result, or None when the call did not return normally."""
    if res.status != "ok":
        return None
    value = res.value
    if isinstance(value, str):
        value = parse_value(value)
    if not isinstance(value, (list, tuple)):
        return None
    records = [tuple(r) if isinstance(r, (list, tuple)) else () for r in value]
    if not all(len(r) == 5 and isinstance(r[0], str) and isinstance(r[1], str) and isinstance(r[2], str)
               and isinstance(r[3], (int, float)) and isinstance(r[4], (int, float)) for r in records):
        return None
    return records


def _pad_records(records: list, n: int) -> list:
    return records + [("skipped", "", "", 0.0, 0.0)] * (n - len(records))


# ----------------------------------------------------------------------------------------------------------------
# Reference outputs (cached) and scoring
# ----------------------------------------------------------------------------------------------------------------

def reference_outputs(benchmark: str, items: list[dict], runner: CodeRunner) -> dict:
    """{task id: {"expected": [expected_value per input], "time": [seconds per input], "overhead": [the driver's
    seconds per input], "ok": bool}} for the reference solutions, computed once in the sandbox and cached under
    $NANOAZR_CACHE (default ~/.cache/nanoazr)."""
    todo, out = [], {}
    for it in items:
        # (DRIVER: the outputs' encoding; a cache from another version of it would fail every candidate)
        key = json.dumps([benchmark, it["prompt"], it["canonical_solution"], py_source(it["inputs"]), MAX_INPUT_TEXT,
                          DRIVER], sort_keys=True)
        key = hashlib.sha256(key.encode()).hexdigest()[:32]
        path = CACHE_DIR / f"{benchmark.rstrip('+')}plus-{key}.json"
        if path.is_file():
            out[it["id"]] = json.loads(path.read_text())
        else:
            todo.append((it, path))
    if todo:
        jobs = [(it["prompt"] + it["canonical_solution"], it["entry_point"], it["inputs"], TASK_LIMIT_S, 0.0)
                for it, _ in todo]
        for (it, path), records in zip(todo, runner.run(jobs)):
            entry = {"records": [list(r) for r in records],
                     "ok": all(r[0] in ("ok", "excluded") for r in records)}
            if entry["ok"]:  # never cache a failed reference run (it may have been a transient overload)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + f".tmp{os.getpid()}")
                tmp.write_text(json.dumps(entry))
                os.replace(tmp, path)
            out[it["id"]] = entry
    by_id = {it["id"]: it for it in items}
    return {tid: {"ok": e["ok"], "time": [r[3] for r in e["records"]], "overhead": [r[4] for r in e["records"]],
                  "expected": [expected_value(benchmark, by_id[tid]["entry_point"], tuple(r)) for r in e["records"]]}
            for tid, e in out.items()}


def score_code(benchmark: str, items: list[dict], completions: list[str], runner: CodeRunner,
               prefilled: bool) -> list[dict]:
    """One {"extracted", "verdict", "base", "detail"} per (item, completion); verdict = passes base and plus."""
    refs = reference_outputs(benchmark, list({it["id"]: it for it in items}.values()), runner)
    programs = [candidate_program(it, c, prefilled) for it, c in zip(items, completions)]
    # per-input limits as EvalPlus: max(10 s, 8 x the reference's time); the sandbox call limit follows the largest,
    # and the reference's largest driver overhead (a correct output costs a candidate the same to encode)
    limits = {tid: [max(MIN_TIME_LIMIT_S, TIME_FACTOR * t) for t in ref["time"]] for tid, ref in refs.items()}
    all_records = runner.run([(p, it["entry_point"], it["inputs"], max(limits[it["id"]], default=MIN_TIME_LIMIT_S),
                               max(refs[it["id"]]["overhead"], default=0.0)) for p, it in zip(programs, items)])
    scored = []
    for it, prog, records in zip(items, programs, all_records):
        ref = refs[it["id"]]
        if not ref["ok"]:
            scored.append({"extracted": prog, "verdict": False, "base": False,
                           "detail": "reference solution failed in the sandbox"})
            continue
        passed, detail, excluded = [], "", 0
        # EvalPlus checks the base inputs and the plus inputs as two runs, each within min(60 s, the sum of its
        # inputs' limits) + 1 s
        lims, n_base = limits[it["id"]], it["n_base"]
        budget = [min(TASK_LIMIT_S, sum(lims[:n_base])) + 1.0, min(TASK_LIMIT_S, sum(lims[n_base:])) + 1.0]
        spent = [0.0, 0.0]
        for k, (args, exp, rec, limit) in enumerate(zip(it["inputs"], ref["expected"], records, lims)):
            if rec[0] == "excluded":  # too big to send to the sandbox: skipped for the reference and for everyone
                excluded += 1
                passed.append(True)
                continue
            run = int(k >= n_base)
            spent[run] += rec[3]
            match = output_ok(benchmark, it["entry_point"], args, exp, rec, it["atol"])
            in_time = rec[3] <= limit and spent[run] <= budget[run]
            if not (match and in_time) and not detail:
                why = f"{rec[0]} {rec[1][:200]}" if rec[0] != "ok" else "over the time limit" if match else \
                    "wrong output"
                detail = f"input {k}: {why}"
            passed.append(match and in_time)
        if excluded:
            detail = (detail + "; " if detail else "") + f"{excluded} input(s) over the sandbox's argument cap skipped"
        base = all(passed[:it["n_base"]])
        scored.append({"extracted": prog, "verdict": base and all(passed), "base": base, "detail": detail})
    return scored
