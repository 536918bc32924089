"""nanoAZR sandbox: runs model-written Python under a seccomp-bpf allowlist, fast, and decides verdicts outside it.

Layout (trusted on the left, untrusted on the right):

    caller (trainer/eval) == Sandbox ==pipes==> zygote A x workers (PYTHONHASHSEED=0) -- template --fork--> child
                                     ==pipes==> zygote B x workers/2 (PYTHONHASHSEED=1) -- template --fork--> child
                                  (B: glibc malloc, argv and environment of random lengths: another heap layout)

A zygote is a fresh interpreter (never a fork of the caller, which may hold CUDA or torch state) that has preloaded
the pure modules AZR programs import. Before serving anything it forks its template, which from then on only forks
one child per execution and reaps it, so every child starts from the same heap whatever the zygote served before
(no order of identity-hashed objects, address or leftover request text tells one run from another); the zygote
hands the request to the child in a memfd and supervises it. Before any untrusted byte runs, the child points
stdin at /dev/null and stdout/stderr/result at pipes, closes every other descriptor, sets rlimits (CPU, address
space mem_mb above the child's own size, file size 0, 16 fds, no processes, no core (limit 1, see _child); script
runs get a 256 MiB stack) and installs a seccomp allowlist (default: kill the process; file and pipe syscalls fail
with EPERM so Python raises PermissionError; non-x86_64 arch and x32 numbers: kill).
It then writes a one-byte "sandboxed" marker. The zygote enforces the wall-clock limit with SIGKILL, caps the
captured output, reaps the child and relays raw bytes. Verdicts are computed here, in the caller, from those
bytes: the child's value travels as one length-prefixed record in our own tagged encoding of exact builtin types
(never pickle), which we decode into fresh builtin objects. We never eval, unpickle or call a method of anything
the child made; comparisons (Python == on decoded builtins: 1 == 1.0 == True, sets and dicts unordered,
tuple != list) happen here. Model text that must be evaluated (a predicted input, a non-literal predicted output)
is evaluated only inside a child; only its decoded value comes back. The RL loop's checks also require predictions
to be pure expressions (check_pure), so an answer cannot run code that computes it or forges the child's record.

Covered (kernel-enforced, tested in tests/test_sandbox*.py): file reads/writes/listing/creation, sockets,
processes, threads, exec, signals to other processes (kill/tkill/tgkill, fcntl F_SETOWN), ptrace and
process_vm_*, io_uring, setsid, raising rlimits (prlimit64 with a new limit), 32-bit and x32 syscall paths,
CPU loops (RLIMIT_CPU), sleeps/deadlocks (wall SIGKILL), memory bombs (RLIMIT_AS), output floods, huge or
deep or cyclic or non-plain return values, subclasses and always-equal objects (exact-type encoding),
harness monkeypatching (fresh fork per run), forged stdout markers (stdout is never parsed), script mode for
stdin tests (run(code, "", stdin=text): stdin text and the captured prints live in the child's memory, no new
syscall; a capture flood ends as output_limit; tested in tests/test_eval_lcb.py), injected predicted
inputs (argument text must parse as the arguments of one call to f), environment secrets (zygote env is
scrubbed), orphans (parent-death signals, EOF detection), nondeterminism (two calls per child on fresh
arguments + a run in the other-hash-seed zygote on the input re-spaced + a default-repr address check; children
of a template that never served a request, so no heap history; a timing margin on CPU and on wall time).

Not covered: kernel bugs in the allowed syscalls (mmap, brk, futex, ...); file metadata through
newfstatat(path, AT_EMPTY_PATH) (allowed because glibc's fstat uses it; content is never readable); timing
side channels between concurrent children; pool-wide memory (bounded only by one child per zygote, each with the
zygote's size + mem_mb of address space; no cgroup); running as root is not dropped to another uid; hosts other
than Linux x86_64 (refused, see SandboxUnavailable); golds of the interpreter's or a library's build: the
in-page address bits of objects static in the binary (`str(None.__eq__)[-4:-1]`, the order of `{int, str, float}`)
are the same in every zygote of one build and others on another build, as are libm's last bits and
zlib.compress's bytes.
"""
import ast
import builtins
import ctypes
import functools
import hashlib
import importlib
import io
import itertools
import json
import math
import os
import queue
import re
import resource
import select
import signal
import struct
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

MAX_CODE = 16384           # program characters (AZR's content cap is ~8k; imports may be prepended)
MAX_ARGS = 4096            # argument text characters (a proposer's input, a solver's predicted input)
MAX_VALUE_TEXT = 65536     # predicted/gold output text characters
MAX_RECORD = 65536         # encoded bytes per return value
MAX_DEPTH = 100            # nesting of values
MAX_INT_BITS = 14000       # ~4200 digits, under CPython's 4300-digit str() limit
OUTPUT_CAP = 65536         # stdout/stderr bytes kept each; the child is killed past 4x
MAX_STDIN = 16 << 20       # stdin text characters for script runs (LiveCodeBench inputs reach a few MB)
CAPTURE_MAX = 16 << 20     # printed characters a script run may produce before it ends as output_limit
CAPTURE_KEEP = 60000       # printed characters returned as text; longer output comes back as a digest too
SCRIPT_STACK = 256 << 20   # main-thread stack of script runs (deep recursion; LCB's programs raise it with threads)
TIMING_MARGIN = 0.25       # validate rejects programs using more than this fraction of the CPU or wall limit (flaky)
HASH_SEEDS = ("0", "1")    # zygote A (gold outputs), zygote B (determinism probe)
RECYCLE_AFTER = 20000      # zygote requests before a fresh zygote replaces it (bounds any slow drift)
# Modules a program may import: preloaded in the zygote, since the child cannot open files. numpy is not in the
# default set: it adds ~0.3 ms to every fork (measured); pass Sandbox(extra_modules=("numpy",)) to allow it.
PRELOAD = ("math", "cmath", "re", "string", "collections", "collections.abc", "itertools", "functools", "operator",
           "heapq", "bisect", "copy", "typing", "fractions", "decimal", "statistics", "numbers", "array", "struct",
           "json", "textwrap", "unicodedata", "base64", "binascii", "zlib", "dataclasses", "enum", "abc", "queue",
           "keyword", "difflib", "pprint", "random", "time", "datetime", "calendar", "hashlib", "hmac", "secrets",
           "uuid", "threading", "socket", "subprocess", "signal", "platform", "mmap", "fcntl")

# Model-written code often holds an invalid escape ("\d" in a plain string). The host parses such text (ast.parse,
# file name "<unknown>") without running it: on Python 3.12+ each parse would print a SyntaxWarning into the run's
# log, and under `-W error` (or PYTHONWARNINGS) the warning would become a SyntaxError and change the verdict. A
# child's own warnings stay in its Result.stderr (zygotes start with a clean environment).
for _category in (SyntaxWarning, DeprecationWarning):   # (DeprecationWarning up to Python 3.11)
    warnings.filterwarnings("ignore", category=_category, module="<unknown>")


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot guarantee isolation here (filter not installable, self-test off): it refuses to run."""


@dataclass(frozen=True)
class Result:
    """One verdict. `value` is the canonical repr of f's return value when status == "ok" (for validate: the gold
    output). validate also fills `program` (renamed to f) and `imports`. stdout/stderr are capped and escaped.
    status: ok; exception (the program raised); timeout (CPU or wall-clock limit); memory (MemoryError);
    forbidden (a blocked system call: SIGSYS, or EPERM raised as PermissionError); output_limit; crash (killed by
    another signal); bad_output (not a plain value, over a cap, or no result record); rejected (by a static check
    or cap, or by validate as timing-fragile); nondeterministic (validate only); sandbox_error (ours, never the
    program's doing)."""
    status: str
    value: str = None
    error: str = None
    program: str = None
    imports: tuple = ()
    stdout: str = ""
    stderr: str = ""

    def __iter__(self):  # `status, value, error = result`
        return iter((self.status, self.value, self.error))


def truncate_output(s, n=400):
    """AZR's gold-output truncation: first n/2 characters + "..." + last n/2 when longer than n."""
    return s if len(s) <= n else s[:n // 2] + "..." + s[-(n // 2):]


def is_truncated(s, n=400):
    """Whether a gold output text has truncate_output's shape (which AZR's cut seed outputs share)."""
    return type(s) is str and len(s) == n + 3 and s[n // 2:n // 2 + 3] == "..."


def azr_status_passes(error):
    """Whether AZR's executor reads a run that raised `error` (the "Name: message" text of Result.error) as no
    failure: its status is the last line of the traceback (so of the message), stripped and cut to 400 characters
    like an output, and only a status containing "error" in any case is a failure. Exception, StopIteration,
    SystemExit, decimal.InvalidOperation, a program's own class not named *Error, or a message whose last line
    is empty or free of the word all pass: with output "" (validation), or no verdict (a check)."""
    return "error" not in truncate_output((error or "").split("\n")[-1].strip()).lower()


_DIFFERENT_VALUES = "two calls of f on fresh arguments returned different values"
_SECOND_RAISED = "second call of f raised "


def azr_valid_without_output(result):
    """Whether AZR's check_all calls a proposal valid that validate() refused, with gold output "": an exception
    whose status line passes (azr_status_passes), in the first call or the second, or AZR's own determinism failure
    (`if returns != f(...): raise Exception('Non-deterministic code')`, a status without "error"), which two calls
    returning different values (NaN included) raise. Our other refusals stay refusals (static rules, timing,
    limits, non-plain values, the other hash seed's run, memory addresses, equal values with different reprs)."""
    if result.status == "exception":
        return azr_status_passes(result.error)
    if result.status == "nondeterministic" and type(result.error) is str:
        if result.error.startswith(_SECOND_RAISED):
            return azr_status_passes(result.error[len(_SECOND_RAISED):])
        return result.error == _DIFFERENT_VALUES
    return False


def _azr_no_verdict(res):
    """Whether AZR's executor gives a check on this run no verdict: f raised an exception whose status line passes,
    so its evaluation of the (empty) result fails in the retry loop and the check returns None (azr-spec.md 4.1)."""
    return res.status == "exception" and azr_status_passes(res.error)


# ---------------------------------------------------------------------------------------------------------------
# Static checks (trusted side, pure text/AST work: nothing here executes model code)
# ---------------------------------------------------------------------------------------------------------------

# AZR's banned import words (azr-spec.md section 8): an import is rejected when any dotted component of its module
# name equals one of these. The last four contain a dot, so they never match one component (as in AZR).
BANNED_IMPORTS = ("logging", "random", "multiprocessing", "pebble", "subprocess", "threading", "datetime", "time",
                  "hashlib", "hmac", "bcrypt", "calendar", "os.sys", "os.path", "sys.exit", "os.environ")

# Our addition for proposal validation (not in AZR's list, so not in the prompt): modules whose results depend on
# the host, interpreter build, process state, clock or entropy (sandbox.md E9, E12), or that only serve escapes.
HOST_IMPORTS = ("sys", "os", "platform", "gc", "inspect", "ctypes", "importlib", "resource", "socket", "signal",
                "builtins", "uuid", "secrets", "mmap", "fcntl")
# Modules that exec() source built from program strings: @dataclass pastes annotation keys (any string) into the
# __init__/__repr__ it compiles, so a field name can carry an expression the static filter never sees.
CODEGEN_IMPORTS = ("dataclasses",)
# What a program may import (besides Sandbox(extra_modules=...)): the preloaded modules less the three lists above.
PURE_MODULES = frozenset(m.split(".")[0] for m in PRELOAD) - set(BANNED_IMPORTS + HOST_IMPORTS + CODEGEN_IMPORTS)
# Attributes of pure modules whose values depend on the host's library builds or the Python version (sandbox.md E12):
# a gold output built from them would not reproduce on another machine.
HOST_ATTRS = frozenset(("ZLIB_RUNTIME_VERSION", "ZLIB_VERSION", "unidata_version", "softkwlist"))

# Also ours, a filter for proposal validation (sandbox.md 4.5): the routes from a program to modules, frames, imports
# and eval that need no import statement (`__import__('time')`, `dataclasses.sys`, `from uuid import os`,
# `().__class__.__base__.__subclasses__()`, `operator.attrgetter('__globals__')`, typing.get_type_hints evaluating a
# string annotation). ESCAPE_NAMES are checked as names (builtins) and imported names, ESCAPE_ANYWHERE as attributes
# and imported names (star imports and the text `__builtins__` are refused, so any other name is a builtin or one the
# program bound itself). The kernel, not this list, is the boundary; what slips past still meets the determinism checks.
ESCAPE_NAMES = frozenset(("__import__", "__builtins__", "__loader__", "__spec__", "eval", "exec", "compile", "getattr",
                          "setattr", "delattr", "vars", "globals", "locals", "breakpoint", "id", "hash"))  # as names
# (id, hash: addresses of heap objects, whose bits differ between zygote processes: a coin-flip gold. str(f) and the
# repr of other objects still show them; the output check catches a whole address, not digits sliced out of one)
ESCAPE_ANYWHERE = frozenset(("attrgetter", "methodcaller", "Formatter", "get_field", "get_type_hints", "ForwardRef",
                             "singledispatch", "singledispatchmethod", "gi_frame", "cr_frame", "ag_frame",
                             "tb_frame", "f_back", "f_globals", "f_builtins", "f_locals", "modules", "obj",
                             "update_wrapper", "wraps", "global_enum", "gi_code", "cr_code", "ag_code",
                             "CodeType", "FunctionType", "LambdaType"))
# (update_wrapper, wraps, global_enum: get/set attributes by run-time names; the code-object routes build functions
# from raw bytecode, beyond any static check)
# Refused as attributes of any object, not only of a name known to hold a module: `q.time` with q = queue, a module
# from AttributeError.obj or a class pattern. No real program reads such an attribute (CRUXEval and the AZR seeds).
MODULE_WORDS = frozenset(w for w in BANNED_IMPORTS + HOST_IMPORTS + CODEGEN_IMPORTS if "." not in w)
SAFE_DUNDERS = frozenset("__" + n + "__" for n in (
    "name qualname doc class len iter next reversed contains getitem setitem delitem missing eq ne lt le gt ge "
    "str repr bool int float index round trunc floor ceil abs neg pos invert add sub mul matmul truediv floordiv mod "
    "divmod pow lshift rshift and or xor radd rsub rmul rtruediv rfloordiv rmod rpow rand ror rxor call").split())
NAMEDTUPLE_ATTRS = ("_asdict", "_replace", "_fields", "_make", "_field_defaults")


def _pure_module_objects():
    """The pure modules, imported (those that import here)."""
    modules = []
    for name in PURE_MODULES:
        try:
            modules.append(__import__(name))
        except ImportError:
            continue
    return modules


def _module_attrs():
    """Attribute names under which a pure module holds another module (typing.types, json.decoder, ...)."""
    import inspect
    return frozenset(k for mod in _pure_module_objects() for k, v in vars(mod).items() if inspect.ismodule(v))


MODULE_ATTRS = _module_attrs()


def _host_module_aliases():
    """Attribute names under which a pure module, or a module it holds, holds a module that is not pure: a host
    module under another name (enum.bltns is builtins: enum.bltns.eval) or one programs may not import
    (queue.types.CodeType and FunctionType build a function from raw bytecode that calls __import__)."""
    import inspect
    names, seen, todo = set(), set(), _pure_module_objects()
    while todo:
        mod = todo.pop()
        if id(mod) in seen:
            continue
        seen.add(id(mod))
        for k, v in vars(mod).items():
            if inspect.ismodule(v) and k not in MODULE_WORDS:
                if v.__name__.split(".")[0] not in PURE_MODULES:
                    names.add(k)
                else:
                    todo.append(v)
    return frozenset(names)


HOST_MODULE_ALIASES = _host_module_aliases()


def azr_program(code, extra_modules=(), args=None, max_args=MAX_ARGS):
    """AZR proposal parsing rules -> (program with its function renamed to f, import lines); ValueError if rejected.

    Single-def rule: every `def NAME(` counts, nested functions and methods included (AZR rejects those too).
    Banned imports: any dotted component (or imported name) in BANNED_IMPORTS. `input(` anywhere in the renamed
    program, or in the proposed input `args` when given, is banned (AZR's executor regex sees both).
    Ours: imports only of the pure preloaded modules (PRELOAD, less the banned, host and code-generating ones) and
    extra_modules; the escape routes above are closed in the program and in `args`, which runs in its namespace."""
    if type(code) is not str:
        raise ValueError(f"program must be a str, got {type(code).__name__}")
    if len(code) > MAX_CODE:
        raise ValueError(f"program is {len(code)} characters, over the {MAX_CODE} cap")
    if "__builtins__" in code:  # bound at module level (`import enum as __builtins__`, `except E as`, `case`), it is
        # where the bare names of every later function resolve: enum's `bltns` and `sys`, a star import by another name
        raise ValueError("'__builtins__' is not allowed in a program (it rebinds where bare names resolve)")
    # AZR's r"^\s*def\s+(\w+)\s*\(" (MULTILINE), without its quadratic backtracking over blank lines: same matches
    names = re.findall(r"^[^\S\n]*def\s+(\w+)\s*\(", code, re.MULTILINE)
    if len(names) != 1:
        raise ValueError(f"program must contain exactly one def (AZR single-function rule), found {len(names)}")
    try:
        tree = ast.parse(code)
    except Exception as e:  # SyntaxError, or RecursionError/MemoryError on pathological input
        raise ValueError(f"program does not parse: {type(e).__name__}: {e}") from None
    # a module may only be used as module.attr: as a value its repr names its file on this host
    modules = {a.asname or a.name.split(".")[0] for n in ast.walk(tree) for a in getattr(n, "names", ())
            if isinstance(n, ast.Import) or (isinstance(n, ast.ImportFrom) and a.name in MODULE_ATTRS)}
    flow = _module_flow(tree, modules)
    if flow:
        raise ValueError(f"{flow!r} is not allowed in a program (a module may only be used as module.attr)")
    for node in ast.walk(tree):
        words, tops = [], []
        if isinstance(node, ast.Import):
            words = [w for a in node.names for w in a.name.split(".")]
            tops = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            words = (node.module or "").split(".") + [a.name for a in node.names]
            tops = words[:1]
        bad = [w for w in words if w in BANNED_IMPORTS]
        if bad:
            raise ValueError(f"banned import {bad[0]!r} (AZR banned-import list)")
        host = [w for w in tops if w in HOST_IMPORTS]
        if host:
            raise ValueError(f"import of {host[0]!r} is not allowed: results would depend on the host")
        other = [w for w in tops if w not in PURE_MODULES and w not in extra_modules]
        if other:  # (any module the zygote happens to hold would import: posix, _datetime, site, __main__, ...)
            raise ValueError(f"import of {other[0]!r} is not allowed: programs may import the pure standard modules "
                             "of sandbox.PRELOAD")
        route = _escape_route(node)
        if route:
            raise ValueError(f"{route!r} is not allowed in a program (it reaches modules, frames or imports)")
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PURE_MODULES:
            missing = _missing_names(node)
            if missing:  # (it would fail anyway, with an ImportError naming the module's path on this host)
                raise ValueError(f"cannot import {missing!r} from {node.module!r}")
    if names[0] != "f":  # AZR's replace_main_function_name: two regexes, so comments and layout survive
        code = re.sub(r"def\s+" + names[0] + r"\s*\(", "def f(", code)
        code = re.sub(r"\b" + names[0] + r"\s*\(", "f(", code)
    if "input(" in code:  # after the rename, as AZR's executor regex sees it (`def parse_input(` is fine)
        raise ValueError("program contains 'input(' (banned by AZR)")
    if args is not None:
        if type(args) is str and "input(" in args:  # AZR's determinism template runs f(<input>) in checked lines
            raise ValueError("input contains 'input(' (banned by AZR)")
        if type(args) is str and "#" in args and "\n" not in args and pasted_call_fails(args):
            raise ValueError("input ends in a comment (AZR's `returns = f(<input>)` would not parse)")
        call = _call_args(args, max_args)
        flow = _module_flow(call, modules, root=call.func)
        if flow:
            raise ValueError(f"{flow!r} is not allowed in an input (a module may only be used as module.attr)")
        for node in ast.walk(call):  # (a clock or host value here would make the gold vary)
            route = _escape_route(node)
            if route:
                raise ValueError(f"{route!r} is not allowed in an input (it reaches modules, frames or imports)")
    return code, tuple(_import_lines(tree))


def _module_flow(tree, modules, root=None):
    """The first name or attribute that holds a module and is used other than as the object of an attribute
    (`m = queue`, `for m in [queue]`, `match queue:`, `f(queue)`, `t = json.decoder`), else None: a module as a value
    shows its file's path on this host (str(statistics)) and is a name no check follows."""
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    for node in ast.walk(tree):
        if node is root:
            continue
        if isinstance(node, ast.Name) and node.id in modules and isinstance(node.ctx, ast.Load):
            what = node.id
        elif isinstance(node, ast.Attribute) and node.attr in MODULE_ATTRS and isinstance(node.ctx, ast.Load):
            what = "." + node.attr
        else:
            continue
        up = parents.get(node)
        if not (isinstance(up, ast.Attribute) and up.value is node):
            return what
    return None


def _escape_route(node):
    """The name, attribute or import of `node` when it is one of the routes above, else None."""
    if isinstance(node, ast.Name) and node.id in ESCAPE_NAMES:
        return node.id
    if isinstance(node, ast.Attribute) and _bad_attr(node.attr):
        return "." + node.attr
    if _computed_format(node):
        return "str.format other than on a constant template whose fields walk no attribute or item"
    if isinstance(node, ast.MatchClass):  # `case C(x)` reads the attributes that C.__match_args__ names, `case
        return "a class pattern"          # object(time=t)` the one named: getattr by name (and `int = C` rebinds int)
    if isinstance(node, ast.ImportFrom):
        for alias in node.names:
            if alias.name == "*" or alias.name in ESCAPE_NAMES or alias.name.startswith("_") or _bad_attr(alias.name):
                return f"from {node.module} import {alias.name}"  # (a star import binds names out of sight)
    return None


def _bad_attr(a):
    """Whether reading attribute `a` (a.b, or an imported name) is an escape route on any object."""
    return a in ESCAPE_ANYWHERE or a in HOST_ATTRS or a in HOST_MODULE_ALIASES or a in MODULE_WORDS or (
        a.startswith("__") and a not in SAFE_DUNDERS) or (
        a.startswith("_") and not a.startswith("__") and a not in NAMEDTUPLE_ATTRS)


def _computed_format(node):
    """Whether `node` is x.format or x.format_map with a template other than a constant whose fields walk no attribute
    or item: such a field reads attributes by a name that no static check sees ('{0.__globals__[sys]}', or any field
    of a template built at run time). The same rule holds for programs, inputs and predicted values."""
    return isinstance(node, ast.Attribute) and node.attr in ("format", "format_map") and not (
        isinstance(node.value, ast.Constant) and type(node.value.value) is str and not _format_walk(node.value.value))


def _format_walk(text):
    """Whether a str.format field name walks an attribute or item ('{0.x}', '{0[k]:{1}}')."""
    return next(_format_fields(text), None) is not None


def _format_fields(text):
    r"""The attribute and item names that the str.format fields of `text` read ('{0.x[k]}' -> 'x', 'k'): what follows
    a '{' up to the next '}', ':' or '!', split at '.' and '['. Linear time (a regex such as r"\{[^}:!]*[.\[]"
    backtracks quadratically on '{{{{...': 26 s in the trainer for a 64 KiB answer)."""
    for part in re.split(r"[}:!]", text):
        i = part.find("{")
        if i >= 0:
            yield from (name.strip() for name in re.findall(r"[.\[]([^.\[\]{}:!]*)", part[i:]))


def _missing_names(node):
    """The first name of `from <pure module> import a, b` that the module lacks (neither an attribute nor an
    imported submodule), else None."""
    try:
        module = importlib.import_module(node.module)
    except ImportError:
        return None   # the module itself is missing: its error names no path
    for a in node.names:
        if a.name != "*" and not hasattr(module, a.name) and f"{node.module}.{a.name}" not in sys.modules:
            return a.name
    return None


def pasted_call_fails(text):
    """Whether AZR's executor can never score a predicted input `text`: it pastes the text into `gold ==
    f(<text>)` and evaluates that last line alone, so a line break (in the text as pasted, unstripped) or a trailing
    comment, which swallows the closing parenthesis, fails."""
    if "\n" in text:
        return True
    try:
        ast.parse(f"f({text})", mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return True
    return False


def eval_text_fails(text):
    """Whether AZR's executor can never score a predicted output `text` (deduction): it compares eval(gold) ==
    eval(<text>) on the text as captured, unstripped, and eval strips only leading spaces and tabs, so a line break
    followed by indentation (an indented closing fence or tag: "[1, 2]\\n    ") or a bare tuple over two lines
    ("1,\\n2") does not parse; its fallback pastes the text into a template whose last line alone is evaluated,
    which a line break always breaks. Text over MAX_VALUE_TEXT once stripped: False (the check, which gets the
    stripped text, refuses it anyway); whitespace alone does not make text over-long ("[1, 2]\\n" + 70,000
    spaces before a closing fence would otherwise skip the parse and score on its stripped text)."""
    if type(text) is not str or len(text.strip()) > MAX_VALUE_TEXT:
        return False
    try:
        ast.parse(text.lstrip(" \t"), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return True
    return False


def _call_args(args, limit=MAX_ARGS):
    """Argument text must be exactly the arguments of one call `f(<args>)`: no injection such as `0) or True or f(0`.
    Returns the parsed ast.Call, or raises ValueError."""
    if type(args) is not str:
        raise ValueError(f"arguments must be a str, got {type(args).__name__}")
    if len(args) > limit:
        raise ValueError(f"argument text is {len(args)} characters, over the {limit} cap")
    try:
        node = ast.parse("f(" + args + "\n)", mode="eval").body
    except Exception as e:
        raise ValueError(f"argument text does not parse as call arguments: {type(e).__name__}") from None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "f"):
        raise ValueError("argument text is not the arguments of a single call to f")
    return node


def _import_lines(tree):
    """AZR's parse_imports: every import statement anywhere in the AST, rebuilt as one line each."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue  # (ast.Global and ast.Nonlocal have `names` too, as plain strings)
        names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
        if isinstance(node, ast.Import):
            lines.append("import " + names)
        else:
            lines.append(f"from {'.' * node.level}{node.module or ''} import " + names)
    return lines


# A solver's predicted value (the input of abduction, the output of deduction) may be an expression, as AZR's eval
# allows ([0] * 3, dict(a=1), 'ab'.upper(), [i * i for i in range(4)], lambda x: x < 2), but in the RL loop only a
# pure one: literals, operators, comprehensions, lambdas, and calls of the builtins and builtin-type methods below.
# No other name, no underscore or frame attribute, so an answer cannot compute itself by running the program,
# brute-force f, or reach the harness to forge its result record (reward hacks that AZR's eval allows). An abduction
# answer runs in the program's namespace, and no name the program binds may appear in it either, constructors
# included (`Pt(1, 2)`, `deque([1])`): a name other than f can still hold f (`g = f`, `reg.append(f)`) or the state
# f reads (`put = memo.update`: `put({0: gold}) or 0` scores any gold), and the static rule that told such names
# from constructors was broken in six successive red-team rounds. No input of the 6,424 CRUXEval and AZR seed
# program-input pairs calls a program name; a proposed task whose input does is unanswerable (learnability 0).
SAFE_CALLS = frozenset(("abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "chr", "complex", "dict",
                        "divmod", "enumerate", "filter", "float", "format", "frozenset", "hex", "int", "isinstance",
                        "iter", "len", "list", "map", "max", "min", "next", "oct", "ord", "pow", "range", "repr",
                        "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip"))
SAFE_ATTRS = frozenset(n for t in (str, bytes, bytearray, list, tuple, dict, set, frozenset, int, float, complex)
                       for n in dir(t) if not n.startswith("_"))  # .format: only on a constant (check_pure)
PURE_DEPTH = 400  # 'a' + 'b' + ... nests one level per term
_COMPS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_SAFE_NODES = (ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.Starred, ast.UnaryOp, ast.BinOp,
               ast.BoolOp, ast.Compare, ast.IfExp, ast.Subscript, ast.Slice, ast.Call, ast.keyword, ast.Name,
               ast.Attribute, ast.Lambda, ast.JoinedStr, ast.FormattedValue, ast.expr_context, ast.operator,
               ast.unaryop, ast.boolop, ast.cmpop) + _COMPS


def check_pure(node, scope=frozenset(), depth=0, shadow=frozenset()):
    """Raises ValueError unless the expression tree `node` is pure (see SAFE_CALLS). A name must be a SAFE_CALLS
    builtin or in scope, a variable of an enclosing lambda or comprehension (Python's scoping rules).
    shadow: SAFE_CALLS names that the program binds as globals (`len = f`): in its namespace they are the
    program's objects, not the builtins, so they are refused like every other program name."""
    if depth > PURE_DEPTH:
        raise ValueError("predicted value nested too deep")
    if not isinstance(node, _SAFE_NODES):
        raise ValueError(f"{type(node).__name__} is not allowed in a predicted value")
    if isinstance(node, ast.Name) and node.id not in scope and (node.id not in SAFE_CALLS or node.id in shadow):
        raise ValueError(f"name {node.id!r} is not allowed in a predicted value")
    if isinstance(node, ast.Attribute) and node.attr not in SAFE_ATTRS:
        raise ValueError(f"attribute {node.attr!r} is not allowed in a predicted value")
    if _computed_format(node):
        raise ValueError("str.format only on a constant whose fields do not walk attributes or items")
    if isinstance(node, ast.Lambda):  # defaults in the enclosing scope, the body with the parameters
        a = node.args
        for d in a.defaults + [d for d in a.kw_defaults if d is not None]:
            check_pure(d, scope, depth + 1, shadow)
        params = {p.arg for p in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg] if p is not None}
        return check_pure(node.body, scope | params, depth + 1, shadow)
    if isinstance(node, _COMPS):  # the first iterable in the enclosing scope, then each target is visible onward
        inner = scope
        for gen in node.generators:
            check_pure(gen.iter, inner, depth + 1, shadow)
            targets = list(ast.walk(gen.target))
            if not all(isinstance(t, (ast.Name, ast.Tuple, ast.List, ast.Starred, ast.expr_context)) for t in targets):
                raise ValueError("comprehension targets must be plain names")
            inner = inner | {t.id for t in targets if isinstance(t, ast.Name)}
            for cond in gen.ifs:
                check_pure(cond, inner, depth + 1, shadow)
        for part in (node.key, node.value) if isinstance(node, ast.DictComp) else (node.elt,):
            check_pure(part, inner, depth + 1, shadow)
        return
    for child in ast.iter_child_nodes(node):
        check_pure(child, scope, depth + 1, shadow)


def _pure_text(text):
    """Whether an output text (predicted, or a gold that is no literal) passes check_pure."""
    try:
        if len(text) > MAX_VALUE_TEXT:  # before parsing: a 10 MB text would cost the trainer seconds
            return False
        check_pure(ast.parse("(" + text + "\n)", mode="eval").body)
        return True
    except Exception:  # ValueError, SyntaxError, RecursionError, MemoryError
        return False


@functools.lru_cache(maxsize=4096)
def shadowed_builtins(program):
    """The SAFE_CALLS names that a program can bind as globals: at module level (assignments, loop, with, except and
    match targets, imports, class names, a walrus), or declared `global` in a function. An abduction answer runs in
    the program's namespace, so there `len(x)` after `len = f` calls f (brute force) and `max.update(...)` after
    `max = memo` rewrites f's table. Every SAFE_CALLS name when the program binds `__builtins__` (`import math as
    __builtins__`, `case __builtins__:`), where the answer's builtins are then looked up, or star-imports (`math.len =
    f` then `from math import *` binds len = f: names known only at run time). One pass over the tree; unparsable:
    every SAFE_CALLS name."""
    try:
        tree = ast.parse(program)
    except Exception:  # SyntaxError, RecursionError: the run fails anyway; refuse the names rather than guess
        return SAFE_CALLS
    names, todo = set(), [(tree, True)]
    while todo:
        node, top = todo.pop()
        if isinstance(node, ast.Global):
            names.update(node.names)
        elif top:
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                names.add(node.id)
            elif isinstance(node, ast.alias):  # "*" too (see the end)
                names.add(node.asname or node.name.split(".")[0])
            elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar, ast.FunctionDef,
                                   ast.AsyncFunctionDef, ast.ClassDef)) and node.name:
                names.add(node.name)
            elif isinstance(node, ast.MatchMapping) and node.rest:
                names.add(node.rest)
        # a def, lambda or class body is another scope (its `global` statements still count); defaults, decorators
        # and bases are evaluated at module level
        inner = ()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            inner = {id(b) for b in (node.body if isinstance(node.body, list) else [node.body])}
        todo += [(child, top and id(child) not in inner) for child in ast.iter_child_nodes(node)]
    return SAFE_CALLS if names & {"*", "__builtins__"} else SAFE_CALLS & frozenset(names)


def _pure_args(args, program):
    """Whether every argument of a predicted input text passes check_pure, the builtins that `program` rebinds
    refused with every other program name."""
    try:
        node = _call_args(args)
        for arg in node.args + [k.value for k in node.keywords]:
            check_pure(arg, shadow=shadowed_builtins(program))
        return True
    except Exception:
        return False


def _spread(keys):
    """Raises ValueError unless hashing spreads `keys` (of a set or dict about to be built here, from text or a record
    a program made): ints equal modulo 2**61 - 1 share a hash, and 2,400 of them in one 64 KiB record made building
    and comparing the set cost the trainer ~10x a plain one (quadratic). Legitimate values never collide so."""
    if len(keys) > 64 and 2 * len(set(map(hash, keys))) < len(keys):
        raise ValueError("set or dict keys with colliding hashes")
    return keys


def _lit(node, depth):
    """Builds exact builtin values from a literal AST (like ast.literal_eval, plus set()/frozenset()/bytearray())."""
    if depth > MAX_DEPTH:
        raise ValueError("too deep")
    if isinstance(node, ast.Constant) and type(node.value) in (int, float, complex, str, bytes, bool, type(None),
                                                                type(Ellipsis)):
        return node.value
    if isinstance(node, ast.Name) and node.id == "Ellipsis":
        return Ellipsis
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_lit(e, depth + 1) for e in node.elts]
        if isinstance(node, ast.Set):
            return set(_spread(items))
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("** in dict")
        keys = _spread([_lit(k, depth + 1) for k in node.keys])
        return dict(zip(keys, [_lit(v, depth + 1) for v in node.values]))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _lit(node.operand, depth + 1)
        if type(v) not in (int, float, complex, bool):
            raise ValueError("sign of a non-number")
        return -v if isinstance(node.op, ast.USub) else +v
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        left, right = _lit(node.left, depth + 1), _lit(node.right, depth + 1)
        if type(left) not in (int, float) or type(right) is not complex:
            raise ValueError("only real +/- imaginary")
        return left + right if isinstance(node.op, ast.Add) else left - right
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords and len(node.args) <= 1
            and node.func.id in ("set", "frozenset", "bytearray")):
        kind = {"set": set, "frozenset": frozenset, "bytearray": bytearray}[node.func.id]
        if node.args:
            arg = _lit(node.args[0], depth + 1)
            if type(arg) not in ((bytes,) if kind is bytearray else (list, tuple, set, frozenset)):
                raise ValueError("unsupported constructor argument")
            return kind(arg if kind is bytearray else _spread(list(arg)))
        return kind()
    raise ValueError("not a literal")


def parse_literal(text):
    """(True, value) when `text` is a plain literal (parsed here, never evaluated), else (False, None)."""
    if type(text) is not str or len(text) > MAX_VALUE_TEXT:
        return False, None
    try:
        return True, _lit(ast.parse(text.strip(), mode="eval").body, 0)
    except Exception:  # SyntaxError, ValueError, TypeError (unhashable), RecursionError, MemoryError
        return False, None


# ---------------------------------------------------------------------------------------------------------------
# Result record: the child's encoder (exact builtin types only) and the trusted decoder
# ---------------------------------------------------------------------------------------------------------------
# What the child writes on fd 3: b"\x01" once confined (the "sandboxed" marker), then, last, one record: u32 length
# + one outcome per call of f, each b"o" + encoded value, b"b" + reason (bad_output), or b"e" + kind (x exception,
# m memory, f forbidden, l output_limit) + type name + message; reasons, names and messages are u32 length + UTF-8.
# A value is one tag byte + payload: N None, E Ellipsis, T/F bools, d float and j complex (f64s), i int (decimal
# text), s/b/a str/bytes/bytearray, l/t/S/Z list/tuple/set/frozenset (u32 count + items), D dict (count + key,
# value pairs); lengths and counts are u32.

class _BadOutput(Exception):
    pass


_U32 = struct.Struct("<I")
_F64 = struct.Struct("<d")
_SEQ_TAGS = {list: b"l", tuple: b"t", set: b"S", frozenset: b"Z"}
_BYTES_TAGS = {str: b"s", bytes: b"b", bytearray: b"a"}


def _encode(v, out, depth=0):
    """Child side. Appends v to `out` as tagged bytes; exact types only (a subclass or any other object is bad)."""
    t = type(v)
    if len(out) > MAX_RECORD or depth > MAX_DEPTH:
        raise _BadOutput("return value too large" if depth <= MAX_DEPTH else "return value nested too deep (or cyclic)")
    if v is None or v is Ellipsis:
        out += b"N" if v is None else b"E"
    elif t is bool:
        out += b"T" if v else b"F"
    elif t is int:
        if v.bit_length() > MAX_INT_BITS:
            raise _BadOutput("integer too large")
        b = str(v).encode()
        out += b"i" + _U32.pack(len(b)) + b
    elif t is float:
        out += b"d" + _F64.pack(v)
    elif t is complex:
        out += b"j" + _F64.pack(v.real) + _F64.pack(v.imag)
    elif t in _BYTES_TAGS:
        if len(v) > MAX_RECORD:
            raise _BadOutput("return value too large")
        b = v.encode("utf-8", "surrogatepass") if t is str else bytes(v)
        out += _BYTES_TAGS[t] + _U32.pack(len(b)) + b
    elif t in _SEQ_TAGS:
        if len(v) > MAX_RECORD:
            raise _BadOutput("return value too large")
        out += _SEQ_TAGS[t] + _U32.pack(len(v))
        for item in v:
            _encode(item, out, depth + 1)
    elif t is dict:
        if len(v) > MAX_RECORD:
            raise _BadOutput("return value too large")
        out += b"D" + _U32.pack(len(v))
        for k, item in v.items():
            _encode(k, out, depth + 1)
            _encode(item, out, depth + 1)
    else:
        raise _BadOutput(f"return value contains a non-plain object of type {t.__name__!r}")


def _str_field(s):
    """u32 length + UTF-8 of the first 1000 characters of `s`."""
    b = s[:1000].encode("utf-8", "replace")
    return _U32.pack(len(b)) + b


def _exc_field(e):
    """b'e' + kind (x exception, m memory, f forbidden) + type name + message (truncated; str() may be hostile)."""
    kind = b"m" if isinstance(e, MemoryError) else b"f" if isinstance(e, PermissionError) and e.errno == 1 else b"x"
    try:
        name, msg = type(e).__name__, str(e)   # user __str__ may misbehave: we are in the child, so that is fine
        name, msg = (name if type(name) is str else "?"), (msg[:1000] if type(msg) is str else "")
    except BaseException:
        name, msg = "?", ""
    return b"e" + kind + _str_field(name) + _str_field(msg)


def _decode(buf, pos, depth=0):
    """Trusted side. -> (value, repr text, next pos). Builds fresh builtin objects; the repr text is assembled in the
    child's iteration order, so it equals the child's repr(value) without calling anything the child made."""
    if depth > MAX_DEPTH:
        raise ValueError("too deep")
    tag = buf[pos:pos + 1]
    pos += 1
    if tag in (b"N", b"T", b"F", b"E"):
        v = {b"N": None, b"T": True, b"F": False, b"E": Ellipsis}[tag]
        return v, repr(v), pos
    if tag == b"d":
        v = _F64.unpack_from(buf, pos)[0]
        return v, repr(v), pos + 8
    if tag == b"j":
        v = complex(_F64.unpack_from(buf, pos)[0], _F64.unpack_from(buf, pos + 8)[0])
        return v, repr(v), pos + 16
    if tag in (b"i", b"s", b"b", b"a"):
        n = _U32.unpack_from(buf, pos)[0]
        raw = bytes(buf[pos + 4:pos + 4 + n])
        if len(raw) != n:
            raise ValueError("truncated")
        if tag == b"i":
            if not re.fullmatch(rb"-?[0-9]{1,4300}", raw):
                raise ValueError("bad int")
            v = int(raw)
        else:
            v = raw.decode("utf-8", "surrogatepass") if tag == b"s" else raw if tag == b"b" else bytearray(raw)
        return v, repr(v), pos + 4 + n
    if tag in (b"l", b"t", b"S", b"Z", b"D"):
        n = _U32.unpack_from(buf, pos)[0]
        pos += 4
        if n > len(buf):
            raise ValueError("bad count")
        vals, texts = [], []
        for _ in range(n * 2 if tag == b"D" else n):
            v, s, pos = _decode(buf, pos, depth + 1)
            vals.append(v)
            texts.append(s)
        if tag == b"D":
            v = dict(zip(_spread(vals[0::2]), vals[1::2]))
            if len(v) != n:
                raise ValueError("duplicate key")
            return v, "{" + ", ".join(f"{k}: {x}" for k, x in zip(texts[0::2], texts[1::2])) + "}", pos
        body = ", ".join(texts)
        if tag == b"l":
            return vals, "[" + body + "]", pos
        if tag == b"t":
            return tuple(vals), "(" + body + ("," if n == 1 else "") + ")", pos
        v = set(_spread(vals)) if tag == b"S" else frozenset(_spread(vals))
        if len(v) != n:
            raise ValueError("duplicate set element")
        if tag == b"S":
            return v, ("{" + body + "}") if n else "set()", pos
        return v, ("frozenset({" + body + "})") if n else "frozenset()", pos
    raise ValueError(f"bad tag {tag!r}")


def _decode_str(buf, pos):
    """Trusted side: a _str_field -> (text, next pos); bad UTF-8 is replaced (a reason or message, never a value)."""
    n = _U32.unpack_from(buf, pos)[0]
    raw = bytes(buf[pos + 4:pos + 4 + n])
    if len(raw) != n:
        raise ValueError("truncated")
    return raw.decode("utf-8", "replace"), pos + 4 + n


# ---------------------------------------------------------------------------------------------------------------
# seccomp-bpf allowlist (x86_64), built once per zygote with ctypes (no libseccomp)
# ---------------------------------------------------------------------------------------------------------------

_ALLOW, _KILL, _EPERM = 0x7FFF0000, 0x80000000, 0x00050000 | 1   # SECCOMP_RET_{ALLOW,KILL_PROCESS,ERRNO|EPERM}
_AUDIT_ARCH_X86_64 = 0xC000003E
# Pure computation needs: read/write/close on inherited fds, memory management, signal return paths, futex, clocks,
# sleeps (so sleeps end as wall timeouts), getrandom (os.urandom), identity getters, exit.
_ALLOWED = {"read": 0, "write": 1, "close": 3, "fstat": 5, "lseek": 8, "mmap": 9, "mprotect": 10, "munmap": 11,
            "brk": 12, "rt_sigaction": 13, "rt_sigprocmask": 14, "rt_sigreturn": 15, "pread64": 17, "readv": 19,
            "writev": 20, "sched_yield": 24, "mremap": 25, "pause": 34, "nanosleep": 35,
            "getpid": 39, "exit": 60, "uname": 63, "gettimeofday": 96, "getrusage": 98, "times": 100,
            "getuid": 102, "getgid": 104, "geteuid": 107, "getegid": 108, "getppid": 110, "sigaltstack": 131,
            "gettid": 186, "time": 201, "futex": 202, "sched_getaffinity": 204, "restart_syscall": 219,
            "clock_gettime": 228, "clock_getres": 229, "clock_nanosleep": 230, "exit_group": 231, "getrandom": 318}
# File-system and descriptor-making calls fail with EPERM, so Python raises PermissionError (verdict "forbidden"),
# and imports of modules that were not preloaded fail cleanly. Everything else (socket, clone, fork, execve, kill,
# ptrace, setsid, io_uring_*, prctl, setrlimit, ...) kills the process with SIGSYS.
_EPERM_CALLS = {"open": 2, "stat": 4, "lstat": 6, "poll": 7, "ioctl": 16, "access": 21, "pipe": 22, "select": 23,
                "dup": 32, "dup2": 33, "truncate": 76, "ftruncate": 77, "getdents": 78, "getcwd": 79, "chdir": 80,
                "fchdir": 81, "rename": 82, "mkdir": 83, "rmdir": 84, "creat": 85, "link": 86, "unlink": 87,
                "symlink": 88, "readlink": 89, "chmod": 90, "fchmod": 91, "chown": 92, "getdents64": 217,
                "openat": 257, "mkdirat": 258, "unlinkat": 263, "renameat": 264, "linkat": 265, "symlinkat": 266,
                "readlinkat": 267, "fchmodat": 268, "faccessat": 269, "utimensat": 280, "fallocate": 285,
                "dup3": 292, "pipe2": 293, "renameat2": 316, "memfd_create": 319, "statx": 332, "openat2": 437,
                "faccessat2": 439}
_NR_MADVISE, _NR_FCNTL, _NR_NEWFSTATAT, _NR_PRLIMIT64 = 28, 72, 262, 302
# madvise advice that allocators use (NORMAL, RANDOM, SEQUENTIAL, WILLNEED, DONTNEED, FREE, HUGEPAGE, NOHUGEPAGE); the
# rest include MADV_HWPOISON / SOFT_OFFLINE, with which a root child could poison a page shared with other processes
_MADV_OK = (0, 1, 2, 3, 4, 8, 14, 15)


def _bpf_program():
    """-> bytes of struct sock_filter[]. Layout: arch check, x32 check, one jeq per listed syscall jumping to a
    shared ALLOW or EPERM return at the end, four small argument-checking blocks, default kill.
    seccomp_data: nr at offset 0, arch at 4, args[i] at 16 + 8 i (low 32 bits first)."""
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    head = [(ld, 0, 0, 4), (jeq, 1, 0, _AUDIT_ARCH_X86_64), (ret, 0, 0, _KILL),     # wrong arch (int 0x80): kill
            (ld, 0, 0, 0), (jge, 0, 1, 0x40000000), (ret, 0, 0, _KILL)]             # x32 syscall numbers: kill
    blocks = [  # madvise: only the _MADV_OK advice (args[2]), else EPERM
        (jeq, 0, len(_MADV_OK) + 4, _NR_MADVISE), (ld, 0, 0, 32),
        *[(jeq, len(_MADV_OK) - i, 0, a) for i, a in enumerate(_MADV_OK)],
        (ret, 0, 0, _EPERM), (ret, 0, 0, _ALLOW), (ld, 0, 0, 0),
        # fcntl: only F_GETFD/F_SETFD/F_GETFL (F_SETOWN could aim SIGIO at another process)
        (jeq, 0, 7, _NR_FCNTL), (ld, 0, 0, 24), (jeq, 2, 0, 1), (jeq, 1, 0, 2), (jeq, 0, 1, 3),
        (ret, 0, 0, _ALLOW), (ret, 0, 0, _EPERM), (ld, 0, 0, 0),
        # newfstatat: only with flags == AT_EMPTY_PATH (glibc's fstat(fd)); other flags fail with EPERM (a non-empty
        # path with AT_EMPTY_PATH is still looked up: file metadata, README "Not covered")
        (jeq, 0, 5, _NR_NEWFSTATAT), (ld, 0, 0, 40), (jeq, 0, 1, 0x1000), (ret, 0, 0, _ALLOW), (ret, 0, 0, _EPERM),
        (ld, 0, 0, 0),
        # prlimit64: reading limits only (new_limit == NULL); root could otherwise raise its hard limits
        (jeq, 0, 7, _NR_PRLIMIT64), (ld, 0, 0, 32), (jeq, 0, 3, 0), (ld, 0, 0, 36), (jeq, 0, 1, 0),
        (ret, 0, 0, _ALLOW), (ret, 0, 0, _EPERM), (ld, 0, 0, 0),
        (ret, 0, 0, _KILL)]
    allowed, eperm = sorted(_ALLOWED.values()), sorted(_EPERM_CALLS.values())
    n = len(allowed) + len(eperm) + len(blocks)   # ALLOW return sits at index n, EPERM return at n + 1
    jumps = [(jeq, n - i - 1, 0, nr) for i, nr in enumerate(allowed)]
    jumps += [(jeq, n + 1 - (len(allowed) + i) - 1, 0, nr) for i, nr in enumerate(eperm)]
    ins = head + jumps + blocks + [(ret, 0, 0, _ALLOW), (ret, 0, 0, _EPERM)]
    assert max(i[1] for i in ins) < 256
    return b"".join(struct.pack("HBBI", code, jt, jf, k) for code, jt, jf, k in ins)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


# ---------------------------------------------------------------------------------------------------------------
# Zygote, template and child (the zygote runs `python sandbox.py --zygote PARENT_PID EXTRA_MODULES`)
# ---------------------------------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 1, 38, 22, 2
_ADDR_NO_RANDOMIZE = 0x0040000


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd, n):
    chunks, got = [], 0
    while got < n:
        b = os.read(fd, min(n - got, 1 << 20))
        if not b:
            return None
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def _zygote_main(parent_pid, extra_modules):
    """Preload, build the filter, say hello, fork the template, then serve one request at a time: have the template
    fork a child, watch it, read its status, have it reaped, reply."""
    libc = ctypes.CDLL(None, use_errno=True)
    # str(None.__hash__), the set order of builtin objects, ... read the addresses of static objects. With ASLR, a
    # bit of one differs between zygote processes: gold (A) zygotes would disagree with each other at check time, a
    # coin flip that validation (one A/B pair) passes half the time. So A zygotes run with ASLR off (re-exec once; it
    # protects nothing here, the child runs arbitrary code) and agree on them, while B zygotes keep it, so an output
    # that depends on randomised address bits still differs between A and B and fails validation. (Heap objects'
    # addresses do not follow a zygote's history: see the template below. id() and hash() are refused statically.)
    libc.personality.argtypes = [ctypes.c_ulong]
    pers = libc.personality(0xFFFFFFFF)   # (0xFFFFFFFF: query only)
    if os.environ.get("PYTHONHASHSEED") == HASH_SEEDS[0] and pers != -1 and not pers & _ADDR_NO_RANDOMIZE and \
            libc.personality(pers | _ADDR_NO_RANDOMIZE) != -1:
        os.execv(sys.executable, [sys.executable, "-s", "-B"] + sys.argv)
    fixed_addresses = pers != -1 and bool(pers & _ADDR_NO_RANDOMIZE)   # False where the personality call is refused
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) or os.getppid() != parent_pid:
        os._exit(1)
    req_fd, resp_fd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0), os.dup2(devnull, 1)
    hello = {"ok": True, "fixed_addresses": fixed_addresses}   # the same text in every zygote (no pid)
    try:
        import platform
        if sys.platform != "linux" or platform.machine() != "x86_64":
            raise SandboxUnavailable(f"seccomp filter is written for Linux x86_64, this is {sys.platform} "
                                     f"{platform.machine()}")
        import encodings
        import pkgutil
        codecs = ["encodings." + m.name for m in pkgutil.iter_modules(encodings.__path__)]
        for name in PRELOAD + extra_modules + tuple(codecs):   # every codec too: str.encode('shift_jis') imports lazily
            try:
                __import__(name)
            except Exception:   # optional (numpy) or platform-specific (encodings.mbcs)
                pass
        # site's notices: `str(copyright)` is the build's text (its years change per release: a gold of the build),
        # license reads the host's files; exit and quit stay (scripts call them)
        for name in ("copyright", "credits", "license"):
            builtins.__dict__.pop(name, None)
        bpf = _bpf_program()
        if os.environ.get("NANOAZR_SANDBOX_FAULT") == "filter":   # test hook: an invalid filter (fail-closed test)
            bpf = bpf[:-8]
        buf = ctypes.create_string_buffer(bpf, len(bpf))
        fprog = _SockFprog(len(bpf) // 8, ctypes.addressof(buf))   # what prctl(PR_SET_SECCOMP) takes
        # From here on imports resolve only from preloaded modules (no path finder: in a child it would only hit
        # EPERM on the file system). Done once here rather than in every child.
        sys.meta_path[:] = [m for m in sys.meta_path if getattr(m, "__name__", "") in ("BuiltinImporter",
                                                                                       "FrozenImporter")]
        sys.path_importer_cache.clear()
        import gc
        gc.collect()
        gc.freeze()   # keep preloaded objects out of the children's collections: fewer copy-on-write pages
        threads = len(os.listdir("/proc/self/task"))
        if threads != 1:
            raise SandboxUnavailable(f"zygote has {threads} threads after preloading; forking it is unsafe")
    except Exception as e:
        hello = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    _send(resp_fd, hello)
    if not hello["ok"]:
        os._exit(1)
    # Children are forked by a template: a fork of this zygote made before it serves anything, which does nothing
    # but fork and reap. (Forked from the zygote itself, a child would start from a heap shaped by every request the
    # zygote had read, relayed and freed: anything hashed by identity, a set of the program's own objects, would come
    # out in an order that drifts per request and differs between gold zygotes, a coin-flip gold.) The request reaches
    # the child through a memfd and its output leaves through pipes, all made here once and shared by every child
    # in turn; the zygote empties the pipes after each child, so nothing carries over.
    (out_r, out_w), (err_r, err_w), (rec_r, rec_w), (go_r, go_w), (pid_r, pid_w) = [os.pipe() for _ in range(5)]
    req_mem = os.memfd_create("nanoazr-request")
    zygote_pid = os.getpid()
    template = os.fork()
    if template == 0:
        for fd in (req_fd, resp_fd, out_r, err_r, rec_r, go_w, pid_r):
            os.close(fd)
        _template(go_r, pid_w, (devnull, out_w, err_w, rec_w, req_mem), libc, fprog, zygote_pid)
    for fd in (out_w, err_w, rec_w, go_r, pid_w):
        os.close(fd)
    for fd in (out_r, err_r, rec_r):
        os.set_blocking(fd, False)
    while True:
        head = _read_exact(req_fd, 4)
        if head is None:
            break   # the caller closed the pipe (close(), a recycle) or died
        raw = _read_exact(req_fd, _U32.unpack(head)[0])
        reply = _supervise(json.loads(raw), raw, req_fd, (out_r, err_r, rec_r, req_mem, go_w, pid_r))
        if reply is None:
            break   # the caller left mid-request (the child is killed)
        _send(resp_fd, *reply)
    # Leave no orphan: EOF on its pipe makes the template reap the last child and exit, and we reap the template.
    # An orphan goes to PID 1 or the nearest subreaper, and where that is the trainer (a container's entry point,
    # `python azr.py` or torchrun) nothing ever reaps it: each recycled zygote (every RECYCLE_AFTER requests, so
    # several times per zygote in a long AZR run) left one or two zombies (the template, and a last child it had not
    # reaped yet) for the rest of the run.
    os.close(go_w)
    os.waitpid(template, 0)
    os._exit(0)


def _send(fd, header, *blobs):
    """One framed message to the caller: u32 length + (u32 length + item) for the JSON header and each blob."""
    header = json.dumps(header).encode()
    parts = [_U32.pack(len(header)), header] + [p for b in blobs for p in (_U32.pack(len(b)), b)]
    body = b"".join(parts)
    _write_all(fd, _U32.pack(len(body)) + body)


def _supervise(req, raw, req_fd, fds):
    """Have the template fork one child for `raw` (the request's text), enforce wall time and output caps with
    SIGKILL, read the exited child's status, have it reaped. -> (facts, record, stdout, stderr), or None when the
    caller left meanwhile (the child is killed)."""
    out_r, err_r, rec_r, req_mem, go_w, pid_r = fds
    os.ftruncate(req_mem, 0)
    os.lseek(req_mem, 0, os.SEEK_SET)
    _write_all(req_mem, raw)
    t0 = time.monotonic()
    os.write(go_w, b"f")
    head = _read_exact(pid_r, 4)
    if head is None:
        raise SandboxUnavailable("the template process exited")
    pid = _U32.unpack(head)[0]   # the template reaps it only when told below: the pid stays this child's
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    bufs = {out_r: bytearray(), err_r: bytearray(), rec_r: bytearray()}
    totals = dict.fromkeys(bufs, 0)
    for fd in bufs:
        poller.register(fd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    poller.register(req_fd, 0)   # POLLHUP only: the caller died
    killed, exited = None, False
    deadline = t0 + req["wall_s"]

    def kill(reason):
        nonlocal killed
        if killed is None and not exited:
            killed = reason
            os.kill(pid, signal.SIGKILL)

    def take(fd):   # one non-blocking read; False when the pipe is empty (the template holds its write end: no EOF)
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        totals[fd] += len(data)
        cap = 2 * MAX_RECORD + 8192 if fd == rec_r else OUTPUT_CAP   # two encoded values + two messages
        if len(bufs[fd]) < cap:
            bufs[fd] += data[:cap - len(bufs[fd])]
        if fd == rec_r and totals[fd] > cap:
            kill("record")
        elif fd != rec_r and totals[fd] > 4 * OUTPUT_CAP:
            kill("output")
        return bool(data)
    while not exited:
        left = deadline - time.monotonic()
        if left <= 0:
            kill("wall")
            left = 1.0
        for fd, _ in poller.poll(left * 1000):
            if fd == req_fd:
                os.kill(pid, signal.SIGKILL)
                return None
            if fd == pidfd:
                exited = True
            else:
                take(fd)
    for fd in bufs:   # the child has exited: all it wrote is in the pipes; empty them for the next child
        while take(fd):
            pass
    with open(f"/proc/{pid}/stat", "rb") as fh:   # a zombie's exit status and CPU time, before the reaping
        stat = fh.read().rsplit(b")", 1)[1].split()
    os.write(go_w, b"w")
    os.close(pidfd)
    status, ticks = int(stat[49]), os.sysconf("SC_CLK_TCK")
    facts = {"killed": killed, "cpu": (int(stat[11]) + int(stat[12])) / ticks, "wall": time.monotonic() - t0,
             "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
             "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}
    return facts, bytes(bufs[rec_r]), bytes(bufs[out_r]), bytes(bufs[err_r])


def _template(go_r, pid_w, fds, libc, fprog, zygote_pid):
    """The zygote's template process: on b"f" forks a child (which reads the request itself) and writes its pid; on
    the next byte (the zygote has read the exited child's status) reaps it. Each pass allocates and frees the same
    objects in last-in-first-out order (pid, then waitpid's tuple), so every child starts from the same heap."""
    try:
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) or os.getppid() != zygote_pid:
            os._exit(1)
        sys.modules["gc"].disable()   # (no cycles are made here; collections would only add a varying step)
        me = os.getpid()
        while True:
            if os.read(go_r, 1) != b"f":
                os._exit(0)   # the zygote is leaving (EOF) or died
            pid = os.fork()
            if pid == 0:
                _child(fds, libc, fprog, me)
            os.write(pid_w, _U32.pack(pid))
            os.read(go_r, 1)
            os.waitpid(pid, 0)
            del pid
    except BaseException:
        os._exit(1)


def _child(fds, libc, fprog, parent_pid):
    """In a child of the template: read the request, confine, mark, then run untrusted code. Never returns."""
    devnull, out_w, err_w, rec_w, req_mem = fds
    try:
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) or os.getppid() != parent_pid:
            os._exit(70)
        size, raw = os.fstat(req_mem).st_size, b""
        while len(raw) < size:   # (one pread in practice)
            part = os.pread(req_mem, size - len(raw), len(raw))
            if not part:
                os._exit(73)
            raw += part
        req = json.loads(raw)
        for src, dst in ((devnull, 0), (out_w, 1), (err_w, 2), (rec_w, 3)):
            os.dup2(src, dst)
        os.closerange(4, 1 << 16)
        cpu = max(1, math.ceil(req["cpu_s"]))
        # mem_mb of address space above the child's own size (the template's, plus its request: with a fixed limit,
        # the largest bytes(n) that succeeds would tell the zygote's size, i.e. its history before the template)
        with open("/proc/self/statm", "rb") as fh:
            vsz = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        mem = vsz + (int(req["mem_mb"]) << 20)
        # core size limit 1, not 0: a pipe core_pattern (apport, systemd-coredump) ignores RLIMIT_CORE, except that
        # 1 aborts the dump before the host's handler starts (0 would start it, as root outside any sandbox, on
        # every crash: each SIGSYS of a forbidden call); a file core_pattern needs a page at least, so none either
        for lim, val in ((resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, (mem, mem)),
                         (resource.RLIMIT_FSIZE, (0, 0)), (resource.RLIMIT_NOFILE, (16, 16)),
                         (resource.RLIMIT_CORE, (1, 1)), (resource.RLIMIT_NPROC, (0, 0))):
            resource.setrlimit(lim, val)
        if req.get("stdin") is not None:  # scripts (LiveCodeBench) recurse deep in the main thread: room to grow
            hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
            resource.setrlimit(resource.RLIMIT_STACK, (SCRIPT_STACK if hard == resource.RLIM_INFINITY else
                                                       min(SCRIPT_STACK, hard), hard))
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) or libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER,
                                                                        ctypes.addressof(fprog), 0, 0):
            os._exit(71)
        # queue.Queue.get(timeout=) hands a program the monotonic clock (the remaining time, through methods it can
        # override); a clock that jumps 1e9 s per read times out at once and tells nothing
        sys.modules["queue"].time = sys.modules["threading"]._time = itertools.count(0.0, 1e9).__next__
        # the garbage collector's counters are the zygote's history (the allocations before a first automatic
        # collection, seen through a finalizer, would drift per request and differ between gold zygotes): no automatic
        # collections in a child (reference counting still frees everything acyclic; cycles wait for the exit)
        sys.modules["gc"].disable()
        sys.modules["random"].seed(0)   # public APIs that draw from it (statistics.NormalDist.samples): same draws
        # B (probe) children shift every small-object size class by a random part of a page (1 to 4096 / size
        # blocks), and the malloc heap by a random chunk, before the program runs: an output built from heap addresses
        # (bits of `repr(f)`, the order of a set of the program's objects) then differs from A's whatever the
        # request's text. validate's re-spaced input alone would miss such an output whenever its padding carves no
        # new pool, while a solver's other text for the same values (`[1,2,3]  `) moves it: a gold that follows text.
        # (`shift` lives on: _child never returns. ~70 KiB: a B run's time stays within its noise.)
        shift = [] if os.environ.get("PYTHONHASHSEED") == HASH_SEEDS[0] else \
            [b"x" * n for k, n in zip(os.urandom(31), range(2, 512, 16)) for _ in range(1 + k % (4096 // (33 + n)))] + \
            [object() for _ in range(1 + os.urandom(1)[0])] + [1 << 40 | k for k in range(os.urandom(1)[0] % 128)] + \
            [b"x" * (513 + os.urandom(1)[0] * 16)]
        os.write(3, b"\x01")   # the supervisor treats a missing marker as our failure: nothing below can unsend it
    except BaseException:
        os._exit(72)
    if req.get("stdin") is not None:
        _run_script(req["code"], req["stdin"])
    _run_untrusted(req["code"], req["args"], req["calls"])


def _run_untrusted(code, args, calls):
    """Exec the program, evaluate `f(<args>)` `calls` times (fresh arguments each time), send one record, exit."""
    out = bytearray()
    try:
        # AZR execs into a bare dict, so __name__ is builtins.__name__ and `if __name__ == "__main__":` never runs
        g = {"__builtins__": builtins}
        exec(compile(code, "<program>", "exec"), g)
        call = compile("f(" + args + "\n)", "<input>", "eval")
        for _ in range(calls):
            try:
                v = eval(call, g)
                part = bytearray(b"o")
                _encode(v, part)
                if len(part) > MAX_RECORD:
                    raise _BadOutput("return value too large")
            except _BadOutput as e:
                part = b"b" + _str_field(str(e))
            except BaseException as e:
                part = _exc_field(e)
            out += part
            if part[:1] != b"o":
                break
    except BaseException as e:
        out = bytearray(_exc_field(e))
    _send_record(out)


def _run_script(code, stdin):
    """Script mode (stdin tests): sys.stdin is an io.StringIO of `stdin` (as LiveCodeBench patches it: no `.buffer`,
    no newline translation), sys.stdout is a _Capture, the program runs as __main__, and the record's value is
    (printed text up to CAPTURE_KEEP characters, or a quarter of that when they take more than CAPTURE_KEEP bytes of
    UTF-8, total printed characters, sha256 hex of the printed text normalised as LiveCodeBench compares it: stripped,
    split into lines, each line stripped, joined by newlines). SystemExit ends the program normally, as for a real
    script. Exits the child."""
    sha256, join = hashlib.sha256, "\n".join   # bound before untrusted code can touch module globals
    cap = _Capture()
    sys.stdin = io.StringIO(stdin)
    sys.stdout = cap
    try:
        try:
            exec(compile(code, "<program>", "exec"), {"__name__": "__main__", "__builtins__": builtins})
        except SystemExit:
            pass
        if cap.total > CAPTURE_MAX or type(cap.parts) is not list:
            raise _Flood()
        text = "".join(cap.parts)
        if type(text) is not str:
            raise TypeError("printed output is not text")
        norm = join(line.strip() for line in text.strip().split("\n"))
        # the kept text must fit one record item (MAX_RECORD bytes): 60,000 characters of 3-byte UTF-8 would not, so
        # wide text keeps a quarter (<= 4 bytes a character) and the grader compares the digest
        kept = text[:CAPTURE_KEEP]
        if len(kept.encode("utf-8", "surrogatepass")) > CAPTURE_KEEP:
            kept = text[:CAPTURE_KEEP // 4]
        value = (kept, len(text), sha256(norm.encode("utf-8", "surrogatepass")).hexdigest())
        out = bytearray(b"o")
        _encode(value, out)
    except _Flood:
        out = bytearray(_FLOOD_BODY)
    except BaseException as e:
        out = bytearray(_exc_field(e))
    _send_record(out)


class _Flood(BaseException):
    pass


# A script run's record once it printed over CAPTURE_MAX characters (output_limit), built before untrusted code runs
_FLOOD_BODY = b"el" + _str_field("OutputLimit") + _str_field(f"printed over {CAPTURE_MAX} characters")
_FLOOD_RECORD = _U32.pack(len(_FLOOD_BODY)) + _FLOOD_BODY


class _Capture:
    """Child side: sys.stdout of a script run. Keeps what the program prints, in memory only (no syscall), and
    refuses more than CAPTURE_MAX characters. The program can reach and alter this object; that only changes its
    own printed output, i.e. its own verdict."""

    def __init__(self):
        self.parts, self.total = [], 0

    def write(self, s, _write=os.write, _exit=os._exit):
        if type(s) is not str:
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        self.total += len(s)
        if self.total > CAPTURE_MAX:   # end the child here, so a program that swallows exceptions cannot go on
            _write(3, _FLOOD_RECORD)
            _exit(0)
        self.parts.append(s)
        return len(s)

    def flush(self):
        pass

    def writable(self):
        return True

    def isatty(self):
        return False


def _send_record(out):
    """Child side, last act: flush the real stdout/stderr pipes, send the one length-prefixed record, exit."""
    try:
        sys.__stdout__.flush()
        sys.__stderr__.flush()
    except BaseException:
        pass
    try:
        _write_all(3, _U32.pack(len(out)) + out)
    finally:
        os._exit(0)


# ---------------------------------------------------------------------------------------------------------------
# Trusted side: verdicts from the zygote's facts and the child's bytes
# ---------------------------------------------------------------------------------------------------------------

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape_text(s):
    """Child-made text with control characters escaped (C0 but newline and tab, DEL, C1 such as the CSI \\x9b, line
    separators, bidi overrides), so logs, terminals and the next prompt show them as \\x1b, \\u202e, ..."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}", s)


def _escape(b):
    """Captured output bytes as escaped text (_escape_text)."""
    return _escape_text(b.decode("utf-8", "replace"))


def _same(a, b):
    """Python == on values we built ourselves from plain literals (so no model code can run here)."""
    try:
        return bool(a == b)
    except Exception:  # RecursionError on pathological nesting
        return False


def _verdict(facts, rec, out, err, cpu_s):
    """-> (Result, outcomes) where outcomes[i] = ("ok", value, repr) or (status, error) for call i of f."""
    captured = {"stdout": _escape(out), "stderr": _escape(err)}
    if not rec.startswith(b"\x01"):   # the child died before its confinement was complete: our failure
        return Result("sandbox_error", error=f"child setup failed (exit {facts['code']}, signal {facts['signal']})",
                      **captured), []
    sig = facts["signal"]
    if facts["killed"] == "wall":
        return Result("timeout", error=f"wall-clock limit ({facts['wall']:.1f} s)", **captured), []
    if facts["killed"] == "output":
        return Result("output_limit", error=f"output over {4 * OUTPUT_CAP} bytes", **captured), []
    if facts["killed"] == "record":
        return Result("bad_output", error="result record over the size cap", **captured), []
    if sig == signal.SIGSYS:
        return Result("forbidden", error="blocked system call (killed by SIGSYS)", **captured), []
    # SIGKILL we did not send, after half the CPU limit or more: the RLIMIT_CPU hard limit (a wide margin: the CPU
    # time read from /proc/<pid>/stat counts clock ticks, not the kernel's exact figure)
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and facts["cpu"] >= 0.5 * max(1, math.ceil(cpu_s))):
        return Result("timeout", error=f"CPU limit ({facts['cpu']:.1f} s)", **captured), []
    if sig:
        try:
            name = signal.Signals(sig).name
        except ValueError:   # realtime signals 35-63 have no Signals member (no allowed syscall sends one today)
            name = f"signal {sig}"
        return Result("crash", error=f"killed by {name}", **captured), []
    rec = rec[1:]
    n = _U32.unpack_from(rec)[0] if len(rec) >= 4 else -1
    body = rec[4:4 + n]
    if n < 0 or len(body) != n:
        return Result("bad_output", error=f"no result record (exit code {facts['code']} before f returned)",
                      **captured), []
    outcomes, pos = [], 0
    try:
        while pos < n:
            tag = body[pos:pos + 1]
            if tag == b"o":
                v, text, pos = _decode(body, pos + 1)
                outcomes.append(("ok", v, text))
            elif tag == b"b":
                reason, pos = _decode_str(body, pos + 1)
                outcomes.append(("bad_output", _escape_text(reason)))
            elif tag == b"e":
                kind = body[pos + 1:pos + 2]
                name, pos = _decode_str(body, pos + 2)
                msg, pos = _decode_str(body, pos)
                status = {b"m": "memory", b"f": "forbidden", b"l": "output_limit"}.get(kind, "exception")
                outcomes.append((status, _escape_text(f"{name}: {msg}" if msg else name)))
            else:
                raise ValueError("bad outcome tag")
    except Exception as e:  # struct.error, ValueError, UnicodeError, TypeError (unhashable), RecursionError
        return Result("bad_output", error=f"malformed result record ({type(e).__name__})", **captured), []
    if not outcomes:
        return Result("bad_output", error="empty result record", **captured), []
    first = outcomes[0]
    if first[0] == "ok":
        return Result("ok", value=first[2], **captured), outcomes
    return Result(first[0], error=first[1], **captured), outcomes


class _WorkerLost(Exception):
    pass


class _Worker:
    """One zygote slot. `proc` is None until (re)started; a lost zygote is restarted lazily on next use."""

    def __init__(self, seed):
        self.seed, self.proc, self.served = seed, None, 0


# A zygote's whole environment: nothing of the caller's (API keys, tokens) reaches a program
_ZYGOTE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_IDENTITY = "def f(x):\n    return x"
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]{4,}>")   # in a default repr: <__main__.A object at 0x7f3a...>


def _names_f(text):
    """Whether the expression text uses the name f (unparsable or over-long text: no; its evaluation fails anyway)."""
    if len(text) > MAX_VALUE_TEXT:
        return False
    try:
        tree = ast.parse("(" + text + "\n)", mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(isinstance(n, ast.Name) and n.id == "f" for n in ast.walk(tree))


_CANARIES = (  # (name, program, args, expected status, limit overrides): the fail-closed start-up self-test
    ("plain call", "def f(x):\n    return [x, x * 2.5, {'k': (x,)}, {1}]", "2", "ok", {}),
    ("socket()", "import socket\ndef f():\n    return socket.socket()", "", "forbidden (SIGSYS)", {}),
    ("os.fork()", "import os\ndef f():\n    return os.fork()", "", "forbidden (SIGSYS)", {}),
    ("thread start", "import threading\ndef f():\n    threading.Thread(target=len).start()", "",
     "forbidden (SIGSYS)", {}),
    ("execv", "import os\ndef f():\n    os.execv('/bin/sh', ['sh'])", "", "forbidden (SIGSYS)", {}),
    ("kill parent", "import os\ndef f():\n    os.kill(os.getppid(), 9)", "", "forbidden (SIGSYS)", {}),
    ("open file", "def f():\n    return open('/etc/hostname').read()", "", "forbidden (EPERM)", {}),
    ("madvise(MADV_HWPOISON)", "import mmap\ndef f():\n    mmap.mmap(-1, 4096).madvise(100)", "",
     "forbidden (EPERM)", {}),
    ("CPU loop", "def f():\n    while True:\n        pass", "", "timeout", {"cpu_s": 1, "wall_s": 20}),
    ("sleep", "import time\ndef f():\n    time.sleep(10)", "", "timeout", {"wall_s": 0.5}),
    ("2 GiB bytearray", "def f():\n    return len(bytearray(2 ** 31))", "", "memory", {"mem_mb": 1024}),
    ("always-equal object", "class A:\n    def __eq__(s, o):\n        return True\ndef f():\n    return A()", "",
     "bad_output", {}),
)


class Sandbox:
    """Pool of zygotes; every public method is thread-safe. Use as a context manager or call close()."""

    def __init__(self, workers=None, cpu_s=2.0, wall_s=4.0, mem_mb=1024, selftest=True, extra_modules=(), repeat=2,
                 max_args=MAX_ARGS):
        """repeat: calls of f per run()/check execution. The default 2 makes every execution take the same path as
        validation (which always calls twice), so a program cannot detect which one it is in (sandbox.md D14);
        repeat=1 halves the cost where that does not matter (benchmark evaluation). Limits cover all calls.
        max_args: argument text cap of run()/validate()/checks; AZR's model-written inputs keep the 4 KiB default,
        benchmark evaluation raises it for the few reference inputs that are larger (each one still a literal)."""
        for name, v in (("cpu_s", cpu_s), ("wall_s", wall_s), ("mem_mb", mem_mb), ("max_args", max_args)):
            if not isinstance(v, (int, float)) or v <= 0:
                raise ValueError(f"Sandbox({name}={v!r}): must be a positive number")
        n = int(workers or len(os.sched_getaffinity(0)))
        if n < 1:
            raise ValueError(f"Sandbox(workers={workers!r}): need at least one worker")
        self.cpu_s, self.wall_s, self.mem_mb, self.max_args = float(cpu_s), float(wall_s), int(mem_mb), int(max_args)
        if isinstance(extra_modules, str):  # ",".join("numpy") would allow the modules n, u, m, p and y
            raise ValueError(f"Sandbox(extra_modules={extra_modules!r}): pass a tuple of module names, e.g. "
                             f"({extra_modules!r},)")
        self._extra, self.repeat = ",".join(extra_modules), int(repeat)   # _extra: the zygote's argv
        self._extra_tops = tuple(m.split(".")[0] for m in self._extra.split(",") if m)   # what programs may import
        if self.repeat not in (1, 2):
            raise ValueError(f"Sandbox(repeat={repeat!r}): must be 1 or 2")
        self._closed = False
        self.fixed_addresses = True   # gold (A) zygotes run with ASLR off (see _zygote_main); False where refused
        self._workers = [_Worker(HASH_SEEDS[0]) for _ in range(n)] + \
                        [_Worker(HASH_SEEDS[1]) for _ in range(max(1, n // 2))]
        self._idle = {seed: queue.SimpleQueue() for seed in HASH_SEEDS}
        # Zygotes are started from one long-lived thread: PR_SET_PDEATHSIG fires when the *thread* that forked
        # them exits, so a short-lived caller thread must never be their parent.
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="sandbox-spawn")
        self._pool = ThreadPoolExecutor(len(self._workers) + 2, thread_name_prefix="sandbox")
        try:
            for w in self._workers:
                self._popen(w)
            for w in self._workers:
                self._hello(w)
                self._idle[w.seed].put(w)
            if selftest:
                bad = [row for row in self.selftest() if row[1] != row[2]]
                if bad:
                    raise SandboxUnavailable("sandbox self-test gave unexpected verdicts, refusing to run: " +
                                             "; ".join(f"{n}: expected {e}, got {g} ({err})" for n, e, g, err in bad))
        except BaseException:
            self.close()
            raise

    # -- zygote management ------------------------------------------------------------------------------------
    def _popen(self, w):
        cmd = [sys.executable, "-s", "-B", os.path.abspath(__file__), "--zygote", str(os.getpid()), self._extra]
        env = dict(_ZYGOTE_ENV, PYTHONHASHSEED=w.seed)
        if w.seed != HASH_SEEDS[0]:
            # Objects made before the fork (builtins, preloaded modules: `str(textwrap.dedent)[-4:-1]`, the order of
            # `{len, max}` or `{collections.deque, collections.Counter}`) sit at in-page offsets that ASLR and the
            # B children's shift leave alone, yet that follow the zygote's start: the checkout path and the caller's
            # pid in argv, extra_modules, the host's site-packages .pth files (a gold could change with the checkout
            # path and still validate ok). B zygotes lay out their whole heap otherwise (glibc malloc, after an
            # argument and an environment variable of random lengths: the argument moves what the interpreter makes
            # before it reads its environment, builtins included), so an output that reads such offsets differs.
            pads = os.urandom(4)
            env.update(PYTHONMALLOC="malloc", NANOAZR_PAD="x" * (int.from_bytes(pads[:2], "little") % 4096))
            cmd.append("x" * (int.from_bytes(pads[2:], "little") % 4096))
        try:
            w.proc = self._spawner.submit(subprocess.Popen, cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, env=env, cwd="/", close_fds=True).result()
        except (OSError, RuntimeError) as e:   # EMFILE, EAGAIN, ENOMEM; RuntimeError: close() stopped the spawner
            # (a failed respawn, after a zygote died or was recycled, is our failure: a sandbox_error like any other,
            # retried once, not an exception out of run() and every check)
            raise SandboxUnavailable(f"cannot start a sandbox zygote: {type(e).__name__}: {e}") from None

    def _hello(self, w):
        try:
            hello = json.loads(self._recv(w.proc, time.monotonic() + 120)[0])
        except _WorkerLost as e:
            raise SandboxUnavailable(f"sandbox zygote failed to start ({e})") from None
        if not hello.get("ok"):
            raise SandboxUnavailable(f"sandbox zygote refused to start: {hello.get('error')}")
        if w.seed == HASH_SEEDS[0]:
            self.fixed_addresses = self.fixed_addresses and hello["fixed_addresses"]

    def _kill(self, w):
        proc, w.proc, w.served = w.proc, None, 0
        if proc is not None:
            # EOF first: the zygote then reaps its template and exits (a SIGKILL orphans the template, see
            # _zygote_main); SIGKILL only for a zygote that does not exit (a lost one)
            proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()

    def _recv(self, proc, deadline):
        """-> [header, blob, ...] of one framed zygote message, or _WorkerLost (EOF, deadline, closed pipe)."""
        def read(n):
            chunks = []
            while n:
                try:
                    poller = select.poll()   # (select() refuses descriptors >= 1024, which a trainer may hold)
                    poller.register(proc.stdout.fileno(), select.POLLIN)
                    if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                        raise _WorkerLost("zygote did not answer in time")
                    b = os.read(proc.stdout.fileno(), n)
                except (OSError, ValueError) as e:   # close() from another thread closed the pipe
                    raise _WorkerLost(f"zygote pipe: {e}") from None
                if not b:
                    raise _WorkerLost("zygote exited")
                chunks.append(b)
                n -= len(b)
            return b"".join(chunks)
        body, parts, pos = read(_U32.unpack(read(4))[0]), [], 0
        while pos < len(body):
            n = _U32.unpack_from(body, pos)[0]
            parts.append(body[pos + 4:pos + 4 + n])
            pos += 4 + n
        return parts

    def _call(self, req, seed):
        """One request on one idle zygote of the given hash seed. -> (facts, record, stdout, stderr)."""
        w = self._idle[seed].get()
        try:
            if self._closed:
                raise SandboxUnavailable("Sandbox is closed")
            if w.proc is None:
                self._popen(w)
                self._hello(w)
            proc, data = w.proc, json.dumps(req).encode()   # proc: close() may clear w.proc meanwhile
            if proc is None:   # (close() from another thread since the check above)
                raise SandboxUnavailable("Sandbox is closed")
            try:
                _write_all(proc.stdin.fileno(), _U32.pack(len(data)) + data)
            except (OSError, ValueError) as e:
                raise _WorkerLost(f"zygote pipe: {e}") from None
            header, rec, out, err = self._recv(proc, time.monotonic() + req["wall_s"] + 30)
            w.served += 1
            if w.served >= RECYCLE_AFTER:
                self._kill(w)
            return json.loads(header), rec, out, err
        except (_WorkerLost, SandboxUnavailable):
            self._kill(w)
            raise
        finally:
            self._idle[seed].put(w)

    # -- one execution ----------------------------------------------------------------------------------------
    def _execute(self, code, args, seed=HASH_SEEDS[0], limits=None, arg_limit=None, stdin=None):
        """-> (Result, outcomes, facts). Static caps first; a lost zygote or failed child setup is retried once.
        stdin: text -> script mode (see _run_script): `code` runs as __main__ reading it, args must be ""."""
        if type(code) is not str or len(code) > MAX_CODE:
            why = f"over the {MAX_CODE}-character cap" if type(code) is str else f"a {type(code).__name__}"
            return Result("rejected", error=f"program must be a str of at most {MAX_CODE} characters, got {why}"), \
                [], {}
        if stdin is not None and (type(stdin) is not str or len(stdin) > MAX_STDIN or args != ""):
            return Result("rejected", error=f"stdin must be a str of at most {MAX_STDIN} characters, with args \"\""), \
                [], {}
        try:
            _call_args(args, arg_limit or self.max_args)
        except ValueError as e:
            return Result("rejected", error=str(e)), [], {}
        req = {"code": code, "args": args, "calls": self.repeat, "cpu_s": self.cpu_s, "wall_s": self.wall_s,
               "mem_mb": self.mem_mb, **(limits or {})}
        if stdin is not None:
            req["stdin"] = stdin
        res = None
        for _ in range(2):
            try:
                facts, rec, out, err = self._call(req, seed)
            except (_WorkerLost, SandboxUnavailable) as e:
                res = Result("sandbox_error", error=str(e))
                if self._closed:
                    break
                continue
            res, outcomes = _verdict(facts, rec, out, err, req["cpu_s"])
            if res.status != "sandbox_error":
                return res, outcomes, facts
        return res, [], {}

    def _map(self, fn, items):
        return list(self._pool.map(fn, list(items)))

    @staticmethod
    def _pair(item):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"expected a (code, args) pair, got {type(item).__name__}")
        return item

    # -- public API -------------------------------------------------------------------------------------------
    def run(self, code, args, stdin=None):
        """Execute `code` (defines f) and call f(<args>); args is AZR argument text, evaluated only in the child.
        stdin=text runs `code` as a script instead (args ""): it reads the text from sys.stdin and its printed
        output comes back as value = repr((text up to CAPTURE_KEEP chars, total chars, normalised sha256 hex))."""
        return self._execute(code, args, stdin=stdin)[0]

    def run_many(self, items, stdin=None):
        """[(code, args), ...] -> [Result], in parallel across zygotes, in order. stdin: optional list of texts,
        one per item (script mode, as in run)."""
        items = list(items)
        stdins = [None] * len(items) if stdin is None else list(stdin)
        if len(stdins) != len(items):
            raise ValueError(f"run_many: {len(stdins)} stdin texts for {len(items)} items")

        def one(k):
            try:
                return self._execute(*self._pair(items[k]), stdin=stdins[k])[0]
            except ValueError as e:
                return Result("rejected", error=str(e))
        return self._map(one, range(len(items)))

    def validate(self, code, args):
        """AZR proposal validation: static checks, then determinism. value = gold output (full repr)."""
        return self._validate_one((code, args))

    def validate_many(self, items):
        """[(code, args), ...] -> [Result], as validate, in parallel across zygotes, in order."""
        return self._map(self._validate_one, items)

    def _validate_one(self, item):
        try:
            code, args = self._pair(item)
            program, imports = azr_program(code, self._extra_tops, args, self.max_args)
        except ValueError as e:
            return Result("rejected", error=str(e))
        a, outs, facts = self._execute(program, args, limits={"calls": 2})
        meta = dict(program=program, imports=imports, stdout=a.stdout, stderr=a.stderr)
        a = self._judge(a, outs, facts)
        if a.status != "ok" and not azr_valid_without_output(a):
            return Result(a.status, error=a.error, **meta)
        # B runs the same values as other text (the input padded with spaces): a child's heap, and with it the order
        # of a set of the program's own objects hashed by address, follows the request's text, which differs between
        # validation and every later check (a solver's input is other text for the same values). A run AZR keeps
        # with gold "" (an exception, calls that differ) must fail alike in B, or whether the proposal is valid
        # could follow the host (the order of such a set deciding whether f raises, say)
        pad = " " * 97
        b, outs_b, facts_b = self._execute(program, args + pad, seed=HASH_SEEDS[1], limits={"calls": 2},
                                           arg_limit=self.max_args + len(pad))
        if b.status == "sandbox_error":
            return Result("sandbox_error", error=b.error, **meta)
        if a.status == "ok":
            alike = b.status == "ok" and _same(outs_b[0][1], outs[0][1])
        else:
            alike = azr_valid_without_output(self._judge(b, outs_b, facts_b))
        if not alike:
            return Result("nondeterministic", error="a zygote with another hash seed (the input re-spaced) gave "
                          f"{b.status} {truncate_output(b.value or b.error or '', 200)!r}", **meta)
        return Result(a.status, value=a.value, error=a.error, **meta)

    def _judge(self, res, outs, facts):
        """One zygote's run of validate's two calls of f, judged alone: ok (value = the repr) or the first refusal
        (f raised, the calls differ, an address in the repr, timing-fragile)."""
        io = dict(stdout=res.stdout, stderr=res.stderr)
        if res.status != "ok":
            return res
        if len(outs) < 2 or outs[1][0] != "ok":
            raised = len(outs) > 1 and outs[1][0] == "exception"   # (azr_valid_without_output reads the kind)
            return Result("nondeterministic", error=(_SECOND_RAISED if raised else "second call of f failed: ") +
                          (outs[1][1] if len(outs) > 1 else ""), **io)
        (_, v1, text), (_, v2, text2) = outs[0], outs[1]
        if not _same(v1, v2):
            return Result("nondeterministic", error=_DIFFERENT_VALUES, **io)
        if text != text2:
            return Result("nondeterministic", error="two calls of f on fresh arguments returned equal values with "
                          "different reprs", **io)
        if _ADDRESS.search(text):
            return Result("nondeterministic", error="output contains a memory address", **io)
        if facts["cpu"] > TIMING_MARGIN * self.cpu_s:
            return Result("rejected", error=f"timing-fragile: used {facts['cpu']:.2f} s CPU of the {self.cpu_s} s "
                          f"limit (margin {TIMING_MARGIN:.0%})", **io)
        if facts["wall"] > TIMING_MARGIN * self.wall_s:   # a timed wait sleeps without CPU (Condition.wait(1.99))
            return Result("rejected", error=f"timing-fragile: took {facts['wall']:.2f} s of the {self.wall_s} s "
                          f"wall-clock limit (margin {TIMING_MARGIN:.0%})", **io)
        return Result("ok", value=text, **io)

    # The check_* methods return one verdict per item: True / False, or None when the check itself was lost to a
    # sandbox_error after the retry (a zygote died for reasons of ours, not the program's). AZR drops such crashed
    # checks from the learnability mean (azr-spec.md 4.1) instead of counting them as wrong answers, and so an
    # abduction check its executor gives no verdict (f raised an exception whose status line names no error: None).

    def _values(self, texts, pure=False, gold=False):
        """Output texts -> [(ok, value)], or None where the evaluation was lost to a sandbox_error: literals are
        parsed here; anything else is evaluated in a child (pure: only if check_pure accepts it, else not ok).
        gold: texts of gold outputs. Ours are reprs of builtin values, so literals, unless truncated: the kept
        tail of a truncated gold is text the proposer chose, which must not run (a tail `', random() < .3]#`
        made its task a coin flip at every check), so a truncated gold is a literal or no value (unsolvable, as
        AZR intends). The few other non-literal golds (seed files: dict(a=1), Counter(...)) must be pure."""
        parsed = [parse_literal(t) for t in texts]
        pure = pure or gold

        def one(i):
            if parsed[i][0] or type(texts[i]) is not str:
                return parsed[i]
            if not texts[i].strip() or (gold and is_truncated(texts[i])):  # no answer: not the empty tuple "(\n)"
                return False, None
            if pure and not _pure_text(texts[i]):
                return False, None
            if _names_f(texts[i]):  # f here is an identity stand-in, not the task's program: `f(x) == y` means nothing
                return False, None
            res, outs, _ = self._execute(_IDENTITY, "(" + texts[i] + "\n)", arg_limit=MAX_VALUE_TEXT + 4)
            if res.status == "sandbox_error":
                return None
            return (True, outs[0][1]) if res.status == "ok" else (False, None)
        return self._map(one, range(len(texts)))

    def check_deduction(self, pairs, pure=True):
        """[(gold_output, predicted_output)] -> [bool | None]: Python == on parsed values (1 == 1.0, sets
        unordered); None when evaluating either side was lost to a sandbox_error. pure: a predicted output that
        is not a literal must pass check_pure (the RL loop); False evaluates any expression, as benchmark
        harnesses do."""
        pairs = list(pairs)
        golds = self._values([g for g, _ in pairs], gold=True)
        preds = self._values([p for _, p in pairs], pure)
        return [None if g is None or p is None else bool(g[0] and p[0] and _same(g[1], p[1]))
                for g, p in zip(golds, preds)]

    def check_abduction(self, triples, pure=True):
        """[(program, gold_output, predicted_input)] -> [bool | None]: f(predicted_input) == gold, computed in a
        child; None when the gold's evaluation or the run was lost to a sandbox_error, or (AZR's executor, see
        azr_status_passes) when f raised an exception whose status line names no error. pure: as check_deduction,
        for each argument of the predicted input (not pure: wrong, without a run)."""
        triples = list(triples)
        golds = self._values([g for _, g, _ in triples], gold=True)
        runs = self._map(lambda t: self._execute(t[0], t[2]) if not pure or _pure_args(t[2], t[0]) else
                         (Result("rejected"), [], {}), triples)
        return [None if g is None or r[0].status == "sandbox_error" or (g[0] and _azr_no_verdict(r[0])) else
                bool(g[0] and r[0].status == "ok" and _same(r[1][0][1], g[1])) for g, r in zip(golds, runs)]

    def check_induction(self, items):
        """[(candidate_code, imports, inputs, outputs)] -> [bool | None]: binary, every (input, output) pair must
        pass. The gold program's import lines are prepended to the candidate (AZR). Pairs lost to sandbox_error are
        dropped like AZR's crashed checks; None when no pair was counted. Not AZR's: a pair on which the candidate
        raised an exception whose status line names no error (azr_status_passes) fails here, where AZR's executor
        gives it no verdict and drops it from the mean, so a candidate that raises Exception wherever it is unsure
        would score 1 (a reward hack)."""
        items = list(items)
        jobs, golds = [], []
        for code, imports, inputs, outputs in items:
            full = "\n".join(imports or ()) + "\n" + code if type(code) is str else code
            jobs += [(full, inp) for inp in inputs]
            golds += list(outputs)
        gold_vals = self._values(golds, gold=True)
        runs = self._map(lambda j: self._execute(*j)[:2], jobs)
        verdicts, k = [], 0
        for _, _, inputs, _ in items:
            counted = [(r, g) for r, g in zip(runs[k:k + len(inputs)], gold_vals[k:k + len(inputs)])
                       if r[0].status != "sandbox_error" and g is not None]
            verdicts.append(all(g[0] and r[0].status == "ok" and _same(r[1][0][1], g[1]) for r, g in counted)
                            if counted else None)
            k += len(inputs)
        return verdicts

    def selftest(self):
        """Runs the canary attacks. -> [(name, expected, got, error)]."""
        def one(c):
            name, code, args, expected, limits = c
            res = self._execute(code, args, limits=limits)[0]
            err = res.error or ""
            how = " (SIGSYS)" if "SIGSYS" in err else " (EPERM)" if "Errno 1]" in err else ""
            return name, expected, res.status + how, res.error
        rows = self._map(one, _CANARIES)
        b = self._execute(_CANARIES[0][1], _CANARIES[0][2], seed=HASH_SEEDS[1])[0]
        return rows + [("plain call, hash-seed-B zygote", "ok", b.status, b.error)]

    def worker_pids(self):
        """pids of the live zygotes (for tests and monitoring)."""
        return [w.proc.pid for w in self._workers if w.proc is not None]

    def close(self):
        if self._closed:
            return
        self._closed = True
        for w in getattr(self, "_workers", ()):
            self._kill(w)
        self._pool.shutdown(wait=False)
        self._spawner.shutdown(wait=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _selftest_cli():
    t0 = time.monotonic()
    try:
        with Sandbox(selftest=False) as sb:
            rows = sb.selftest()
            fixed = sb.fixed_addresses
    except SandboxUnavailable as e:
        print(f"sandbox unavailable: {e}")
        return 1
    print(f"{'canary':32} {'expected':20} {'got':20} detail")
    for name, expected, got, err in rows:
        print(f"{name:32} {expected:20} {got:20} {'' if expected == got else 'MISMATCH '}{(err or '')[:60]}")
    bad = sum(e != g for _, e, g, _ in rows)
    print(f"{len(rows) - bad}/{len(rows)} as expected in {time.monotonic() - t0:.1f} s; gold zygotes' ASLR: "
          f"{'off (static addresses agree)' if fixed else 'ON (personality refused: address bits may differ)'}")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--zygote":
        del sys.argv[4:]   # B's padding argument has moved the heap already; argv itself stays the same as A's
        _zygote_main(int(sys.argv[2]), tuple(m for m in sys.argv[3].split(",") if m))
    elif sys.argv[1:] == ["--selftest"]:
        sys.exit(_selftest_cli())
    else:
        sys.exit("usage: python sandbox.py --selftest")
