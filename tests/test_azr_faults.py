"""Failures under torchrun (2 gloo processes on CPU): bad input gives one line, a crash on one rank stops every rank
at once with that rank's error only, a full disk leaves the previous checkpoint intact and no partial folder, and
a checkpoint saved without FSDP resumes with --fsdp=on, and that one in one process without FSDP."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "NANOAZR_KERNELS": "torch", "OMP_NUM_THREADS": "1"}
FLAGS = ["--batch_size=4", "--max_response_tokens=12", "--seed_rounds=0", "--sandbox_workers=1"]

# azr.py with one fault: FAULT=rollout raises on rank FAULT_RANK at step 2; FAULT=enospc makes the optimizer write of
# the step-2 checkpoint fail with a full disk on that rank
WORKER = r'''
import errno, os, sys
sys.path.insert(0, sys.argv[1])
import azr
rank, fault, at = int(os.environ.get("RANK", 0)), os.environ["FAULT"], int(os.environ["FAULT_RANK"])
step = [0]
build = azr.build_batches
def build_batches(buffers, tasks, cfg, s, *args):
    step[0] = s
    return build(buffers, tasks, cfg, s, *args)
azr.build_batches = build_batches
rollout, save_torch = azr.rollout, azr.save_torch
def failing_rollout(*args, **kwargs):
    if fault == "rollout" and rank == at and step[0] == 2:
        raise RuntimeError("injected rollout failure")
    return rollout(*args, **kwargs)
def failing_save(obj, path):
    if fault == "enospc" and rank == at and step[0] == 2:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    return save_torch(obj, path)
azr.rollout, azr.save_torch = failing_rollout, failing_save
azr.entry(sys.argv[2:])
'''


def torchrun(script, args, env=ENV, timeout=180):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), *args]
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    return proc, time.time() - t0


def azr_lines(stderr):
    """azr.py's own error lines (torchrun's failure summary repeats one after 'traceback :')."""
    return [line for line in stderr.splitlines() if line.startswith("azr.py: error:")]


def test_bad_input_under_torchrun_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    for args, words in [(["--steps=abc"], "--steps='abc' is not a valid int"),
                        ([f"--out={tmp_path / 'file'}"], "is a file, not a folder"),
                        (["--resume", f"--out={tmp_path / 'none'}"], "--resume but"),
                        (["--seed-data=/nope/x_seed_io.jsonl", f"--out={tmp_path / 'o'}"], "not found")]:
        proc, seconds = torchrun(REPO / "azr.py", args)
        assert proc.returncode != 0 and seconds < 60
        lines = azr_lines(proc.stderr)
        assert len(lines) == 1 and words in lines[0], proc.stderr[-3000:]  # not one copy per rank
        assert f"traceback : {lines[0]}" in proc.stderr  # torchrun's summary names the cause


def run_with_fault(tiny_ckpt, tmp_path, fault, rank):
    """3 steps with a checkpoint after each, under torchrun, with `fault` injected on `rank` at step 2."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "run"
    args = [str(REPO), f"--model={tiny_ckpt}", *FLAGS, "--steps=3", "--save_every=1", f"--out={out}"]
    proc, seconds = torchrun(script, args, env={**ENV, "FAULT": fault, "FAULT_RANK": str(rank)})
    return proc, seconds, out, args


def test_one_rank_crashing_stops_all_with_its_error_only(tiny_ckpt, tmp_path):
    proc, seconds, out, args = run_with_fault(tiny_ckpt, tmp_path, "rollout", 1)
    assert proc.returncode != 0 and seconds < 120  # not the 2-hour process-group timeout
    assert "injected rollout failure" in proc.stderr
    assert "Connection closed by peer" not in proc.stderr, proc.stderr[-3000:]  # no second traceback from rank 0
    assert (out / "ckpt" / "latest").read_text().strip() == "step_000001"
    proc, _ = torchrun(REPO / "azr.py", args[1:] + ["--resume"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [json.loads(r)["step"] for r in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_full_disk_on_rank0_during_checkpoint(tiny_ckpt, tmp_path):
    proc, seconds, out, args = run_with_fault(tiny_ckpt, tmp_path, "enospc", 0)
    assert proc.returncode != 0 and seconds < 120
    lines = azr_lines(proc.stderr)
    assert len(lines) == 1 and "disk full" in lines[0] and "--resume" in lines[0], proc.stderr[-3000:]
    assert "Connection closed by peer" not in proc.stderr
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["latest", "step_000001"]  # no partial .tmp_step
    proc, _ = torchrun(REPO / "azr.py", args[1:] + ["--resume"])
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_checkpoint_without_fsdp_resumes_with_fsdp(tiny_ckpt, tmp_path):
    """README: checkpoints hold full weights and AdamW state, so a run resumes on any number of processes, with or
    without FSDP: 2 processes without FSDP -> 2 with -> 1 without. FSDP saves AdamW's state keyed by parameter
    names, and the plain optimizer loads it by position (its parameters come in the same order)."""
    out = tmp_path / "run"
    args = [f"--model={tiny_ckpt}", *FLAGS, f"--out={out}"]
    proc, _ = torchrun(REPO / "azr.py", args + ["--steps=1", "--fsdp=off"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc, _ = torchrun(REPO / "azr.py", args + ["--steps=2", "--fsdp=on", "--resume"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(out / "ckpt" / "step_000002" / "optim.pt", weights_only=True)["state"]
    assert {int(s["step"]) for s in state.values()} == {2}  # AdamW's moments were loaded, not started afresh
    assert all(isinstance(k, str) for k in state)  # FSDP's full optimizer state: keyed by names
    proc = subprocess.run([sys.executable, str(REPO / "azr.py"), *args, "--steps=3", "--fsdp=off", "--resume"],
                          env=ENV, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = torch.load(out / "ckpt" / "step_000003" / "optim.pt", weights_only=True)["state"]
    assert {int(s["step"]) for s in after.values()} == {3} and len(after) == len(state)
