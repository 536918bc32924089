"""sandbox.py against the attack catalogue of ../shared/sandbox.md (section 5) and the AZR checks.

Every catalogue entry is one row: program, argument text, allowed verdicts. The rows run in one parallel batch
(module fixture); each row is its own test. Side effects (files, processes, the parent) are checked separately.
"""
import ast
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import sandbox
from sandbox import Sandbox, Result

CANARY_FILE = f"/tmp/nanoazr_sandbox_{uuid.uuid4().hex}"

# (id, program, args, allowed statuses); run() semantics (no static AZR checks), cpu_s=1, wall_s=2.
CATALOGUE = [
    ("A1 read /etc/passwd", "def f():\n    return open('/etc/passwd').read()", "", {"forbidden"}),
    ("A2 write a file", f"def f():\n    open({CANARY_FILE!r}, 'w').write('x')", "", {"forbidden"}),
    ("A2 os.open O_CREAT", f"import os\ndef f():\n    os.open({CANARY_FILE!r}, os.O_CREAT | os.O_WRONLY)", "",
     {"forbidden"}),
    ("A3 socket connect", "import socket\ndef f():\n    socket.socket().connect(('127.0.0.1', 8265))", "",
     {"forbidden"}),
    ("A5 os.fork", "import os\ndef f():\n    return os.fork()", "", {"forbidden"}),
    ("A5 posix_spawn", "import os\ndef f():\n    return os.posix_spawn('/bin/true', ['true'], {})", "",
     {"forbidden"}),
    ("A5 subprocess.run", "import subprocess\ndef f():\n    return subprocess.run(['id']).returncode", "",
     {"forbidden"}),
    ("A5 os.system", "import os\ndef f():\n    return os.system('id')", "", {"forbidden"}),
    ("A6 execv", "import os\ndef f():\n    os.execv('/bin/sh', ['sh'])", "", {"forbidden"}),
    ("A7 thread", "import threading\ndef f():\n    threading.Thread(target=print).start()", "", {"forbidden"}),
    ("A8 kill parent", "import os\ndef f():\n    os.kill(os.getppid(), 9)", "", {"forbidden"}),
    # signal 0 only probes: the filter does not look at kill's arguments, and a broken filter must not hurt the host
    ("A8 kill -1", "import os\ndef f():\n    os.kill(-1, 0)", "", {"forbidden"}),
    ("A8 killpg", "import os\ndef f():\n    os.killpg(0, 0)", "", {"forbidden"}),
    ("A10 process_vm_readv", "import ctypes, os\ndef f():\n    return ctypes.CDLL(None).syscall(310, os.getppid(), "
     "0, 1, 0, 1, 0)", "", {"forbidden"}),
    ("A10 ptrace attach", "import ctypes, os\ndef f():\n    return ctypes.CDLL(None).ptrace(16, os.getppid(), 0, 0)",
     "", {"forbidden"}),
    ("A11 io_uring_setup", "import ctypes\ndef f():\n    p = ctypes.create_string_buffer(120)\n"
     "    return ctypes.CDLL(None).syscall(425, 8, p)", "", {"forbidden"}),
    ("A12 int 0x80", "import ctypes, mmap\ndef f():\n    m = mmap.mmap(-1, 4096, prot=7)\n"
     "    m.write(b'\\xb8\\x14\\x00\\x00\\x00\\xcd\\x80\\xc3')\n"
     "    return ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))()", "",
     {"forbidden"}),
    ("A12 x32 syscall", "import ctypes\ndef f():\n    return ctypes.CDLL(None).syscall(0x40000000 | 39)", "",
     {"forbidden"}),
    ("A13 setsid", "import os\ndef f():\n    os.setsid()\n    while True:\n        pass", "", {"forbidden"}),
    ("raise the CPU rlimit, then loop", "import resource\ndef f():\n    try:\n"
     "        resource.setrlimit(resource.RLIMIT_CPU, (100, 100))\n    except Exception:\n        pass\n"
     "    while True:\n        pass", "", {"timeout"}),
    ("fcntl F_SETOWN", "import fcntl, os\ndef f():\n    fcntl.fcntl(3, fcntl.F_SETOWN, os.getppid())", "",
     {"forbidden"}),
    ("fcntl F_GETFL (allowed)", "import fcntl\ndef f():\n    return fcntl.fcntl(1, fcntl.F_GETFL) >= 0", "",
     {"ok"}),
    ("stat a path", "import os\ndef f():\n    return os.stat('/etc/passwd').st_size", "", {"forbidden"}),
    ("fstat own fd (allowed)", "import os\ndef f():\n    return os.fstat(1).st_size >= 0", "", {"ok"}),
    ("getrlimit (allowed)", "import resource\ndef f():\n    return resource.getrlimit(resource.RLIMIT_NOFILE)", "",
     {"ok"}),
    ("listdir", "import os\ndef f():\n    return os.listdir('/')", "", {"forbidden"}),
    ("B1 bytearray(10**10)", "def f():\n    return len(bytearray(10 ** 10))", "", {"memory"}),
    ("B2 append forever", "def f():\n    a = []\n    while True:\n        a.append([0] * 1000)", "",
     {"memory", "timeout"}),
    ("B3 'a' * 10**12", "def f():\n    return len('a' * 10 ** 12)", "", {"memory"}),
    ("B3 [0] * 10**10", "def f():\n    return len([0] * 10 ** 10)", "", {"memory"}),
    ("B3 10**(10**9)", "def f():\n    return 10 ** (10 ** 9) > 0", "", {"memory", "timeout"}),
    ("B4 fork bomb", "import os\ndef f():\n    while True:\n        os.fork()", "", {"forbidden"}),
    ("B5 thread bomb", "import threading\ndef f():\n    while True:\n        threading.Thread(target=f).start()",
     "", {"forbidden"}),
    ("B6 deep recursion", "def f(n):\n    return f(n + 1)", "0", {"exception"}),
    ("B8 10**6-element list", "def f():\n    return list(range(10 ** 6))", "", {"bad_output"}),
    ("B9 huge exception message", "def f():\n    raise ValueError('x' * 10 ** 8)", "", {"exception"}),
    ("C1 while True", "def f():\n    while True:\n        pass", "", {"timeout"}),
    ("C1 ignoring SIGXCPU", "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\ndef f():\n"
     "    while True:\n        pass", "", {"timeout"}),
    ("C2 sleep(100)", "import time\ndef f():\n    time.sleep(100)", "", {"timeout"}),
    ("C3 input()", "def f():\n    return input()", "", {"exception"}),
    ("C4 lock twice", "import threading\ndef f():\n    l = threading.Lock()\n    l.acquire()\n    l.acquire()", "",
     {"timeout"}),
    ("C4 signal.pause", "import signal\ndef f():\n    signal.pause()", "", {"timeout"}),
    ("C6 bare except loop", "def f():\n    while True:\n        try:\n            1 / 0\n        except:\n"
     "            pass", "", {"timeout"}),
    ("C8 catastrophic regex", "import re\ndef f():\n    return bool(re.match(r'(a+)+$', 'a' * 40 + 'b'))", "",
     {"timeout"}),
    ("D1 sys.exit at top level", "import sys\nsys.exit(0)\ndef f():\n    return 1", "", {"exception"}),
    ("D1 sys.exit in f", "import sys\ndef f():\n    sys.exit(0)", "", {"exception"}),
    ("D2 os._exit(0)", "import os\ndef f():\n    os._exit(0)", "", {"bad_output"}),
    ("D3 always-equal object", "class A:\n    def __eq__(s, o):\n        return True\n    def __ne__(s, o):\n"
     "        return False\n    def __hash__(s):\n        return 0\ndef f():\n    return A()", "", {"bad_output"}),
    ("D4 int subclass", "class I(int):\n    def __eq__(s, o):\n        return True\ndef f():\n    return I(3)", "",
     {"bad_output"}),
    ("D4 str subclass", "class S(str):\n    def __repr__(s):\n        return '1'\ndef f():\n    return S('x')", "",
     {"bad_output"}),
    ("D4 list subclass in a dict", "class L(list):\n    pass\ndef f():\n    return {'a': L([1])}", "",
     {"bad_output"}),
    ("D15 garbage on the record fd", "import os\ndef f():\n    os.write(3, b'\\xff' * 100)\n    return 1", "",
     {"bad_output"}),
    ("D15 huge record", "import os\ndef f():\n    os.write(3, b'x' * 10 ** 6)\n    return 1", "", {"bad_output"}),
    ("D15 close the record fd", "import os\ndef f():\n    os.close(3)\n    return 1", "", {"bad_output"}),
    ("D15 forged ok record", "import os, struct\ndef f():\n    os.write(3, struct.pack('<I', 10 ** 6) + b'o')\n"
     "    os._exit(0)", "", {"bad_output"}),
    ("D15 segfault", "import ctypes\ndef f():\n    return ctypes.string_at(0)", "", {"crash"}),
    ("cyclic list", "def f():\n    a = []\n    a.append(a)\n    return a", "", {"bad_output"}),
    ("F3 stdout flood", "import os\ndef f():\n    while True:\n        os.write(1, b'x' * 65536)", "",
     {"output_limit"}),
    ("F4 stderr flood", "import sys\ndef f():\n    while True:\n        sys.stderr.write('y' * 65536)", "",
     {"output_limit"}),
    ("F10 huge int", "def f():\n    return 7 ** 20000", "", {"bad_output"}),
    ("F10 10 MB string", "def f():\n    return 'x' * 10 ** 7", "", {"bad_output"}),
    ("F10 70 kB string", "def f():\n    return 'x' * 70000", "", {"bad_output"}),
    ("60 kB string is fine", "def f():\n    return ['x' * 60000]", "", {"ok"}),
    ("import not preloaded", "import sympy\ndef f():\n    return 1", "", {"exception"}),
]


@pytest.fixture(scope="module")
def sb():
    os.environ["NANOAZR_FAKE_API_KEY"] = "secret"   # in the caller's environment; must never reach a child (A15)
    try:
        with Sandbox(cpu_s=1, wall_s=2) as s:
            yield s
    finally:
        del os.environ["NANOAZR_FAKE_API_KEY"]


@pytest.fixture(scope="module")
def catalogue(sb):
    t0 = time.monotonic()
    results = sb.run_many([(code, args) for _, code, args, _ in CATALOGUE])
    return dict(zip([row[0] for row in CATALOGUE], results)), time.monotonic() - t0


def _children(pid):
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("name", [row[0] for row in CATALOGUE])
def test_catalogue_verdict(catalogue, name):
    res = catalogue[0][name]
    allowed = next(row[3] for row in CATALOGUE if row[0] == name)
    assert res.status in allowed, (name, res)


def test_catalogue_side_effects(sb, catalogue):
    assert not os.path.exists(CANARY_FILE)                        # A2: nothing written
    # A5/A13/B4: no process left behind (each zygote's one child is its template, which forks the children)
    assert all(len(_children(p)) == 1 and not _children(_children(p)[0]) for p in sb.worker_pids())
    assert all(Path(f"/proc/{p}").exists() for p in sb.worker_pids())   # A8: zygotes alive
    assert sb.run("def f(x):\n    return x", "1").value == "1"     # D15: zygotes keep serving
    # every call returned within wall limit + margin even with rows queued 2-deep per zygote: bounded total time
    assert catalogue[1] < len(CATALOGUE) * 2.5


def test_catalogue_messages(catalogue):
    results = catalogue[0]
    assert "RecursionError" in results["B6 deep recursion"].error
    assert results["B9 huge exception message"].error.startswith("ValueError: xxx")
    assert len(results["B9 huge exception message"].error) < 1100
    assert "EOFError" in results["C3 input()"].error
    assert "SystemExit" in results["D1 sys.exit in f"].error


def test_environment_is_scrubbed(sb):                             # A15
    res = sb.run("import os\ndef f():\n    return sorted(os.environ.items())", "")
    assert res.status == "ok"
    assert "NANOAZR_FAKE_API_KEY" not in res.value and "secret" not in res.value
    names = [k for k, _ in eval(res.value)]   # our own canonical repr of plain values
    assert not [n for n in names if n.endswith(("_KEY", "_TOKEN"))]
    assert set(names) <= set(sandbox._ZYGOTE_ENV) | {"PYTHONHASHSEED"}


def test_stdin_is_dev_null(sb):                                  # C3
    assert sb.run("import sys\ndef f():\n    return sys.stdin.read()", "").value == "''"


def test_wall_limit_promptly(sb):                                # C2, liveness
    t0 = time.monotonic()
    assert sb.run("import time\ndef f():\n    time.sleep(100)", "").status == "timeout"
    assert time.monotonic() - t0 < sb.wall_s + 1.5


def test_stdout_is_captured_not_parsed(sb):                      # F1, F2, F6
    code = ("import os, ctypes\ndef f():\n    print('RESULT: [1, 2, 3]')\n    print('PASSED')\n"
            "    os.write(1, b'raw\\n')\n    ctypes.CDLL(None).write(1, b'ctypes\\n', 7)\n"
            "    print('\\x00\\x1b[31m\\r')\n    return 0")
    res = sb.run(code, "")
    assert (res.status, res.value) == ("ok", "0")
    assert "RESULT: [1, 2, 3]" in res.stdout and "raw" in res.stdout and "ctypes" in res.stdout
    assert not any(c in res.stdout for c in "\x00\x1b\r") and "\\x1b" in res.stdout


def test_monkeypatching_does_not_leak(sb):                       # D10, D11, D12
    evil = ("import builtins, json, math, gc\nbuiltins.repr = lambda o: 'PWNED'\nbuiltins.print = None\n"
            "json.dumps = lambda *a, **k: 'PWNED'\nmath.gcd = lambda a, b: 42\n"
            "def run_tests():\n    return True\ncheck = assert_equal = run_tests\n"
            "def f():\n    for o in gc.get_objects():\n        if type(o) is dict and 'status' in o:\n"
            "            o['status'] = 'ok'\n    return math.gcd(4, 6)")
    assert sb.run(evil, "").value == "42"
    for _ in range(len(sb.worker_pids())):
        assert sb.run("import math\ndef f():\n    return (repr(1), math.gcd(4, 6))", "").value == "('1', 2)"


@pytest.mark.parametrize("code,status", [
    ("def f():\n    return __import__('random').random()", "nondeterministic"),                  # E1
    ("def f():\n    return __import__('time').time()", "nondeterministic"),                      # E2
    ("def f():\n    return id(object())", "nondeterministic"),                                   # E3
    ("def f():\n    return repr(object())", "nondeterministic"),                                 # E4
    ("class A:\n    pass\ndef f():\n    return A()", "bad_output"),                              # E4
    ("def f():\n    return hash(float('nan'))", "nondeterministic"),                            # E7
    ("def f():\n    return {float('nan')}", "nondeterministic"),                                # E7
    ("def f():\n    return __import__('os').urandom(8).hex()", "nondeterministic"),              # E9
    ("def f():\n    return __import__('uuid').uuid4().hex", "nondeterministic"),                 # E9
    ("def f():\n    return __import__('secrets').token_hex(8)", "nondeterministic"),             # E9
    ("def f():\n    t = __import__('time').perf_counter\n    s, n = t(), 0\n    while t() - s < 0.002:\n"
     "        n += 1\n    return n", "nondeterministic"),                                           # E10
    ("import sys\ndef f():\n    return sys.getsizeof([])", "rejected"),                            # E12
    ("import platform\ndef f():\n    return platform.machine()", "rejected"),                       # E12
    ("n = [0]\ndef f():\n    n[0] += 1\n    return n[0]", "nondeterministic"),                       # D13
    ("def f(a):\n    a.append(1)\n    return len(a)", "ok"),                                        # E11
])
def test_determinism(sb, code, status, monkeypatch):
    # the run-time checks, behind the static filter (test_escape_routes_are_rejected), which rejects most of these
    monkeypatch.setattr(sandbox, "_escape_route", lambda node: None)
    monkeypatch.setattr(sandbox, "_module_flow", lambda tree, modules, root=None: None)
    args = "[1, 2]" if "f(a)" in code else ""
    res = sb.validate(code, args)
    assert res.status == status, res
    if status == "ok":
        assert res.value == "3"


def test_timing_fragile_is_rejected(sb, monkeypatch):           # C10
    monkeypatch.setattr(sandbox, "TIMING_MARGIN", 0.05)
    res = sb.validate("def f():\n    return sum(range(10 ** 7))", "")
    assert res.status == "rejected" and "timing-fragile" in res.error


def test_harness_is_identical_across_modes(sb, monkeypatch):      # D14
    # the program walks frames, as an attacker would: past the static filter
    monkeypatch.setattr(sandbox, "_escape_route", lambda node: None)
    monkeypatch.setattr(sandbox, "_module_flow", lambda tree, modules, root=None: None)
    code = ("def f():\n    import sys\n    fr, names = sys._getframe(), []\n    while fr:\n"
            "        names.append(fr.f_code.co_name)\n        fr = fr.f_back\n"
            "    return (names, __name__, sys.argv, sorted(globals()), len(sys.modules))")
    v = sb.validate(code.replace("import sys", "s = __import__('sys')").replace("sys.", "s."), "")
    r = sb.run(code.replace("import sys", "s = __import__('sys')").replace("sys.", "s."), "")
    assert v.status == "ok" and r.status == "ok" and v.value == r.value


def test_cpu_hard_limit_is_a_timeout():
    """A program that ignores SIGXCPU dies by the RLIMIT_CPU hard limit (SIGKILL, not sent by us): a timeout, not a
    crash. The catalogue's wall limit (2 s) lands with it; here the wall limit is well above it."""
    with Sandbox(cpu_s=1, wall_s=6) as s:
        res = s.run("import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\ndef f():\n    while True:\n"
                    "        pass", "")
    assert res.status == "timeout" and "CPU limit" in res.error, res


def test_validate_azr_rules(sb):
    ok = sb.validate("def g(n):\n    return 1 if n < 2 else n * g(n - 1)", "5")
    assert (ok.status, ok.value) == ("ok", "120")
    assert "def f(n)" in ok.program and "f(n - 1)" in ok.program and ok.imports == ()
    assert sb.validate("def f(a):\n    def g(b):\n        return b\n    return g(a)", "1").status == "rejected"
    assert sb.validate("class A:\n    def m(self):\n        return 1\ndef f():\n    return A().m()", "").status \
        == "rejected"
    assert sb.validate("x = 1", "").status == "rejected"
    assert sb.validate("def g():\n    return " + "-" * 10000 + "1", "").status == "rejected"  # parser limits
    res = sb.validate("import time\ndef f():\n    return 1", "")
    assert res.status == "rejected" and "time" in res.error
    assert sb.validate("from datetime import date\ndef f():\n    return 1", "").status == "rejected"
    assert sb.validate("def f():\n    return input('x')", "").status == "rejected"
    # AZR's executor regex sees the program after the rename to f, and the input (in its determinism template)
    renamed = sb.validate("def parse_input(s):\n    return parse_input(s[1:]) + 1 if s else 0", "'abc'")
    assert (renamed.status, renamed.value) == ("ok", "3")
    assert renamed.program == "def f(s):\n    return f(s[1:]) + 1 if s else 0"
    assert sb.validate("def f(s):\n    return len(s)", "'input(x)'").status == "rejected"
    # `returns = f(<input>)`: a trailing comment swallows the parenthesis; a line break inside brackets is fine
    assert sb.validate("def f(s):\n    return len(s)", "[1, 2]  # two").status == "rejected"
    assert sb.validate("def f(s):\n    return len(s)", "'a#b'").value == "3"
    assert sb.validate("def f(s):\n    return len(s)", "[1,\n 2]").value == "2"
    # AZR execs into a bare globals dict: __name__ is 'builtins', so a main block never runs (here: a failing assert)
    main = "def f(x):\n    return x + 1\n\nif __name__ == '__main__':\n    assert f(1) == 3\n"
    res = sb.validate(main, "1")
    assert (res.status, res.value) == ("ok", "2")
    assert sb.check_induction([(main, [], ["1"], ["2"])]) == [True] and sb.check_abduction([(main, "2", "1")]) == [True]
    imp = sb.validate("import math\nfrom collections import Counter as C\ndef f(x):\n    return math.isqrt(x)", "17")
    assert (imp.status, imp.value, imp.imports) == \
        ("ok", "4", ("import math", "from collections import Counter as C"))
    assert sb.validate("def f(a):\n    return a\n", "dict(a=1, b=[0] * 3)").value == "{'a': 1, 'b': [0, 0, 0]}"
    assert sb.validate("def f():\n    return None", "").value == "None"
    assert sb.validate("def f():\n    return float('nan')", "").status == "nondeterministic"   # F8, as AZR


@pytest.mark.parametrize("code", [
    "def f(x):\n    return x + int(__import__('time').time() * 10) % 2",   # E2 at 0.1 s: passes the run-time checks
    "def f(x):\n    return x + (__import__('os').urandom(1)[0] < 13)",     # E9 at low entropy: likewise
    "def f(x):\n    return __import__('sys').version",                      # E12 without an import statement
    "import typing\ndef f(x):\n    return typing.sys.version",             # a module through another module
    "def f(x):\n    return ().__class__.__base__.__subclasses__()",
    "def f(x):\n    return (i for i in []).gi_frame.f_globals",
    "def f(x):\n    return getattr(x, '__cl' + 'ass__')",
    "def f(x):\n    return eval('__imp' + 'ort__')('time').time()",
    "import operator\ndef f(x):\n    return operator.attrgetter('__globals__')(f)",
    "from builtins import __import__ as imp\ndef f(x):\n    return imp('time').time()",          # imported names
    "from typing import sys\ndef f(x):\n    return sys.version",
    "from operator import methodcaller as mc\ndef f(x):\n    return len(mc('__subclasses__')(object))",
    "from collections import *\nfrom string import *\nfrom queue import *\ndef f(x):\n    return x",  # no __all__?
    "import uuid\ndef f(x):\n    return uuid.uuid1(1, 0).time_mid + x",                       # a clock, publicly
    "import typing\nL = []\ndef f(x: \"[L.append(1), int][1]\"):\n    typing.get_type_hints(f)\n    return L[-1]",
    "import dataclasses\ndef f(x):\n    return '{0.__globals__[sys].version}'.format(dataclasses.dataclass)",
    "import posix\ndef f(x):\n    return posix.uname().nodename",                # any module the zygote holds
    "from _datetime import date\ndef f(x):\n    return str(date.today())",
    "from collections import _sys\ndef f(x):\n    return _sys.version",
    "import queue\nq = queue\ndef f(x):\n    return int(q.time()) // 10000",       # a module under another name
    "import queue\ndef f(x, m=queue):\n    return int(m.time()) // 10000",
    "import queue\ndef f(x):\n    return int([queue][0].time()) // 10000",
    # @dataclass compiles source with the annotation keys pasted in: a key can carry an expression (round 4)
    "from dataclasses import dataclass\n@dataclass(init=False, eq=False)\nclass A:\n    __annotations__ = "
    "{'x\" + str(int(time.time()) // 86400) + \"': int}\ndef f(x):\n    return repr(A())",
    "import pprint\ndef f(x):\n    return pprint.dataclasses.dataclass(type('A', (), {}))",
    "from pprint import dataclasses\ndef f(x):\n    return x",
    "import zlib\ndef f(x):\n    return zlib.ZLIB_RUNTIME_VERSION",           # host library builds (E12)
    "import unicodedata as u\ndef f(x):\n    return u.unidata_version",
    "from keyword import softkwlist\ndef f(x):\n    return softkwlist",
    # round 5: a class pattern reads attributes by name; a module used as a value is an alias no tracking follows
    "def f(x):\n    match f:\n        case object(__globals__={'__builtins__': object(__import__=imp)}):\n"
    "            return x + int(imp('time').time() * 4) % 2",
    "import pprint\ndef f(x):\n    match pprint:\n        case object(_dataclasses=object(dataclass=dc)):\n"
    "            return x",
    "import abc, statistics\nfrom collections import namedtuple\nclass C(namedtuple('P', 'random'), abc.ABC):\n"
    "    pass\nC.register(type(statistics))\ndef f(x):\n    match statistics:\n        case C(r):\n"
    "            return x + (r.random() < 0.5)",
    "import statistics\ndef f(x):\n    for m in [statistics]:\n        return x + (m.random.random() < 2)",
    "import statistics\nm = [statistics][0]\ndef f(x):\n    return x + (m.random.random() < 2)",
    "import statistics\n_, m = 0, statistics\ndef f(x):\n    return x + (m.random.random() < 2)",
    "import statistics\ndef f(x):\n    (m := statistics)\n    return x + (m.random.random() < 2)",
    "import statistics\ndef f(x):\n    return x + [m.random.random() < 2 for m in [statistics]][0]",
    "import statistics\nL = []\nL += [statistics]\ndef f(x):\n    return x + (L[0].random.random() < 2)",
    "import typing\ndef f(x):\n    t = typing.types\n    return t.sys.version",
    "def f(x):\n    return x + (id(None) >> 28) % 2",                # an ASLR bit: differs between zygotes
    "def f(x):\n    return x + (hash(f) >> 24) % 2",                 # a heap address bit: drifts between zygotes
    "def f(x):\n    return x + (f.__hash__() >> 24) % 2",
    "import zlib, typing\ndef f(x):\n    return '{0.ZLIB_RUNTIME_VERSION}|{1.sys.version}'.format(zlib, typing)",
    # round 6: AttributeError.obj is the module whose attribute was missing
    "import queue\ndef f(x):\n    try:\n        queue.nope\n    except AttributeError as e:\n        q = e.obj\n"
    "    return x + int(q.time() // 5) % 2",
    # round 7: update_wrapper/wraps read and write attributes named at run time; a format template built at run time
    "import functools, queue\nd = {}\nclass W:\n    __globals__ = d\ndef f(x):\n"
    "    functools.update_wrapper(W(), queue.Queue.get, (), ('__globals__',))\n"
    "    return x + int(d['__builtins__']['__import__']('time').time() * 2) % 2",
    "from functools import *\ndef f(x):\n    return wraps",
    # round 8: enum holds builtins as `bltns`; locals() at module level is the globals dict; enum.global_enum writes
    # into any module by a run-time name
    "import enum\ndef f(x):\n    return x + int(enum.bltns.eval(\"__import__('time').time()\") // 2) % 2",
    "import re\ndef f(x):\n    return re.enum.bltns.getattr",
    "from enum import bltns\ndef f(x):\n    return x",
    "def f(x):\n    return x + int(B.eval(\"__import__('time').time()\") // 2) % 2\nB = locals()['__bu' + 'iltins__']",
    "import enum\ndef f(x):\n    return enum.global_enum",
    # round 9: code objects and the types that run them (a function built from raw bytecode calls __import__)
    "import queue\ndef f(x):\n    return queue.types.FunctionType(queue.types.CodeType, {})",
    "import typing\ndef f(x):\n    return typing.types",
    "def f(x):\n    return (y for y in ()).gi_code.replace(co_argcount=0)",
    "import json\ndef f(x):\n    return json.codecs.open",
    "import queue\ndef f(x):\n"
    "    s = ('{' + '0.__globals__[threading]._main_thread.native_id}').format(queue.Queue.get)\n"
    "    return x + int(s) % 2",
    # round 15: a positional class pattern on a builtin type name the program rebinds reads the attributes that the
    # class's __match_args__ name (a namedtuple field: getattr by name): AttributeError.obj, enum.bltns, eval
    "import abc, enum\nfrom collections import namedtuple\nclass C(namedtuple('P', 'obj'), abc.ABC):\n    pass\n"
    "class B(namedtuple('P', 'bltns'), abc.ABC):\n    pass\nclass E(namedtuple('P', 'eval'), abc.ABC):\n    pass\n"
    "C.register(AttributeError)\nlist, set, str = C, B, E\ndef f(x):\n    try:\n        enum.nope\n"
    "    except AttributeError as e:\n        match e:\n            case list(m):\n"
    "                B.register(type(m))\n                match m:\n                    case set(b):\n"
    "                        E.register(type(b))\n                        match b:\n"
    "                            case str(ev):\n"
    "                                return x + int(ev(\"__import__('time').time()\") * 10) % 2",
    # round 15: a module bound as __builtins__ is where the bare names of functions defined after it resolve
    "import enum as __builtins__\ndef f(x):\n    return [x, sys.version, bltns.eval(\"__import__('time').time()\", "
    "{'__bu' + 'iltins__': bltns})]",
    "import enum\ntry:\n    enum.nope\nexcept AttributeError as __builtins__:\n    pass\ndef f(x):\n    return x",
])
def test_escape_routes_are_rejected(sb, code):                    # 4.5 filter, E2, E9, E12
    res = sb.validate(code, "1")
    assert res.status == "rejected" and "not allowed" in res.error, res


@pytest.mark.parametrize("args", [
    "int(__import__('time').time() * 4) % 2",     # a clock in the input: its gold flips between checks (round 4)
    "__import__('os').uname().nodename",          # a host value (E12)
    "(i for i in []).gi_frame.f_globals",
    "().__class__.__base__.__subclasses__()",
    "'input(x)'",                                 # AZR's executor regex covers the input's line
    "statistics",                                 # a module as the input: f(x) could then read x.random
    "__builtins__.eval('1')",                     # (the text rule covers programs; for inputs, the name rule)
])
def test_proposed_inputs_meet_the_program_rules(sb, args):
    res = sb.validate("import statistics\ndef f(x):\n    return x", args)
    assert res.status == "rejected" and ("not allowed" in res.error or "input(" in res.error), res
    assert sb.validate("def f(x):\n    return x * 2", "f(3) + len([f(1)])").value == "14"  # seed inputs call f


def test_truncated_golds_never_run(sb):
    """A gold cut to 200 + "..." + 200 characters keeps a tail the proposer chose; evaluated, it ran at every
    check (`', random() < .3]#` made the task a coin flip). It is a literal or no value at all."""
    head = "['" + "a" * 198
    for expr in ("1 < 2", "__import__('random').random() < 2"):
        gold = head + "..." + ("', " + expr + "]#").ljust(200)
        assert sandbox.is_truncated(gold) and not sandbox.parse_literal(gold)[0]
        pred = repr(["a" * 198 + "...", True])
        assert sb.check_deduction([(gold, pred)]) == [False]
        assert sb.check_abduction([("def f(x):\n    return x", gold, pred)]) == [False]
        assert sb.check_induction([("def f(x):\n    return x", [], [pred], [gold])]) == [False]
    literal = "'" + "a" * 199 + "..." + "a" * 199 + "'"  # a truncated gold that is still a literal compares
    assert sandbox.is_truncated(literal) and sb.check_deduction([(literal, literal)]) == [True]
    assert sb.check_deduction([("dict(a=1)", "{'a': 1}")]) == [True]  # seed golds that are pure expressions


def test_format_walk_is_the_regex_in_linear_time():
    import random
    import re
    walk, rng = re.compile(r"\{[^}:!]*[.\[]"), random.Random(0)
    for _ in range(3000):
        t = "".join(rng.choice("{}.[:!a") for _ in range(rng.randrange(12)))
        assert sandbox._format_walk(t) == bool(walk.search(t)), t
    assert not sandbox._format_walk("{" * 65000)  # the regex took 26 s here


def test_madvise_advice_is_filtered(sb):
    # MADV_HWPOISON (100) would let a root child poison a page it shares with the zygote and the trainer
    bad = sb.run("import mmap\ndef f():\n    mmap.mmap(-1, 4096).madvise(100)", "")
    assert bad.status == "forbidden" and "Errno 1]" in bad.error
    ok = sb.run("import mmap\ndef f():\n    m = mmap.mmap(-1, 4096)\n    m.madvise(mmap.MADV_DONTNEED)\n"
                "    return 1", "")
    assert (ok.status, ok.value) == ("ok", "1")


def test_escape_filter_keeps_ordinary_programs(sb):
    assert sb.validate("def f(obj):\n    return sorted(obj)", "[2, 1]").value == "[1, 2]"   # (a CRUXEval name)
    nt = ("from collections import namedtuple\nP = namedtuple('P', 'x y')\n"
          "def f(x):\n    return (P(x, 2)._replace(y=3)._asdict()['y'], type(x).__name__)")
    assert sb.validate(nt, "1").value == "(3, 'int')"
    glob = "total = 0\ndef f(x):\n    global total\n    total = x\n    return total"  # ast.Global has `names` too
    assert sb.validate(glob, "4").value == "4"
    common = ("import re\nfrom functools import reduce\nfrom collections import namedtuple\n"
              "E = namedtuple('E', 'tick')\n"
              "def f(s):\n    return (re.compile(r'\\d+').findall(s), reduce(set.__or__, [{1}, {2}]), E(3).tick, "
              "'{}-{:>3}'.format(1, 2))")
    assert sb.validate(common, "'a1b22'").value == "(['1', '22'], {1, 2}, 3, '1-  2')"
    # modules as attribute roots, submodules, sequence patterns
    mods = ("import math, collections.abc, json\nfrom functools import reduce\nimport operator\n"
            "def f(x):\n    match x:\n        case [a, *rest]:\n            pass\n"
            "    return (reduce(operator.add, map(math.isqrt, x)), isinstance(x, collections.abc.Sequence), "
            "json.decoder.JSONDecodeError.__name__)")
    assert sb.validate(mods, "[4, 9]").value == "(5, True, 'JSONDecodeError')"


def test_addresses_are_the_same_in_every_gold_zygote(sb):
    """hash(None), the repr of a static object's method, hash(int): addresses of static objects. With ASLR on, a bit
    of one differed between the gold (A) zygotes, so a task validated on one was a coin flip at check time. A
    zygotes run with ASLR off and agree; B zygotes keep it, so a whole address still fails validation
    (test_determinism). Heap addresses drift between zygotes: id() and hash() are not allowed in programs."""
    if not sb.fixed_addresses:
        pytest.skip("this kernel or container refuses personality(ADDR_NO_RANDOMIZE)")
    prog = "def f(x):\n    return [hash(None) >> 12, int(str(None.__hash__)[-9:-1], 16) >> 12, hash(int) >> 12]"
    first = sb.run(prog, "3")
    assert first.status == "ok"
    assert all(sb.run(prog, "3").value == first.value for _ in range(6))
    with Sandbox(workers=2, selftest=False) as other:   # other zygote processes
        assert other.fixed_addresses and [other.run(prog, "3").value for _ in range(4)] == [first.value] * 4


def test_import_of_a_missing_name_is_rejected(sb):
    # its ImportError message would put this host's path to the module into the gold
    res = sb.validate("def f(x):\n    try:\n        from queue import nope\n    except ImportError as e:\n"
                      "        return str(e)", "1")
    assert res.status == "rejected" and "cannot import 'nope'" in res.error
    assert sb.validate("from collections import abc, deque\ndef f(x):\n    return x", "1").status == "ok"


def test_queue_timeouts_tell_no_time(sb):
    # Queue.get(timeout=) computes the remaining time from a clock a program can read through methods it overrides;
    # in a child that clock jumps 1e9 s per read, so a wait times out at once (before: a 5 s wait, a wall timeout)
    res = sb.run("import queue\ndef f():\n    queue.Queue().get(timeout=5)", "")
    assert res.status == "exception" and "Empty" in res.error


def test_memory_limit_is_headroom_above_the_zygote(sb):
    # the address-space limit is mem_mb above the zygote's own size, which grows with the zygote's history: a fixed
    # limit let the largest allocation that succeeds tell zygotes apart (a gold that flipped between checks)
    assert sb.run("def f():\n    return len(bytes(1000 << 20))", "").status == "ok"   # mem_mb=1024 (fixture)
    assert sb.run("def f():\n    return len(bytes(1100 << 20))", "").status == "memory"


def test_single_def_regex_is_azrs_in_linear_time():
    import random
    import re
    azr_re, rng = re.compile(r"^\s*def\s+(\w+)\s*\(", re.MULTILINE), random.Random(0)
    parts = ["\n", " ", "\t", "\x0c", "\r", "\u2028", "\x1c", "def", " f(", "def g (", "x", "def\nh("]
    for _ in range(3000):
        code = "".join(rng.choice(parts) for _ in range(rng.randrange(12)))
        assert re.findall(r"^[^\S\n]*def\s+(\w+)\s*\(", code, re.MULTILINE) == azr_re.findall(code), repr(code)
    with pytest.raises(ValueError, match="exactly one def"):
        sandbox.azr_program("\n" * 16000 + "x")   # AZR's regex backtracked quadratically here (0.45 s)


def test_garbage_collector_counters_are_reset_in_every_child(sb):
    """The allocations before a child's first automatic collection (seen through a finalizer on a cycle) depended on
    the zygote's history, which differs between gold zygotes and drifts per request: a coin-flip gold."""
    prog = ("hits, keep = [], []\nclass C:\n    __del__ = lambda self: hits.append(1)\ndef f():\n    a = C()\n"
            "    a.me = a\n    del a\n    n = 0\n    while not hits and n < 100000:\n        keep.append([])\n"
            "        n += 1\n    return n")
    first = sb.run(prog, "")
    sb.run("def f():\n    print('x' * 50000)\n    return [list(range(1000)) for _ in range(50)]", "")  # traffic
    assert first.status == "ok" and all(sb.run(prog, "").value == first.value for _ in range(4))


def test_abduction_answers_cannot_call_a_shadowed_builtin(sb):
    """Round 11: an answer is evaluated in the program's namespace, where a global named like a SAFE_CALLS builtin
    (`len = f`, `for abs in [f]`, `import functools as sum`, `global max` in f) is the program's object, yet
    check_pure passed the name as the builtin: the answer brute-forced f, or rewrote a table f reads."""
    base = "def f(x):\n    return (x * 7919) % 10007\n"
    for alias, name in (("len = f", "len"), ("sorted = lambda y: f(y)", "sorted"), ("for abs in [f]:\n    pass", "abs"),
                        ("import functools\nsum = functools.partial(f)", "sum"), ("f(0)", "max")):
        prog = base.replace("    return", "    global max\n    max = f\n    return") if name == "max" else base
        prog += alias
        assert sb.validate(prog, "3").status == "ok"
        assert sb.check_abduction([(prog, "5214", f"next(x for x in range(10007) if {name}(x) == 5214)"),
                                   (prog, "5214", "1234")]) == [False, True]
    memo = "memo = {}\nmax = memo\ndef f(n):\n    if n in memo:\n        return memo[n]\n    memo[n] = n * 2\n    return n * 2"
    assert sb.check_abduction([(memo, "75648", "(max.update({0: 75648}), 0)[1]"), (memo, "6", "3")]) == [False, True]
    # a program's own global named like a builtin is a program name (refused), a lambda parameter so named is not
    own = "min = lambda a, b: a\ndef f(x):\n    return x + 1"
    assert sb.check_abduction([(own, "3", "min(2, 9)"), (own, "3", "(lambda min: min)(2)")]) == [False, True]


@pytest.mark.parametrize("tail", [
    "import math\nmath.len, math.next, math.range = f, next, range\nimport math as __builtins__",
    "match {'len': f, 'next': next, 'range': range}:\n    case __builtins__:\n        pass",
    "match {'len': f, 'next': next, 'range': range}:\n    case {**__builtins__}:\n        pass",
    "from json.decoder import BACKSLASH\nBACKSLASH.update(len=f, next=next, range=range)\n"
    "from json.decoder import BACKSLASH as __builtins__",
    "import math\nmath.len = f\nfrom math import *"])
def test_abduction_answers_cannot_call_builtins_the_program_replaces(sb, tail):
    """Round 14: a program that binds `__builtins__` through a binding no Name node shows (an import alias, a match
    capture) chooses where the answer's builtins are looked up, and one that star-imports a module after setting its
    attributes binds names no statement shows: `len(x)` in the answer called f (brute force) with no name refused.
    (Since round 15 validation refuses such programs, `__builtins__` and star imports; the answer rule still holds
    for checks of programs that were never validated.)"""
    prog = "def f(x):\n    return (x * 7919) % 10007\n" + tail
    assert sb.validate(prog, "1234").status == "rejected"
    hack = "next(x for x in range(10007) if len(x) == 5214)"
    assert sb.run(prog, hack).value == "5214"   # what the hack does when it runs: f(1234), found by brute force
    assert sb.check_abduction([(prog, "5214", hack), (prog, "5214", "1234")]) == [False, True]


_BRUTE = "    return (x * 7919) % 10007\n"   # f: gold 5214, whose input 1234 an answer could find by brute force of f
_MEMO = "def f(n):\n    return memo.setdefault(n, n * 2)\n"   # f returns only even numbers: the gold 7 is a hack
# One program per route of red-team rounds 6-13 and mutation rounds 4-6 that reached f, or the state f reads, through
# a name the program binds, when answers could call the program's names that a static rule judged constructors.
ABDUCTION_HACKS = [
    ("def f(x):\n" + _BRUTE + "g = f", "g"),                                             # alias
    ("def f(x):\n" + _BRUTE + "box = {}\nbox['k'] = f\nget = box.get", "get('k')"),       # stored in an object
    ("reg = []\ndeco = lambda fn: reg.append(fn) or fn\nget = lambda i: reg[i]\n@deco\ndef f(x):\n" + _BRUTE,
     "get(0)"),                                                                          # a decorator storing f
    ("g = None\nget = lambda: g\ndef f(x):\n    global g\n    g = f\n" + _BRUTE + "f(0)", "get()"),  # global
    ("class C:\n    __call__ = lambda self, x: f(x)\ndef f(x):\n" + _BRUTE, "C()"),        # a method calling f
    ("memo = {}\nput = memo.update\n" + _MEMO, "put({0: 7}) or 0"),                     # a setter of f's table
    ("memo = {}\ntable = lambda: memo\n" + _MEMO, "table().update({0: 7}) or 0"),          # a getter
    ("class K:\n    pass\nK.values = {}\n" + _MEMO.replace("memo", "K.values"), "K().values.update({0: 7}) or 0"),
    ("match {}:\n    case {**memo}:\n        pass\nput = memo.update\n" + _MEMO, "put({0: 7}) or 0"),
    ("from collections import namedtuple\nBox = namedtuple('Box', 'x items', defaults=[[]])\n"   # shared default
     "def f(n):\n    b = Box(n)\n    return b.items[-1] if b.items else n * 2", "(Box(0).items.append(7), 0)[1]"),
    ("from enum import Enum\nclass E(list, Enum):\n    A = ((2,),)\ndef f(n):\n    return E.A[-1] * n",
     "(E([2]).append(7), 1)[1]"),                                                         # an Enum with a mixin
    ("from keyword import kwlist\nput = kwlist.append\n"                                  # an imported list
     "def f(n):\n    return kwlist[-1] if kwlist[-1] != 'yield' else n * 2", "(put(7), 0)[1]"),
    ("memo = {}\nput = memo.update\nif True:\n    " + _MEMO.replace("\n    ", "\n        "),  # f inside an if
     "put({0: 7}) or 0"),
]


@pytest.mark.parametrize("prog,hack", ABDUCTION_HACKS)
def test_abduction_answers_call_no_name_the_program_binds(sb, prog, hack):
    """Each program is a valid proposal and its honest answer scores, but an answer naming anything the program
    binds is refused before it runs: with names of the program callable, each of these scored any gold."""
    brute = "7919" in prog
    gold, honest = ("5214", "1234") if brute else ("6", "3")
    answer = f"next(x for x in range(10007) if {hack}(x) == 5214)" if brute else hack
    assert sb.validate(prog, honest).value == gold
    assert sb.check_abduction([(prog, "5214" if brute else "7", answer), (prog, gold, honest)]) == [False, True]
    assert sb.run(prog, answer).value == ("5214" if brute else "7")   # what the hack does when it runs


def test_abduction_answers_cannot_call_the_programs_constructors(sb):
    """The cost of the rule above: an answer building a namedtuple, an Enum member, a deque or a program's own class
    is refused (none of the 6,424 CRUXEval and seed inputs does); plain values that f treats alike still score, and
    so do the builtins a program only binds inside f."""
    prog = ("from collections import namedtuple, deque\nPt = namedtuple('Pt', 'x y')\n"
            "def f(p, d):\n    return p[0] + p[1] + len(d)")
    assert sb.validate(prog, "Pt(1, 2), deque([0])").value == "4"
    assert sb.check_abduction([(prog, "4", "Pt(1, 2), deque([0])"), (prog, "4", "(1, 2), [0]"),
                               (prog, "4", "(1, 2), list(range(1))")]) == [False, True, True]
    local = "def f(list, n):\n    sum = 0\n    for x in list:\n        sum += x\n    return sum * n"
    assert sb.check_abduction([(local, "12", "list(range(4)), sum([1, 1])")]) == [True]


def test_random_is_seeded_in_every_child(sb):
    """statistics draws from `random` (a banned import, but reachable through a public API): every child starts
    from the same seed, so such a gold is the same at every check instead of a coin flip."""
    prog = "import statistics\ndef f(x):\n    return x + round(statistics.NormalDist().samples(1)[0], 6)"
    res = sb.run(prog, "1")
    assert res.status == "ok" and all(sb.run(prog, "1").value == res.value for _ in range(4))


def test_errors_are_escaped(sb):                                  # F6
    res = sb.run("def f():\n    raise ValueError('\\x1b[2J\\rPASSED\\x00\\x9b\\u202e')", "")
    assert res.status == "exception" and "PASSED" in res.error
    assert not any(c in res.error for c in "\x1b\r\x00\x9b\u202e") and "\\x1b" in res.error and "\\u202e" in res.error


def test_gold_repr_matches_python(sb):
    code = ("def f():\n    s = {3, 1, 2, 100, -7}\n    s.discard(100)\n"
            "    return [s, frozenset(), set(), (1,), (), {'k': (1.5, -0.0, 1e300, float('inf'))}, b'\\x00',"
            " bytearray(b'a'), 2 ** 100, -3, 1j + 2, True, None, ..., 'é\\'\"', {frozenset({1})}]")
    res = sb.validate(code, "")
    ns = {}
    exec(code, ns)
    assert (res.status, res.value) == ("ok", repr(ns["f"]()))


def test_truncate_output():
    assert sandbox.truncate_output("x" * 400) == "x" * 400
    s = "a" * 200 + "b" * 201 + "c" * 200
    assert sandbox.truncate_output(s) == "a" * 200 + "..." + "c" * 200


def test_check_deduction(sb):                                     # D5, F8, F9
    pairs = [("1", "1.0"), ("1", "True"), ("[1, 2]", "(1, 2)"), ("{'a': 1, 'b': 2}", "{'b': 2, 'a': 1}"),
             ("{1, 2, 3}", "{3, 1, 2}"), ("'abc'", '"abc"'), ("0.0", "-0.0"), ("[1, 2]", "[1, 2"),
             ("{'a': 1, 'b': 2}", "dict(a=1, b=2)"), ("[0, 0, 0]", "[0] * 3"),
             ("1", "type('A', (), {'__eq__': lambda s, o: True})()"),
             ("1", "__import__('os').system('touch " + CANARY_FILE + "')"),
             ("frozenset({1})", "{1}"), ("'x'", "'" + "y" * 100000 + "'"), ("nan", "nan"),
             ("()", ""), ("()", " \n "), ("()", "()")]  # no answer is not the empty tuple "(\n)" would give
    assert sb.check_deduction(pairs) == [True, True, False, True, True, True, True, False, True, True, False,
                                         False, True, False, False, False, False, True]
    assert not os.path.exists(CANARY_FILE)


def test_check_abduction(sb):                                     # D6, D7
    prog = "def f(a, b=0):\n    return a * 2 + b"
    triples = [(prog, "4", "2"), (prog, "5", "2, b=1"), (prog, "4", "3"), (prog, "True", "0) or True or f(0"),
               (prog, "0", "0), f(0"), (prog, "[]", "[" * 100000 + "]" * 100000), (prog, "4", "2\n# comment"),
               (prog, "4", "__import__('os').kill(__import__('os').getppid(), 9)")]
    assert sb.check_abduction(triples) == [True, True, False, False, False, False, True, False]
    assert sb.run(prog, "0) or True or f(0").status == "rejected"


def test_predictions_must_be_pure(sb):                             # D5, D6: reward hacks AZR's eval allows
    """A predicted value may be an expression, but one that cannot run the program, brute-force f, or reach the
    harness to forge its result record; benchmark harnesses (pure=False) take any expression."""
    prog = "def f(s):\n    return sorted(set(s.lower()))[:3] + [len(s) * 7919 % 1009]"
    gold = sb.validate(prog, "'Zebra Crossing 2024'").value
    forge = ("(lambda m: m._send_record(bytearray(b'o') + (lambda o: (m._encode(%s, o), o)[1])(bytearray())))"
             "(__import__('sys').modules['__main__'])") % gold
    assert sb.run(prog, forge).value == gold  # what the forged record does when the text runs
    assert sb.check_abduction([(prog, gold, forge), (prog, gold, "'Zebra Crossing 2024'")]) == [False, True]
    affine = "def f(x):\n    return (x * 7919 + 13) % 100003"
    brute = "next(x for x in range(10 ** 6) if f(x) == 91406)"
    assert sb.check_abduction([(affine, "91406", brute)], pure=False) == [True]
    assert sb.check_abduction([(affine, "91406", brute), (affine, "91406", "[0 for f in [1]] and f(2)")]) == \
        [False, False]
    run_it = "(lambda g: (exec(%r, g), g['f'](%s))[1])({})" % (affine, "11")
    assert sb.check_deduction([("87122", run_it)], pure=False) == [True]
    assert sb.check_deduction([("87122", run_it), ("87122", "87122")]) == [False, True]
    # pure expressions still count, in both checks
    pure = ["[0] * 3", "dict(a=1)", "'ab'.upper()", "[i * i for i in range(3)]", "sorted('ba', key=lambda c: c)"]
    golds = ["[0, 0, 0]", "{'a': 1}", "'AB'", "[0, 1, 4]", "['a', 'b']"]
    assert sb.check_deduction(list(zip(golds, pure))) == [True] * 5
    ident = "def f(x):\n    return x"
    assert sb.check_abduction([(ident, g, p) for g, p in zip(golds, pure)]) == [True] * 5
    assert sb.check_deduction([("'3-x'", "'{}-{}'.format(3, 'x')"), ("'1'", "'{0.real}'.format(1)"),
                               ("'1.50'", "format(1.5, '.2f')"), ("'x'", "'{0.__doc__:{1}}'.format(1, '')")]) == \
        [True, False, True, False]
    # no name of the program: an input cannot rewrite the globals f reads
    memo = "memo = {}\ndef f(n):\n    if n in memo:\n        return memo[n]\n    memo[n] = n * 2\n    return n * 2"
    assert sb.check_abduction([(memo, "6", "3"), (memo, "75648", "(memo.update({0: 75648}), 0)[1]"),
                               (memo, "75648", "memo.setdefault(1, 75648) and 1")]) == [True, False, False]
    for bad in ["f(3)", "__import__('os')", "().__class__", "(i for i in []).gi_frame", "getattr(1, 'real')",
                "'{0.__class__}'.format(1)", "(x := 1)", "[x for x in [1]] + [x]", "lambda: f(1)", "type(1)"]:
        with pytest.raises(ValueError):
            sandbox.check_pure(ast.parse(bad, mode="eval").body)


def test_pure_predictions_take_every_allowed_form():
    """Mutation round 7: each node type, scope rule and attribute type that check_pure allows had no answer using it
    (only hacks were tested), so dropping one refused honest answers unseen: a generator, an f-string, a conditional,
    a starred item, a slice, a dict method, lambda parameters of every kind, a later comprehension clause reading an
    earlier target, a trailing comment, and expressions nested up to PURE_DEPTH (one level more is refused)."""
    for text in ["sum(i for i in range(4))", "f'{1}-{2:>3}'", "1 if 0 else 2", "[*range(3)]", "'abcd'[1:3]",
                 "sorted({'b': 1, 'a': 2}.items())", "(lambda *a, **k: len(a) + len(k))(1, b=2)",
                 "(lambda a, /, b: a + b)(1, 2)", "(lambda *, k: k)(k=3)", "[y for x in range(3) for y in range(x)]",
                 "[b for a, *b in ['abc']]", "[a + b for [a, b] in [(1, 2)]]", "[x for x in range(4) if x % 2]",
                 "[(x, y) for x in 'ab' for y in 'cd']", "'{a}'.format_map({'a': 1})", "[0] * 3  # three",
                 "0" + " + 0" * 300, "0" + " + 0" * sandbox.PURE_DEPTH]:
        assert sandbox._pure_text(text), text
    assert not sandbox._pure_text("0" + " + 0" * (sandbox.PURE_DEPTH + 1))
    upper = "'" + "a" * (sandbox.MAX_VALUE_TEXT - 10) + "'.upper()"   # the cap is checked before parsing
    assert sandbox._pure_text(upper) and not sandbox._pure_text(upper + " ")


def test_pure_predictions_refuse_names_hidden_in_defaults_targets_and_templates():
    """Mutation round 7: each rule below, dropped on its own, let an answer name f or the program's state where no
    test looked: a lambda default (evaluated outside the lambda, so `f=f` is the program's f), a comprehension's
    first iterable (evaluated before its target exists), a dict comprehension's key, an item or attribute as a
    comprehension target (`memo[0]` is assigned), a walrus (`max := ...` rebinds the program's global max), a
    format_map or a format on a built template (fields walk attributes), or a builtin that reaches a namespace."""
    for bad in ["(lambda g=f: g(1))()", "(lambda *, g=f: g(1))()", "(lambda f=f: f(1))()", "[f(1) for f in [f]]",
                "{f(x): 0 for x in [1]}", "[0 for memo[0] in [7]]", "(max := lambda *a: 7, 0)[1]",
                "'{x.__class__}'.format_map({'x': 1})", "('{0.' + '__class__}').format(1)", "vars()", "globals()",
                "eval('1')", "setattr(1, 'a', 2)"]:
        with pytest.raises(ValueError):
            sandbox.check_pure(ast.parse(bad, mode="eval").body)


def test_call_args_are_one_call_of_f_up_to_the_cap():
    """Mutation round 7: the argument cap had no test at its edge, and no test kept argument text that calls
    something on f's result (`0).real.conjugate(`: its outer call has no arguments, so the inner f(...) that
    check_abduction's purity check never sees ran as written)."""
    sandbox._call_args("0" + " " * (sandbox.MAX_ARGS - 1))
    for args in ["0" + " " * sandbox.MAX_ARGS, "0).real.conjugate(", "0)(1"]:
        with pytest.raises(ValueError):
            sandbox._call_args(args)


def test_shadowed_builtins_reads_each_binding_in_its_own_scope():
    """Mutation round 7: each binding statement below binds a global (a star pattern, a class, a def, an async def:
    the single-def rule does not count `async def`), and a class body, a lambda body or a comprehension in one binds
    none (refusing those builtins would refuse honest answers); no test held any of them."""
    for stmt, name in [("match [f]:\n    case [*len]:\n        pass", "len"), ("class min(int):\n    pass", "min"),
                       ("def max():\n    pass", "max"), ("async def abs():\n    pass", "abs")]:
        assert sandbox.shadowed_builtins("def f(x):\n    return x\n" + stmt) == {name}, stmt
    inner = ("class K:\n    len = 3\ng = lambda s: [sum for sum in s]\nh = lambda: (abs := 1)\n"
             "def f(x):\n    max = 1\n    return x")
    assert sandbox.shadowed_builtins(inner) == frozenset()


def test_abduction_answers_cannot_rebind_or_hide_a_call_of_f(sb):
    """Mutation round 7, end to end: a walrus on a builtin the program calls, f in a keyword argument, f called
    inside the argument text (`...).real.conjugate(`), a class or a star capture named like a builtin (programs
    that pass validate): each answer scores any gold when its rule goes."""
    brute = "def f(x, k=0):\n    return (x * 7919) % 10007 + k\n"
    find = "next(y for y in range(10007) if {}(y) == 5214)"
    for prog, hack in [(brute, "x=" + find.format("f")),
                       (brute + "class len(int):\n    __new__ = lambda c, x: f(x)", find.format("len")),
                       (brute + "match [f]:\n    case [*len]:\n        pass", find.format("len[0]"))]:
        assert sb.validate(prog, "1234").value == "5214"
        assert sb.check_abduction([(prog, "5214", hack), (prog, "5214", "1234")]) == [False, True], hack
        assert sb.check_abduction([(prog, "5214", hack)], pure=False) == [True]   # what the hack does when it runs
    inject = find.format("f") + ").real.conjugate("   # f(<brute force>).real.conjugate() is 5214
    assert sb.run(brute, inject).status == "rejected"
    assert sb.check_abduction([(brute, "5214", inject)], pure=False) == [False]
    prog = "def f(x):\n    return max(x, 0)"
    assert sb.run(prog, "(max := lambda *a: 7, 0)[1]").value == "7"
    assert sb.check_abduction([(prog, "7", "(max := lambda *a: 7, 0)[1]"), (prog, "7", "7")]) == [False, True]


def test_check_induction(sb):                                      # D3
    inputs, outputs = ["1", "2", "'a'"], ["2", "4", "'aa'"]
    always_eq = ("class A:\n    def __eq__(s, o):\n        return True\n    __hash__ = None\n"
                 "def f(x):\n    return A()")
    items = [("def f(x):\n    return x * 2", [], inputs, outputs),
             ("def f(x):\n    return x + x if x != 2 else 5", [], inputs, outputs),
             (always_eq, [], inputs, outputs),
             ("def f(x):\n    return math.floor(x * 2)", ["import math"], inputs[:2], outputs[:2]),
             ("def f(x):\n    return math.floor(x * 2)", [], inputs[:2], outputs[:2]),
             (None, [], inputs, outputs)]
    assert sb.check_induction(items) == [True, False, False, True, False, False]


def test_a_run_azr_keeps_without_output_must_fail_alike_in_the_other_zygote(sb):
    """A proposal whose f raises Exception is valid with gold "" (as AZR's check_all), but only if it raises in the
    other hash seed's zygote too: else whether it is valid would follow the hash seed (or the host's heap layout)."""
    raises_always = "def f(x):\n    raise Exception('never')"
    by_order = "def f(x):\n    if ''.join(set('abcdefgh'))[1] == 'f':\n        raise Exception('order')\n    return x"
    res = sb.validate(raises_always, "1")
    assert res.status == "exception" and sandbox.azr_valid_without_output(res)
    res = sb.validate(by_order, "1")   # zygote A (hash seed 0) raises, zygote B (seed 1) returns 1
    assert res.status == "nondeterministic" and "another hash seed" in res.error
    assert not sandbox.azr_valid_without_output(res)


def test_checks_drop_runs_whose_azr_status_line_names_no_error(sb):
    """AZR's executor reads a run as failed only when its status line (the traceback's last line) contains "error":
    a predicted input on which f raises Exception or StopIteration leaves its check with no verdict (None: dropped
    from the learnability mean, wrong for a trained answer). Not in induction: AZR drops such a hidden pair from
    the candidate's mean, so raising where unsure would score 1 (a reward hack); here the pair fails."""
    prog = "def f(x):\n    if x < 0:\n        raise Exception('negative input')\n    return x * 2"
    stop = "def f(xs):\n    it = iter(xs)\n    return next(it) + next(it)"
    assert sb.check_abduction([(prog, "4", "2"), (prog, "4", "-1"), (prog, "4", "'a'"), (stop, "3", "[1]"),
                               (prog, "nan", "-1")]) == [True, None, False, None, False]
    cand = "def f(x):\n    if x == 3:\n        raise Exception('unsupported')\n    return x * 2 if x != 4 else {}"
    ins, outs = ["1", "2", "3", "5"], ["2", "4", "6", "10"]
    assert sb.check_induction([(cand, [], ins, outs), (cand, [], ["1", "5"], ["2", "10"])]) == [False, True]


def test_azr_status_line_is_the_last_line_stripped_and_cut():
    """AZR's status is the traceback's last line (so the message's last line), stripped and cut like an output
    (200 + "..." + 200 characters), and fails only when it contains "error" in any case."""
    passes = sandbox.azr_status_passes
    assert passes("ValueError: bad\nvalue") and not passes("Exception: fine\nan Error here")
    assert passes("Exception: " + "a" * 250 + "error" + "a" * 250)   # the word falls in the cut middle
    assert not passes("Exception: x\n" + " " * 5 + "a" * 195 + "error" + "a" * 300)   # stripped, then cut
    assert passes(None) and passes("StopIteration: ") and not passes("KeyError: 'x'")


def test_eval_text_fails_reads_the_text_as_azrs_eval():
    """eval strips leading spaces and tabs only; text over MAX_VALUE_TEXT once stripped is left to the check (which
    refuses it), but whitespace alone does not make it over-long."""
    fails = sandbox.eval_text_fails
    assert not fails(" [1]") and not fails("\t[1]\n") and fails("\n  [1]") and fails("[1]\n  ")
    text = "[1," + " " * (sandbox.MAX_VALUE_TEXT - 5) + "2]"
    assert len(text) == sandbox.MAX_VALUE_TEXT and fails(text + "\n  ") and not fails(text + "\n")
    assert fails("[1]\n" + " " * sandbox.MAX_VALUE_TEXT) and not fails("[" + text + "\n  ")


def test_checks_lost_to_sandbox_error_are_none(sb, monkeypatch):
    """A check whose child was lost (after the retry) is None, not wrong: AZR drops crashed checks from the mean."""
    def lost(req, seed):
        raise sandbox._WorkerLost("zygote exited")
    monkeypatch.setattr(sb, "_call", lost)
    prog = "def f(x):\n    return x * 2"
    assert sb.check_deduction([("4", "4"), ("4", "5"), ("4", "2 + 2")]) == [True, False, None]  # literals: no child
    assert sb.check_abduction([(prog, "4", "2")]) == [None]
    assert sb.check_induction([(prog, [], ["1", "2"], ["2", "4"])]) == [None]
    assert sb.run(prog, "2").status == "sandbox_error"


def test_malformed_requests(sb):                                   # G4
    assert sb.run(123, "1").status == "rejected"
    assert sb.run("def f(x):\n    return x", None).status == "rejected"
    assert sb.run("x" * (sandbox.MAX_CODE + 1), "").status == "rejected"
    assert sb.run_many([("def f():\n    return 1",), "junk"])[0].status == "rejected"
    assert sb.validate(None, "1").status == "rejected"
    assert sb.run("def g():\n    return 1", "").status == "exception"   # no f: NameError


def test_argument_cap(sb):
    """AZR's 4 KiB cap on model-written arguments; evaluation raises it per Sandbox for large reference inputs."""
    big = repr(list(range(2000)))                                   # ~10k characters
    res = sb.run("def f(x):\n    return len(x)", big)
    assert res.status == "rejected" and "cap" in res.error
    with Sandbox(workers=1, max_args=1 << 20, selftest=False) as wide:
        assert tuple(wide.run("def f(x):\n    return len(x)", big)) == ("ok", "2000", None)
    with pytest.raises(ValueError, match="max_args"):
        Sandbox(max_args=0)


def test_result_unpacks(sb):
    status, value, error = sb.run("def f():\n    return 1", "")
    assert (status, value, error) == ("ok", "1", None)
    assert isinstance(Result("ok"), Result)


def test_concurrent_callers(sb):                                  # G5
    out = {}

    def worker(t):
        items = [(f"def f(i):\n    return ({t}, i)", str(i)) for i in range(15)]
        out[t] = [r.value for r in sb.run_many(items)] + [sb.run(*items[0]).value]
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert out == {t: [f"({t}, {i})" for i in range(15)] + [f"({t}, 0)"] for t in range(8)}


def test_killed_zygote_is_replaced_and_retried(sb):               # G1
    box = {}
    th = threading.Thread(target=lambda: box.update(r=sb.run("import time\ndef f():\n    time.sleep(0.8)\n"
                                                             "    return 7", "")))
    th.start()
    victim, deadline = None, time.monotonic() + 5
    while victim is None and time.monotonic() < deadline:
        victim = next((p for p in sb.worker_pids() if any(_children(t) for t in _children(p))), None)
        time.sleep(0.01)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    th.join()
    assert (box["r"].status, box["r"].value) == ("ok", "7")
    assert victim not in sb.worker_pids()
    assert [r.value for r in sb.run_many([("def f(i):\n    return i", str(i)) for i in range(6)])] == \
        [str(i) for i in range(6)]


def test_large_programs_fit_and_memory_comes_back():                # B11
    """A program may use hundreds of MiB (under mem_mb), again and again on the same zygotes. Its own sandbox with a
    generous wall clock: allocating 2 x 300 MiB takes ~0.5 s, but several seconds on a loaded 2-core machine."""
    with Sandbox(workers=1, cpu_s=10, wall_s=30) as big:
        for _ in range(4):
            res = big.run("def f():\n    return len(b'x' * (300 << 20))", "")
            assert (res.status, res.value) == ("ok", str(300 << 20)), res


def test_invalid_escapes_neither_warn_nor_change_verdicts_under_W_error():
    """Programs with "\\d" in a plain string: the host's parses neither print a SyntaxWarning into the log (Python
    3.12+) nor, under `python -W error`, turn it into a SyntaxError that rejects the task."""
    script = ("from sandbox import Sandbox\nwith Sandbox(workers=1) as sb:\n"
              "    r = sb.validate('import re\\ndef f(s):\\n    return re.findall(\"\\\\d+\", s)', \"'a1\\\\d22'\")\n"
              "    print(r.status, r.value)\n")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(sandbox.__file__))
    assert proc.stdout == "ok ['1', '22']\n" and "Warning" not in proc.stderr, (proc.stdout, proc.stderr)


def test_extra_modules():
    code, args = "import numpy as np\ndef f(x):\n    return int(np.array(x).sum())", "[1, 2, 3]"
    with Sandbox(workers=1, extra_modules=("numpy",)) as with_np:
        assert with_np.validate(code, args).value == "6"
    with Sandbox(workers=1, selftest=False, repeat=1) as without:
        assert "ModuleNotFoundError" in without.run(code, args).error
        counter = "n = [0]\ndef f():\n    n[0] += 1\n    print(n[0])\n    return n[0]"
        assert without.run(counter, "").stdout == "1\n"                     # repeat=1: one call per run
        assert without.validate(counter, "").status == "nondeterministic"   # validate always calls twice


def test_repeat_default_calls_twice(sb):
    res = sb.run("n = [0]\ndef f():\n    n[0] += 1\n    print(n[0])\n    return 1", "")
    assert (res.value, res.stdout) == ("1", "1\n2\n")


def test_gold_is_reproducible_across_sandboxes(sb):               # G8
    code, args = "def f(words):\n    return list(set(words))", "['alpha', 'beta', 'gamma', 'delta', 'eps']"
    first = sb.run(code, args).value
    with Sandbox(workers=1) as other:
        assert other.run(code, args).value == first


def test_fails_closed(monkeypatch):                               # G3
    monkeypatch.setitem(sandbox._ZYGOTE_ENV, "NANOAZR_SANDBOX_FAULT", "filter")
    with pytest.raises(sandbox.SandboxUnavailable, match="self-test"):
        Sandbox(workers=1)
    monkeypatch.delitem(sandbox._ZYGOTE_ENV, "NANOAZR_SANDBOX_FAULT")
    with Sandbox(workers=1, mem_mb=64) as small:   # mem_mb is headroom above the zygote: small limits work
        assert small.run("def f():\n    return len(bytes(100 << 20))", "").status == "memory"


def test_bad_arguments():
    with pytest.raises(ValueError, match="cpu_s"):
        Sandbox(cpu_s=0)
    with pytest.raises(ValueError, match=r"pass a tuple of module names, e.g. \('numpy',\)"):
        Sandbox(extra_modules="numpy")


def test_caller_exit_kills_everything(tmp_path):                 # G6
    script = ("import sys, threading, time\nsys.path.insert(0, sys.argv[1])\nimport sandbox\n"
              "sb = sandbox.Sandbox(workers=1, selftest=False)\n"
              "threading.Thread(target=sb.run, args=('import time\\ndef f():\\n    time.sleep(60)', '')).start()\n"
              "time.sleep(0.5)\nprint(' '.join(map(str, sb.worker_pids())), flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(Path(sandbox.__file__).parent)],
                            stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in proc.stdout.readline().split()]
    kids = [int(c) for p in pids for c in _children(p)]   # the templates
    kids += [int(c) for p in kids for c in _children(p)]
    assert pids and len(kids) == len(pids) + 1   # the zygotes, their templates and the sleeping child exist
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids + kids):
        time.sleep(0.05)
    alive = [p for p in pids + kids if Path(f"/proc/{p}").exists()
             and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]]
    assert alive == []


def test_azr_program_renames_like_azr():
    """AZR renames with two regexes (the def, then `NAME(` calls), keeping comments and layout, and counts only defs
    at a line start: a `def` inside a comment or a string is not a second function."""
    code, imports = sandbox.azr_program("import math\ndef g(x):\n    # recurse; def helper(y) is only a comment\n"
                                        "    return g(x - 1) + math.floor(0.5) if x else 'undef y('")
    assert code == ("import math\ndef f(x):\n    # recurse; def helper(y) is only a comment\n"
                    "    return f(x - 1) + math.floor(0.5) if x else 'undef y('")
    assert imports == ("import math",)
    with pytest.raises(ValueError, match="exactly one def"):
        sandbox.azr_program("def f(x):\n    def h(y):\n        return y\n    return h(x)")
    for banned in ("import collections.time", "from collections import time"):
        with pytest.raises(ValueError, match="banned import"):  # any dotted component or imported name
            sandbox.azr_program(banned + "\ndef f(a):\n    return a")


def test_decoder_refuses_duplicate_set_elements():
    """The trusted decoder rebuilds values from the child's bytes; a forged set record with a repeated element
    would make the value ({1}) disagree with the text it returns ("{1, 1}"), so it is malformed."""
    import struct
    from sandbox import _decode
    one = b"i" + struct.pack("<I", 1) + b"1"
    assert _decode(b"S" + struct.pack("<I", 1) + one, 0)[:2] == ({1}, "{1}")
    for tag in (b"S", b"Z"):
        with pytest.raises(ValueError):
            _decode(tag + struct.pack("<I", 2) + one + one, 0)


def test_memory_address_in_the_output_is_nondeterministic(sb, monkeypatch):
    """An object made once at module level has the same address in both calls and (forked zygotes) in both hash
    seeds' children; only the address pattern check catches it (E4)."""
    monkeypatch.setattr(sandbox, "_escape_route", lambda node: None)
    monkeypatch.setattr(sandbox, "_module_flow", lambda tree, modules, root=None: None)
    res = sb.validate("o = object()\ndef f():\n    return repr(o)", "")
    assert res.status == "nondeterministic" and "memory address" in res.error, res


def test_string_set_order_differs_across_hash_seeds(sb):
    """Iterating a set of strings is stable within one process (both calls agree) but follows the hash seed: the
    probe in the other zygote (HASH_SEEDS[1]) is what rejects it."""
    code = "def f(x):\n    return ''.join(set(x))"
    res = sb.validate(code, "'abcdefghijklmnop'")
    assert res.status == "nondeterministic" and "another hash seed" in res.error, res


def test_azr_program_caps_the_program_length():
    """Proposal parsing refuses an over-long program before parsing it (MAX_CODE characters)."""
    from sandbox import MAX_CODE, azr_program
    body = "def f(x):\n    return x\n"
    azr_program(body + "#" * (MAX_CODE - len(body)))
    with pytest.raises(ValueError, match="cap"):
        azr_program(body + "#" * (MAX_CODE - len(body) + 1))


def test_stdin_text_is_capped(sb):
    """Script mode refuses stdin over MAX_STDIN characters up front (nothing is sent to a child)."""
    from sandbox import MAX_STDIN
    code = "import sys\nprint(len(sys.stdin.read()))"
    res = sb.run(code, "", stdin="x" * (MAX_STDIN + 1))
    assert res.status == "rejected" and "stdin" in res.error, res


def test_equal_values_with_different_reprs_are_nondeterministic(sb):
    """Two calls returning equal dicts in another key order (== holds, the gold text differs) are not a stable
    gold output: the texts are compared as well as the values."""
    code = "n = [0]\ndef f():\n    n[0] += 1\n    return {1: 0, 2: 0} if n[0] == 1 else {2: 0, 1: 0}"
    res = sb.validate(code, "")
    assert res.status == "nondeterministic", res


# round 10: the zygote's history (every request it served) shaped the heap a child starts from, so anything hashed
# by identity (a set of a program's own objects: no id() or hash() needed) came out in an order that drifted per
# request and differed between gold zygotes: a proposal passed validation half the time and its abduction check
# on the true input was then a coin flip. Children are now forked by each zygote's template, a fork made before the
# zygote served anything that only forks and reaps, so a child starts from the same heap whatever came before.
_IDENTITY_ORDER = ("class A:\n    pass\nR = []\n"
                   "def f(n):\n    if not R:\n        objs = [A() for _ in range(n)]\n"
                   "        for i, o in enumerate(objs):\n            o.k = i\n"
                   "        R.append([o.k for o in set(objs)])\n    return R[0]")


def test_identity_hashed_order_does_not_follow_the_zygote_history():
    traffic = ["def f(x):\n    return [str(i) * x for i in range(x)]",
               "def f(x):\n    return {i: 'y' * i for i in range(x)}",
               "def f(x):\n    return [(i,) * 3 for i in range(x)] + [object() for _ in range(x)]",
               "def f(x):\n    return 'z' * (x * 997)", "def f(x):\n    raise ValueError('q' * x)",
               "def f(x):\n    print('p' * x)\n    return x"]
    with Sandbox(workers=2, selftest=False) as s:
        first = s.run(_IDENTITY_ORDER, "24")
        seen = set()
        for k in range(12):
            s.run_many([(traffic[(k * 5 + j) % 6], str((k * 37 + j * 11) % 300)) for j in range(1 + k % 5)])
            seen.add(s.run(_IDENTITY_ORDER, "24").value)
        assert first.status == "ok" and seen == {first.value}, seen
        gold = s.validate(_IDENTITY_ORDER, "24")
        if gold.status == "ok":   # (the B zygotes, with ASLR on, may still disagree: then there is no task)
            assert s.check_abduction([(gold.program, gold.value, "24")] * 6) == [True] * 6


def _seconds(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def test_colliding_hashes_are_refused(sb):
    """Round 10: ints equal modulo 2**61 - 1 share a hash; a program returning 2,400 of them as a set (a 57 KiB
    record) cost the trainer ~10x a plain set to decode and compare, quadratic in the set's size (0.18 s of trainer
    CPU per validation); a predicted output can carry the same as text. Such a set or dict is not a value."""
    bad = "def f(n):\n    return {k * (2 ** 61 - 1) for k in range(n)}"
    res = sb.validate(bad, "2400")
    assert res.status == "bad_output", res
    assert sb.validate(bad.replace("2 ** 61 - 1", "2 ** 61 - 3"), "2400").status == "ok"
    assert sb.validate(bad, "40").status == "ok"   # a few collisions are fine
    for step, ok in ((2 ** 61 - 1, False), (2 ** 61 - 3, True)):
        keys = [str(k * step) for k in range(100)]
        for text in ("{" + ", ".join(keys) + "}", "{" + ", ".join(k + ": 0" for k in keys) + "}",
                     "frozenset([" + ", ".join(keys) + "])"):
            assert sandbox.parse_literal(text)[0] is ok
    assert sandbox.parse_literal("{1, 2, -1, -2}") == (True, {1, 2, -1, -2})


def test_wall_time_fragile_is_rejected(sb):                      # C10, for the wall clock
    """Round 10: the timing margin looked at CPU time only. A Condition's timed wait (queue.Queue().not_empty, no
    banned name) sleeps without CPU: a proposal waiting 1.99 s per call (3.98 s of a 4 s wall limit) passed
    validation or timed out depending on the machine's load, and its checks were then a coin flip."""
    prog = "import queue\ndef f(x):\n    c = queue.Queue().not_empty\n    with c:\n        c.wait(x)\n    return x"
    res = sb.validate(prog, "0.45")   # 0.9 s of the fixture's 2 s wall limit, no CPU
    assert res.status == "rejected" and "wall" in res.error, res
    assert sb.validate(prog, "0.01").status == "ok"




def test_crashes_make_no_core_dump_even_through_a_pipe(sb):
    """Round 11: children ran with RLIMIT_CORE 0, which stops a core dump only for a file core_pattern. With a pipe
    (apport, systemd-coredump: Ubuntu and Fedora defaults, and what a container inherits from its host) the kernel
    ignores every limit but 1 and starts the host's handler, as root outside any sandbox, on each crash: every
    SIGSYS of a forbidden call, SIGXCPU, SIGSEGV. Limit 1 aborts such a dump before the handler starts, and is
    under the page a file dump needs. (We cannot set a pipe core_pattern here: it is the host's; so the limit.)"""
    res = sb.run("import resource\ndef f():\n    return resource.getrlimit(resource.RLIMIT_CORE)", "")
    assert (res.status, res.value) == ("ok", "(1, 1)")
    # (lowering it to 0 again is refused like any prlimit64 with a new limit: EPERM, which setrlimit raises as such)
    lower = "import resource\ndef f():\n    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n    return 0"
    assert sb.run(lower, "").status in ("exception", "forbidden")


def test_a_caller_holding_over_1024_descriptors():
    """Round 11: the caller waited on zygote pipes with select(), which refuses descriptors >= 1024: in a trainer
    holding that many files (CUDA, data loaders, sockets) every call came back as sandbox_error."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard limit on open files ({hard}) is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with Sandbox(workers=1, selftest=False) as s:
            assert all(w.proc.stdout.fileno() >= 1024 for w in s._workers)
            assert s.run("def f(x):\n    return x + 1", "1").value == "2"
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_heap_that_follows_the_input_text_is_nondeterministic(monkeypatch):
    """A child's heap follows its request's text, so a set of the program's own objects can come out in another
    order for the same values written otherwise ("24" and "24" + 64 spaces), and a solver's input is other text than
    the proposer's. With every zygote alike (one hash seed, ASLR off: the B zygotes' differences removed), only the
    padded input text of the B run tells such a program from a deterministic one."""
    monkeypatch.setattr(sandbox, "HASH_SEEDS", ("0", "0"))
    with Sandbox(workers=1, selftest=False) as s:
        orders = {s.run(_IDENTITY_ORDER, "24" + " " * k).value for k in (0, 64, 97, 300)}
        assert len(orders) > 1   # (the premise: the text moves the order)
        res = s.validate(_IDENTITY_ORDER, "24")
        assert res.status == "nondeterministic" and "another hash seed" in res.error, res
        assert s.validate("def f(x):\n    return sorted({x, x + 1})", "24").status == "ok"


@pytest.mark.parametrize("code", [
    "async def g():\n    pass\ndef f(x):\n    c = g()\n    c.close()\n    return c.cr_code.co_name",  # (no `def` line)
    "async def g():\n    yield 1\ndef f(x):\n    return g().ag_code.co_name",
    "def f(x):\n    return x.CodeType",
    "def f(x):\n    return x.FunctionType",
    "def f(x):\n    return x.LambdaType",
    "import zlib\ndef f(x):\n    return zlib.ZLIB_VERSION",
    "def f(x):\n    return '{0.sys}'.format(x)",
    "def f(x):\n    return '{0.ZLIB_VERSION}'.format(x)",
    "def f(x):\n    return x" + ".os" * 2000,                 # a module word on any object (no root is looked for)
    "def f(x):\n    match '{0.__globals__[sys]}':\n        case object(format=fm):\n            return fm(f)",
    "import queue\ndef f(x):\n    return ('{q.' + '__globals__}').format_map({'q': queue.Queue.get})",
    "def f(x):\n    match x:\n        case object(random=r):\n            return r",
    "import abc\nfrom collections import namedtuple\nclass C(namedtuple('P', 'gi_frame'), abc.ABC):\n    pass\n"
    "C.register(type(i for i in ()))\ndef f(x):\n    match (i for i in ()):\n        case C(fr):\n"
    "            return fr.f_lineno + x",
    # (the module-flow rows read no module word: since round 15 `.sys` on any object is refused, which hid them)
    "from re import enum\ndef f(x):\n    for m in [enum]:\n        return len(str(m)) + x",
    "import re\ndef f(x):\n    m = re.enum\n    return len(str(m)) + x",
    "import json\ndef f(x):\n    return str(json)[:x]",
    # mutation round 8: a private attribute alone (typing's evaluator of string annotations runs a clock)
    "import typing\ndef f(x):\n"
    "    return typing._eval_type(typing._type_convert(\"__import__('time').time()\"), None, None)",
    "import enum\ndef f(x):\n    try:\n        enum.nope\n    except AttributeError as e:\n"
    "        return str(e.obj)[:x]",
    "import string\ndef f(x):\n    return string.Formatter().vformat('{0.__globals__[__name__]}', (f,), {})",
    "from string import Formatter\ndef f(x):\n    return x",
])
def test_each_escape_rule_refuses_on_its_own(code):
    """Mutation round 4: one rule alone refuses each of these (in the cases above a module passed as a value often
    meets the module-flow rule first): the code-object and type names on any object, every host-build attribute,
    a format field walking an attribute, format_map on a built template, a module word on any object, a class
    pattern (a keyword one reading a module word or the format method of a constant, a positional one through
    __match_args__, a namedtuple field), a module from `from <pure> import <module>` or an attribute holding one,
    used as a value (its repr shows the host's path). Mutation round 8: a private attribute (typing._eval_type
    evaluates a string), AttributeError.obj (the module), string.Formatter (vformat walks a constant's fields,
    which no rule reads since round 15), and a module by import or by name as a value with no module word after."""
    with pytest.raises(ValueError, match="not allowed"):
        sandbox.azr_program(code, (), "1")


def test_ordinary_inputs_and_patterns_are_accepted(sb):
    """Round 15: class patterns are refused, builtin ones too (the name `str` can be rebound to a class whose
    __match_args__ read any attribute; no CRUXEval or AZR seed program has a class pattern); sequence, mapping and
    value patterns are fine. A comment inside a multi-line input is fine (only a trailing comment on the pasted line
    breaks AZR's call)."""
    prog = ("def f(x):\n    match x:\n        case [a, *rest]:\n            return a\n        case {'k': v}:\n"
            "            return v\n        case 'ab' | 3:\n            return 0\n    return None")
    assert [sb.validate(prog, a).value for a in ("[5, 6]", "{'k': 2}", "'ab'", "(1, 2)")] == ["5", "2", "0", "1"]
    res = sb.validate("def f(x):\n    match x:\n        case str(s):\n            return s", "'ab'")
    assert res.status == "rejected" and "class pattern" in res.error, res
    assert sb.validate("def f(s):\n    return len(s)", "[1,  # one\n 2]").value == "2"


def test_colliding_keys_in_a_returned_dict_or_frozenset_are_refused(sb):
    """Round 10's hash-collision refusal covers every decoded container, not only sets: 200 ints equal modulo
    2**61 - 1 as a dict's keys or a frozenset make no value (bad_output); 200 spread keys are fine."""
    for body in ("{k * STEP: 0 for k in range(n)}", "frozenset(k * STEP for k in range(n))"):
        prog = "def f(n):\n    return " + body
        assert sb.validate(prog.replace("STEP", "(2 ** 61 - 1)"), "200").status == "bad_output", body
        assert sb.validate(prog.replace("STEP", "(2 ** 61 - 3)"), "200").status == "ok", body


def test_non_literal_golds_run_only_when_pure(sb):
    """A gold that is not a literal is evaluated only if check_pure accepts it; a 403-character gold is cut (no
    value) only with the "..." of truncate_output in its middle."""
    assert sb.check_deduction([("__import__('os').sep", "'/'"), ("len([1, 2])", "2")]) == [False, True]
    gold = "dict(a='" + "x" * 393 + "')"
    assert len(gold) == 403 and not sandbox.is_truncated(gold)
    assert sb.check_deduction([(gold, repr({"a": "x" * 393}))]) == [True]


def test_cpu_time_counts_system_time(sb):
    """The CPU time that the timing margin reads is user + system time: page faults are system time."""
    prog = ("import os\ndef f():\n    for _ in range(20):\n        b = b'x' * (32 << 20)\n    t = os.times()\n"
            "    return [t.user, t.system]")
    # roomy limits, and the verdict in the message: at 6c18d59 one CI run got no outcome here (IndexError below, cause
    # not reproduced in 8 reruns, 3 of them beside busy CPUs); two calls of 640 MB of page faults are close to the
    # fixture's 1 s CPU / 2 s wall limits on a loaded 2-core machine
    res, outs, facts = sb._execute(prog, "", limits={"cpu_s": 20, "wall_s": 40})
    assert res.status == "ok", (res, facts)
    user, system = outs[-1][1]
    assert system > 0.05 and facts["cpu"] >= user + system - 0.02, (outs, facts)


def test_scripts_recurse_deep_in_the_main_thread(sb):
    """Script runs (LiveCodeBench) get SCRIPT_STACK: on Python <= 3.11 a memoised recursion 60,000 calls deep (C stack
    per level) overflows the default 8 MiB stack. From 3.12 Python calls no longer use the C stack and the interpreter
    caps C recursion at a fixed depth (the memoised one raises RecursionError in any 3.12), so there a plain recursion
    must reach the depth the program's own limit allows."""
    memo, depth = ("@functools.lru_cache(None)\n", 60000) if sys.version_info < (3, 12) else ("", 300000)
    code = (f"import sys, functools\nsys.setrecursionlimit(10 ** 6)\n{memo}def g(n):\n"
            f"    return 0 if n == 0 else g(n - 1) + 1\nprint(g({depth}))\n")
    res = sb.run(code, "", stdin="")
    assert res.status == "ok" and eval(res.value)[0] == f"{depth}\n", res


def test_heap_addresses_that_follow_the_input_text_fail_validation(sb):
    """Round 12: bits of f's own address (`repr(f)[-4:-1]`, inside a page: ASLR leaves them alone) followed the
    input's text: `[1, 2, 3]` and `[1, 2, 3]  ` gave other outputs, yet the B run on the input padded by 97 spaces
    happened to agree, so the gold depended on how an answer was written. B children now shift the heap by a
    random amount first."""
    prog = "def f(x):\n    return repr(f)[-4:-1]"
    args = "[1, 2, 3]"
    assert len({sb.run(prog, args + " " * k).value for k in (0, 2, 300)}) > 1   # (the premise: the text moves it)
    probes = {sb._execute(prog, args, seed=sandbox.HASH_SEEDS[1])[0].value for _ in range(6)}
    assert len(probes) > 1, probes
    # (one validation passes such a program with odds ~1/60 (the B shift can land on A's offset): 3 passes of 8 have
    # odds ~3e-4)
    verdicts = [sb.validate(prog, args).status for _ in range(8)]
    assert verdicts.count("nondeterministic") >= 6, verdicts
    assert sb.validate("def f(x):\n    return sorted(set(x))", args).status == "ok"


def test_close_from_another_thread_during_a_call_is_a_sandbox_error():
    """close() can run between a call's closed check and its use of the zygote (another thread: a trainer's
    shutdown while a pool still runs checks); the call then said AttributeError instead of a sandbox_error."""
    with Sandbox(workers=1, selftest=False) as s:
        for w in s._workers:
            s._kill(w)   # the next call starts a zygote, and close() lands right after its hello
        hello = s._hello
        s._hello = lambda w: (hello(w), s.close())
        res = s.run("def f(x):\n    return x", "1")
    assert res.status == "sandbox_error" and "closed" in res.error, res


def test_a_zygote_that_cannot_be_restarted_is_a_sandbox_error():
    """Round 12: when a zygote had died (or was recycled) and starting its successor failed in the caller (no
    descriptor left for its pipes: EMFILE; EAGAIN or ENOMEM from the fork), the OSError escaped run() and every
    check instead of a sandbox_error verdict, and the trainer crashed. The next call, with descriptors back, runs."""
    with Sandbox(workers=1, selftest=False) as s:
        assert s.run("def f(x):\n    return x", "1").status == "ok"
        for pid in s.worker_pids():
            os.kill(pid, signal.SIGKILL)
        held = []
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        try:
            res = s.run("def f(x):\n    return x", "1")
            checks = s.check_abduction([("def f(x):\n    return x", "1", "1")])
        finally:
            for fd in held:
                os.close(fd)
        assert res.status == "sandbox_error" and "cannot start" in res.error, res
        assert checks == [None]
        assert s.run("def f(x):\n    return x", "1").value == "1"


def test_a_respawn_racing_close_is_a_sandbox_error():
    """Mutation round 5: close() stops the spawner while another thread's call may be respawning a dead zygote;
    its RuntimeError is a sandbox_error too, not an exception out of run()."""
    with Sandbox(workers=1, selftest=False) as s:
        assert s.run("def f(x):\n    return x", "1").status == "ok"
        for pid in s.worker_pids():
            os.kill(pid, signal.SIGKILL)
        s._spawner.shutdown(wait=False)   # what close() does first, seen by a call already past its closed check
        res = s.run("def f(x):\n    return x", "1")
        assert res.status == "sandbox_error" and "cannot start" in res.error, res


def test_b_children_shift_each_small_object_size_class(sb):
    """Mutation round 5: the B children's heap shift covers the size classes on its own, each by its own part: an
    `object()` (16 bytes: the object() shift), an instance with empty __slots__ (32 bytes: the int shift), one
    with 40 slots (352 bytes: the bytes shift up to 512). Without that part, the address bits of such an object
    were the same in every B run."""
    for prog in ("def f(x):\n    return repr(object())[-4:-1]",
                 "class C:\n    __slots__ = ()\ndef f(x):\n    return repr(C())[-4:-1]",
                 "class C:\n    __slots__ = tuple('a%d' % i for i in range(40))\ndef f(x):\n    return repr(C())[-4:-1]"):
        probes = {sb._execute(prog, "[1, 2, 3]", seed=sandbox.HASH_SEEDS[1])[0].value for _ in range(6)}
        assert len(probes) > 1, (prog, probes)


def test_objects_made_before_the_fork_are_laid_out_otherwise_in_b_zygotes(sb):
    """Red-team round 16: the in-page address bits of the builtins' and the preloaded modules' objects were the same
    in A and B zygotes (ASLR moves whole pages; the B children's shift moves only what they make), yet they follow
    how the zygote started: the checkout path and the caller's pid in argv, extra_modules, the host's .pth files.
    Each of these validated ok with a gold that changed with the checkout path or extra_modules. B zygotes now lay
    out their heap with glibc malloc after an argument and an environment of random lengths. One validation still
    passes such an output by chance (the 3 hex digits: about 1 in 20 seen in one checkout), so up to five fresh
    Sandboxes retry."""
    for prog in ("import textwrap\ndef f(x):\n    return str(textwrap.dedent)[-4:-1]",
                 "def f(x):\n    return [g.__name__ for g in {len, max, min, sum, sorted, abs, any, all, repr, ascii, "
                 "bin, hex, oct, ord, chr, divmod, pow, round, iter, next, callable}]",   # (21 in 32 slots)
                 "import collections as c\ndef f(x):\n    return [t.__name__ for t in {c.Counter, c.OrderedDict, "
                 "c.deque, c.defaultdict, c.ChainMap, c.UserDict}]"):
        statuses = [sb.validate(prog, "[3, 1, 2]").status]
        while statuses[-1] != "nondeterministic" and len(statuses) < 6:   # (a B zygote keeps its layout: new ones)
            with Sandbox(workers=1, selftest=False) as fresh:
                statuses.append(fresh.validate(prog, "[3, 1, 2]").status)
        assert statuses[-1] == "nondeterministic", (prog, statuses)
    assert sb.validate("def f(x):\n    return [g(x) for g in [len, max, min, sum, sorted]]", "[3, 1, 2]").value == \
        "[3, 3, 1, 6, [1, 2, 3]]"


def test_site_notices_are_not_builtins(sb):
    """Red-team round 16: `str(copyright)` is the notice of the interpreter's build (its years change with the
    release), so a gold made of it validated ok and differed on another build. The zygote drops site's notices
    (copyright, credits, license); exit and quit stay, since scripts call them."""
    for name in ("copyright", "credits", "license"):
        res = sb.validate(f"def f(x):\n    return str({name})[:x]", "60")
        assert res.status == "exception" and "NameError" in res.error, res
    res = sb.run("def f(x):\n    exit(x)", "3")
    assert res.status == "exception" and "SystemExit" in res.error, res                  # as before, no NameError
    assert sb.run("def f(x):\n    return str(quit)[:x]", "8").value == "'Use quit'"


def test_format_on_a_constant_other_than_a_str_is_refused_not_a_crash():
    """Mutation round 8: the format rule reads the fields of a constant template only when it is a str; a bytes or
    int constant's `.format` (an AttributeError when run) is refused as any other template, in programs, inputs and
    predicted values. Reading its 'fields' raised TypeError (a string pattern on bytes, or on an int) out of the
    filter instead of a ValueError, which validation and the answer checks report as a rejection."""
    for template in ("b'{0}'", "b'{0.x}'", "(1)"):
        with pytest.raises(ValueError, match="str.format"):
            sandbox.azr_program(f"def f(x):\n    return {template}.format(x)", (), "1")
        with pytest.raises(ValueError, match="str.format"):
            sandbox.azr_program("def f(x):\n    return x", (), f"{template}.format(1)")
        with pytest.raises(ValueError, match="str.format"):
            sandbox.check_pure(ast.parse(f"{template}.format(1)", mode="eval").body)


def test_b_zygotes_start_with_glibc_malloc_and_two_pads_of_random_length(monkeypatch):
    """Mutation round 8: what moves a B zygote's layout of the objects made before the fork is how it starts: glibc
    malloc, an argument and an environment variable of random lengths (0 to 4095). Which of these matters follows
    the host (in a CI checkout the environment pad alone left the order of {len, max, ...} as in A; in another either
    pad sufficed), so the probabilistic test above cannot pin each. This reads the command line and environment each
    zygote would be started with: A's are fixed (the gold's zygotes start alike), B's pads vary, independently."""
    starts = []

    class Recorder:
        def submit(self, fn, cmd, **kw):
            starts.append((cmd, kw["env"]))
            raise OSError("recorded, not started")

    owner = type("Owner", (), {"_spawner": Recorder(), "_extra": ""})()
    for seed in sandbox.HASH_SEEDS:
        for _ in range(16):
            with pytest.raises(sandbox.SandboxUnavailable):
                Sandbox._popen(owner, sandbox._Worker(seed))
    base = [sys.executable, "-s", "-B", os.path.abspath(sandbox.__file__), "--zygote", str(os.getpid()), ""]
    a, b = starts[:16], starts[16:]
    assert all(cmd == base and env == dict(sandbox._ZYGOTE_ENV, PYTHONHASHSEED=sandbox.HASH_SEEDS[0])
               for cmd, env in a), a[0]
    args, envs = [], []
    for cmd, env in b:
        env = dict(env)
        assert cmd[:-1] == base and set(cmd[-1]) <= {"x"} and env.pop("PYTHONMALLOC") == "malloc", (cmd, env)
        envs.append(env.pop("NANOAZR_PAD"))
        assert set(envs[-1]) <= {"x"} and env == dict(sandbox._ZYGOTE_ENV, PYTHONHASHSEED=sandbox.HASH_SEEDS[1])
        args.append(cmd[-1])
    for pads in (args, envs):   # 16 draws of 0..4095: all below 512 with odds 8**-16, all alike 4096**-15
        assert max(map(len, pads)) >= 512 and len(set(pads)) > 1, sorted(map(len, pads))
    assert args != envs   # (two draws, not one length twice)


def test_a_child_killed_by_a_realtime_signal_is_a_crash():
    """Red-team round 17: the verdict named the signal through signal.Signals, which has no member for 35-63, so a
    child killed by one (no allowed syscall sends one today) would have raised out of every check."""
    facts = {"code": None, "signal": 40, "killed": None, "wall": 0.0, "cpu": 0.0}
    res, _ = sandbox._verdict(facts, b"\x01", b"", b"", 1.0)
    assert (res.status, res.error) == ("crash", "killed by signal 40")
    res, _ = sandbox._verdict(dict(facts, signal=11), b"\x01", b"", b"", 1.0)
    assert (res.status, res.error) == ("crash", "killed by SIGSEGV")


def test_verdict_of_malformed_or_empty_records():
    """A record whose outcomes the trusted decoder cannot read, or that holds none, is bad_output, never a crash of
    the check."""
    import struct
    facts = {"code": 0, "signal": 0, "killed": None, "wall": 0.0, "cpu": 0.0}
    one = b"o" + b"i" + struct.pack("<I", 1) + b"7"
    for body, error in ((b"x", "malformed result record (ValueError)"), (b"", "empty result record"),
                        (b"e", "malformed result record (error)"),   # (struct.error)
                        (one + b"?", "malformed result record (ValueError)")):
        res, outcomes = sandbox._verdict(facts, b"\x01" + struct.pack("<I", len(body)) + body, b"", b"", 1.0)
        assert (res.status, res.error, outcomes) == ("bad_output", error, []), body
    res, outcomes = sandbox._verdict(facts, b"\x01" + struct.pack("<I", len(one)) + one, b"", b"", 1.0)
    assert (res.status, res.value, outcomes) == ("ok", "7", [("ok", 7, "7")])


def test_decoder_refuses_malformed_values():
    """Every way a forged value record can be wrong (the child's bytes are untrusted): too deep, truncated, an int
    that is not digits, a count past the end, a repeated dict key, an unknown tag, a cut-off string field."""
    import struct
    from sandbox import _decode, _decode_str
    u32 = struct.Struct("<I").pack
    one = b"i" + u32(1) + b"1"
    deep = b"l" + u32(1)
    for bad, words in ((deep * (sandbox.MAX_DEPTH + 1) + b"N", "too deep"), (b"s" + u32(5) + b"abc", "truncated"),
                       (b"i" + u32(3) + b"1e5", "bad int"), (b"l" + u32(1 << 30), "bad count"),
                       (b"D" + u32(2) + one + b"N" + one + b"T", "duplicate key"), (b"X", "bad tag")):
        with pytest.raises(ValueError, match=words):
            _decode(bad, 0)
    assert _decode(deep * sandbox.MAX_DEPTH + b"N", 0)[0] is not None   # the deepest allowed nesting decodes
    assert _decode(b"D" + u32(2) + one + b"N" + b"i" + u32(1) + b"2" + b"T", 0)[:2] == ({1: None, 2: True},
                                                                                         "{1: None, 2: True}")
    assert _decode_str(u32(2) + b"hi", 0) == ("hi", 6)
    with pytest.raises(ValueError, match="truncated"):
        _decode_str(u32(9) + b"hi", 0)


def test_literal_parser_edges():
    """parse_literal (gold and predicted values, never evaluated): real +/- imaginary complex numbers; no ** in a
    dict, no sign on a non-number, no set/bytearray of the wrong argument, nothing nested past MAX_DEPTH."""
    assert sandbox.parse_literal("1+2j") == (True, 1 + 2j) and sandbox.parse_literal("-1.5-2j") == (True, -1.5 - 2j)
    assert sandbox.parse_literal("bytearray(b'ab')") == (True, bytearray(b"ab"))
    for text in ("{**a}", "-'a'", "+[1]", "set(5)", "frozenset('ab')", "bytearray([1])", "1j+1"):
        assert sandbox.parse_literal(text) == (False, None), text
    depth = sandbox.MAX_DEPTH + 1   # lists nested this deep: the innermost one is at MAX_DEPTH (the outermost at 0)
    assert sandbox.parse_literal("[" * depth + "]" * depth)[0]
    assert sandbox.parse_literal("[" * (depth + 1) + "]" * (depth + 1)) == (False, None)


def test_static_checks_of_unparsable_text(sb):
    """Argument text that is no call's arguments is rejected before any child runs; a program that does not parse
    rebinds (for the abduction check) every builtin an answer may call; `from <pure package>.<missing submodule>`
    is left to fail at run time; an expression text that does not parse, or is over the cap, names no f."""
    for args in ("1)", "1,,2", "(1"):
        res = sb.run("def f(x):\n    return x", args)
        assert (res.status, res.error) == ("rejected", "argument text does not parse as call arguments: SyntaxError")
    assert sandbox.shadowed_builtins("def f(:\n") == sandbox.SAFE_CALLS
    assert sandbox.shadowed_builtins("len = 3\ndef f(x):\n    return x") == {"len"}
    code, _ = sandbox.azr_program("from collections.nosuch import x\ndef f(a):\n    return a")
    assert code.startswith("from collections.nosuch import x")
    assert sb.run(code, "1").status == "exception"
    with pytest.raises(ValueError, match="cannot import 'nosuch' from 'collections'"):
        sandbox.azr_program("from collections import nosuch\ndef f(a):\n    return a")
    assert sandbox._names_f("f(1) + 2") and not sandbox._names_f("g(1)")
    assert not sandbox._names_f("f(") and not sandbox._names_f("f(1)" + " " * sandbox.MAX_VALUE_TEXT)


def test_same_on_values_too_deep_to_compare():
    a, b = [], []
    for _ in range(100_000):   # (only values built here from a record are compared; a RecursionError is no match)
        a, b = [a], [b]
    assert not sandbox._same(a, b) and sandbox._same([[1]], [[1]])


def test_validate_second_call_and_b_zygote_failures(sb, monkeypatch):
    """Validation calls f twice: a second call that raises is nondeterministic. A lost B (other hash seed) zygote
    during validation is our failure (sandbox_error), not the program's."""
    res = sb.validate("n = [0]\ndef f():\n    n[0] += 1\n    if n[0] > 1:\n        raise ValueError('again')\n"
                      "    return 1", "")
    assert res.status == "nondeterministic" and res.error.startswith("second call of f ")
    assert res.error.endswith("ValueError: again")
    execute = sb._execute

    def b_lost(code, args, seed=sandbox.HASH_SEEDS[0], **kwargs):
        if seed == sandbox.HASH_SEEDS[1]:
            return Result("sandbox_error", error="zygote exited"), [], {}
        return execute(code, args, seed=seed, **kwargs)
    monkeypatch.setattr(sb, "_execute", b_lost)
    res = sb.validate("def f(x):\n    return x + 1", "1")
    assert (res.status, res.error) == ("sandbox_error", "zygote exited")


def test_sandbox_lifecycle_edges(monkeypatch):
    """Bad pool sizes are refused; a zygote that cannot start, or refuses to, is SandboxUnavailable; a closed Sandbox
    answers sandbox_error; a zygote is replaced by a fresh one after RECYCLE_AFTER requests; run_many needs one stdin
    text per item."""
    for kwargs, words in ((dict(workers=-1), "need at least one worker"), (dict(repeat=3), "must be 1 or 2")):
        with pytest.raises(ValueError, match=words):
            Sandbox(selftest=False, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(sys, "executable", "/bin/false")   # an interpreter that exits at once
        with pytest.raises(sandbox.SandboxUnavailable, match=r"sandbox zygote failed to start \(zygote exited\)"):
            Sandbox(workers=1, selftest=False)
    with monkeypatch.context() as m:
        m.setattr(Sandbox, "_recv", lambda self, proc, deadline: [b'{"ok": false, "error": "no seccomp here"}'])
        with pytest.raises(sandbox.SandboxUnavailable, match="sandbox zygote refused to start: no seccomp here"):
            Sandbox(workers=1, selftest=False)
    monkeypatch.setattr(sandbox, "RECYCLE_AFTER", 2)
    with Sandbox(workers=1, selftest=False, repeat=1) as s:
        pids = s.worker_pids()
        assert [s.run("def f(x):\n    return x", str(i)).value for i in range(2)] == ["0", "1"]
        assert s.run("def f(x):\n    return x", "2").value == "2"
        assert len(pids) == 2 and pids[0] not in s.worker_pids()   # the A zygote served 2: replaced
        with pytest.raises(ValueError, match="run_many: 1 stdin texts for 2 items"):
            s.run_many([("print(1)", ""), ("print(2)", "")], stdin=["x"])
    res = s.run("def f():\n    return 1", "")
    assert (res.status, res.error) == ("sandbox_error", "Sandbox is closed")


def test_recycled_and_closed_zygotes_leave_no_zombies():
    """A zygote replaced after RECYCLE_AFTER requests (several times per zygote in a long AZR run) or closed reaps
    its template first. Killed outright, it orphaned the template, and where the trainer adopts orphans (a
    container's PID 1: `python azr.py` or torchrun as the entry point; here a subreaper) each one stayed a zombie
    for the rest of the run. A subprocess, so that pytest itself never adopts anything."""
    script = ("import ctypes, os, sys, time\nsys.path.insert(0, sys.argv[1])\nimport sandbox\n"
              "ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)\n"   # PR_SET_CHILD_SUBREAPER: orphans come to us
              "sandbox.RECYCLE_AFTER = 2\n"
              "def kids():\n"
              "    time.sleep(0.5)\n"   # (an orphan's PDEATHSIG and reparenting are asynchronous)
              # (every thread's children: the zygotes are the spawner thread's, orphans the main thread's)
              "    kids = [p for t in os.listdir('/proc/self/task')\n"
              "            for p in open(f'/proc/{t}/task/{t}/children').read().split()]\n"
              "    return sorted(open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[0] for p in kids)\n"
              "s = sandbox.Sandbox(workers=1, selftest=False, repeat=1)\n"
              "for i in range(7):\n"
              "    assert s.run('def f(x):\\n    return x', str(i)).value == str(i)\n"
              "print(kids())\ns.close()\nprint(kids())\n")
    out = subprocess.run([sys.executable, "-c", script, str(Path(sandbox.__file__).parent)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["['S', 'S']", "[]"]   # the two live zygotes (3 A recycles), then nothing


def test_zygote_pipe_deadline_and_closed_pipe():
    """_recv: a zygote that says nothing by the deadline, or whose pipe another thread closed, is a lost worker."""
    import types
    r, w = os.pipe()
    try:
        with open(r, "rb", buffering=0) as out:
            proc = types.SimpleNamespace(stdout=out)
            with pytest.raises(sandbox._WorkerLost, match="zygote did not answer in time"):
                Sandbox._recv(None, proc, time.monotonic())
        with pytest.raises(sandbox._WorkerLost, match="zygote pipe: "):
            Sandbox._recv(None, proc, time.monotonic() + 5)   # (out is closed now)
    finally:
        os.close(w)


def test_selftest_cli():
    """`python sandbox.py --selftest` (the install check in the README): the canary table, then "N/N as expected";
    any other arguments print the usage."""
    proc = subprocess.run([sys.executable, sandbox.__file__, "--selftest"], capture_output=True, text=True, timeout=120)
    lines = proc.stdout.strip().splitlines()
    n = len(sandbox._CANARIES) + 1
    assert proc.returncode == 0 and lines[0].split() == ["canary", "expected", "got", "detail"], proc.stdout
    assert len(lines) == n + 2 and "MISMATCH" not in proc.stdout
    assert lines[-1].startswith(f"{n}/{n} as expected in ") and "gold zygotes' ASLR: " in lines[-1]
    proc = subprocess.run([sys.executable, sandbox.__file__], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip() == "usage: python sandbox.py --selftest"


def test_selftest_cli_where_the_sandbox_cannot_run(monkeypatch, capsys):
    def unavailable(**kwargs):
        raise sandbox.SandboxUnavailable("seccomp filter is written for Linux x86_64, this is linux aarch64")
    monkeypatch.setattr(sandbox, "Sandbox", unavailable)
    assert sandbox._selftest_cli() == 1
    assert capsys.readouterr().out == "sandbox unavailable: seccomp filter is written for Linux x86_64, this is linux " \
        "aarch64\n"
