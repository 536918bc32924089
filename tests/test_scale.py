"""Hazards that only show at the real scale (Qwen2.5-7B on 8 ranks), tested through their mechanism at a small shape.

Resume under FSDP: every rank reads the whole optim.pt (set_optimizer_state_dict wants the full state on each rank).
At 7B that file is 61 GB (fp32 exp_avg + exp_avg_sq), so 8 ranks each holding a private copy need 488 GB of host RAM;
mapped, they share the page cache. Here a wide-vocabulary model's ~130 MB optim.pt, 2 gloo processes."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

RESUME_WORKER = r'''
import gc, os, sys, torch, torch.distributed as dist
sys.path.insert(0, sys.argv[1])
import azr
def anon_mb():  # private (anonymous) resident memory of this process: what a mapped file's pages do not count in
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon")) / 1024
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
cfg = azr.parse_config(["--fsdp=on", "--micro_batch=2", "--lr=1e-3"])
qwen, _, sharded = azr.setup_policy(sys.argv[2], cfg, torch.device("cpu"), torch.float32, world)
opt = azr.make_optimizer(list(qwen.parameters()), cfg)
seqs = [{"prompt_ids": [5, 6], "response_ids": [7, 8], "advantage": 1.0, "weight": 0.5}]
azr.update(qwen, opt, seqs if rank == 0 else [], cfg, rank, world, None, None, sharded)
azr.save_checkpoint(sys.argv[3], 1, qwen, opt, None, True, azr.zero_buffers(), cfg, sys.argv[2], rank)
ckpt = azr.latest_checkpoint(sys.argv[3])
saved = {k: v.clone() for k, v in opt.state_dict()["state"][0].items()}  # this rank's shard of one parameter
gc.collect()
load, growth = azr.load_optim_file, []
def spy(*args, **kwargs):
    before = anon_mb()
    sd = load(*args, **kwargs)
    growth.append(anon_mb() - before)
    return sd
azr.load_optim_file = spy
for v in opt.state.values():  # forget the state, so the loaded values are what the check below sees
    v["exp_avg"].zero_()
azr.load_training_state(ckpt, opt, sharded, qwen, rank, world, "adamw")
got = opt.state_dict()["state"][0]
assert all(torch.equal(got[k].to_local() if hasattr(got[k], "to_local") else got[k],
                       saved[k].to_local() if hasattr(saved[k], "to_local") else saved[k]) for k in saved)
# one write per line: the two ranks share the pipe, and print's separate write of "\n" let their lines interleave
size_mb = (ckpt / 'optim.pt').stat().st_size / 2**20
os.write(1, f"rank {rank} optim_mb {size_mb:.0f} growth_mb {growth[0]:.0f}\n".encode())
dist.barrier()
del qwen, opt
gc.collect()
dist.destroy_process_group()
'''


def test_fsdp_resume_maps_the_full_optimizer_file_instead_of_copying_it_on_every_rank(tmp_path):
    from tiny import make_tiny_checkpoint
    model = make_tiny_checkpoint(tmp_path / "wide", vocab_size=65536, hidden_size=128, intermediate_size=256,
                                 num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                                 tie_word_embeddings=False)  # 17M params: optim.pt ~130 MB
    script = tmp_path / "worker.py"
    script.write_text(RESUME_WORKER)
    env = {**os.environ, "NANOAZR_KERNELS": "torch", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(REPO), model, str(tmp_path / "out")], env=env, capture_output=True,
                          text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("rank ")]
    assert len(rows) == 2
    for _, rank, _, size, _, growth in rows:
        # a private copy grows each rank by the whole file; mapped, by (almost) nothing
        assert float(growth) < 0.25 * float(size), f"rank {rank}: +{growth} MB private memory for a {size} MB file"


# In-loop CRUXEval under FSDP: every rank holds the gathered model, and each used to decode all 1,600 prompts (up to
# 8,096 greedy tokens each) every --eval_every steps. Split, each decodes 1/world and the counts are summed.
EVAL_WORKER = r'''
import json, sys, torch.distributed as dist
sys.path.insert(0, sys.argv[1])
import eval.generation
from eval import cruxeval, data
from sandbox import Sandbox
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
data_dir, limit, prompts = sys.argv[2], int(sys.argv[3]), []
def fake_complete(model, tokenizer, texts, max_new_tokens, **kwargs):  # gold answers for the odd problems
    prompts.append(len(texts))
    return [gold_or_not(t) for t in texts]
known = {cruxeval.cruxeval_prompt(b, it): (b, it) for b in ("cruxeval-i", "cruxeval-o")
         for it in data.load_benchmark(b, data_dir, limit)}
def gold_or_not(text):
    b, it = known[text]
    return cruxeval.gold_completion(b, it) if int(it["id"].split("_")[-1]) % 2 else "no answer"
eval.generation.complete = fake_complete
with Sandbox(workers=1) as sandbox:
    acc = cruxeval.evaluate_cruxeval(None, None, sandbox, data_dir, limit=limit, rank=rank, world=world)
# one write of one line (< PIPE_BUF, so atomic): print's separate writes of the parts interleaved with the other rank's
sys.stdout.write("RESULT " + json.dumps({"rank": rank, "prompts": prompts, "acc": acc}) + "\n")
sys.stdout.flush()
dist.barrier()
dist.destroy_process_group()
'''


def test_in_loop_cruxeval_splits_the_problems_over_ranks(tmp_path, data_dir, monkeypatch):
    import json

    import eval.generation
    from eval import cruxeval, data
    from sandbox import Sandbox
    limit = 7  # 4 problems on rank 0, 3 on rank 1

    known = {cruxeval.cruxeval_prompt(b, it): (b, it) for b in ("cruxeval-i", "cruxeval-o")
             for it in data.load_benchmark(b, data_dir, limit)}

    def fake_complete(model, tokenizer, texts, max_new_tokens, **kwargs):  # the worker's rule, in one process
        return [cruxeval.gold_completion(*known[t]) if int(known[t][1]["id"].split("_")[-1]) % 2 else "no answer"
                for t in texts]
    monkeypatch.setattr(eval.generation, "complete", fake_complete)
    with Sandbox(workers=1) as sandbox:
        want = cruxeval.evaluate_cruxeval(None, None, sandbox, data_dir, limit=limit)
    assert 0 < want["cruxeval-i"] < 1 and 0 < want["cruxeval-o"] < 1
    script = tmp_path / "worker.py"
    script.write_text(EVAL_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(REPO), str(data_dir), str(limit)], env=env, capture_output=True,
                          text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = sorted((json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines()
                  if line.startswith("RESULT")), key=lambda r: r["rank"])
    assert [r["prompts"] for r in got] == [[4, 4], [3, 3]]  # each rank decodes its share only
    assert all(r["acc"] == pytest.approx(want) for r in got)  # and every rank reports the whole benchmark's score
