"""Benchmark data: find, read and check each benchmark's file, and turn its records into uniform items.

Files come from a data folder laid out like `shared/data` (see its README.md): `--data-dir`, else the environment
variable NANOAZR_DATA, else `../shared/data` beside the repo. A benchmark whose file is not there is fetched from the
Hugging Face hub with `huggingface_hub` file downloads when online (no `datasets` dependency). Every problem with a
file (missing, unreadable, wrong fields) raises DataError with one line that names the file and the fix.

Items (one dict per problem, always with "id"):
  cruxeval-i / cruxeval-o: code, input, output               (CRUXEval: `f(input) == output`)
  humaneval+ / mbpp+:      prompt, entry_point, canonical_solution, inputs (base then plus), n_base, atol
  math benchmarks:         problem, answer                   (reference answer string, see mathscore.GOLD_FIELD)
  lcb-e:                   code (as AZR prepares it: azr_lcb_program), input (argument text), output,
                           function_name (LiveCodeBench execution, user-supplied file; its `input` is the whole call
                           `name(args)`, reduced to `args`); scored as input prediction, as AZR's validation does
  lcb:                     question, starter_code, kind (stdin/functional), func_name, tests [{input, output}],
                           solution (optional; only files that carry one can be --check-gold'ed), see eval/lcb.py
"""
import gzip
import json
import os
import re
import zlib
from pathlib import Path

from eval.mathscore import GOLD_FIELD, PROBLEM_FIELD, gold_answer

REPO = Path(__file__).resolve().parents[1]

CODE_REASONING = ["cruxeval-i", "cruxeval-o"]
CODE_GEN = ["humaneval+", "mbpp+"]
MATH = ["aime24", "aime25", "amc23", "math500", "minerva", "olympiadbench"]
DEFAULT_BENCHMARKS = CODE_REASONING + CODE_GEN + MATH
LCB = ["lcb-e"]  # only with --lcb-file (not in the shared data, see data/README.md)
LCB_GEN = ["lcb"]  # code generation: --lcb-gen-file, else the hub (release_v5) when online
ALL_BENCHMARKS = DEFAULT_BENCHMARKS + LCB + LCB_GEN

# File of each benchmark inside the data folder (data/README.md).
LOCAL_FILE = {
    "cruxeval-i": "cruxeval/cruxeval.jsonl", "cruxeval-o": "cruxeval/cruxeval.jsonl",
    "humaneval+": "humanevalplus/HumanEvalPlus.jsonl.gz", "mbpp+": "mbppplus/MbppPlus.jsonl.gz",
    "aime24": "aime24/test.jsonl", "aime25": "aime25/test.jsonl", "amc23": "amc23/test.jsonl",
    "math500": "math500/test.jsonl", "minerva": "minerva_math/test.jsonl", "olympiadbench": "olympiadbench/test.jsonl",
}
# Hugging Face dataset repos holding the same benchmarks (used only when the local file is missing). The reader
# picks the test-split file (jsonl/json, or parquet when pyarrow is installed) and checks the same fields.
HUB_REPO = {
    "cruxeval-i": "cruxeval-org/cruxeval", "cruxeval-o": "cruxeval-org/cruxeval",
    "humaneval+": "evalplus/humanevalplus", "mbpp+": "evalplus/mbppplus",
    "aime24": "HuggingFaceH4/aime_2024", "aime25": "math-ai/aime25", "amc23": "math-ai/amc23",
    "math500": "HuggingFaceH4/MATH-500", "minerva": "math-ai/minervamath", "olympiadbench": "math-ai/olympiadbench",
    "lcb-e": "livecodebench/execution",  # what AZR's validation data is built from
}
REQUIRED = {
    "cruxeval-i": ["code", "input", "output", "id"], "cruxeval-o": ["code", "input", "output", "id"],
    "humaneval+": ["task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input", "atol"],
    "mbpp+": ["task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input", "atol"],
    "lcb-e": ["code", "input", "output"],
}


class DataError(Exception):
    """A benchmark file is missing or malformed; str(error) is one line naming the file and the fix."""


def default_data_dir() -> Path:
    """--data-dir default: $NANOAZR_DATA, else ../shared/data beside the repo."""
    return Path(os.environ.get("NANOAZR_DATA", REPO.parent / "shared" / "data"))


# ----------------------------------------------------------------------------------------------------------------
# Reading files
# ----------------------------------------------------------------------------------------------------------------

def read_jsonl(path: Path) -> list[dict]:
    """Records of a .jsonl / .jsonl.gz / .json (list) file; DataError naming the file and line when malformed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path (--data-dir, NANOAZR_DATA, --lcb-file, "
                        "--lcb-gen-file)")
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e}); re-download the file") from None
    if path.name.endswith(".json"):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e}); re-download the file") from None
        if not isinstance(records, list):
            raise DataError(f"{path}: expected a JSON list of records")
    else:
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {n} is not valid JSON ({e.msg}); re-download the file") from None
    if not records:
        raise DataError(f"{path}: no records")
    for n, r in enumerate(records, 1):
        if not isinstance(r, dict):
            raise DataError(f"{path}: record {n} is a {type(r).__name__}, expected a JSON object")
    return records


def _read_parquet(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: parquet file needs pyarrow (pip install pyarrow), or put a jsonl copy in the "
                        "data folder") from None
    return pq.read_table(path).to_pylist()


def _hub_records(benchmark: str, local: Path) -> list[dict]:
    """Download the benchmark's test file from the Hugging Face hub; DataError (one line) when offline."""
    repo = HUB_REPO[benchmark]
    try:
        from huggingface_hub import hf_hub_download, list_repo_files
        from huggingface_hub.utils import logging as hub_logging
        hub_logging.set_verbosity_error()  # offline, its retries would print a warning each before our one line
        files = list_repo_files(repo, repo_type="dataset")
    except Exception as e:  # offline, no such repo, hub library missing
        raise DataError(f"{benchmark}: no file at {local} and the Hugging Face hub is unreachable for {repo} "
                        f"({type(e).__name__}); put the file there, or point NANOAZR_DATA (python -m eval: also "
                        "--data-dir) at a folder holding it") from None
    # Prefer test-split jsonl, then json, then parquet; skip READMEs and scripts.
    ranked = []
    for f in files:
        name = f.lower()
        kind = next((i for i, ext in enumerate((".jsonl", ".jsonl.gz", ".json", ".parquet")) if name.endswith(ext)),
                    None)
        if kind is not None:
            ranked.append((("test" not in name), kind, f))
    if not ranked:
        raise DataError(f"{benchmark}: hub repo {repo} has no jsonl/json/parquet file; put the file at {local}")
    path = Path(hf_hub_download(repo, sorted(ranked)[0][2], repo_type="dataset"))
    return _read_parquet(path) if path.suffix == ".parquet" else read_jsonl(path)


def _check_fields(records: list[dict], fields: list[str], where: str):
    for n, r in enumerate(records, 1):
        missing = [f for f in fields if f not in r]
        if missing:
            raise DataError(f"{where}: record {n} lacks field(s) {', '.join(missing)}; "
                            "is this the right file for the benchmark?")


def _lcb_gen_records(lcb_gen_file) -> tuple[list[dict], str]:
    """LiveCodeBench code generation records: the user's file, else release_v5 from the hub (one line when offline)."""
    from eval import lcb
    if lcb_gen_file is not None:
        path = Path(lcb_gen_file)
        return (_read_parquet(path) if path.suffix == ".parquet" else read_jsonl(path)), str(path)
    try:
        from huggingface_hub import hf_hub_download
        paths = [hf_hub_download(lcb.HUB_REPO, f, repo_type="dataset") for f in lcb.RELEASE_V5_FILES]
    except Exception as e:  # offline, no such repo/file, hub library missing
        raise DataError(f"lcb: no --lcb-gen-file given and the Hugging Face hub is unreachable for {lcb.HUB_REPO} "
                        f"({type(e).__name__}); pass --lcb-gen-file PATH (jsonl/json of its release_v5 records)") \
            from None
    return [r for p in paths for r in read_jsonl(Path(p))], f"{lcb.HUB_REPO} release_v5 (hub)"


def raw_records(benchmark: str, data_dir: Path | None = None, lcb_file: Path | None = None,
                lcb_gen_file: Path | None = None) -> tuple[list[dict], str]:
    """(records, where) for one benchmark: local file, user-supplied LCB file, or hub download."""
    if benchmark in LCB_GEN:
        return _lcb_gen_records(lcb_gen_file)
    if benchmark in LCB:
        if lcb_file is None:
            raise DataError(f"{benchmark}: LiveCodeBench is not in the shared data; pass --lcb-file PATH "
                            "(a jsonl/json/parquet copy of the Hugging Face dataset livecodebench/execution)")
        path = Path(lcb_file)
        records = _read_parquet(path) if path.suffix == ".parquet" else read_jsonl(path)
        return records, str(path)
    if benchmark not in LOCAL_FILE:
        raise DataError(f"unknown benchmark {benchmark!r}; choose from {','.join(ALL_BENCHMARKS)}")
    explicit = data_dir is not None or "NANOAZR_DATA" in os.environ  # a folder the user named must exist
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    if explicit and not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist; pass --data-dir (or set NANOAZR_DATA to) the "
                        "folder holding the benchmark files, or set neither to fetch them from the Hugging Face hub")
    local = data_dir / LOCAL_FILE[benchmark]
    if local.is_file():
        return read_jsonl(local), str(local)
    return _hub_records(benchmark, local), f"{HUB_REPO[benchmark]} (hub)"


# ----------------------------------------------------------------------------------------------------------------
# EvalPlus input types
# ----------------------------------------------------------------------------------------------------------------
# MBPP+ stores tuples, sets and complex numbers as JSON lists/strings. EvalPlus restores the argument types per task
# before calling the function (its `mbpp_deserialize_inputs`); the task numbers below are the ones it lists, and
# `_mbpp_restore` applies the same conversion per group. Without this, candidates that rely on tuple semantics
# (e.g. `t1 + t2` or hashing) would be judged on the wrong input types.

def _tuples(x):
    return [tuple(v) for v in x]


def _deep_tuple(x):
    return tuple(_deep_tuple(v) for v in x) if isinstance(x, list) else x


_MBPP_RESTORE = {
    # every argument is a list that becomes a tuple
    **{n: lambda a: _tuples(a) for n in (2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579,
                                         596, 616, 630, 726, 740, 744, 809)},
    # every argument is a list of lists that become tuples
    **{n: lambda a: [_tuples(v) for v in a] for n in (63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473,
                                                      614, 780)},
    # first argument: list of lists -> list of tuples; second unchanged
    **{n: lambda a: [_tuples(a[0]), a[1]] for n in (75, 413, 444, 753)},
    # second argument becomes a tuple
    **{n: lambda a: [a[0], tuple(a[1])] for n in (106, 750)},
    # list of sets (EvalPlus writes an empty member as {} , kept as is)
    115: lambda a: [[set(v) if isinstance(v, list) and v else {} for v in a[0]]],
    124: lambda a: (float(a[0]), complex(a[1])),
    # first argument becomes a tuple
    **{n: lambda a: [tuple(a[0]), a[1]] for n in (250, 405, 446, 617, 720, 763, 808)},
    # tuple of tuples
    **{n: lambda a: [tuple(_tuples(v)) for v in a] for n in (259, 401, 445)},
    278: lambda a: [tuple(tuple(v) if isinstance(v, list) else v for v in a[0])],
    307: lambda a: [tuple(a[0]), a[1], a[2]],
    722: lambda a: [{k: tuple(v) for k, v in a[0].items()}] + list(a[1:]),
    252: lambda a: [complex(a[0])],
    # everything (the argument list itself included) becomes nested tuples
    **{n: lambda a: _deep_tuple(a) for n in (580, 615, 791)},
}


def _mbpp_restore(task_id: str, inputs: list) -> list:
    fix = _MBPP_RESTORE.get(int(task_id.split("/")[-1]))
    return inputs if fix is None else [fix(a) for a in inputs]


# ----------------------------------------------------------------------------------------------------------------
# Records -> items
# ----------------------------------------------------------------------------------------------------------------

def _code_items(benchmark: str, records: list[dict], where: str) -> list[dict]:
    items = []
    for r in records:
        inputs = []
        for key in ("base_input", "plus_input"):
            v = r[key]
            if isinstance(v, str):  # hub parquet copies store the inputs as JSON text
                v = json.loads(v)
            if isinstance(v, dict) and not v:  # MBPP+ v0.2.0 writes `{}` for "no plus inputs" (Mbpp/793)
                v = []
            if not isinstance(v, list):
                raise DataError(f"{where}: {r['task_id']} {key} is a {type(v).__name__}, expected a list")
            if benchmark == "mbpp+":
                v = _mbpp_restore(r["task_id"], v)
            inputs.append(v)
        items.append({"id": r["task_id"], "prompt": r["prompt"], "entry_point": r["entry_point"],
                      "canonical_solution": r["canonical_solution"], "inputs": inputs[0] + inputs[1],
                      "n_base": len(inputs[0]), "atol": float(r["atol"] or 0)})
    return items


def _call_arguments(call: str, name: str) -> str:
    """'name(a = 1, b = [2])' -> 'a = 1, b = [2]' (LiveCodeBench-Execution writes the whole call); other text as is."""
    call = call.strip()
    if name and call.startswith(name + "(") and call.endswith(")"):
        return call[len(name) + 1:-1]
    return call


# AZR's import lines for LiveCodeBench-Execution programs (its add_imports), in its order: each is put in front of the
# program when one of its trigger texts occurs in the program as it stands by then.
_LCB_IMPORTS = [(("collections",), "import collections"), (("Counter",), "from collections import Counter"),
                (("gcd",), "from math import gcd"), (("deque",), "from collections import deque"),
                (("@cache",), "from functools import cache"), (("= inf", "[inf]", "inf)"), "from math import inf"),
                (("accumulate",), "from itertools import accumulate"),
                (("@lru_cache",), "from functools import lru_cache"),
                (("defaultdict",), "from collections import defaultdict"), (("bisect",), "import bisect"),
                (("islice",), "from itertools import islice"), (("math.inf",), "import math"),
                (("prod(",), "from math import prod"), (("heapify(",), "from heapq import heapify, heappop, heappush"),
                (("reduce(",), "from functools import reduce"), (("comb(",), "from math import comb")]


def azr_lcb_program(code: str, name: str) -> str:
    """A LiveCodeBench-Execution program as AZR's in-loop validation prepares it: `def NAME(` renamed to `def f(`
    (the definition only, so a recursive call of NAME fails, as in AZR), the import lines above, and typing's
    List/Dict/Tuple/Set written as the builtins (everywhere in the text, as AZR does). AZR also black-formats the
    program first; we do not (black is not a dependency), so the prompt's layout can differ."""
    code = re.sub(r"def\s+" + re.escape(name) + r"\s*\(", "def f(", code)
    for triggers, line in _LCB_IMPORTS:
        if any(t in code for t in triggers):
            code = line + "\n" + code
    for typing_name in ("List", "Dict", "Tuple", "Set"):
        code = code.replace(typing_name, typing_name.lower())
    return code.replace("from typing import list", "from typing import List")


def load_benchmark(benchmark: str, data_dir: Path | None = None, limit: int | None = None,
                   lcb_file: Path | None = None, lcb_gen_file: Path | None = None) -> list[dict]:
    """Uniform items of one benchmark (first `limit` only when given). Raises DataError with one line."""
    records, where = raw_records(benchmark, data_dir, lcb_file, lcb_gen_file)
    if benchmark in REQUIRED:
        _check_fields(records, REQUIRED[benchmark], where)
    try:
        if benchmark in LCB_GEN:
            from eval import lcb
            _check_fields(records, lcb.REQUIRED, where)
            items = []
            for n, r in enumerate(records):
                try:
                    items.append({**lcb.make_item(n, r), "solution": r.get("solution")})
                except lcb.LCBError as e:
                    raise DataError(f"{where}: record {n + 1}: {e}") from None
        elif benchmark in CODE_REASONING:
            items = [{"id": r["id"], "code": r["code"], "input": r["input"], "output": r["output"]} for r in records]
        elif benchmark in CODE_GEN:
            items = _code_items(benchmark, records, where)
        elif benchmark in MATH:
            pfield = PROBLEM_FIELD[benchmark]
            if pfield not in records[0] and "problem" in records[0]:
                pfield = "problem"  # hub copies name the field "problem"
            gfield = GOLD_FIELD[benchmark].split(":")[-1]
            _check_fields(records, [pfield, gfield], where)
            items = []
            for n, r in enumerate(records):
                try:
                    answer = gold_answer(benchmark, r)
                except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
                    raise DataError(f"{where}: record {n + 1}: no reference answer ({type(e).__name__}: {e}); fix or "
                                    "remove that record, or fetch the file again") from None
                items.append({"id": str(r.get("id", r.get("unique_id", r.get("idx", n)))), "problem": r[pfield],
                              "answer": answer})
        else:  # lcb-e
            items = []
            for n, r in enumerate(records):
                name = r.get("function_name") or re.match(r"\s*(\w+)\(", r["input"]).group(1)
                items.append({"id": str(r.get("id", r.get("question_id", n))), "code": azr_lcb_program(r["code"], name),
                              "input": _call_arguments(r["input"], name), "output": r["output"],
                              "function_name": name})
    except DataError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, zlib.error) as e:
        raise DataError(f"{where}: malformed record for {benchmark} ({type(e).__name__}: {e}); fix or remove it, or "
                        "fetch the file again") from None
    return items[:limit] if limit else items
