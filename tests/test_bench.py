"""The bench/ scripts run on the CPU at their smallest settings, and their self-checks pass there and fail on a wrong
result (a benchmark must never time a broken path as a fast one). Speed is never asserted."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def run(script, *args, env=None):
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def load(script):
    spec = importlib.util.spec_from_file_location(f"bench_{script[:-3]}", REPO / "bench" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generate_and_decode_step_run():
    out = run("generate.py", "--shapes", "tiny", "--batches", "2", "--new-tokens", "4", "--threads", "1", "--profile")
    # --profile: the call's time by the engine's named ranges: 4 new tokens are 1 from a prefill and 3 decode steps,
    # each followed by a sampling call (two prompts of different lengths may make two prefill groups)
    table = out[out.index("| engine range |"):]
    ranges = {line.split("|")[1].strip(): int(line.split("|")[2]) for line in table.splitlines()[2:]
              if line.startswith("| ")}
    assert set(ranges) == {"prefill", "decode step", "sample + wait for the GPU"} and ranges["decode step"] == 3, out
    assert ranges["sample + wait for the GPU"] == ranges["prefill"] + 3, out
    assert "| tiny | 2 |" in out and "2/2 |" in out
    out = run("decode_step.py", "--shape", "tiny", "--batch", "2", "--context", "8", "--steps", "1",
              "--attention-knobs", "128,8,2,1")
    assert "eager step" in out and "check: eager step's logits" in out and "attention=128,8,2,1" in out
    for bad in ("100,4,3,4", "64,4,3", "64,4,0,4", "x", "64,3,3,4"):
        proc = subprocess.run([sys.executable, str(REPO / "bench" / "decode_step.py"), "--attention-knobs", bad],
                              capture_output=True, text=True, timeout=120, cwd=REPO)
        assert proc.returncode == 2 and "--attention-knobs" in proc.stderr.splitlines()[-1], bad


def test_kernels_bench_runs_and_its_checks_catch_wrong_results():
    out = run("kernels.py", "--tokens", "16", "--dim", "16", "--vocab", "1000", "--profile",
              env={"NANOAZR_KERNELS": "torch"})
    assert "| sample T=1 | B=8 |" in out and "| logprobs+entropy fwd+bwd |" in out
    assert "profile of sample top-k 50 + top-p 0.9, LLM-like rows, B=8" in out
    assert "| sample top-p 0.9, Gaussian rows (radix) | B=8 |" in out and "profiled CPU ops per sampler call" in out
    bench = load("kernels.py")
    logits = torch.randn(4, 50)
    ids = torch.tensor([0, 1, 2, 3])
    right = torch.log_softmax(logits.double(), -1)[torch.arange(4), ids].float()
    bench.check_sample(logits, ids, right)
    with pytest.raises(AssertionError):
        bench.check_sample(logits, ids, right - 0.5)                     # logprobs of another distribution
    with pytest.raises(AssertionError):
        bench.check_sample(logits, torch.tensor([0, 1, 2, 50]), right)    # an id out of range
    top = logits.topk(2, -1).indices[:, 0]
    bench.check_sample(logits, top, torch.zeros(4), top_k=2)             # renormalised: higher, never lower
    with pytest.raises(AssertionError):
        bench.check_sample(logits, logits.topk(5, -1).indices[:, -1], torch.zeros(4), top_k=2)  # outside the top-k


def test_sandbox_bench_runs(data_dir):
    out = run("sandbox.py", "--n-trivial", "20", "--n-seeds", "10", "--latency-n", "5", "--workers", "1",
              "--data", str(data_dir))
    assert "ours (seccomp fork)" in out and "process pool + exec" in out


def test_step_bench_runs(data_dir):
    out = run("step.py", "--steps", "1", "--scripted", "--", "--batch_size=2", "--learnability_samples=1")
    tables = out.split("\ntiny preset, CPU")[1:]
    assert len(tables) == 2 and all("update" in t and "step " in t for t in tables)
    scripted = tables[1].split("sandbox executions/s")[1].split()[0]
    assert float(scripted) > 0  # scripted proposals are seed programs: the sandbox phases ran


def test_kernels_bench_checks_reject_positive_or_lowered_logprobs_and_wrong_gradients(monkeypatch):
    """check_sample rejects a logprob above 0, a filtered one below the unfiltered, the token just past the top-k;
    check_logprobs rejects values off by 5% and gradients off by 2x (the values right)."""
    import types
    bench = load("kernels.py")
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    top = logits.topk(2, -1).indices[:, 0]
    full = torch.log_softmax(logits.double(), -1)[torch.arange(4), top].float()
    bench.check_sample(logits, top, full, top_p=0.5)
    with pytest.raises(AssertionError):
        bench.check_sample(logits, top, torch.full((4,), 0.5), top_k=2)             # log p > 0
    with pytest.raises(AssertionError):
        bench.check_sample(logits, top, full - 0.5, top_p=0.5)                       # below the unfiltered logprob
    with pytest.raises(AssertionError):
        bench.check_sample(logits, logits.topk(3, -1).indices[:, -1], torch.zeros(4), top_k=2)  # the 3rd of top-2
    g = torch.Generator().manual_seed(1)
    h, w = torch.randn(6, 8, generator=g, requires_grad=True), torch.randn(40, 8, generator=g, requires_grad=True)
    t = torch.randint(0, 40, (6,), generator=g)
    bench.check_logprobs(h, w, t)
    real = bench.kernels.token_logprobs
    for wrong in (lambda lp: lp * 1.05, lambda lp: lp + (lp - lp.detach())):
        fake = types.SimpleNamespace(token_logprobs=lambda *a, wrong=wrong, **k: (wrong(real(*a, **k)[0]),
                                                                                  real(*a, **k)[1]))
        monkeypatch.setattr(bench, "kernels", fake)
        with pytest.raises(AssertionError):
            bench.check_logprobs(h, w, t)


def test_generate_bench_warms_up_on_cuda_with_the_timed_new_tokens(monkeypatch):
    """On CUDA the cache length (prompt + new tokens) picks the decode-attention kernel's variant (split or not, the
    block size's divisibility by 16), so the warm-up must generate as many new tokens as the timed call, or Triton
    compiles inside the timed run. Pure Python: the engine and the device are stubbed out."""
    bench = load("generate.py")
    calls = []

    def fake_generate(model, prompts, max_new_tokens, **kwargs):
        calls.append(max_new_tokens)
        return [[1] * max_new_tokens for _ in prompts]
    monkeypatch.setattr(bench, "generate", fake_generate)
    monkeypatch.setattr(bench, "build", lambda shape, device, dtype, with_hf=True: (object(), None))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    for device, want in (("cuda", [256, 256]), ("cpu", [4, 256])):
        calls.clear()
        monkeypatch.setattr(sys, "argv", ["generate.py", "--device", device, "--shapes", "tiny", "--batches", "2",
                                          "--new-tokens", "256", "--skip-hf"])
        bench.main()
        assert calls == want, (device, calls)


def test_attention_sweep_checks_every_launch_and_marks_the_default(capsys, monkeypatch):
    """The sweep the next GPU session runs (--attention-sweep), on the CPU under the interpreter at tiny shapes: every
    knob combination runs, is checked against the reference and printed once; the default launch is marked. Without a
    GPU the flag is a one-line error."""
    bench = load("kernels.py")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("the Triton kernel runs on the CPU only under TRITON_INTERPRET=1")
    bench.attention_sweep("cpu", shapes=((2, 64, 64), (2, 48, 16)), dtype=torch.float32, timer=lambda fn: 1.0)
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + 32 and sum("(default)" in r for r in rows) == 1
    assert "| 64 | 4 | 3 | 4 (default) |" in "\n".join(rows)
    assert sum(line.startswith("# ") for line in out.splitlines()) == 32   # each launch printed as it is measured
    # a launch that differs from the reference is reported, the rest still measured, and the sweep exits nonzero
    from kernels import attention as ka
    real = ka.decode_attention_triton
    monkeypatch.setattr(ka, "decode_attention_triton",
                        lambda *a, **kw: real(*a, **kw) * (2 if kw["block_t"] == 128 and kw["num_warps"] == 8 else 1))
    with pytest.raises(SystemExit, match="differ from the torch reference"):
        bench.attention_sweep("cpu", shapes=((2, 64, 64),), dtype=torch.float32, timer=lambda fn: 1.0)
    out = capsys.readouterr().out
    assert out.count("WRONG: ") == 8 and len([line for line in out.splitlines() if line.startswith("| ")]) == 2 + 32
    if not torch.cuda.is_available():
        proc = subprocess.run([sys.executable, str(REPO / "bench" / "kernels.py"), "--attention-sweep"],
                              capture_output=True, text=True, timeout=120, cwd=REPO)
        assert proc.returncode == 2 and "needs a CUDA GPU" in proc.stderr


def test_sass_bench_finds_each_sampling_loop():
    """bench/sass.py compiles the sampling kernels and decode attention for sm_90 and reads one loop per kernel from the
    SASS: every row has a finite instruction count (a kernel whose loop it could not find prints nan): decode attention,
    and six sampling rows (the partial pass plain and its first step with statistics, the marking pass, select, two
    radix passes) for both dtypes."""
    triton = pytest.importorskip("triton")
    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists():
        pytest.skip("triton wheel without ptxas")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "sass.py")], capture_output=True, text=True,
                          timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    rows = [[c.strip() for c in r] for r in rows[1:]]                           # less the header
    assert len(rows) == 13 and rows[0][0].startswith("decode attention"), proc.stdout
    assert [r[0].rsplit(", ", 1)[1] for r in rows[1:]] == ["bf16"] * 6 + ["fp32"] * 6, proc.stdout
    for name, regs, spilled, per_logit, *_ in rows:
        assert float(per_logit) > 0 and int(regs) > 0 and int(spilled) >= 0, (name, proc.stdout)
