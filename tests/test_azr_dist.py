"""Distributed update == single-process update: 2 gloo processes (replicated weights with summed gradients, and
FSDP2-sharded weights, also with 8-bit AdamW, activation checkpointing or bf16 compute) must produce the same
gradient (its norm, the loss) and the same weights as one process training on all sequences, and no step at all
when no rank has a sequence to train."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import azr
from tiny import make_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]

# The sequences of one hand-made batch: (prompt, response, advantage); weights are the global token-mean.
BATCH = [([5, 6, 7, 8], [10, 11, 12], 1.0), ([5, 9], [20, 21], -1.0), ([30, 31, 32], [40], 0.5),
         ([7, 7, 7, 7, 7], [50, 51, 52, 53], -0.25), ([8], [60, 61], 0.8)]

WORKER = r'''
import gc, json, sys, torch, torch.distributed as dist
sys.path.insert(0, sys.argv[3])
import azr, test_azr_dist as t
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
mode, ckpt, out = sys.argv[1], sys.argv[2], sys.argv[4]
cfg, dtype = t.config(mode), t.compute_dtype(mode)
qwen, master, sharded = azr.setup_policy(ckpt, cfg, torch.device("cpu"), dtype, world)
master = azr.optimizer_params(qwen, master, sharded, cfg)
opt = azr.make_optimizer(master or list(qwen.parameters()), cfg)
seqs = t.sequences(mode)[rank::world]
ref = azr.setup_reference(sys.argv[5], torch.device("cpu"), dtype, sharded) if cfg.kl_coef else None
stats = azr.update(qwen, opt, seqs, cfg, rank, world, master, ref, sharded)
state = get_model_state_dict(qwen, options=StateDictOptions(full_state_dict=True, cpu_offload=True)) if sharded \
    else azr.full_state(qwen, opt, master, False)[0]  # the fp32 masters when computing in bf16
if rank == 0:
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in state.items()}, out)
    open(out + ".json", "w").write(json.dumps(stats))
dist.barrier()
del qwen, master, opt, ref  # as azr.main: FSDP modules hold the group; freeing it at exit can abort (torch 2.13)
gc.collect()
dist.destroy_process_group()
'''


# fsdp_kl: the k3 KL to a sharded frozen reference. Its gradient is zero while policy == reference, so the reference
# is another random checkpoint of the same shapes. fsdp_bf16: bf16 compute on fp32 shards at the paper's lr 1e-6,
# which a bf16 weight would round away (the single process keeps fp32 masters).
MODES = ["replicated", "fsdp", "fsdp8bit", "fsdp_checkpointing", "fsdp_kl", "fsdp_bf16"]


def config(mode):
    return azr.parse_config([f"--lr={1e-6 if 'bf16' in mode else 1e-3}", "--micro_batch=2",
                             f"--fsdp={'off' if mode.startswith('replicated') else 'on'}",
                             f"--optim={'adamw8bit' if mode == 'fsdp8bit' else 'adamw'}",
                             f"--grad_checkpointing={mode == 'fsdp_checkpointing'}",
                             f"--kl_coef={1.0 if mode == 'fsdp_kl' else 0.0}"])


def compute_dtype(mode):
    return torch.bfloat16 if "bf16" in mode else torch.float32


def sequences(mode=""):
    if mode.endswith("empty"):  # every sequence excluded, e.g. --filter_groups when all groups have equal rewards
        return []
    weights = azr.token_weights([len(r) for _, r, _ in BATCH], [True] * len(BATCH), "token-mean")
    return [{"prompt_ids": p, "response_ids": r, "advantage": a, "weight": w} for (p, r, a), w in zip(BATCH, weights)]


def single_process(mode, tiny_ckpt, tmp_path):
    """One process, no FSDP, training on every sequence: (fp32 weights after the step, update stats)."""
    cfg = config(mode)
    cfg.fsdp = "off"
    qwen, master, _ = azr.setup_policy(str(tiny_ckpt), cfg, torch.device("cpu"), compute_dtype(mode), 1)
    ref_ckpt = make_tiny_checkpoint(tmp_path / "ref", seed=1)
    ref = azr.setup_reference(ref_ckpt, torch.device("cpu"), compute_dtype(mode), False) if cfg.kl_coef else None
    optimizer = azr.make_optimizer(master or list(qwen.parameters()), cfg)
    stats = azr.update(qwen, optimizer, sequences(mode), cfg, master=master, ref_model=ref)
    return azr.full_state(qwen, optimizer, master, False)[0], stats, ref_ckpt


def two_processes(mode, tiny_ckpt, tmp_path, ref_ckpt):
    """The same step under torchrun with 2 gloo processes: (full fp32 weights after the step, rank 0's stats)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "dist.safetensors"
    env = {**os.environ, "NANOAZR_KERNELS": "torch", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), mode, str(tiny_ckpt), str(Path(__file__).parent), str(out), ref_ckpt],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_file(str(out)), json.loads(Path(str(out) + ".json").read_text())


@pytest.mark.parametrize("mode", MODES)
def test_two_process_update_equals_single_process(mode, tiny_ckpt, tmp_path, monkeypatch):
    """fsdp8bit: bitsandbytes quantises its state per block of each local shard instead of the whole tensor, so it
    matches the single-process 8-bit step to ~1e-5 instead of exactly."""
    monkeypatch.setenv("NANOAZR_KERNELS", "torch")
    reference, ref_stats, ref_ckpt = single_process(mode, tiny_ckpt, tmp_path)
    got, stats = two_processes(mode, tiny_ckpt, tmp_path, ref_ckpt)
    # Adam's first step hardly depends on the gradient's scale, so the weights alone would not notice a gradient
    # averaged instead of summed over ranks: the global gradient norm (before clipping) and the loss must match too.
    # bf16: each micro-batch's gradient is rounded to bf16, and the ranks split the batch into other micro-batches.
    rel = 1e-2 if "bf16" in mode else 1e-4
    for key in ("grad_norm", "loss", "entropy", "kl"):
        assert stats[key] == pytest.approx(ref_stats[key], rel=rel, abs=1e-9), key
    assert got.keys() == reference.keys()
    start = load_file(str(Path(tiny_ckpt) / "model.safetensors"))
    lr, n_close, n_moved, n_all = config(mode).lr, 0, 0, 0
    for k in reference:
        assert got[k].dtype == torch.float32  # fp32 shards (and masters) even when computing in bf16
        assert not torch.equal(reference[k], start[k]) or "norm" in k  # the step moved the weights
        # Adam's first step is lr * g / (|g| + eps): a weight with |g| >> eps moves by ~lr whatever the summation
        # order, but one whose gradient is within a few eps (1e-8) of zero turns float noise in g into a visible
        # change. Steps that moved by >= lr/2 must match closely; the rest within Adam's bound of lr per step.
        # bf16: a gradient that is a near-cancelling sum of bf16-rounded micro-batch gradients can flip its sign
        # (a step of -lr instead of lr), which a fraction of a percent of the weights do.
        step, want = got[k] - start[k], reference[k] - start[k]
        moved = want.abs() >= 0.5 * lr
        close = torch.isclose(step[moved], want[moved], atol=(0.1 if mode == "fsdp8bit" else 0.01) * lr, rtol=1e-4)
        n_close, n_moved, n_all = n_close + int(close.sum()), n_moved + int(moved.sum()), n_all + moved.numel()
        if "bf16" not in mode:
            assert close.all(), (k, (step - want)[moved][~close])
        torch.testing.assert_close(step, want, atol=(2 if "bf16" in mode else 1) * lr, rtol=0)
    assert n_moved > 0.9 * n_all  # the close comparison covers almost every weight
    assert n_close > 0.99 * n_moved


@pytest.mark.parametrize("mode", ["replicated_empty", "fsdp_empty"])
def test_two_process_update_without_sequences_is_no_step(mode, tiny_ckpt, tmp_path, monkeypatch):
    """No rank has a sequence to train (all excluded by --filter_groups, --mask_overlong, ...): one process then has
    no gradient and AdamW skips its step, so 2 processes must leave the weights as they are too (a zero gradient
    would still apply weight decay and advance Adam's moments and step count)."""
    monkeypatch.setenv("NANOAZR_KERNELS", "torch")
    reference, _, ref_ckpt = single_process(mode, tiny_ckpt, tmp_path)
    got, stats = two_processes(mode, tiny_ckpt, tmp_path, ref_ckpt)
    start = load_file(str(Path(tiny_ckpt) / "model.safetensors"))
    assert all(torch.equal(reference[k], start[k]) for k in start)
    assert got.keys() == start.keys()
    assert [k for k in start if not torch.equal(got[k], start[k])] == []  # weight decay alone would move them
    assert stats["grad_norm"] == 0.0 and stats["loss"] == 0.0


GENERATE_WORKER = r'''
import gc, json, sys, torch, torch.distributed as dist
sys.path.insert(0, sys.argv[2])
import azr, test_azr_dist as t
from model import generate
dist.init_process_group("gloo")
cfg = t.config("fsdp")
qwen, _, sharded = azr.setup_policy(sys.argv[1], cfg, torch.device("cpu"), torch.float32, dist.get_world_size())
prompts = [[5, 6, 7, 8, 9], [11, 12], [13, 14, 15]]
try:  # the static step runs without FSDP's hooks: sharded weights are refused with one line
    generate(qwen, prompts, 6, temperature=0, cuda_graphs=True)
    refused = ""
except ValueError as e:
    refused = str(e)
azr.with_gathered_weights(qwen, sharded, True)
out = {"refused": refused, "eager": generate(qwen, prompts, 6, temperature=0),
       "static": generate(qwen, prompts, 6, temperature=0, cuda_graphs=True)}
azr.with_gathered_weights(qwen, sharded, False)
if dist.get_rank() == 0:
    open(sys.argv[3], "w").write(json.dumps(out))
del qwen  # as azr.main: FSDP modules hold the group; freeing it at exit can abort (torch 2.13)
gc.collect()
dist.destroy_process_group()
'''


def test_fsdp_generation_static_decode_step(tiny_ckpt, tmp_path):
    """Generation from FSDP2-gathered weights, eager and with the static (CUDA-graph) decode step, which runs the FSDP
    modules without their hooks: both equal the unsharded model's greedy completions."""
    from model import Qwen2, generate
    prompts = [[5, 6, 7, 8, 9], [11, 12], [13, 14, 15]]
    reference = generate(Qwen2.from_pretrained(str(tiny_ckpt)), prompts, 6, temperature=0)
    script, out = tmp_path / "generate_worker.py", tmp_path / "out.json"
    script.write_text(GENERATE_WORKER)
    env = {**os.environ, "NANOAZR_KERNELS": "torch", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(tiny_ckpt), str(Path(__file__).parent), str(out)],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert "needs its weights gathered first" in got["refused"]
    assert got["eager"] == reference and got["static"] == reference


MESH_WORKER = r'''
import sys, torch, torch.distributed as dist
sys.path.insert(0, sys.argv[2])
import azr
dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
torch._C._get_accelerator = lambda: torch.device("cuda")  # what fully_shard's default mesh asks: a GPU box
cfg = azr.parse_config(["--fsdp=on"])
qwen, _, sharded = azr.setup_policy(sys.argv[1], cfg, torch.device("cpu"), torch.float32, 1)
ref = azr.setup_reference(sys.argv[1], torch.device("cpu"), torch.float32, sharded)
meshes = {m.model.layers[0]._get_fsdp_state()._fsdp_param_group.mesh_info.mesh.device_type for m in (qwen, ref)}
print("meshes", sorted(meshes))
del qwen, ref
dist.destroy_process_group()
'''


def test_fsdp_mesh_follows_device_not_the_machines_gpu(tiny_ckpt, tmp_path):
    """--device=cpu --fsdp=on on a machine with a GPU: FSDP must shard over a CPU mesh. fully_shard's default mesh
    follows the machine's accelerator, and rank 1 of 2 CPU processes on a one-GPU box died in set_device(1) (seen on
    an H200). Here the accelerator query answers cuda on this CPU machine."""
    script = tmp_path / "mesh.py"
    script.write_text(MESH_WORKER)
    env = {**os.environ, "NANOAZR_KERNELS": "torch", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(tiny_ckpt), str(REPO)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "meshes ['cpu']" in proc.stdout
