"""8-bit AdamW under FSDP saves one optimizer file per rank (its dim-0 shards, quantised per block of 256 values).
A checkpoint from 2 processes resumes on 3 (FSDP) and on 1 (no FSDP): the resumed run steps, and the optimizer state
it loaded equals the saved one, row for row, within the 8-bit requantisation error. Same-size resumes stay exact."""
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import azr

REPO = Path(__file__).resolve().parents[1]
WRAPPED = "__bnb_optimizer_quant_state__"  # bnb's state_dict nests state1/state2/absmax/qmap under this key

# azr.py with load_training_state wrapped: every rank dumps its optimizer state_dict right after loading
WORKER = r'''
import os, sys, torch
sys.path.insert(0, sys.argv[1])
import azr
load = azr.load_training_state
def load_and_dump(ckpt, optimizer, *args):
    out = load(ckpt, optimizer, *args)
    torch.save(optimizer.state_dict(), os.path.join(sys.argv[2], f"loaded_rank{os.environ.get('RANK', '0')}.pt"))
    return out
azr.load_training_state = load_and_dump
azr.entry(sys.argv[3:])
'''


def launch(nproc, script, args, env):
    cmd = [sys.executable, str(script), *args] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), str(script),
         *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]


def fp32(entry, i):
    """state{i} of one bnb state_dict entry as fp32, decoded by hand: qmap[code] * absmax of its block of 256."""
    q = {**entry, **entry.get(WRAPPED, {})}
    x = q[f"state{i}"]
    if x.dtype != torch.uint8:
        return x
    scale = q[f"absmax{i}"].repeat_interleave(256)[:x.numel()]
    return (q[f"qmap{i}"][x.long().flatten()] * scale).view(x.shape)


def full_state(files):
    """{parameter index: (exp_avg, exp_avg_sq)} of whole parameters: the ranks' dim-0 shards concatenated in order."""
    sds = [torch.load(f, weights_only=True) for f in files]
    return {j: tuple(torch.cat([fp32(sd["state"][j], i) for sd in sds]) for i in (1, 2)) for j in sds[0]["state"]}


def requantised(got, want):
    """got == want up to one 8-bit requantisation, element by element: bnb rounds x / absmax to the nearest value of
    its dynamic map, at most 0.00703 away (half the signed map's widest step; also -1 to its lowest value, -0.99297),
    and a block's absmax is at most the tensor's. Zeros stay zeros (0 is in both maps)."""
    return got.shape == want.shape and bool(((got - want).abs() <= 0.0071 * want.abs().max()).all()) \
        and bool((got[want == 0] == 0).all())


@pytest.fixture(autouse=True)
def restore_rng():  # load_training_state restores the checkpoint's RNG states in this process
    state = random.getstate()
    with torch.random.fork_rng():
        yield
    random.setstate(state)


def test_fsdp_adamw8bit_checkpoint_resumes_on_another_number_of_processes(tiny_ckpt, tmp_path):
    env = {**os.environ, "NANOAZR_KERNELS": "torch", "OMP_NUM_THREADS": "1"}
    flags = [f"--model={tiny_ckpt}", "--batch_size=4", "--max_response_tokens=12", "--seed_rounds=0",
             "--sandbox_workers=1", "--optim=adamw8bit"]
    launch(2, REPO / "azr.py", flags + ["--steps=1", f"--out={tmp_path / 'a'}", "--fsdp=on"], env)
    ckpt = tmp_path / "a" / "ckpt" / "step_000001"
    files = [ckpt / "optim_rank0.pt", ckpt / "optim_rank1.pt"]
    saved, saved_reversed = full_state(files), full_state(files[::-1])
    groups = torch.load(files[0], weights_only=True)["param_groups"]

    # same number of processes: rank 0's file loads as it is (no requantisation)
    rank0 = torch.load(files[0], weights_only=True)
    opt = azr.make_optimizer([torch.nn.Parameter(torch.zeros_like(fp32(e, 1))) for e in rank0["state"].values()],
                             azr.parse_config(["--optim=adamw8bit"]))
    azr.load_training_state(ckpt, opt, True, None, 0, 2, "adamw8bit")
    exact = opt.state_dict()["state"]
    assert all(torch.equal(exact[j][WRAPPED][k], e[WRAPPED][k]) for j, e in rank0["state"].items() for k in e[WRAPPED])

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    for world, fsdp in ((3, "on"), (1, "off")):
        out, dumps = tmp_path / f"resume{world}", tmp_path / f"dumps{world}"
        shutil.copytree(tmp_path / "a", out)
        dumps.mkdir()
        launch(world, script, [str(REPO), str(dumps)] + flags + ["--steps=2", f"--out={out}", "--resume",
                                                                 f"--fsdp={fsdp}"], env)
        assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
        loaded = [dumps / f"loaded_rank{r}.pt" for r in range(world)]
        got = full_state(loaded)
        assert got.keys() == saved.keys()
        for j in saved:
            for g, want, wrong in zip(got[j], saved[j], saved_reversed[j]):
                assert requantised(g, want), (world, j)
                assert not requantised(g, wrong), (world, j)  # rows from the wrong ranks would fail the check
        for sd in map(lambda f: torch.load(f, weights_only=True), loaded):
            assert sd["param_groups"] == groups  # lr, betas, eps, weight decay as saved
            for e in sd["state"].values():
                q = {**e, **e[WRAPPED]}
                assert e["step"] == 1  # bnb's rule: 8-bit state for tensors of >= 4096 values, fp32 below
                assert (q["state1"].dtype == torch.uint8) == (q["state1"].numel() >= 4096)


def test_reshard_skips_never_stepped_parameters_and_refuses_another_model(tmp_path, capsys):
    """reshard_adamw8bit in-process, 2 saved ranks -> 1: a parameter that never had a gradient has no saved state and
    gets none (bnb creates it at its next step); state whose rows do not fit this rank's parameter (another
    model's checkpoint) is one line, not a shape error."""
    cfg = azr.parse_config(["--optim=adamw8bit"])
    shapes = [(128, 64), (8,), (4,)]  # 8-bit state (>= 4096 values per shard), fp32 state, never stepped
    torch.manual_seed(0)
    full = [torch.randn(s) for s in shapes]
    for rank in range(2):
        shard = [torch.nn.Parameter(x.chunk(2)[rank].clone()) for x in full]
        opt = azr.make_optimizer(shard, cfg)
        (shard[0].sum() + shard[1].square().sum()).backward()  # shard[2] gets no gradient
        opt.step()
        torch.save(opt.state_dict(), tmp_path / f"optim_rank{rank}.pt")
    saved = full_state([tmp_path / "optim_rank0.pt", tmp_path / "optim_rank1.pt"])
    assert sorted(saved) == [0, 1]
    opt = azr.make_optimizer([torch.nn.Parameter(torch.zeros(s)) for s in shapes], cfg)
    azr.reshard_adamw8bit(tmp_path, 2, opt, 0, 1)
    state = opt.state_dict()["state"]
    assert sorted(state) == [0, 1]
    for j in (0, 1):
        for i in (1, 2):
            assert requantised(fp32(state[j], i), saved[j][i - 1]), (j, i)
    other = azr.make_optimizer([torch.nn.Parameter(torch.zeros(s)) for s in [(96, 64), (8,), (4,)]], cfg)
    with pytest.raises(SystemExit):
        azr.reshard_adamw8bit(tmp_path, 2, other, 0, 1)
    err = capsys.readouterr().err
    assert "optimizer state of parameter 0 has (128, 64) in all, rows 0.. of it do not fit this rank's (96, 64)" in err
