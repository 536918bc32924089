"""End-to-end tests of azr.py on CPU: full steps through the real sandbox and the real update.

- a scripted policy (rollouts replaced by known answers, everything else real) checks the numbers: validity,
  learnability rewards, solver accuracy, buffer growth, dumps, HF-loadable checkpoints, and exact resume;
- the tiny preset with real sampling runs, and resumes to the same weights and buffers;
- bad input gets one line; `torchrun --nproc_per_node 2` runs a step with gloo, and with a scripted policy trains
  as one process does.
NANOAZR_KERNELS=torch keeps the Triton interpreter out of these slow paths (the kernels have their own tests).
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import azr

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def torch_kernels(monkeypatch):
    monkeypatch.setenv("NANOAZR_KERNELS", "torch")


# ----------------------------------------------------------------------------- scripted policy

PROPOSAL = "I will double a number. </think> <answer>\n```python\ndef f(x):\n    return x * 2\n```\n```input\n3\n```\n</answer>"
INDUCTION = ("Ten inputs. </think> <answer>\n" + "".join(f"```input\n{i}\n```\n" for i in range(1, 11))
             + "```message\nfind the rule\n```\n</answer>")


def scripted_answer(prompt, i):
    """A response for prompt text `prompt` at position i of the rollout list: correct when i is even."""
    right = i % 2 == 0
    if "## Task: Write a New Python Code Snippet" in prompt:
        return PROPOSAL
    if "## Task: Give 10 Inputs" in prompt:
        return INDUCTION
    doubled = "return x * 2" in prompt
    if "# Task: Deduce the Output" in prompt:
        value = ("6" if right else "7") if doubled else ('"Hello world"' if right else '"nope"')
        return f"ok </think> <answer>\n```output\n{value}\n```\n</answer>"
    if "# Task: Provide One Possible Input" in prompt:
        value = ("3" if right else "4") if doubled else ('"Hello world"' if right else "12345")
        return f"ok </think> <answer>\n```input\n{value}\n```\n</answer>"
    if "# Task: Deduce the Function" in prompt:
        doubled = "```output_0\n2\n```" in prompt
        body = ("x * 2" if doubled else "x") if right else "x + 100"
        return f"ok </think> <answer>\n```python\ndef f(x):\n    return {body}\n```\n</answer>"
    raise AssertionError(f"unexpected prompt: {prompt[:200]}")


def scripted_rollout(tokenizer):
    def rollout(qwen, prompt_ids, cfg, eos_id, seed, progress=False):
        texts = [scripted_answer(tokenizer.decode(p), i) for i, p in enumerate(prompt_ids)]
        return [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    return rollout


def hashed_rollout(tokenizer):
    """A scripted policy whose response depends on its prompt alone, not on its position in the call (which depends
    on how the ranks split the batch): a third of the proposer prompts get an unparseable answer (-1), a solver is
    right iff its prompt's hash is even, and the thinking is padded by 0-6 words, so lengths (token weights) vary."""
    def rollout(qwen, prompt_ids, cfg, eos_id, seed, progress=False):
        out = []
        for p in prompt_ids:
            text = tokenizer.decode(p)
            h = int(hashlib.sha256(text.encode()).hexdigest(), 16)
            if ("## Task: Write a New" in text or "## Task: Give 10" in text) and h % 3 == 0:
                answer = "no idea </think> <answer>nothing</answer>"
            else:
                answer = scripted_answer(text, h % 2)
            out.append(tokenizer.encode(answer.replace(" </think>", " so" * (h % 7) + " </think>", 1),
                                        add_special_tokens=False))
        return out
    return rollout


def read_metrics(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def test_scripted_selfplay_rewards_buffers_checkpoint_and_resume(tiny_ckpt, tmp_path, monkeypatch):
    from model import Qwen2, load_tokenizer
    monkeypatch.setattr(azr, "rollout", scripted_rollout(load_tokenizer(str(tiny_ckpt))))
    flags = [f"--model={tiny_ckpt}", "--batch_size=2", "--learnability_samples=2", "--seed_rounds=1",
             "--seed_buffer_size=4", "--save_every=1", "--lr=1e-3", "--max_response_tokens=512", "--num_references=1"]
    azr.main(flags + ["--steps=2", f"--out={tmp_path / 'a'}"])
    m1, m2 = read_metrics(tmp_path / "a")
    for task in azr.TASKS:
        assert m1[f"propose/{task}/valid_rate"] == 1.0 and m1[f"propose/{task}/format_rate"] == 1.0
        # learnability: of each proposal's 2 solver rollouts the first is right, the second wrong: acc 1/2,
        # so the proposer reward is 1 - 1/2
        assert m1[f"propose/{task}/learnability_acc"] == 0.5 and m1[f"propose/{task}/reward"] == 0.5
        # solver batch: position 0 right (+1), position 1 wrong (-0.5)
        assert m2[f"solve/{task}/accuracy"] == 0.5 and m2[f"solve/{task}/reward"] == pytest.approx(0.25)
    # seeding added the doubling program twice (the abduction batch's two copies; exact-JSON dedup is against the
    # seeds from before a batch, as the official update_seed, so the deduction batch's copies are dropped); each step
    # appends 2 valid proposals per task
    assert m1["buffer/deduction/size"] == 3 + 2 and m2["buffer/deduction/size"] == 3 + 4
    assert m1["buffer/induction/size"] == 3 + 2 and m2["buffer/induction/size"] == 3 + 4  # zero + 2 seeded
    assert m1["grad_norm"] > 0 and m1["sequences_trained"] == 12
    dump = [json.loads(x) for x in (tmp_path / "a" / "dumps" / "step_000002.jsonl").read_text().splitlines()]
    assert len(dump) == 12 and {"response", "reward", "entry", "correct"} <= set().union(*dump)

    # the checkpoint is a Hugging Face folder our model (and eval/) loads directly
    ckpt = tmp_path / "a" / "ckpt" / "step_000002"
    assert (tmp_path / "a" / "ckpt" / "latest").read_text() == "step_000002"
    assert (ckpt / "tokenizer.json").is_file()
    Qwen2.from_pretrained(str(ckpt))
    start = load_file(str(Path(tiny_ckpt) / "model.safetensors"))
    final = load_file(str(ckpt / "model.safetensors"))
    assert any(not torch.equal(start[k], final[k]) for k in start)

    # 1 step, then --resume for the second: identical weights, optimizer state, buffers and metrics
    azr.main(flags + ["--steps=1", f"--out={tmp_path / 'b'}"])
    azr.main(flags + ["--steps=2", f"--out={tmp_path / 'b'}", "--resume"])
    assert_same_run(tmp_path / "a", tmp_path / "b")


def assert_same_run(a, b):
    ca, cb = a / "ckpt" / "step_000002", b / "ckpt" / "step_000002"
    wa, wb = load_file(str(ca / "model.safetensors")), load_file(str(cb / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert json.loads((ca / "buffers.json").read_text()) == json.loads((cb / "buffers.json").read_text())
    oa, ob = torch.load(ca / "optim.pt"), torch.load(cb / "optim.pt")
    assert all(torch.equal(oa["state"][k]["exp_avg_sq"], ob["state"][k]["exp_avg_sq"]) for k in oa["state"])
    ma, mb = read_metrics(a)[-1], read_metrics(b)[-1]
    # timings and the GPU memory peak depend on the process's history (allocator state), not on the run's state
    assert {k: v for k, v in ma.items() if not any(w in k for w in ("time", "_per_s", "gpu_peak"))} == \
           {k: v for k, v in mb.items() if not any(w in k for w in ("time", "_per_s", "gpu_peak"))}


@pytest.mark.parametrize("ablation, trained", [
    # group-relative advantages over 2 samples per prompt; the proposer's groups (identical valid proposals, equal
    # rewards) are filtered out, the solver's (one right, one wrong) are kept: 4 solver sequences x 2 tasks
    (["--advantage=grpo", "--group_size=2", "--filter_groups", "--mask_overlong", "--loss_agg=seq-mean",
      "--kl_coef=0.01", "--clip_high=0.28", "--num_references=0", "--tasks=deduction,abduction"], 8),
    # solver-only training with one global baseline, per-sequence whitening, 8-bit AdamW, activation checkpointing
    # (+ the in-loop greedy CRUXEval validation on 1 problem each)
    (["--train_proposer=false", "--advantage=global", "--whiten=sequence", "--optim=adamw8bit",
      "--grad_checkpointing=true", "--tasks=induction", "--eval_every=1", "--eval_limit=1", "--eval_max_tokens=4"], 4),
])
def test_ablation_flags_run(ablation, trained, tiny_ckpt, tmp_path, monkeypatch):
    from model import load_tokenizer
    monkeypatch.setattr(azr, "rollout", scripted_rollout(load_tokenizer(str(tiny_ckpt))))
    azr.main([f"--model={tiny_ckpt}", "--batch_size=4", "--seed_rounds=0", "--steps=1", "--lr=1e-3",
              "--max_response_tokens=512", f"--out={tmp_path}"] + ablation)
    (m,) = read_metrics(tmp_path)
    assert m["sequences_trained"] == trained and m["grad_norm"] > 0
    if "--kl_coef=0.01" in ablation:
        assert m["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy still equals its initial copy at step 1
    if "--train_proposer=false" in ablation:
        assert "propose/induction/learnability_acc" not in m  # no learnability rollouts without proposer training
        assert 0.0 <= m["eval/cruxeval-i"] <= 1.0 and 0.0 <= m["eval/cruxeval-o"] <= 1.0


def test_rewards_and_flags_reach_the_update(tiny_ckpt, tmp_path, monkeypatch):
    """One scripted deduction step per case: the proposer is paid 1 - learnability accuracy; a response without the
    R1 format earns -1 (and an unformatted proposal gets no learnability rollouts); --whiten, --loss_agg and
    --mask_overlong reach the update."""
    from model import load_tokenizer
    tok = load_tokenizer(str(tiny_ckpt))

    def step(name, *flags, unformatted=None):
        def rollout(qwen, prompt_ids, cfg, eos_id, seed, progress=False):
            texts = []
            for i, p in enumerate(prompt_ids):
                prompt, text = tok.decode(p), scripted_answer(tok.decode(p), i)
                if unformatted == ("propose" if "## Task:" in prompt else "solve"):
                    text = text.replace("</think>", "")
                texts.append(text)
            return [tok.encode(t, add_special_tokens=False) for t in texts]
        monkeypatch.setattr(azr, "rollout", rollout)
        azr.main([f"--model={tiny_ckpt}", "--tasks=deduction", "--batch_size=2", "--seed_rounds=0", "--steps=1",
                  "--lr=1e-3", "--max_response_tokens=512", f"--out={tmp_path / name}", *flags])
        return read_metrics(tmp_path / name)[0]

    learn = azr.learnability
    monkeypatch.setattr(azr, "learnability", lambda jobs, *a: [0.25] * len(jobs))
    m = step("acc")
    assert m["propose/deduction/learnability_acc"] == 0.25 and m["propose/deduction/reward"] == 0.75
    monkeypatch.setattr(azr, "learnability", learn)
    m = step("solver-format", unformatted="solve")
    assert m["solve/deduction/format_rate"] == 0.0 and m["solve/deduction/reward"] == -1.0
    m = step("proposer-format", unformatted="propose")
    assert m["propose/deduction/reward"] == -1.0 and "propose/deduction/learnability_acc" not in m
    assert m["sequences_trained"] == 4
    assert step("overlong", "--mask_overlong", "--max_response_tokens=8")["sequences_trained"] == 0

    seen = {}
    advantages, weights = azr.compute_advantages, azr.token_weights

    def spy_advantages(rewards, lengths, batch_ids, group_ids, estimator, token_weighted):
        seen["token_weighted"] = token_weighted
        return advantages(rewards, lengths, batch_ids, group_ids, estimator, token_weighted)

    def spy_weights(lengths, included, loss_agg):
        seen["loss_agg"] = loss_agg
        return weights(lengths, included, loss_agg)
    monkeypatch.setattr(azr, "compute_advantages", spy_advantages)
    monkeypatch.setattr(azr, "token_weights", spy_weights)
    step("flags", "--whiten=sequence", "--loss_agg=seq-mean")
    assert seen == {"token_weighted": False, "loss_agg": "seq-mean"}


# ----------------------------------------------------------------------------- the tiny preset, real sampling

def test_tiny_preset_real_sampling_resume_identity(tiny_ckpt, tmp_path, data_dir):
    """Two steps straight == one step + --resume + one step, with real generation from the tiny model."""
    flags = [f"--model={tiny_ckpt}", "--save_every=1", "--max_response_tokens=16", "--batch_size=2", "--num_references=1",
             f"--seed-data={data_dir / 'azr_seeds' / '7b_coder_seed_io.jsonl'}"]
    azr.main(flags + ["--steps=2", f"--out={tmp_path / 'a'}"])
    azr.main(flags + ["--steps=1", f"--out={tmp_path / 'b'}"])
    azr.main(flags + ["--steps=2", f"--out={tmp_path / 'b'}", "--resume"])
    assert_same_run(tmp_path / "a", tmp_path / "b")
    m = read_metrics(tmp_path / "a")
    assert [x["step"] for x in m] == [1, 2] and m[0]["buffer/deduction/size"] >= 256
    assert all(f"time/{p}" in m[0] for p in ("propose", "validate", "learnability", "solve", "verify", "update"))


# ----------------------------------------------------------------------------- bad input, one line each

def one_line_error(capsys, argv):
    with pytest.raises(SystemExit) as e:
        azr.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("azr.py: error:")
    return err[0]


def test_bad_input_errors(tiny_ckpt, tmp_path, capsys, monkeypatch):
    out = f"--out={tmp_path / 'o'}"
    assert "unknown model name" in one_line_error(capsys, ["--model=qwen9-13b", out])
    assert "not found" in one_line_error(capsys, [f"--model={tiny_ckpt}", out, "--seed-data=/nope/x_seed_io.jsonl"])
    if not torch.cuda.is_available():
        assert "no CUDA device" in one_line_error(capsys, ["--device=cuda", out])
    assert "torchrun" in one_line_error(capsys, ["--fsdp=on", out])
    assert "cannot hold one rollout" in one_line_error(capsys, ["--kv_cache_tokens=1000", out])
    assert "--max_batch must be" in one_line_error(capsys, ["--max_batch=0", out])
    assert "does not exist" in one_line_error(capsys, [f"--model={tiny_ckpt}", out, "--resume"])
    (tmp_path / "empty").mkdir()
    assert "no checkpoint" in one_line_error(capsys, [f"--model={tiny_ckpt}", f"--out={tmp_path / 'empty'}",
                                                      "--resume"])
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "not writable" in one_line_error(capsys, [f"--model={tiny_ckpt}", f"--out={blocker / 'sub'}"])
    # a checkpoint from another model (different width) in --out
    other = tmp_path / "other"
    from tiny import make_tiny_checkpoint
    step1 = other / "ckpt" / "step_000001"
    make_tiny_checkpoint(step1, hidden_size=32, intermediate_size=64)
    (step1 / "state.json").write_text('{"step": 1}')  # the rest of a checkpoint's files, as far as they are looked at
    (step1 / "buffers.json").write_text(json.dumps(azr.zero_buffers()))
    (step1 / "optim.pt").write_bytes(b"")
    (other / "ckpt" / "latest").write_text("step_000001")
    assert "another model" in one_line_error(capsys, [f"--model={tiny_ckpt}", f"--out={other}", "--resume"])
    assert "already holds checkpoints" in one_line_error(capsys, [f"--model={tiny_ckpt}", f"--out={other}"])
    # a model folder with something broken: model.py's message, on one line
    broken = tmp_path / "broken"
    shutil.copytree(tiny_ckpt, broken)
    (broken / "tokenizer.json").unlink()
    msg = one_line_error(capsys, [f"--model={broken}", f"--out={tmp_path / 'o2'}"])
    assert "cannot load the model" in msg and "no tokenizer" in msg
    shutil.copy(Path(tiny_ckpt) / "tokenizer.json", broken / "tokenizer.json")
    (broken / "model.safetensors").write_bytes((Path(tiny_ckpt) / "model.safetensors").read_bytes()[:1000])
    assert "truncated or corrupt" in one_line_error(capsys, [f"--model={broken}", f"--out={tmp_path / 'o3'}"])
    shutil.copy(Path(tiny_ckpt) / "model.safetensors", broken / "model.safetensors")
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps(dict(config, model_type="llama")))  # another architecture
    msg = one_line_error(capsys, [f"--model={broken}", f"--out={tmp_path / 'o4'}"])
    assert "cannot load the model" in msg and "not 'qwen2'" in msg
    (broken / "config.json").write_text(json.dumps(config))
    tok_config = json.loads((broken / "tokenizer_config.json").read_text())
    (broken / "tokenizer_config.json").write_text(json.dumps(dict(tok_config, eos_token=None, pad_token=None)))
    msg = one_line_error(capsys, [f"--model={broken}", f"--out={tmp_path / 'o5'}"])
    assert f"the tokenizer in {broken} has no eos token, so rollouts could never end" in msg
    original_sandbox = azr.Sandbox

    def unavailable(**kwargs):
        raise azr.SandboxUnavailable("seccomp filter is written for Linux x86_64, this is linux aarch64")
    monkeypatch.setattr(azr, "Sandbox", unavailable)
    msg = one_line_error(capsys, [f"--model={tiny_ckpt}", f"--out={tmp_path / 'o6'}"])
    assert msg == "azr.py: error: seccomp filter is written for Linux x86_64, this is linux aarch64"
    monkeypatch.setattr(azr, "Sandbox", original_sandbox)
    # checked before --out is made: a bad run leaves no folder behind
    assert "--out is empty" in one_line_error(capsys, ["--out= "])
    assert "is a file, not a folder" in one_line_error(capsys, [f"--model={tiny_ckpt}", f"--out={blocker}"])
    monkeypatch.setenv("NANOAZR_KERNELS", "trtion")
    assert "NANOAZR_KERNELS='trtion' is not valid" in one_line_error(capsys, [f"--model={tiny_ckpt}", out])
    monkeypatch.delenv("NANOAZR_KERNELS")
    monkeypatch.setenv("NANOAZR_DATA", str(tmp_path / "no-data"))
    msg = one_line_error(capsys, [f"--model={tiny_ckpt}", out, "--eval_every=5"])
    assert msg.startswith("azr.py: error: --eval_every=5 needs CRUXEval:") and "NANOAZR_DATA" in msg
    (tmp_path / "data-without-cruxeval").mkdir()  # a folder, but no CRUXEval in it, and the hub unreachable
    monkeypatch.setenv("NANOAZR_DATA", str(tmp_path / "data-without-cruxeval"))
    import huggingface_hub

    def offline(*a, **k):
        raise ConnectionError("offline")
    monkeypatch.setattr(huggingface_hub, "list_repo_files", offline)
    msg = one_line_error(capsys, [f"--model={tiny_ckpt}", out, "--eval_every=5"])
    assert msg.startswith("azr.py: error: --eval_every=5 needs CRUXEval: cruxeval-i: no file at ")
    assert msg.endswith("(or pass --eval_every=0)") and "hub is unreachable" in msg
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    assert one_line_error(capsys, [f"--model={tiny_ckpt}", out, "--log=wandb"]) == \
        "azr.py: error: --log=wandb needs a package that is not installed: pip install wandb"
    assert "unknown model name" in one_line_error(capsys, ["--model=qwen9-13b", out])
    assert not (tmp_path / "o").exists()


def test_deterministic_flag_and_a_bad_distributed_timeout(tmp_path, capsys, monkeypatch):
    """--deterministic turns on torch's deterministic algorithms (and cuBLAS's workspace setting) before anything
    runs; under torchrun a NANOAZR_DIST_TIMEOUT_MIN that is no number is one line before any process group starts."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    calls = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda on: calls.append(on))
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    one_line_error(capsys, [f"--out={blocker}"])
    assert calls == [] and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    assert "is a file" in one_line_error(capsys, [f"--out={blocker}", "--deterministic"])
    assert calls == [True] and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0"),
                        ("NANOAZR_DIST_TIMEOUT_MIN", "two hours")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # (this process's threads stay as they are)
    monkeypatch.setattr(azr.dist, "init_process_group", lambda *a, **k: pytest.fail("process group started"))
    assert one_line_error(capsys, [f"--out={tmp_path / 'o'}"]) == \
        "azr.py: error: NANOAZR_DIST_TIMEOUT_MIN='two hours' is not a number of minutes (default 120)"


def test_damaged_or_unpointed_checkpoints(tiny_ckpt, tmp_path, capsys, monkeypatch):
    """Without ckpt/latest the newest complete step_* folder is found (never overwritten by a fresh start); a
    damaged one gets one line, and deleting it resumes from the one before; --steps must pass the checkpoint."""
    from model import load_tokenizer
    monkeypatch.setattr(azr, "rollout", scripted_rollout(load_tokenizer(str(tiny_ckpt))))
    out = tmp_path / "run"
    flags = [f"--model={tiny_ckpt}", "--batch_size=2", "--learnability_samples=2", "--seed_rounds=0",
             "--save_every=1", "--max_response_tokens=512", f"--out={out}"]
    azr.main(flags + ["--steps=2"])
    ckpt = out / "ckpt"
    (ckpt / "latest").unlink()
    assert azr.latest_checkpoint(out) == ckpt / "step_000002"
    assert "already holds checkpoints" in one_line_error(capsys, flags + ["--steps=3"])
    assert "already at step 2; pass --steps above it" in one_line_error(capsys, flags + ["--steps=2", "--resume"])
    (ckpt / "step_000002" / "buffers.json").write_text('{"dedu')  # truncated
    msg = one_line_error(capsys, flags + ["--steps=3", "--resume"])
    assert "step_000002 is damaged" in msg and "delete that folder" in msg
    buffers = json.loads((ckpt / "step_000001" / "buffers.json").read_text())
    buffers["abduction"][0].pop("output")  # parses, but the loop would crash on it mid-step
    (ckpt / "step_000002" / "buffers.json").write_text(json.dumps(buffers))
    msg = one_line_error(capsys, flags + ["--steps=3", "--resume"])
    assert "step_000002 is damaged (buffers.json: abduction entry 0 lacks one of program, input, output" in msg
    shutil.copy(ckpt / "step_000001" / "buffers.json", ckpt / "step_000002" / "buffers.json")
    assert "resume with that --optim" in one_line_error(capsys, flags + ["--steps=3", "--resume", "--optim=adamw8bit"])
    for garbage in (b"PK\x03\x04 truncated zip", b"garbage\n"):
        (ckpt / "step_000002" / "optim.pt").write_bytes(garbage)
        msg = one_line_error(capsys, flags + ["--steps=3", "--resume"])
        assert "step_000002 is damaged (optim.pt" in msg and "weights_only" not in msg
    shutil.copy(ckpt / "step_000001" / "optim.pt", ckpt / "step_000002" / "optim.pt")
    weights = (ckpt / "step_000002" / "model.safetensors").read_bytes()
    (ckpt / "step_000002" / "model.safetensors").write_bytes(weights[:1000])  # a save cut short by a crash
    msg = one_line_error(capsys, flags + ["--steps=3", "--resume"])
    assert msg.startswith(f"azr.py: error: checkpoint {ckpt / 'step_000002'} is damaged (") and "truncated" in msg
    assert msg.endswith("delete that folder to resume from the checkpoint before it")
    (ckpt / "latest").write_text("step_000002")
    shutil.rmtree(ckpt / "step_000002")  # as the message says: latest now names a deleted folder
    capsys.readouterr()
    azr.main(flags + ["--steps=3", "--resume"])
    assert "resumed from" in capsys.readouterr().out and [m["step"] for m in read_metrics(out)] == [1, 2, 3]


def test_fresh_run_moves_old_logs_aside(tiny_ckpt, tmp_path, monkeypatch):
    """Logs of an earlier run that never saved a checkpoint are kept, out of the new run's metrics. (With --log=wandb:
    the tracker gets each step's metrics line.)"""
    import importlib.machinery
    import types
    from model import load_tokenizer
    monkeypatch.setattr(azr, "rollout", scripted_rollout(load_tokenizer(str(tiny_ckpt))))
    tracked = []
    wandb = types.ModuleType("wandb")
    wandb.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    wandb.init, wandb.log = lambda **kw: None, lambda m, step: tracked.append((m, step))
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    azr.main([f"--model={tiny_ckpt}", "--batch_size=2", "--seed_rounds=0", "--steps=1", "--save_every=5",
              "--max_response_tokens=512", f"--out={out}", "--log=wandb"])
    assert len(read_metrics(out)) == 1 and read_metrics(out)[0]["loss"] != 0.5
    ((logged, step),) = tracked
    assert step == 1 and logged["step"] == 1 and logged.keys() == read_metrics(out)[0].keys()
    (old,) = out.glob("previous_*")
    assert (old / "metrics.jsonl").read_text() == '{"step": 1, "loss": 0.5}\n'


def test_full_disk_in_torch_save_is_an_oserror(tmp_path, monkeypatch):
    import errno

    def full(obj, path):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 1024 vs 512")
    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 0))
    with pytest.raises(OSError) as e:
        azr.save_torch({}, tmp_path / "optim.pt")
    assert e.value.errno == errno.ENOSPC
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 0, 10 << 30))
    with pytest.raises(RuntimeError, match="unexpected pos"):  # with room on the disk: torch's error, as it is
        azr.save_torch({}, tmp_path / "optim.pt")


def test_seed_file_contents_checked(tmp_path, capsys):
    io, f = tmp_path / "x_seed_io.jsonl", tmp_path / "x_code_f_seed_io.jsonl"
    good_io = '{"snippet": "def f(a):\\n    return a", "input": "1", "output": "1"}\n'
    good_f = '{"snippet": "def f(a):\\n    return a", "inputs": ["1"], "outputs": ["1"], "message": "m"}\n'
    for io_text, f_text, words in [("", good_f, "holds no entries"), (good_io, "", "holds no entries"),
                                   ("[1, 2]\n", good_f, "field 'snippet' missing"),
                                   (good_io, good_f.replace('["1"], "outputs"', '"12", "outputs"'),
                                    "field 'inputs' missing or not a list of str")]:
        io.write_text(io_text)
        f.write_text(f_text)
        with pytest.raises(SystemExit):
            azr.load_seed_buffers(io)
        assert words in capsys.readouterr().err
    io.write_text(good_io)
    f.write_text(good_f)
    assert len(azr.load_seed_buffers(io)["induction"]) == 1


# ----------------------------------------------------------------------------- torchrun, 2 processes, gloo

# azr.py with rank 0 slow to write the default tiny model: the other rank must wait for it (azr.main's barrier)
SLOW_TINY_WORKER = r'''
import sys, time
sys.path.insert(0, sys.argv[1])
import azr, tiny
make = tiny.make_tiny_checkpoint
def slow(*args, **kwargs):
    time.sleep(3)
    return make(*args, **kwargs)
tiny.make_tiny_checkpoint = slow
azr.entry(sys.argv[2:])
'''


@pytest.mark.parametrize("fsdp", ["off", "on"])
def test_torchrun_two_processes_one_step(fsdp, tiny_ckpt, tmp_path):
    """Ranks decode different numbers of steps: with FSDP this only works because generation runs on weights
    gathered once per phase (no per-forward collectives). With FSDP the run uses the default tiny model, which rank 0
    writes into --out (slowly here) while the other rank waits for it."""
    env = {**os.environ, "NANOAZR_KERNELS": "torch", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    if fsdp == "on":
        script = tmp_path / "worker.py"
        script.write_text(SLOW_TINY_WORKER)
        program = [str(script), str(REPO)]  # no --model: the default tiny model (tiny_ckpt's weights)
    else:
        program = [str(REPO / "azr.py"), f"--model={tiny_ckpt}"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *program, "--steps=1", f"--out={out}", "--batch_size=4",
           "--max_response_tokens=12", "--seed_rounds=0", "--sandbox_workers=1", f"--fsdp={fsdp}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (m,) = read_metrics(out)
    # both ranks' rollouts are gathered: every batch has its 4 sequences in the metrics
    assert all(m[f"{role}/{task}/count"] == 4 for role in azr.ROLES for task in azr.TASKS)
    assert (out / "ckpt" / "step_000001" / "model.safetensors").is_file()
    assert proc.stdout.count("step 1 |") == 1  # rank 0 logs


HASHED_WORKER = r'''
import sys
sys.path.insert(0, sys.argv[1])
import azr, test_azr_e2e as t
from model import load_tokenizer
azr.rollout = t.hashed_rollout(load_tokenizer(sys.argv[2]))
azr.entry(sys.argv[3:])
'''


def test_torchrun_two_processes_train_as_one(tiny_ckpt, tmp_path, monkeypatch):
    """The same scripted responses in 1 process and in 2 (FSDP): each rank scores its share, and every rank merges
    all results, so rewards, validity, learnability and solve rates, buffers and dumps are the same, and the update
    (TRR++ whitening and the token-mean over the global batch) gives the same loss, gradient norm and weights up to
    float summation order."""
    from model import load_tokenizer
    flags = [f"--model={tiny_ckpt}", "--batch_size=4", "--learnability_samples=2", "--seed_rounds=1",
             "--seed_buffer_size=4", "--lr=1e-3", "--max_response_tokens=512", "--num_references=1", "--steps=2"]
    monkeypatch.setattr(azr, "rollout", hashed_rollout(load_tokenizer(str(tiny_ckpt))))
    azr.main(flags + [f"--out={tmp_path / 'one'}"])
    script = tmp_path / "worker.py"
    script.write_text(HASHED_WORKER)
    env = {**os.environ, "NANOAZR_KERNELS": "torch", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(Path(__file__).parent), str(tiny_ckpt), *flags, "--fsdp=on",
                           f"--out={tmp_path / 'two'}"], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert len(one) == len(two) == 2
    # the script gives mixed batches: some proposals invalid, some solver answers wrong (whitening has work to do)
    assert any(0 < m[f"propose/{t}/valid_rate"] < 1 for m in one for t in azr.TASKS)
    assert any(0 < m[f"solve/{t}/accuracy"] < 1 for m in one for t in azr.TASKS)
    for a, b in zip(one, two):
        float_sums = ("loss", "entropy", "grad_norm")
        assert {k: v for k, v in a.items() if not any(w in k for w in ("time", "_per_s") + float_sums)} == \
               {k: v for k, v in b.items() if not any(w in k for w in ("time", "_per_s") + float_sums)}
        for k in float_sums:
            assert b[k] == pytest.approx(a[k], rel=1e-4), k
    ca, cb = tmp_path / "one" / "ckpt" / "step_000002", tmp_path / "two" / "ckpt" / "step_000002"
    assert json.loads((ca / "buffers.json").read_text()) == json.loads((cb / "buffers.json").read_text())
    for step in (1, 2):
        dump = f"dumps/step_{step:06d}.jsonl"
        assert (tmp_path / "one" / dump).read_text() == (tmp_path / "two" / dump).read_text()
    wa, wb = load_file(str(ca / "model.safetensors")), load_file(str(cb / "model.safetensors"))
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], atol=1e-4, rtol=0)  # 2 Adam steps of ~lr = 1e-3 each


EVAL_WORKER = r'''
import sys
sys.path.insert(0, sys.argv[1])
import azr, eval.generation, torch.distributed as dist
from eval import cruxeval, data
limit = 3
known = {cruxeval.cruxeval_prompt(b, it): (b, it) for b in ("cruxeval-i", "cruxeval-o")
         for it in data.load_benchmark(b, data.default_data_dir(), limit)}
def gold(model, tokenizer, texts, max_new_tokens, **kwargs):  # every answer right; each rank notes what it decoded
    with open(f"{sys.argv[2]}/eval_rank{dist.get_rank()}.txt", "a") as f:
        f.write(f"{len(texts)}\n")
    return [cruxeval.gold_completion(*known[t]) for t in texts]
eval.generation.complete = gold
azr.entry(sys.argv[3:] + [f"--eval_limit={limit}"])
'''


@pytest.mark.parametrize("fsdp", ["on", "off"])
def test_torchrun_in_loop_eval_runs_on_every_rank_and_splits_the_problems(fsdp, tiny_ckpt, tmp_path, data_dir):
    """Mutation round 5: azr.py's in-loop CRUXEval runs on every rank (the counts are summed over the process group:
    a rank that skipped it would leave the others waiting in all_reduce) and passes rank and world, so each rank
    decodes its share: 3 problems per benchmark on 2 ranks are 2 + 1 prompts, not 3 + 3. With or without FSDP."""
    script = tmp_path / "worker.py"
    script.write_text(EVAL_WORKER)
    env = {**os.environ, "NANOAZR_KERNELS": "torch", "OMP_NUM_THREADS": "1", "NANOAZR_DATA": str(data_dir)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(REPO), str(tmp_path), f"--model={tiny_ckpt}", "--steps=1", f"--out={tmp_path / 'o'}", "--batch_size=4",
           "--max_response_tokens=12", "--seed_rounds=0", "--sandbox_workers=1", f"--fsdp={fsdp}", "--eval_every=1",
           "--eval_max_tokens=4"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    calls = [(tmp_path / f"eval_rank{r}.txt").read_text().split() if (tmp_path / f"eval_rank{r}.txt").is_file()
             else [] for r in (0, 1)]
    assert calls == [["2", "2"], ["1", "1"]]
    (m,) = read_metrics(tmp_path / "o")
    assert m["eval/cruxeval-i"] == m["eval/cruxeval-o"] == 1.0 and m["time/eval"] > 0
