"""Benchmark: sandbox.py against (a) a fresh Python subprocess per program and (b) a process pool running exec
(the official AZR executor's pattern, here with as many workers as ours), on trivial programs and the AZR seed
programs. Prints one table; ratios are against our sandbox, all measured in this run.

    python bench/sandbox.py [--n-trivial 2000] [--n-seeds 512] [--latency-n 200] [--workers N]

Throughput = executions per second with all workers busy (run_many / pool.map / threads x subprocess).
Latency = median wall time of one execution issued alone; overhead = latency minus the median time of the same
f(args) call run in this process (the program's own cost). Our sandbox calls f twice per execution (the
determinism path is the same for every mode), so its numbers include one extra call of f.
"""
import argparse
import concurrent.futures as cf
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sandbox  # noqa: E402

TRIVIAL = ("def f(x):\n    return x", "1")
FRESH = "import sys\nns = {}\nexec(sys.argv[1], ns)\nprint(repr(eval('f(' + sys.argv[2] + '\\n)', ns)))"


def pool_exec(code, args):
    """What AZR's executor does in its worker: exec the program, eval the call, return the repr."""
    ns = {}
    with contextlib.redirect_stdout(io.StringIO()):   # some seed programs print
        exec(code, ns)
        return repr(eval("f(" + args + "\n)", ns))


def fresh(code, args):
    return subprocess.run([sys.executable, "-I", "-c", FRESH, code, args], capture_output=True, timeout=30).stdout


def own_time(code, args):
    """Median in-process time of f(args) (5 calls): the program's own cost."""
    ns, times = {}, []
    call = compile("f(" + args + "\n)", "<input>", "eval")
    with contextlib.redirect_stdout(io.StringIO()):
        exec(code, ns)
        for _ in range(5):
            t0 = time.perf_counter()
            eval(call, ns)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def same_value(a, b):
    """Two reprs of one value (set order may differ between hash seeds): equal as parsed literals, else as text."""
    pa, pb = sandbox.parse_literal(a), sandbox.parse_literal(b)
    return pa[1] == pb[1] if pa[0] and pb[0] else a == b


def measure(name, run_one, run_all, jobs, latency_jobs, value, expected):
    """(name, executions/s, median latency s); exits when an executor's results differ from f(args) computed in this
    process (`value` turns one of its results into a repr, or None for a failed execution)."""
    t0 = time.perf_counter()
    outs = run_all(jobs)
    throughput = len(jobs) / (time.perf_counter() - t0)
    wrong = sum(not (value(o) is not None and same_value(value(o), expected[j])) for j, o in zip(jobs, outs))
    if wrong:  # a broken executor must not show up as a fast one
        sys.exit(f"{name}: {wrong} of {len(jobs)} results differ from f(args) run in this process")
    lat = []
    for job in latency_jobs:
        t0 = time.perf_counter()
        run_one(job)
        lat.append(time.perf_counter() - t0)
    return name, throughput, statistics.median(lat)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-trivial", type=int, default=2000)
    ap.add_argument("--n-seeds", type=int, default=512)
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    a = ap.parse_args()
    if min(a.n_trivial, a.n_seeds, a.latency_n, a.workers) < 1:
        ap.error("--n-trivial, --n-seeds, --latency-n and --workers must be >= 1")
    seeds_path = Path(a.data) / "azr_seeds"
    if not seeds_path.is_dir():
        sys.exit(f"AZR seeds not found at {seeds_path}; pass --data <shared/data>")

    n = a.workers
    sb = sandbox.Sandbox(workers=n)
    # Seed programs: every triplet of both seed files that our sandbox validates (deterministic, plain output).
    rows = [json.loads(line) for f in ("7b_seed_io.jsonl", "7b_coder_seed_io.jsonl")
            for line in (seeds_path / f).read_text().splitlines()]
    pairs = [(r["snippet"], r["input"]) for r in rows]
    seeds = [p for p, v in zip(pairs, sb.validate_many(pairs)) if v.status == "ok"]
    seeds = (seeds * (a.n_seeds // len(seeds) + 1))[:a.n_seeds]
    workloads = {"trivial": [TRIVIAL] * a.n_trivial, "AZR seeds": seeds}

    pool = cf.ProcessPoolExecutor(max_workers=n)
    pool.submit(pool_exec, *TRIVIAL).result()   # start the pool outside the timings
    threads = cf.ThreadPoolExecutor(max_workers=n)
    print(f"machine: {os.uname().nodename}, {len(os.sched_getaffinity(0))} cores, load {os.getloadavg()[0]:.1f}; "
          f"workers {n}; Python {sys.version.split()[0]}")
    cores = min(n, len(os.sched_getaffinity(0)))  # the cores the n workers can use
    print(f"{'workload':10} {'executor':22} {'exec/s':>9} {'exec/s/core':>12} {'median ms':>10} "
          f"{'overhead ms':>12} {'ours is x faster':>17}")
    for wname, jobs in workloads.items():
        lat_jobs = jobs[:a.latency_n]
        own = statistics.median(own_time(*j) for j in lat_jobs)
        expected = {j: pool_exec(*j) for j in set(jobs)}
        results = [
            measure("ours (seccomp fork)", lambda j: sb.run(*j), sb.run_many, jobs, lat_jobs,
                    lambda r: r.value if r.status == "ok" else None, expected),
            measure("fresh subprocess", lambda j: fresh(*j), lambda js: list(threads.map(lambda j: fresh(*j), js)),
                    jobs[:max(50, len(jobs) // 10)], lat_jobs[:50], lambda out: out.decode().strip() or None,
                    expected),
            measure("process pool + exec", lambda j: pool.submit(pool_exec, *j).result(),
                    lambda js: list(pool.map(pool_exec, *zip(*js), chunksize=1)), jobs, lat_jobs, lambda v: v,
                    expected),
        ]
        ours = results[0][1]
        for name, tput, lat in results:
            print(f"{wname:10} {name:22} {tput:9.0f} {tput / cores:12.0f} {lat * 1e3:10.2f} {(lat - own) * 1e3:12.2f} "
                  f"{ours / tput:17.2f}")
    sb.close()
    pool.shutdown()


if __name__ == "__main__":
    main()
