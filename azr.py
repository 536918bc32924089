"""nanoAZR: Absolute Zero Reasoner self-play in one file, read top to bottom.

One language model plays two roles on three kinds of Python task. As PROPOSER it writes a program and an input
(deduction: the solver predicts the output; abduction: the solver predicts the input) or ten inputs and a message for
a program from the buffer (induction: the solver recovers the program). A sandbox runs every proposal (validity and
the gold answers) and every solver answer (correctness). Proposers are rewarded for tasks of middling difficulty
(learnability, measured by 8 extra solver rollouts), solvers for correct answers, and one PPO-clip step on
Task-Relative REINFORCE++ advantages improves both roles. azr-spec.md is the algorithm this file follows.

Launch:
    python azr.py                                   # --preset tiny: tiny random Qwen2 made on the spot, CPU, minutes
    python azr.py --preset paper --model qwen2.5-3b --seed-data ../shared/data/azr_seeds/7b_coder_seed_io.jsonl
    torchrun --nproc_per_node 8 azr.py --preset paper --model qwen2.5-7b --fsdp=on --grad_checkpointing=true \\
        --micro_batch=4 --seed-data ../shared/data/azr_seeds/7b_seed_io.jsonl --out out/azr-7b
    python azr.py --out out/azr-7b --resume ...     # continue from the latest checkpoint in --out (same flags)
Flags are the Config fields below, as --name=value or --name value (hyphens and underscores are the same).
Environment: NANOAZR_KERNELS=torch|triton|auto, NANOAZR_DATA (data folder of the in-loop CRUXEval), and under
torchrun NANOAZR_DIST_TIMEOUT_MIN (minutes a rank waits for a stuck one; default 120).

Deliberate deviations from the official code (LeapLabTHU/Absolute-Zero-Reasoner, branch `paper`):
 1. No old-logprob recomputation pass: the update happens right after the rollouts with the same weights, so the
    official recomputed "old" logprobs equal the current ones; we use logprobs.detach() (ratio exactly 1, the clip
    never binds, same gradient) and save one forward pass over the 384 sequences.
 2. Loss normalisation: one token-mean (or sequence-mean) over the whole batch of 384, not a token-mean per
    micro-batch of 16 averaged over 24 micro-batches, so the loss does not depend on the micro-batch size or on the
    number of ranks (torchrun == one process, tested).
 3. Code runs in our seccomp sandbox (sandbox.py), never in the trainer, and the sandbox is stricter than AZR's:
    - predicted inputs must parse as the arguments of one call (no `gold == f(<pasted text>)` injection); values
      compare as decoded builtins (no custom __eq__);
    - determinism is checked across two hash seeds, the two calls must also agree in repr (equal dicts in another
      key order do not), and programs using over 25% of the CPU or wall-clock limit are rejected as timing-fragile;
    - besides AZR's banned imports, only sandbox.PURE_MODULES may be imported: host modules (sys, os, platform, gc,
      inspect, ctypes, importlib, resource, socket, signal, builtins, uuid, secrets, mmap, fcntl) and dataclasses
      (which compiles field names) are rejected, and so is reaching modules, frames or imports without an import
      statement (`__import__`, `eval`, `getattr`, `typing.sys`, a module used as a value, dunder attributes, `match`
      class patterns, star imports, `id()`, `hash()`, `locals()`; the full list is in sandbox.py and the README), in
      the program and in its input;
    - only plain builtin values may be returned (a Counter or deque is bad_output);
    - a solver's predicted input or output must be a pure expression (sandbox.check_pure: literals, operators,
      comprehensions, lambdas, safe builtins; no name the program binds, so not f, `g = f`, a setter of f's memo
      table, nor a constructor such as a namedtuple: an abduction task whose input builds one is unanswerable), so
      it cannot compute itself by running the program or set the state f reads, which official eval allows (reward
      hacks); an empty answer is no answer (officially eval("") fails; here "(\n)" would have been the empty tuple);
    - limits the official executor lacks (sandbox.md 4.2): programs up to 16,384 characters, inputs up to 4,096,
      return values up to 64 KiB encoded and integers up to ~4,200 digits (CPython's repr allows 4,300; else
      bad_output: an invalid proposal), 1 GiB of address space above the zygote's, 256 KiB of printed output (more
      ends the run: output_limit; officially prints go to the worker's stdout), and --exec_timeout covers both
      calls of f that every execution makes (validation's determinism pair; checks repeat it so a program cannot
      tell them apart).
    Officially most of these refusals are valid proposals (a Counter, an object or a hash-seed order keeps its
    repr as gold; a value not equal to itself, such as a generator, gets gold ""), so they score -1 here, not the
    official -0.5 or more. Rare official false positives score 0 here. AZR's executor quirks are kept where they
    change rewards (executor_fails): its `input(` regex covers every line but the last of the program it builds, so
    it rejects a proposal whose renamed program or input contains `input(` (or whose input ends in a comment) and an
    induction candidate containing it, and the last line is evaluated alone, so a predicted abduction input
    (unstripped, as pasted) or a hidden induction input that spans lines or ends in a comment never scores, nor does
    a predicted output that eval cannot parse as captured (a line break, then indentation). It calls a run failed
    only when its status (the traceback's last line) contains "error": a proposal whose f raises Exception,
    StopIteration or a class not named *Error, or fails AZR's own determinism check (two calls returning different
    values, NaN included), is valid with gold output "" (if it fails alike in the other hash seed's zygote;
    unsolvable; azr-spec.md 3.1 and 8 say such runs fail validation, but check_all returns `not "error" in
    status.lower()` and AZR's seed files hold such entries), and an abduction check whose f raises such an exception
    has no verdict (None: dropped from the learnability mean).
    Not kept: AZR also drops such an induction pair from its candidate's mean, so a candidate that raises Exception
    wherever it is unsure scores 1 (a reward hack); here the pair fails. And a check whose last line contains
    `print(` (in the gold output or the pasted input) is executed whole with stdout as its result, so it gets no
    verdict officially (none of the 6,424 CRUXEval and seed pairs has one); here it is scored. Programs run with
    `__name__` unset (AZR's bare globals dict: an `if __name__ == "__main__":` block never runs). The official
    scorer splits prompt + response at the first "Assistant:", so a prompt quoting that word scores every response
    -1; we split the response alone.
 4. Executions run in parallel worker processes instead of one serial worker (same verdicts, faster).
 5. Randomness: every sampling decision of step t derives from (--seed, t) (batch composition and references, the
    same on every rank) or (--seed, t, rank) (generation seeds), not from global NumPy/torch RNGs, so --resume
    reproduces a run exactly (tested).
 6. Solver batches are the official max_new loader's: 2B-1 candidates (entries stamped at the previous step
    first, then a uniform fill from the whole buffer), over-long prompts dropped, shuffled, the first B kept, so
    about half of a step's valid proposals reach the next solver batch. Ours shuffles with the step's RNG (the
    official loader reseeds its shuffle with 1 every step), and a batch with fewer than B fitting candidates is
    smaller instead of crashing (issue #14). An over-long candidate is dropped, not replaced by a duplicate of a
    fitting one (the official get_pred_code_io_data refills its 2B-1 list by resampling the fitting ones).
 7. Induction tasks with fewer than 10 inputs (the zero-triplet seed has 6) show the first half and hide the rest
    (the official split, len // 2, listed here because azr-spec.md speaks of 5 + 5 only).
 8. Learnability rollouts run only for valid proposals that also pass the format check (the others get -1
    whatever their accuracy, so the official rollouts for them are wasted compute), and not at all under
    --train_proposer=false, where they would feed no gradient (the logged proposer rewards then read -0.5 for every
    valid proposal).
 9. The seeding phase (no --seed-data) parses the whole response, as the official one does, but keeps
    comments/globals in seed programs (the official seeding scripts strip them); it is bounded by --seed_rounds,
    since a weak model may never fill 256 seeds.
10. Rollouts come from our engine with the training weights themselves (no vLLM, no weight sync); with --fsdp=on the
    shards are gathered once per generation phase. In-loop validation is CRUXEval-I/O only (no LCB-Execution data).
11. Checkpoints store buffers as JSON (not pickle) and the weights as HF safetensors holding the fp32 master
    weights when training in bf16 (exact resume; evaluation casts on load).
12. Optional knobs the paper branch lacks, all off by default: clip-higher (--clip_high), k3 KL to the initial
    policy (--kl_coef), group-relative advantages over several samples per prompt (--advantage=grpo --group_size),
    one global baseline (--advantage=global), filtering of all-equal groups (--filter_groups), overlong masking
    (--mask_overlong), sequence-mean aggregation (--loss_agg=seq-mean), per-sequence whitening (--whiten=sequence),
    8-bit AdamW (--optim=adamw8bit).
13. Each generation phase of a step (proposals, learnability rollouts, solver answers) is one engine call for all
    three task types, not one per batch: a call lasts as long as its longest rollout (up to 8,096 tokens), so this
    waits for three tails per step instead of nine. Nothing else changes: batches and references are drawn at the
    start of the step either way, and rewards, advantages and buffer appends stay per (task, role) batch.
14. Over-long prompts: a proposer prompt over --max_prompt_tokens is dropped, not redrawn with other references,
    and a valid proposal whose learnability prompt is over it (acc 0, reward -0.5) still joins its buffer. (Public
    forks of the official code skip that append, an accident of a `continue`; we could not check branch `paper`.)
15. Prompt texts (prompts.py) keep the official templates' structure, tags, fences and instructions in our own
    words, the R1 preamble included. With --num_references=0 the proposer prompt has no "Reference Code Snippets"
    heading (the official one keeps the empty heading).
16. Buffer cap: once a buffer holds --buffer_cap entries, new proposals are dropped (as officially) and the solver
    batch finds no entries stamped at the previous step, so all its candidates are a uniform draw from the buffer.
    The official max_new loader counts the previous step's proposals before truncation and takes that many entries
    from the end of the buffer as "new", i.e. the same frozen tail every step (from about step 300 at 50 valid
    proposals per step).
"""
import dataclasses
import datetime
import errno
import gc
import json
import math
import os
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

import kernels
import prompts
from model import CheckpointError, Qwen2, generate, load_tokenizer, resolve_checkpoint, write_atomic
from sandbox import (Sandbox, SandboxUnavailable, azr_valid_without_output, eval_text_fails, pasted_call_fails,
                     truncate_output)

TASKS = ("deduction", "abduction", "induction")
ROLES = ("propose", "solve")
PHASES = ("propose", "validate", "learnability", "solve", "verify", "update")  # metrics time/<phase>, the log line


# -----------------------------------------------------------------------------
# Config: one flat dataclass, defaults = the paper (azr-spec.md section 6); presets override a few fields.

@dataclass
class Config:
    # run
    model: str = "qwen2.5-7b"       # short name, hub id or local HF folder; "tiny" = random tiny Qwen2 made on the spot
    preset: str = "tiny"            # tiny | paper (paper = these defaults); `python azr.py` runs tiny
    steps: int = 500                # stop after this global step (paper Table 3: 500)
    out: str = "out/azr"            # checkpoints, metrics.jsonl, dumps
    resume: bool = False            # continue from the latest checkpoint in --out
    seed_data: str = ""             # AZR *_seed_io.jsonl (its *_code_f_seed_io.jsonl beside it); "" = seeding phase
    seed: int = 1                   # all sampling decisions derive from (seed, step, rank)
    device: str = "auto"            # auto | cpu | cuda
    dtype: str = "auto"             # auto (bf16 on CUDA, fp32 on CPU) | bfloat16 | float32
    # self-play
    tasks: str = "deduction,abduction,induction"  # comma list; Table 2 ablations drop some
    train_proposer: bool = True     # False = proposer still proposes but gets no gradient and no learnability
                                    # rollouts (Table 2 "solver only")
    batch_size: int = 64            # sequences per (task, role) batch, global over ranks (6 x 64 = 384)
    num_references: int = 6         # K reference triplets in ded/abd proposer prompts (0 allowed)
    learnability_samples: int = 8   # solver rollouts per valid proposal for the learnability reward
    induction_inputs: int = 10      # inputs per induction proposal (half shown, half hidden)
    buffer_cap: int = 16384         # max entries per buffer; the oldest are kept (official quirk)
    solver_window: int = 1          # solver batches prefer entries stamped within this many steps
    seed_buffer_size: int = 256     # seeding phase target (64 x seed batch factor 4)
    seed_rounds: int = 1000         # max proposer rounds of the seeding phase (a random model never fills it)
    # sampling
    temperature: float = 1.0        # rollouts sample logits / temperature, and the update trains that distribution
    top_p: float = 1.0              # nucleus sampling (1 = off, as the paper)
    top_k: int = 0                  # top-k sampling (0 = off, as the paper)
    max_prompt_tokens: int = 6144   # longer prompts are dropped (official behaviour)
    max_response_tokens: int = 8096  # generation cap per rollout (azr-spec.md section 6)
    # RL objective
    advantage: str = "trr++"        # trr++ (six baselines) | global (one baseline) | grpo (per prompt, needs group_size>1)
    whiten: str = "token"           # token (official masked_whiten) | sequence (paper Eq. 8)
    group_size: int = 1             # samples per prompt in each batch (official: 1)
    loss_agg: str = "token-mean"    # token-mean | seq-mean
    clip_low: float = 0.2           # PPO clip epsilon (never binds at ratio 1, kept for fidelity)
    clip_high: float = 0.2          # clip-higher ablation: 0.28 (DAPO, AZR master)
    entropy_coef: float = 0.001     # entropy bonus (paper branch; master 0)
    kl_coef: float = 0.0            # k3 KL to the initial policy; > 0 keeps a frozen copy of the initial weights
    filter_groups: bool = False     # drop groups whose rewards are all equal (needs group_size > 1)
    mask_overlong: bool = False     # exclude responses that hit max_response_tokens from the loss
    # optimisation
    lr: float = 1e-6                # AdamW, constant, no warmup
    beta1: float = 0.9              # AdamW betas
    beta2: float = 0.999
    weight_decay: float = 0.01      # veRL default on the paper branch
    grad_clip: float = 1.0          # max global gradient norm (0 = no clipping)
    micro_batch: int = 16           # sequences per forward/backward
    optim: str = "adamw"            # adamw | adamw8bit (bitsandbytes)
    grad_checkpointing: bool = False  # recompute each layer's activations in the backward (7B: see the memory plan)
    fsdp: str = "off"               # off | on: shard params/grads/optimizer over ranks with FSDP2
    deterministic: bool = False     # deterministic CUDA kernels (bit-exact resume on GPUs; slower backward)
    cuda_graphs: bool = True        # on CUDA, replay the decode step as CUDA graphs (engine.make_decode_step; 2.6x
                                    # tokens/s at the 7B shape, batch 64, H200, e6e1e7f); the CPU decodes eagerly
    max_batch: int = 256            # most sequences one rank decodes together (engine rows)
    kv_cache_tokens: int = 0        # KV cache budget per rank in tokens; 0 = 60% of free GPU memory (engine default)
    # sandbox, logging, checkpoints
    sandbox_workers: int = 0        # 0 = this machine's cores / ranks
    exec_timeout: float = 10.0      # seconds per execution
    save_every: int = 10            # checkpoint every N steps (and at the last step)
    keep_optim: int = 2             # optimizer state stays in the newest N checkpoints only (Qwen2.5-7B: 61 GB each,
                                    # 3 TB over 500 steps); older ones keep weights, buffers and state; 0 = all
    eval_every: int = 10            # in-loop CRUXEval-I/O (greedy); 0 = off
    eval_limit: int = 0             # 0 = all 800 problems
    eval_max_tokens: int = 8096     # generation cap of the in-loop CRUXEval answers
    dump_every: int = 1             # JSONL dump of proposals/answers/verdicts every N steps; 0 = off
    log: str = "none"               # none | tensorboard | wandb


PRESETS = {
    "paper": {},
    # CPU smoke run: a tiny random model, tiny batches, short responses, the real sandbox and the real update
    # (lr 1e-4 so that a few steps visibly move the random weights).
    "tiny": dict(model="tiny", steps=3, batch_size=4, num_references=2, learnability_samples=2,
                 max_prompt_tokens=4096, max_response_tokens=24, micro_batch=8, seed_rounds=1,
                 seed_buffer_size=8, save_every=2, eval_every=0, sandbox_workers=2, lr=1e-4),
}


def die(message, this_rank_only=False):
    """One clear line for bad input, then exit (no traceback). Under torchrun every rank makes the same checks, so
    local rank 0 prints the line and the others wait for torchrun to stop them when it exits (they print it only if
    still running after 10 s: a failure of theirs alone). this_rank_only: print at once, with the rank."""
    rank, world = os.environ.get("RANK", "0"), int(os.environ.get("WORLD_SIZE", "1"))
    line = f"azr.py: error: {f'(rank {rank}) ' if world > 1 and this_rank_only else ''}{message}"
    if world > 1 and not this_rank_only and os.environ.get("LOCAL_RANK", "0") != "0":
        time.sleep(10)  # torchrun SIGTERMs this process as soon as local rank 0 exits with the same line
    print(line, file=sys.stderr, flush=True)
    if os.environ.get("TORCHELASTIC_ERROR_FILE"):  # torchrun's failure summary shows this line, not a docs link
        with open(os.environ["TORCHELASTIC_ERROR_FILE"], "w") as f:
            json.dump({"message": line, "timestamp": int(time.time())}, f)
    sys.exit(2)


def parse_config(argv):
    """--name=value / --name value / --flag flags -> Config. The preset is applied first, explicit flags win."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    if "-h" in argv or "--help" in argv:  # the commented Config source is the documentation of every flag
        import inspect
        print(__doc__.split("Deliberate deviations")[0] + inspect.getsource(Config) + f"presets: {PRESETS}")
        sys.stdout.flush()  # here, where entry() catches a closed pipe (`--help | head`), not at exit
        sys.exit(0)
    pairs, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            die(f"unexpected argument {arg!r}; flags look like --name=value")
        name, eq, value = arg[2:].partition("=")
        name = name.replace("-", "_")
        if name not in fields:
            import difflib
            near = difflib.get_close_matches(name, fields, n=1)
            die(f"unknown flag --{name}; {f'did you mean --{near[0]}? ' if near else ''}"
                "`python azr.py --help` lists every flag")
        if not eq:  # `--steps 5`, or a bare boolean flag `--resume`
            if fields[name].type is bool and (i + 1 >= len(argv) or argv[i + 1].startswith("--")):
                value = "true"
            elif i + 1 < len(argv):
                value, i = argv[i + 1], i + 1
            else:
                die(f"flag --{name} needs a value")
        pairs.append((name, value))
        i += 1
    values = {}
    for name, text in pairs:
        kind = fields[name].type
        try:
            if kind is bool:
                if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                values[name] = text.lower() in ("1", "true", "yes", "on")
            else:
                values[name] = kind(text)
        except ValueError:
            fix = ("use true or false" if kind is bool else
                   f"give a {'whole ' if kind is int else ''}number such as --{name}={fields[name].default}")
            die(f"--{name}={text!r} is not a valid {kind.__name__}; {fix}")
    preset = values.get("preset", Config.preset)
    if preset not in PRESETS:
        die(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = Config(**{**PRESETS[preset], **values})
    check_config(cfg)
    return cfg


def task_list(cfg):
    return [t.strip() for t in cfg.tasks.split(",") if t.strip()]


def check_config(cfg):
    """Contradictory or out-of-range flags get one line each."""
    tasks = task_list(cfg)
    unknown = [t for t in tasks if t not in TASKS]
    if not tasks or unknown:
        die(f"--tasks={cfg.tasks!r}: {f'unknown task {unknown[0]!r}; ' if unknown else ''}use a comma list of "
            f"{', '.join(TASKS)}")
    if len(set(tasks)) < len(tasks):  # a task named twice would run, and append to its buffer, twice per step
        die(f"--tasks={cfg.tasks!r} names a task twice; list each at most once")
    if not cfg.out.strip():
        die("--out is empty; name the run's folder, e.g. --out=out/azr")
    choices = dict(advantage=("trr++", "global", "grpo"), whiten=("token", "sequence"), device=("auto", "cpu", "cuda"),
                   loss_agg=("token-mean", "seq-mean"), optim=("adamw", "adamw8bit"), fsdp=("off", "on"),
                   dtype=("auto", "bfloat16", "float32"), log=("none", "tensorboard", "wandb"))
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            die(f"--{name}={getattr(cfg, name)!r}: choose one of {', '.join(allowed)}")
    if min(cfg.steps, cfg.batch_size, cfg.micro_batch, cfg.group_size, cfg.save_every) < 1:
        die("--steps, --batch_size, --micro_batch, --group_size and --save_every must be positive")
    if cfg.advantage == "grpo" and cfg.group_size < 2:
        die("--advantage=grpo needs --group_size >= 2 samples per prompt")
    if cfg.filter_groups and cfg.group_size < 2:
        die("--filter_groups needs --group_size >= 2 (a group is the samples of one prompt)")
    if cfg.batch_size % cfg.group_size:
        die(f"--batch_size={cfg.batch_size} must be a multiple of --group_size={cfg.group_size}")
    if cfg.num_references < 0 or cfg.learnability_samples < 1 or cfg.induction_inputs < 2:
        die("--num_references must be >= 0, --learnability_samples >= 1, --induction_inputs >= 2")
    if cfg.clip_low < 0 or cfg.clip_high < 0 or cfg.kl_coef < 0 or cfg.lr <= 0:
        die("--clip_low, --clip_high and --kl_coef must be >= 0 and --lr > 0")
    floats = [f.name for f in dataclasses.fields(cfg) if f.type is float]
    bad = [n for n in floats if not math.isfinite(getattr(cfg, n))]
    if bad:
        die(f"--{bad[0]}={getattr(cfg, bad[0])}: must be a finite number")
    if min(cfg.max_prompt_tokens, cfg.max_response_tokens, cfg.buffer_cap, cfg.seed_buffer_size,
           cfg.eval_max_tokens) < 1 or min(cfg.eval_every, cfg.eval_limit, cfg.dump_every, cfg.seed_rounds,
                                          cfg.sandbox_workers, cfg.keep_optim) < 0:
        die("--max_prompt_tokens, --max_response_tokens, --buffer_cap, --seed_buffer_size and --eval_max_tokens must "
            "be >= 1; --eval_every, --eval_limit, --dump_every, --seed_rounds, --sandbox_workers and --keep_optim >= 0 "
            "(0 = off/auto/all)")
    if not (cfg.exec_timeout > 0 and cfg.grad_clip >= 0 and cfg.weight_decay >= 0 and cfg.entropy_coef >= 0
            and 0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1):
        die("--exec_timeout must be > 0, --grad_clip, --weight_decay and --entropy_coef >= 0, --beta1 and --beta2 in "
            "[0, 1)")
    if not cfg.temperature > 0 or not 0 < cfg.top_p <= 1 or cfg.top_k < 0:
        die(f"--temperature must be > 0 (the update trains on logits / temperature), --top_p in (0, 1] and "
            f"--top_k >= 0; got {cfg.temperature}, {cfg.top_p}, {cfg.top_k}")
    if cfg.max_batch < 1 or cfg.kv_cache_tokens < 0:
        die("--max_batch must be >= 1 and --kv_cache_tokens >= 0 (0 = 60% of free GPU memory)")
    if 0 < cfg.kv_cache_tokens < cfg.max_prompt_tokens + cfg.max_response_tokens:
        die(f"--kv_cache_tokens={cfg.kv_cache_tokens} cannot hold one rollout of --max_prompt_tokens + "
            f"--max_response_tokens = {cfg.max_prompt_tokens + cfg.max_response_tokens} tokens; raise it (or 0)")


# -----------------------------------------------------------------------------
# Rewards (azr-spec.md section 4.2; placed on the last response token, here one scalar per sequence)

def learnability_accuracy(scores):
    """Mean solver success over the learnability rollouts; None scores (a check that crashed) are dropped."""
    counted = [s for s in scores if s is not None]
    return sum(counted) / len(counted) if counted else 0.0


def proposer_reward(format_ok, valid, accuracy):
    """-1 for unparseable/invalid/badly formatted; 1-acc for learnable tasks; -0.5 when acc is 0 or 1.

    The -0.5 for trivial/impossible tasks is what the code does (the paper's Eq. 4 says 0; issue #37)."""
    if not (format_ok and valid):
        return -1.0
    return 1.0 - accuracy if 0.0 < accuracy < 1.0 else -0.5


def solver_reward(format_ok, correct):
    """-1 badly formatted, -0.5 well formatted but wrong, 1 correct."""
    if not format_ok:
        return -1.0
    return 1.0 if correct else -0.5


# -----------------------------------------------------------------------------
# Advantages: TRR++ = REINFORCE++ whitening within each of the six (task, role) batches (azr-spec.md 5.1).
# Every response token of sequence i gets the same advantage A_i, so per-sequence numbers suffice.

def whiten(rewards, lengths, token_weighted):
    """(R - mu) / sqrt(var + 1e-8). Token-weighted = veRL's masked_whiten over all response tokens (a sequence of
    L tokens counts L times, Bessel-corrected over tokens); otherwise over sequences (paper Eq. 8)."""
    r = torch.tensor(rewards, dtype=torch.float64)
    w = torch.tensor(lengths if token_weighted else [1] * len(rewards), dtype=torch.float64)
    n = w.sum()
    mu = (w * r).sum() / n
    var = (w * (r - mu) ** 2).sum() / n
    var = var * n / (n - 1) if n > 1 else var  # unbiased, as masked_var(unbiased=True)
    return ((r - mu) / torch.sqrt(var + 1e-8)).tolist()


def compute_advantages(rewards, lengths, batch_ids, group_ids, estimator="trr++", token_weighted=True):
    """Per-sequence advantages [N] for rewards [N], response lengths [N] (tokens), batch_ids [N] (which (task, role)
    batch) and group_ids [N] (which prompt, for grpo). trr++: whiten inside each batch (six baselines); global: one
    baseline over everything; grpo: (R - mean_group) / (std_group + 1e-6) over the samples of one prompt."""
    advantages = [0.0] * len(rewards)
    if estimator == "grpo":
        keys = group_ids
    elif estimator == "global":
        keys = [0] * len(rewards)
    else:
        keys = batch_ids
    for key in dict.fromkeys(keys):
        idx = [i for i, k in enumerate(keys) if k == key]
        r = [rewards[i] for i in idx]
        if estimator == "grpo":
            t = torch.tensor(r, dtype=torch.float64)
            std = t.std() if len(r) > 1 else torch.tensor(1.0, dtype=torch.float64)
            values = ((t - t.mean()) / (std + 1e-6)).tolist()
        else:
            values = whiten(r, [lengths[i] for i in idx], token_weighted)
        for i, v in zip(idx, values):
            advantages[i] = v
    return advantages


def token_weights(lengths, included, loss_agg):
    """Loss weight of each token of each sequence, summing to 1 over the included sequences of the whole batch.
    token-mean: 1 / total tokens; seq-mean: 1 / (L_i * number of sequences). Excluded sequences weigh 0."""
    total_tokens = sum(L for L, keep in zip(lengths, included) if keep)
    total_seqs = sum(included)
    if total_seqs == 0:
        return [0.0] * len(lengths)
    if loss_agg == "token-mean":
        return [1.0 / total_tokens if keep else 0.0 for keep in included]
    return [1.0 / (L * total_seqs) if keep and L else 0.0 for L, keep in zip(lengths, included)]


def policy_loss(logprobs, old_logprobs, advantages, weights, clip_low, clip_high, entropy=None, entropy_coef=0.0,
                ref_logprobs=None, kl_coef=0.0):
    """PPO-clip surrogate on flat response tokens [N]; weights [N] carry the aggregation (sum to 1 over the batch).

    loss = sum_t w_t * max(-A_t r_t, -A_t clip(r_t, 1-eps_low, 1+eps_high)) - c_H sum_t w_t H_t
           + c_KL sum_t w_t k3_t,   with r_t = exp(logp_t - old_t) and k3 = exp(ref - logp) - (ref - logp) - 1."""
    ratio = torch.exp(logprobs - old_logprobs)
    clipped = -advantages * ratio.clamp(1 - clip_low, 1 + clip_high)
    surrogate = torch.maximum(-advantages * ratio, clipped)
    loss = (weights * surrogate).sum()
    # clipfrac: the weight of the tokens whose clipped term is the active one (no gradient), as the entropy is summed
    metrics = {"clipfrac": (weights * (clipped > -advantages * ratio)).sum().item()}
    if entropy is not None and entropy_coef:
        loss = loss - entropy_coef * (weights * entropy).sum()
    if ref_logprobs is not None and kl_coef:
        log_r = ref_logprobs - logprobs
        k3 = torch.exp(log_r) - log_r - 1
        loss = loss + kl_coef * (weights * k3).sum()
        metrics["kl"] = (weights * k3).sum().item()
    return loss, metrics


# -----------------------------------------------------------------------------
# Buffers (azr-spec.md section 7). Entries are plain JSON dicts stamped with the step that produced them:
#   deduction/abduction: {program, input, output, imports, step}
#   induction:           {program, inputs, outputs, message, imports, step}

BUFFER_FIELDS = {"deduction": {"program": str, "input": str, "output": str},
                 "abduction": {"program": str, "input": str, "output": str},
                 "induction": {"program": str, "inputs": list, "outputs": list, "message": str}}
ZERO_PROGRAM = "def f(a):\n    return a"  # AZR's hard-coded identity "zero triplet" (azr-spec.md section 7)
ZERO_INDUCTION_INPUTS = ['"Hello world"', "1", "dict(a=1, b=2)", "(1.1, 1.2, 1.3)",
                         '"[[1, 0, 0], [0, 0, 0], [0, 0, 0]]"', "1001101100010001"]


def zero_buffers():
    """The identity zero triplet in every buffer (the start of the seeding phase)."""
    triplet = {"program": ZERO_PROGRAM, "input": '"Hello world"', "output": '"Hello world"', "imports": [], "step": 0}
    induction = {"program": ZERO_PROGRAM, "inputs": list(ZERO_INDUCTION_INPUTS), "outputs": list(ZERO_INDUCTION_INPUTS),
                 "message": "Write a function that returns whatever you input", "imports": [], "step": 0}
    return {"deduction": [dict(triplet)], "abduction": [dict(triplet)], "induction": [induction]}


def bad_field(record, fields):
    """The first name in fields ({name: str or list}) that record lacks or holds with another type (list: a list of
    str), or None. Checks seed files and saved buffers, so the loop never meets a malformed entry mid-step."""
    for name, kind in fields.items():
        v = record.get(name) if isinstance(record, dict) else None
        if not (isinstance(v, str) if kind is str else isinstance(v, list) and all(isinstance(x, str) for x in v)):
            return name
    return None


def load_seed_buffers(path):
    """AZR's published seed files -> buffers. The ded/abd buffers start as two copies of the same 256 triplets."""
    io_path = Path(path)
    if not io_path.name.endswith("_seed_io.jsonl") or io_path.name.endswith("_code_f_seed_io.jsonl"):
        die(f"--seed-data={path}: {'' if io_path.is_file() else 'no such file; '}give AZR's *_seed_io.jsonl (its "
            "*_code_f_seed_io.jsonl must sit beside it)")
    f_path = io_path.with_name(io_path.name.replace("_seed_io.jsonl", "_code_f_seed_io.jsonl"))
    for p in (io_path, f_path):
        if not p.is_file():
            die(f"seed file {p} not found; --seed-data takes AZR's *_seed_io.jsonl with its *_code_f_seed_io.jsonl "
                "beside it")
    def rows(p, fields):  # JSON objects whose fields have the seed files' types
        out = []
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                die(f"{p} line {n} is not valid JSON ({e}); it is not an AZR seed file")
            name = bad_field(r, fields) or (r.get("imports") is not None and bad_field(r, {"imports": list}))
            if name:  # imports may be absent or null, else a list of import lines (a string would split into chars)
                kind = "string" if fields.get(name, list) is str else "list of str"
                die(f"{p} line {n}: field {name!r} missing or not a {kind}; it is not an AZR seed file")
            out.append(r)
        if not out:
            die(f"seed file {p} holds no entries; --seed-data takes AZR's *_seed_io.jsonl with its companion")
        return out
    io_rows = rows(io_path, {"snippet": str, "input": str, "output": str})
    f_rows = rows(f_path, {"snippet": str, "inputs": list, "outputs": list, "message": str})
    triplets = [{"program": r["snippet"], "input": r["input"], "output": r["output"],
                 "imports": list(r.get("imports") or []), "step": 0} for r in io_rows]
    induction = [{"program": r["snippet"], "inputs": r["inputs"], "outputs": r["outputs"], "message": r["message"],
                  "imports": list(r.get("imports") or []), "step": 0} for r in f_rows]
    return {"deduction": [dict(t) for t in triplets], "abduction": [dict(t) for t in triplets], "induction": induction}


def add_to_buffer(buffer, entries, step, cap):
    """Append valid proposals stamped with `step` (no dedup, no learnability filter), then keep the first `cap`
    entries: once full, new entries are dropped (the official truncation keeps the oldest). Returns #kept."""
    before = len(buffer)
    buffer.extend({**e, "step": step} for e in entries)
    del buffer[cap:]
    return len(buffer) - before


def sample_references(buffer, k, rng):
    """K references uniformly without replacement (fewer if the buffer is smaller)."""
    return rng.sample(buffer, min(k, len(buffer)))


def sample_solver_batch(buffer, n, step, window, rng):
    """Up to n entries stamped within `window` steps before `step` (the previous step's valid proposals; all seeds
    at step 1), without replacement, then filled uniformly from the whole buffer (max_new strategy)."""
    recent = [e for e in buffer if step - e["step"] <= window]
    chosen = rng.sample(recent, min(n, len(recent)))
    rest = n - len(chosen)
    if rest > 0 and buffer:
        chosen += rng.sample(buffer, rest) if rest <= len(buffer) else [rng.choice(buffer) for _ in range(rest)]
    return chosen


def induction_split(entry):
    """Given pairs (shown to the solver) and hidden pairs (the test): first half / second half (5 + 5 of 10)."""
    half = len(entry["inputs"]) // 2
    return (entry["inputs"][:half], entry["outputs"][:half]), (entry["inputs"][half:], entry["outputs"][half:])


# -----------------------------------------------------------------------------
# Distributed helpers and seeds: plain torchrun. Every rank holds the same buffers and builds the same global
# batches from the same (seed, step) RNG, rolls out the prompts i with i % world == rank, and all ranks exchange the
# results.

def print0(*args, rank=0, **kwargs):
    if rank == 0:
        print(*args, **kwargs, flush=True)


def gather_strided(local, rank, world):
    """Reassemble a global list from per-rank slices global[rank::world] (order preserved)."""
    if world == 1:
        return local
    parts = [None] * world
    dist.all_gather_object(parts, local)
    total = sum(len(p) for p in parts)
    return [parts[i % world][i // world] for i in range(total)]


def derived_seed(*parts):
    """A 31-bit seed from any tuple (string seeding of random.Random is sha512-based: stable across runs)."""
    return random.Random("-".join(map(str, parts))).randrange(2 ** 31)


# -----------------------------------------------------------------------------
# Rollouts and batches: prompt texts (R1 "zero" template, raw concatenation, no chat template) -> token ids ->
# generate with the current weights (model.generate, sampling through kernels.sample) -> completion ids [B][L].

def rollout(qwen, prompt_ids, cfg, eos_id, seed, progress=False):
    """One sampled completion per prompt (token ids, EOS excluded); T=1.0, top-p 1, top-k off in the paper."""
    if not prompt_ids:
        return []
    return generate(qwen, prompt_ids, cfg.max_response_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                    top_p=cfg.top_p, stop_token_ids=(eos_id,), seed=seed, progress=progress,
                    cuda_graphs=cfg.cuda_graphs and qwen.device.type == "cuda", max_batch=cfg.max_batch,
                    kv_cache_tokens=cfg.kv_cache_tokens or None)


def with_gathered_weights(qwen, sharded, on):
    """Generation with FSDP2: gather every layer's weights once (bf16) and keep them gathered for the whole
    generation phase, instead of an all-gather per decode step (ranks decode different numbers of steps, so
    per-forward collectives would deadlock). No-op without FSDP."""
    if not sharded:
        return
    from torch.distributed.fsdp import FSDPModule
    for m in [m for m in qwen.modules() if isinstance(m, FSDPModule)]:
        if on:
            m.unshard()
        else:
            m.reshard()
        if m is not qwen:  # the root stays gathered after forward (FSDP2's own heuristic)
            m.set_reshard_after_forward(not on, recurse=False)


def response_record(item, completion, max_tokens, eos_id):
    """Per-sequence fields shared by both roles. The EOS the model sampled is trained too (so it learns to stop);
    a response that hit max_tokens has none and is `truncated` (the overlong-masking ablation drops those)."""
    truncated = len(completion) >= max_tokens
    response = list(completion) + ([] if truncated else [eos_id])
    return {"response_ids": response, "length": len(response), "truncated": truncated, "group": item["group"]}


def encode(tokenizer, text):
    return tokenizer.encode(text, add_special_tokens=False)


def proposer_text(task, source, references, num_inputs=prompts.NUM_INPUTS):
    """The proposer prompt: induction shows source["program"]; deduction/abduction show the K references."""
    if task == "induction":
        return prompts.r1_wrap(prompts.induction_proposer_prompt(source["program"], num_inputs))
    refs = [{"program": e["program"], "input": e["input"], "output": e["output"]} for e in references]
    return prompts.r1_wrap(prompts.proposer_prompt(task, refs))


def solver_text(task, entry):
    """The solver prompt for a buffer entry; induction shows only the given half of its pairs."""
    if task == "induction":
        (given_in, given_out), _ = induction_split(entry)
        entry = {"inputs": given_in, "outputs": given_out, "message": entry["message"]}
    return prompts.r1_wrap(prompts.solver_prompt(task, entry))


def build_batches(buffers, tasks, cfg, step, tokenizer, rng):
    """The six (task, role) batches of step `step`, from the buffers as they are at the start of the step (so the
    solver trains on the previous step's proposals: the official one-step lag). Each batch is a list of items:
    propose {prompt_ids, group} (induction adds the shown program and its imports), solve {prompt_ids, group, entry};
    prompts over max_prompt_tokens are dropped (official), so a batch may be smaller than batch_size."""
    n_prompts = cfg.batch_size // cfg.group_size
    # Induction programs come from the union of the deduction and abduction buffers of the tasks being trained (the
    # official get_snippets: a type left out of --tasks has an empty buffer there, not a second copy of the seeds);
    # with neither, from the seeds.
    programs = [e for t in ("deduction", "abduction") if t in tasks for e in buffers[t]] or buffers["deduction"]
    batches = {}
    for task in tasks:
        propose, solve = [], []
        for g in range(n_prompts):
            if task == "induction":  # one program from the union of the deduction and abduction buffers
                source = rng.choice(programs)
                data = {"program": source["program"], "imports": source["imports"]}
                text = proposer_text(task, data, [], cfg.induction_inputs)
            else:
                data = {}
                text = proposer_text(task, data, sample_references(buffers[task], cfg.num_references, rng))
            propose.append({"prompt_ids": encode(tokenizer, text), "group": g, **data})
        propose = [it for it in propose if len(it["prompt_ids"]) <= cfg.max_prompt_tokens]
        # the official max_new loader: 2B-1 candidates, over-long prompts dropped, shuffled, the first B kept (so
        # about half of the previous step's proposals make the batch)
        candidates = sample_solver_batch(buffers[task], 2 * n_prompts - 1, step, cfg.solver_window, rng)
        rng.shuffle(candidates)
        for entry in candidates:
            if len(solve) == n_prompts:
                break
            ids = encode(tokenizer, solver_text(task, entry))
            if len(ids) <= cfg.max_prompt_tokens:
                solve.append({"prompt_ids": ids, "group": len(solve), "entry": entry})
        for role, items in (("propose", propose), ("solve", solve)):
            batches[(task, role)] = [it for it in items for _ in range(cfg.group_size)]  # group_size samples each
    return batches


# -----------------------------------------------------------------------------
# Scoring: proposals are parsed and validated in the sandbox; solver answers are checked in the sandbox.

def validate_proposals(task, items, texts, sandbox, cfg, whole_response=False):
    """Parse each proposer response and validate it in the sandbox. Returns (records, #executions): one record per
    response with format_ok, `entry` (the buffer entry with gold outputs, or None when unparseable/invalid) and, once
    parsed, the proposal and the sandbox status. whole_response: parse the blocks from the whole response, not just
    its <answer> (the official seeding phase does)."""
    records, jobs = [], []  # jobs: (record index, program, input text)
    for i, (item, text) in enumerate(zip(items, texts)):
        format_ok, answer = prompts.parse_response(text)
        if whole_response:
            answer = text
        proposal = prompts.parse_proposal(task, answer, cfg.induction_inputs)
        records.append({"format_ok": format_ok, "entry": None})
        if proposal is None:
            continue
        records[-1]["proposal"] = proposal
        if task == "induction":  # the last cfg.induction_inputs input fences, each run on the shown program
            jobs += [(i, item["program"], x) for x in proposal["inputs"]]
        else:
            jobs.append((i, proposal["program"], proposal["input"]))
    results = sandbox.validate_many([(code, args) for _, code, args in jobs]) if jobs else []
    by_record = {}
    for (i, _, _), res in zip(jobs, results):
        by_record.setdefault(i, []).append(res)
    for i, results_i in by_record.items():
        rec, item = records[i], items[i]
        rec["status"] = next((r.status for r in results_i if r.status != "ok"), "ok")
        # AZR's check_all also passes a run whose status line names no error (f raising Exception or StopIteration,
        # its own determinism failure), with output "": valid, and unsolvable (sandbox.azr_valid_without_output)
        if not all(r.status == "ok" or azr_valid_without_output(r) for r in results_i):
            continue
        # gold outputs are cut to 400 characters (200 + "..." + 200) like AZR's executor: such tasks stay unsolvable
        outputs = [truncate_output(r.value) if r.status == "ok" else "" for r in results_i]
        if task == "induction":  # every one of the inputs must run deterministically on the sampled program
            rec["entry"] = {"program": item["program"], "inputs": rec["proposal"]["inputs"], "outputs": outputs,
                            "message": rec["proposal"]["message"], "imports": list(item["imports"])}
        else:  # the sandbox returns the program with its function renamed to f, and its import lines
            rec["entry"] = {"program": results_i[0].program, "input": rec["proposal"]["input"],
                            "output": outputs[0], "imports": list(results_i[0].imports)}
    return records, len(jobs)


def check_answers(task, entries, texts, sandbox, format_required=True):
    """Solver responses -> (format_ok list, correct list, #executions). Trained responses need the R1 format
    (and, for induction, a fenced program); learnability rollouts only extract the <answer> (no format check)."""
    if format_required:
        parsed = [prompts.parse_response(t) for t in texts]
    else:
        parsed = [(True, prompts.extract_answer(t)) for t in texts]
    raw = [prompts.parse_prediction(task, answer, raw=True) for _, answer in parsed]  # as AZR pastes it
    predictions = [p.strip() if p is not None else None for p in raw]
    if task == "induction":  # no fenced program in the answer counts as a format failure (official)
        parsed = [(ok and p is not None, a) for (ok, a), p in zip(parsed, predictions)]
    # only well-formatted answers are checked, and identical answers to one task only once (the official cache);
    # answers that AZR's executor can never score correct are wrong without a run. Checked per answer: two answers
    # may strip to the same text while only one of them fails as pasted ("[1, 2]" and "[1, 2]\n"), and the
    # official cache is keyed by the unstripped answer, so the failing one must not borrow the other's verdict.
    checked = [ok and not executor_fails(task, e, r) for e, r, (ok, _) in zip(entries, raw, parsed)]
    unique = {(id(e), p): (e, p) for e, p, c in zip(entries, predictions, checked) if c}
    if task == "deduction":
        jobs = [(e["output"], p) for e, p in unique.values()]
    elif task == "abduction":
        jobs = [(e["program"], e["output"], p) for e, p in unique.values()]
    else:  # the candidate must reproduce every hidden pair, with the gold program's imports prepended
        jobs = [(p, e["imports"], *induction_split(e)[1]) for e, p in unique.values()]
    check = {"deduction": sandbox.check_deduction, "abduction": sandbox.check_abduction,
             "induction": sandbox.check_induction}[task]
    verdict = dict(zip(unique, check(jobs) if jobs else []))
    # None = the check was lost to a sandbox_error: dropped from a learnability mean, wrong for a trained answer
    correct = [c and verdict.get((id(e), p), False) for e, p, c in zip(entries, predictions, checked)]
    return [ok for ok, _ in parsed], correct, len(jobs)


def executor_fails(task, entry, prediction):
    """Solver checks that AZR's executor always fails (azr-spec.md 8), kept so rewards match the official ones. It
    builds a program from a template, execs all lines but the last (after a regex that rejects any `input(` in
    them) and evals the last one, `gold == f(<input>)`, so:
    - abduction: a predicted input (raw, as pasted: unstripped) with a line break or a trailing comment (which
      swallows the closing parenthesis) never scores; `input(` in it is fine (it sits on the last line);
    - induction: a candidate program containing `input(` never scores, nor does a task whose hidden input spans
      lines or ends in a comment (that task is unsolvable).
    Deduction answers are compared by `eval` of the unstripped answer in the trainer, then in a one-line template:
    an answer that eval cannot parse as captured (a line break, then indentation) never scores. Proposal
    validation applies the regex to the program and the proposed input (sandbox.azr_program, Sandbox.validate)."""
    if task == "deduction":
        return eval_text_fails(prediction)
    if task == "abduction":
        return pasted_call_fails(prediction)
    if task == "induction":
        hidden = induction_split(entry)[1][0]
        return "input(" in prediction or any(pasted_call_fails(x.strip()) for x in hidden)
    return False


def tick(clock, **amounts):
    """Add to the step's counters (seconds per phase, tokens, executions)."""
    for key, value in amounts.items():
        clock[key] = clock.get(key, 0.0) + value


def learnability(jobs, qwen, tokenizer, sandbox, cfg, seed, clock):
    """acc per valid proposal, jobs [(task, entry)] of any task types: n solver rollouts each with the current policy
    (all in one engine call; scored with answer extraction only, never trained on). A prompt over max_prompt_tokens
    gives acc 0 (official). clock accumulates counters."""
    n = cfg.learnability_samples
    prompt_ids = [encode(tokenizer, solver_text(task, e)) for task, e in jobs]
    run = [i for i, p in enumerate(prompt_ids) if len(p) <= cfg.max_prompt_tokens]
    t0 = time.time()
    completions = rollout(qwen, [prompt_ids[i] for i in run for _ in range(n)], cfg, tokenizer.eos_token_id, seed)
    t1 = time.time()
    texts = [tokenizer.decode(c, skip_special_tokens=True) for c in completions]
    correct, n_exec = [False] * len(texts), 0  # rollout k * n + s is sample s of proposal run[k]
    for task in TASKS:
        rows = [k * n + s for k, i in enumerate(run) if jobs[i][0] == task for s in range(n)]
        if rows:
            _, ok, m = check_answers(task, [jobs[run[r // n]][1] for r in rows], [texts[r] for r in rows], sandbox,
                                     format_required=False)
            for r, v in zip(rows, ok):
                correct[r] = v
            n_exec += m
    tick(clock, tokens=sum(map(len, completions)), gen_s=t1 - t0, executions=n_exec, exec_s=time.time() - t1)
    acc = [0.0] * len(jobs)
    for k, i in enumerate(run):
        acc[i] = learnability_accuracy(correct[k * n:(k + 1) * n])
    return acc


def propose_phase(items, qwen, tokenizer, sandbox, cfg, seeds, clock, sharded, progress=False):
    """PROPOSE for this rank's share of every proposer batch, items {task: [item]}: rollouts -> parse + validate in
    the sandbox -> learnability rollouts for the valid, well-formatted proposals -> rewards. Returns {task: one record
    per item}. Each of the two generations is one engine call for all task types: a call lasts as long as its
    longest rollout (up to max_response_tokens), so one call per task type would wait for three such tails."""
    eos = tokenizer.eos_token_id
    flat = [(task, it) for task, its in items.items() for it in its]  # task-major, batch order within a task
    t0 = time.time()
    with_gathered_weights(qwen, sharded, True)
    completions = rollout(qwen, [it["prompt_ids"] for _, it in flat], cfg, eos, seeds[0], progress)
    texts = [tokenizer.decode(c, skip_special_tokens=True) for c in completions]
    t1 = time.time()
    records, n_exec = [], 0
    for task, its in items.items():
        recs, n = validate_proposals(task, its, texts[len(records):len(records) + len(its)], sandbox, cfg)
        records, n_exec = records + recs, n_exec + n
    t2 = time.time()
    tick(clock, propose=t1 - t0, tokens=sum(map(len, completions)), gen_s=t1 - t0, validate=t2 - t1,
         executions=n_exec, exec_s=t2 - t1)
    scored = [i for i, r in enumerate(records) if r["entry"] is not None and r["format_ok"]]
    acc = [None] * len(records)
    if cfg.train_proposer and scored:  # learnability only feeds the proposer's reward
        jobs = [(flat[i][0], records[i]["entry"]) for i in scored]
        for i, a in zip(scored, learnability(jobs, qwen, tokenizer, sandbox, cfg, seeds[1], clock)):
            acc[i] = a
    with_gathered_weights(qwen, sharded, False)
    tick(clock, learnability=time.time() - t2)
    out = {task: [] for task in items}
    for (task, it), c, r, a, t in zip(flat, completions, records, acc, texts):
        out[task].append({**response_record(it, c, cfg.max_response_tokens, eos), "format_ok": r["format_ok"],
                          "valid": r["entry"] is not None, "acc": a, "entry": r["entry"],
                          "status": r.get("status", "unparsed"),
                          "reward": proposer_reward(r["format_ok"], r["entry"] is not None, a or 0.0), "text": t})
    return out


# -----------------------------------------------------------------------------
# Policy update. Each sequence is prompt + response (+ EOS when the model stopped); only response tokens are
# trained. Hidden states come from the model, logprobs and entropy from the fused kernel (never [N, V] logits
# in memory for the whole batch).

def sequence_logprobs(qwen, pairs, device, temperature=1.0):
    """pairs: [(prompt_ids, response_ids)] -> (logprobs [N], entropy [N]) over all N response tokens, in order,
    under logits / temperature: the distribution the rollouts were sampled from (azr-spec.md 5.2).
    Rows are right-padded: under causal attention padding after a sequence never touches it, so no mask."""
    T = max(len(p) + len(r) for p, r in pairs)
    ids = torch.zeros(len(pairs), T, dtype=torch.long)
    rows, cols, targets = [], [], []
    for b, (p, r) in enumerate(pairs):
        ids[b, :len(p) + len(r)] = torch.tensor(p + r)
        rows += [b] * len(r)
        cols += range(len(p) - 1, len(p) + len(r) - 1)  # position t predicts token t+1
        targets += r
    hidden = qwen(ids.to(device), return_hidden=True)  # [B, T, D]
    h = hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)]  # [N, D]
    return kernels.token_logprobs(h, qwen.lm_head.weight, torch.tensor(targets, device=device),
                                  temperature=temperature, with_entropy=True)


def update(qwen, optimizer, sequences, cfg, rank=0, world=1, master=None, ref_model=None, sharded=False):
    """One optimizer step on this rank's sequences [{prompt_ids, response_ids, advantage, weight}], where the
    per-token weights sum to 1 over the whole global batch, so summing gradients over ranks gives the global loss.
    master: what optimizer_params returned: fp32 copies of bf16 parameters (the optimizer steps those, then copies
    back), or under FSDP the local shards 8-bit AdamW steps; None: the optimizer steps the parameters themselves.
    rank: unused (callers pass it positionally)."""
    device = next(qwen.parameters()).device
    # micro-batches of similar lengths pad less
    order = sorted(range(len(sequences)),
                   key=lambda i: len(sequences[i]["prompt_ids"]) + len(sequences[i]["response_ids"]))
    chunks = [order[i:i + cfg.micro_batch] for i in range(0, len(order), cfg.micro_batch)]
    if world > 1:  # FSDP needs the same number of forward/backward passes on every rank: pad with empty chunks
        n = torch.tensor(len(chunks))
        dist.all_reduce(n, op=dist.ReduceOp.MAX)
        chunks += [[] for _ in range(int(n) - len(chunks))]
    params = [p for p in qwen.parameters() if p.requires_grad]
    stats = {"loss": 0.0, "entropy": 0.0, "kl": 0.0, "clipfrac": 0.0}
    for chunk in chunks:
        seqs = [sequences[i] for i in chunk]
        if not seqs:  # a zero-weight dummy keeps collectives in step
            seqs = [{"prompt_ids": [0], "response_ids": [0], "advantage": 0.0, "weight": 0.0}]
        pairs = [(s["prompt_ids"], s["response_ids"]) for s in seqs]
        logprobs, entropy = sequence_logprobs(qwen, pairs, device, cfg.temperature)  # [N], [N] float32
        adv = torch.tensor([s["advantage"] for s in seqs for _ in s["response_ids"]], device=device)
        w = torch.tensor([s["weight"] for s in seqs for _ in s["response_ids"]], device=device)
        ref = None
        if ref_model is not None:
            with torch.no_grad():
                ref, _ = sequence_logprobs(ref_model, pairs, device, cfg.temperature)
            if sharded:  # FSDP keeps the root's weights (embeddings, lm_head) gathered after forward; no backward
                ref_model.reshard()  # follows to free them, so drop them now
        # old logprobs = current ones (same weights, one step per iteration): the ratio is exactly 1 (deviation 1)
        loss, m = policy_loss(logprobs, logprobs.detach(), adv, w, cfg.clip_low, cfg.clip_high, entropy,
                              cfg.entropy_coef, ref, cfg.kl_coef)
        # FSDP's reduce-scatter averages over ranks; our weights already normalise globally, so undo the average
        (loss * (world if sharded else 1)).backward()
        if master is not None and not sharded:  # accumulate in fp32: bf16 sums lose low bits over micro-batches
            for mp, p in zip(master, params):
                if p.grad is not None:
                    mp.grad = p.grad.float() if mp.grad is None else mp.grad.add_(p.grad.float())
                    p.grad = None
        stats["loss"] += loss.item()
        stats["entropy"] += (w * entropy.detach()).sum().item()
        stats["kl"] += m.get("kl", 0.0)
        stats["clipfrac"] += m["clipfrac"]
    trained = master if master is not None and not sharded else params
    if world > 1 and not sharded:  # replicated weights: sum gradients (global weights already normalise)
        # Every rank ran the same number of backward passes (padded above), so a gradient exists on all ranks or on
        # none: none when no rank had a sequence to train, and then AdamW skips the step as one process does (a
        # zero gradient would still apply weight decay and advance Adam's moments and step count).
        for p in trained:
            if p.grad is not None:
                dist.all_reduce(p.grad)
    # DTensor-aware under FSDP; --grad_clip=0 only measures the norm (a max norm of 0 would zero every gradient)
    grad_norm = torch.nn.utils.clip_grad_norm_(trained, cfg.grad_clip or float("inf"))
    if sharded and master is not None:  # 8-bit AdamW under FSDP steps the local shards (see optimizer_params)
        for shard, p in zip(master, params):
            shard.grad = p.grad.to_local() if p.grad is not None else None
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    qwen.zero_grad(set_to_none=True)
    if master is not None and not sharded:  # fp32 masters -> bf16 compute weights
        with torch.no_grad():
            for mp, p in zip(master, params):
                p.copy_(mp)
    if world > 1:
        t = torch.tensor([stats["loss"], stats["entropy"], stats["kl"], stats["clipfrac"]], dtype=torch.float64)
        dist.all_reduce(t)
        stats["loss"], stats["entropy"], stats["kl"], stats["clipfrac"] = t.tolist()
    stats["grad_norm"] = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
    return stats


# -----------------------------------------------------------------------------
# Policy and optimizer setup: fp32 master weights, FSDP2 sharding, the frozen KL reference, 8-bit AdamW.

def fsdp_mesh(device):
    """FSDP2's 1-D mesh over all ranks on our device's type. fully_shard's default mesh takes the machine's
    accelerator instead: --device=cpu on a box with fewer GPUs than ranks then died in set_device(local_rank)."""
    from torch.distributed.device_mesh import init_device_mesh
    return init_device_mesh(device.type, (dist.get_world_size(),))


def setup_policy(path, cfg, device, compute_dtype, world):
    """Load the policy in fp32 (the master copy), then either keep fp32, cast to bf16 with separate fp32 master
    tensors, or shard with FSDP2 (fp32 sharded params, bf16 all-gathered compute). Returns (qwen, master, sharded).

    Why fp32 masters: at lr 1e-6 an Adam update is ~1e-6 relative, below bf16's 2^-8 resolution, so updating bf16
    weights in place rounds almost every update away."""
    qwen = Qwen2.from_pretrained(path, device=device, dtype=torch.float32)
    qwen.gradient_checkpointing = cfg.grad_checkpointing
    if cfg.fsdp == "on":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
        mp = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
        mesh = fsdp_mesh(device)
        for layer in qwen.model.layers:
            fully_shard(layer, mesh=mesh, mp_policy=mp)
        fully_shard(qwen, mesh=mesh, mp_policy=mp)
        return qwen, None, True
    if compute_dtype == torch.float32:
        return qwen, None, False
    master = [torch.nn.Parameter(p.detach().clone()) for p in qwen.parameters()]
    for p in qwen.parameters():  # parameters only: buffers such as RoPE tables keep their precision
        p.data = p.data.to(compute_dtype)
    return qwen, master, False


def setup_reference(path, device, compute_dtype, sharded):
    """The frozen initial policy of the k3 KL ablation, in the compute dtype. Under FSDP it is sharded like the
    policy (each rank keeps 1/world of it; every forward all-gathers one layer at a time), so the KL term does not
    bring back the replicated copy that FSDP removed."""
    ref = Qwen2.from_pretrained(path, device=device, dtype=compute_dtype).eval()
    ref.requires_grad_(False)
    if sharded:
        from torch.distributed.fsdp import fully_shard
        mesh = fsdp_mesh(device)
        for layer in ref.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(ref, mesh=mesh)
    return ref


def optimizer_params(qwen, master, sharded, cfg):
    """Tensors the optimizer steps instead of the parameters, or None: the fp32 masters, or, for 8-bit AdamW under
    FSDP (bitsandbytes' kernels reject DTensors), plain tensors sharing storage with each rank's local shards."""
    if sharded and cfg.optim == "adamw8bit":
        return [torch.nn.Parameter(p.to_local(), requires_grad=False) for p in qwen.parameters()]
    return master


def make_optimizer(params, cfg):
    if cfg.optim == "adamw8bit":  # bitsandbytes only when asked (keeps the default path dependency-free)
        import logging
        # on AVX512-BF16 CPUs its import warns that a 4-bit matmul kernel from the hub is missing: unused here
        logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
        import bitsandbytes as bnb
        return bnb.optim.AdamW8bit(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)


# -----------------------------------------------------------------------------
# Checkpoints: out/ckpt/step_NNNNNN/ = HF folder (config.json, model.safetensors, tokenizer files) + optim.pt (8-bit
# AdamW under FSDP: optim_rank{r}.pt per rank) + buffers.json + state.json (step, config, RNGs, world size); written
# to a temp folder and renamed, then `latest` is replaced atomically.

def full_state(qwen, optimizer, master, sharded):
    """Full (unsharded, fp32 when training in bf16) model and optimizer state dicts, on CPU."""
    if sharded:
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        local = master is not None  # 8-bit AdamW on local shards: each rank keeps its own optimizer file
        return get_model_state_dict(qwen, options=opts), \
            optimizer.state_dict() if local else get_optimizer_state_dict(qwen, optimizer, options=opts)
    # replace bf16 parameters by their fp32 masters (exact resume); matching storage also covers tied lm_head
    to_master = {p.data_ptr(): mp for p, mp in zip(qwen.parameters(), master)} if master is not None else {}
    model_sd = {k: to_master.get(v.data_ptr(), v).detach().cpu() for k, v in qwen.state_dict().items()}
    return model_sd, optimizer.state_dict()


def save_checkpoint(out, step, qwen, optimizer, master, sharded, buffers, cfg, source, rank):
    model_sd, optim_sd = full_state(qwen, optimizer, master, sharded)
    root = Path(out) / "ckpt"
    final, tmp = root / f"step_{step:06d}", root / f".tmp_step_{step:06d}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    per_rank = sharded and master is not None
    if per_rank:  # every rank writes its own shard of the 8-bit optimizer state into the temp folder
        dist.barrier()
        save_torch(optim_sd, tmp / f"optim_rank{rank}.pt")
        dist.barrier()
    if rank == 0:
        try:
            qwen.save_pretrained(str(tmp), state_dict=model_sd)
            for name in os.listdir(source):  # tokenizer files travel with the weights so eval/ loads the folder as is
                if name.startswith(("tokenizer", "vocab", "merges", "special_tokens", "generation_config")):
                    shutil.copy(Path(source) / name, tmp / name)
            if not per_rank:
                save_torch(optim_sd, tmp / "optim.pt")
            (tmp / "buffers.json").write_text(json.dumps(buffers))
            state = {"step": step, "config": dataclasses.asdict(cfg), "python_rng": list_state(random.getstate()),
                     "torch_rng": torch.get_rng_state().tolist(),
                     "world": dist.get_world_size() if dist.is_initialized() else 1}
            (tmp / "state.json").write_text(json.dumps(state))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            write_atomic(root / "latest", final.name)
            drop_old_optimizer_state(root, cfg.keep_optim)
        except BaseException:  # disk full, Ctrl-C: drop the partial folder (the previous checkpoint is untouched)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if dist.is_initialized():
        dist.barrier()


def drop_old_optimizer_state(root, keep):
    """Delete optim*.pt from all but the newest `keep` checkpoints (0 = keep all). Only --resume reads them, and at
    Qwen2.5-7B each is 61 GB (fp32 exp_avg and exp_avg_sq), 50 checkpoints of a 500-step run 3 TB; the weights
    (30 GB), buffers and state stay for eval and plots. Runs after the new checkpoint is complete."""
    for ckpt in complete_checkpoints(root)[:-keep] if keep else []:
        for f in ckpt.glob("optim*.pt"):
            f.unlink()


def save_torch(obj, path):
    """torch.save, with a full disk reported as the OSError(ENOSPC) Python's own writes raise (torch reports it as a
    RuntimeError from its zip writer), so entry() words it in one line."""
    try:
        torch.save(obj, path)
    except RuntimeError as e:
        if "No space left" in str(e) or shutil.disk_usage(Path(path).parent).free < 64 << 20:
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from None
        raise


def list_state(x):
    """random.getstate()'s nested tuples as lists, for JSON (load_training_state turns them back)."""
    return [list_state(v) for v in x] if isinstance(x, tuple) else x


def latest_checkpoint(out):
    """The folder ckpt/latest names; without a usable pointer (deleted, garbage, naming a deleted folder), the
    highest step_* folder that is complete (state.json, written last before the rename, is there). None if none."""
    root = Path(out) / "ckpt"
    pointer = root / "latest"
    if pointer.is_file():
        name = pointer.read_text(errors="replace").strip()
        if re.fullmatch(r"step_\d+", name) and (root / name / "state.json").is_file():
            return root / name
    steps = complete_checkpoints(root)
    return steps[-1] if steps else None


def complete_checkpoints(root):
    """The step_* folders under ckpt/ whose state.json (written last before the rename) is there, oldest first."""
    return sorted(p for p in root.glob("step_*") if re.fullmatch(r"step_\d+", p.name) and (p / "state.json").is_file())


def checkpoint_step(ckpt):
    """The step a checkpoint holds, after checking that its files are all there and its JSON parses; a damaged
    checkpoint gets one line saying how to resume from the one before it."""
    def damaged(why):
        die(f"checkpoint {ckpt} is damaged ({why}); delete that folder to resume from the checkpoint before it, or "
            "start a fresh --out")
    for name in ("config.json", "state.json", "buffers.json"):
        if not (ckpt / name).is_file():
            damaged(f"no {name}")
    if not (ckpt / "model.safetensors").is_file() and not (ckpt / "model.safetensors.index.json").is_file():
        damaged("no model.safetensors")
    if not (ckpt / "optim.pt").is_file() and not (ckpt / "optim_rank0.pt").is_file():
        die(f"checkpoint {ckpt} holds no optimizer state (only the newest --keep_optim checkpoints keep optim.pt); "
            "resume from a newer one, or train on from its weights with --model and a fresh --out")
    try:
        step = json.loads((ckpt / "state.json").read_text())["step"]
        buffers = json.loads((ckpt / "buffers.json").read_text())
        json.loads((ckpt / "config.json").read_text())
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        damaged(f"{type(e).__name__}: {e}")
    if not isinstance(step, int):
        damaged("state.json holds no integer step")
    problem = buffers_problem(buffers)
    if problem:
        damaged(f"buffers.json: {problem}")
    return step


def buffers_problem(buffers):
    """What makes a saved buffers.json unusable (the loop would crash on it mid-step), or None."""
    if not isinstance(buffers, dict) or set(buffers) != set(TASKS):
        return f"not an object with the keys {', '.join(TASKS)}"
    for task, entries in buffers.items():
        if not isinstance(entries, list):
            return f"{task} is not a list"
        for n, e in enumerate(entries):
            if bad_field(e, BUFFER_FIELDS[task]) or not isinstance(e.get("step"), int):
                return (f"{task} entry {n} lacks one of {', '.join(BUFFER_FIELDS[task])}, step or has the wrong "
                        "type")
    return None


MODEL_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
              "vocab_size")


def check_same_model(ckpt, source):
    """A checkpoint from another model gets one line instead of a shape-mismatch traceback."""
    a = json.loads((Path(ckpt) / "config.json").read_text())
    b = json.loads((Path(source) / "config.json").read_text())
    diff = [k for k in MODEL_KEYS if a.get(k) != b.get(k)]
    if diff:
        die(f"checkpoint {ckpt} is from another model ({', '.join(f'{k} {a.get(k)} vs {b.get(k)}' for k in diff)}); "
            f"use the same --model or a fresh --out")


def load_training_state(ckpt, optimizer, sharded, qwen, rank, world, optim):
    """Resume: load the optimizer state (as saved, or re-split for 8-bit AdamW saved by another number of ranks) and
    the global RNGs. Returns (buffers, step)."""
    state = json.loads((Path(ckpt) / "state.json").read_text())
    saved_world = state.get("world", 1)
    per_rank = sharded and optim == "adamw8bit"  # 8-bit AdamW under FSDP: one file per rank (save_checkpoint)
    name = f"optim_rank{rank}.pt" if per_rank else "optim.pt"
    if (Path(ckpt) / name).is_file() and (not per_rank or saved_world == world):  # the same layout: load as saved
        # Under FSDP every rank reads the whole optim.pt (set_optimizer_state_dict wants the full state on each rank
        # and keeps only its shard): mapped, the ranks share the file's pages instead of each holding a private copy
        # (7B: 61 GB of fp32 exp_avg + exp_avg_sq, 8 x 61 GB of host RAM unmapped)
        optim_sd = load_optim_file(ckpt, name, mmap=sharded and not per_rank)
        if sharded and not per_rank:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
            if all(isinstance(k, int) for g in optim_sd["param_groups"] for k in g["params"]):
                # saved with --fsdp=off: keyed by parameter index; FSDP's loader wants parameter names
                names = [n for n, _ in qwen.named_parameters()]
                optim_sd = {"state": {names[k]: v for k, v in optim_sd["state"].items()},
                            "param_groups": [{**g, "params": [names[k] for k in g["params"]]}
                                             for g in optim_sd["param_groups"]]}
            set_optimizer_state_dict(qwen, optimizer, optim_sd, options=StateDictOptions(full_state_dict=True))
        else:
            optimizer.load_state_dict(optim_sd)
    elif optim == "adamw8bit" and (Path(ckpt) / "optim_rank0.pt").is_file():  # per-rank 8-bit state, another split
        reshard_adamw8bit(ckpt, saved_world, optimizer, rank if sharded else 0, world if sharded else 1)
    else:
        saved = state.get("config", {})
        die(f"{ckpt} cannot resume here (no {name}; saved by {saved_world} processes with --optim="
            f"{saved.get('optim', '?')} --fsdp={saved.get('fsdp', '?')}): resume with the same --optim and --fsdp, "
            "or, if they are the same, delete that damaged folder to resume from the checkpoint before it")
    random.setstate(tuple(tuple(v) if isinstance(v, list) else v for v in state["python_rng"]))
    torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
    if saved_world != world:  # every rank seeds its rollouts with its rank: the split changes what is sampled
        print0(f"note: resuming on {world} process(es), saved by {saved_world}: the rollouts from here on differ from "
               "an uninterrupted run's (the weights, optimizer and buffers load exactly)", rank=rank, file=sys.stderr)
    return json.loads((Path(ckpt) / "buffers.json").read_text()), state["step"]


def reshard_adamw8bit(ckpt, saved_world, optimizer, rank, world):
    """Load 8-bit AdamW state that `saved_world` FSDP ranks wrote (optim_rank{r}.pt, each holding its dim-0 shard of
    every parameter) into `optimizer` over another split: this rank's dim-0 chunk out of `world` (FSDP2 splits like
    torch.chunk: ceil(rows / world) rows per rank, the last ones smaller or empty), or whole parameters for world 1.

    bitsandbytes keeps state1/state2 (exp_avg, exp_avg_sq) of a tensor of >= min_8bit_size (4096) values as uint8
    indices into its signed/unsigned dynamic map (qmap1/qmap2), scaled by one absmax per block of 256 values of the
    flattened tensor; smaller tensors keep fp32 state. Per parameter: dequantise the saved shards to fp32,
    concatenate them in rank order ([rows, ...]), take this rank's rows and quantise them again with bnb's own rule.
    The new blocks group other values than the saved ones, so each value moves by up to half a step of the map
    (< 1% of its new block's absmax): close to the saved state, not bit-exact (same-size resumes load it as saved)."""
    import bitsandbytes.functional as F
    wrapped = type(optimizer)._FSDP_WRAPPED_QUANT_STATE_KEY  # bnb's state_dict nests the quantisation tensors here
    saved = [load_optim_file(ckpt, f"optim_rank{r}.pt", mmap=True) for r in range(saved_world)]

    def fp32(entry, i, device):  # one saved shard's state{i} as fp32, [shard rows, ...]
        q = {**entry, **entry.get(wrapped, {})}
        x = q[f"state{i}"].to(device)
        if x.dtype != torch.uint8:
            return x.float()
        return F.dequantize_blockwise(x, absmax=q[f"absmax{i}"].to(device), code=q[f"qmap{i}"].to(device),
                                      blocksize=256)

    params = [p for group in optimizer.param_groups for p in group["params"]]  # local shards or whole parameters
    state = {}
    for j, p in enumerate(params):
        if j not in saved[0]["state"]:
            continue  # never stepped: bnb creates its state at the next step
        new = {"step": saved[0]["state"][j]["step"]}
        for i, qmap in ((1, "dynamic"), (2, "udynamic")):  # exp_avg is signed, exp_avg_sq non-negative
            full = torch.cat([fp32(sd["state"][j], i, p.device) for sd in saved])  # [rows, ...] in rank order
            rows = -(-full.shape[0] // world)
            mine = full[rank * rows:(rank + 1) * rows].contiguous()
            if mine.shape != p.shape:
                die(f"{ckpt}: optimizer state of parameter {j} has {tuple(full.shape)} in all, rows {rank * rows}.. "
                    f"of it do not fit this rank's {tuple(p.shape)}: resume with the checkpoint's --model")
            if p.numel() < optimizer.args.min_8bit_size:  # bnb's init_state rule: small tensors keep fp32 state
                new[f"state{i}"] = mine
            else:
                code = optimizer.name2qmap[qmap].to(p.device)
                new[f"state{i}"], quant = F.quantize_blockwise(mine, code=code, blocksize=256)
                new[f"absmax{i}"], new[f"qmap{i}"] = quant.absmax, code
        state[j] = new
    optimizer.load_state_dict({"state": state, "param_groups": saved[0]["param_groups"]})  # saved lr, betas, ...


def load_optim_file(ckpt, name, mmap=False):
    """torch.load of a checkpoint's optimizer file (tensors only); a truncated or garbage file gets one line."""
    import pickle
    try:
        return torch.load(Path(ckpt) / name, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:  # (its message advises weights_only=False: never, for a file that is not ours)
        why = "not a tensors-only torch file"
    except (RuntimeError, OSError, EOFError, ValueError) as e:  # a truncated zip, mostly
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
    die(f"checkpoint {ckpt} is damaged ({name}: {why}); delete that folder to resume from the checkpoint before it",
        this_rank_only=name != "optim.pt")


# -----------------------------------------------------------------------------
# Seeding phase (no --seed-data): grow a seed buffer from the zero triplet with the frozen initial policy, as
# AZR's scripts/seeding do, then induction seeds from those programs. No model updates.

def run_seeding(qwen, tokenizer, sandbox, cfg, tasks, rank, world, sharded):
    zero = zero_buffers()
    triplets, induction = zero["deduction"], zero["induction"]
    seen = {json.dumps(triplets[0], sort_keys=True)}
    # First the triplets (abduction and deduction proposals conditioned on the growing seed set), then, as the
    # official _init_seed_dataset does, induction seeds from the finished triplets. Each part runs <= seed_rounds.
    # Only the triplet tasks being trained propose seeds (official: the loop runs over --tasks' code_i/code_o; with
    # neither, the zero triplet alone is the seed set).
    triplet_tasks = [t for t in ("abduction", "deduction") if t in tasks]
    for rnd in range(cfg.seed_rounds if triplet_tasks else 0):
        if len(triplets) >= cfg.seed_buffer_size:
            break
        for task in triplet_tasks:
            rng = random.Random(f"{cfg.seed}-seeding-{task}-{rnd}")
            texts = [proposer_text(task, {}, sample_references(triplets, cfg.num_references, rng))
                     for _ in range(cfg.batch_size)]
            entries = propose_entries(task, [{"prompt_ids": encode(tokenizer, t)} for t in texts], qwen, tokenizer,
                                      sandbox, cfg, derived_seed(cfg.seed, "seed", task, rnd, rank), rank, world, sharded)
            # exact-JSON dedup, as the official update_seed: against the seeds from before this batch only, so a
            # triplet proposed twice in one batch is kept twice
            before = set(seen)
            for e in entries:
                key = json.dumps({**e, "step": 0}, sort_keys=True)
                if key not in before and len(triplets) < cfg.seed_buffer_size:
                    seen.add(key)
                    triplets.append({**e, "step": 0})
    for rnd in range(cfg.seed_rounds if "induction" in tasks else 0):
        if len(induction) >= cfg.seed_buffer_size:
            break
        rng = random.Random(f"{cfg.seed}-seeding-induction-{rnd}")
        items = []
        for _ in range(cfg.batch_size):
            src = rng.choice(triplets)
            items.append({"prompt_ids": encode(tokenizer, proposer_text("induction", src, [], cfg.induction_inputs)),
                          "program": src["program"], "imports": src["imports"]})
        entries = propose_entries("induction", items, qwen, tokenizer, sandbox, cfg,
                                  derived_seed(cfg.seed, "seed-f", rnd, rank), rank, world, sharded)
        induction += [{**e, "step": 0} for e in entries][:cfg.seed_buffer_size - len(induction)]
    return {"deduction": [dict(t) for t in triplets], "abduction": [dict(t) for t in triplets], "induction": induction}


def propose_entries(task, items, qwen, tokenizer, sandbox, cfg, seed, rank, world, sharded):
    """Seeding helper: every rank proposes for its share, validates, and all ranks get all valid entries."""
    items = [it for it in items if len(it["prompt_ids"]) <= cfg.max_prompt_tokens]
    mine = items[rank::world]
    with_gathered_weights(qwen, sharded, True)
    completions = rollout(qwen, [it["prompt_ids"] for it in mine], cfg, tokenizer.eos_token_id, seed)
    with_gathered_weights(qwen, sharded, False)
    texts = [tokenizer.decode(c, skip_special_tokens=True) for c in completions]
    records, _ = validate_proposals(task, mine, texts, sandbox, cfg, whole_response=True)
    return [e for e in gather_strided([r["entry"] for r in records], rank, world) if e is not None]


# -----------------------------------------------------------------------------
# Logging helpers

def batch_metrics(task, role, recs):
    """metrics.jsonl keys "{role}/{task}/{metric}" for one batch of global records."""
    n = max(len(recs), 1)
    m = {f"{role}/{task}/reward": sum(r["reward"] for r in recs) / n,
         f"{role}/{task}/format_rate": sum(r["format_ok"] for r in recs) / n,
         f"{role}/{task}/response_len": sum(r["length"] for r in recs) / n,
         f"{role}/{task}/count": len(recs)}
    if role == "propose":
        valid = [r for r in recs if r["valid"]]
        m[f"{role}/{task}/valid_rate"] = len(valid) / n
        m[f"{role}/{task}/num_valid"] = len(valid)
        scored = [r["acc"] for r in valid if r["acc"] is not None]
        if scored:
            m[f"{role}/{task}/learnability_acc"] = sum(scored) / len(scored)
    else:
        m[f"{role}/{task}/accuracy"] = sum(r["correct"] for r in recs) / n
    return m


def truncate_metrics(path, last_step):
    """On resume, keep metrics.jsonl rows up to the checkpoint's step: later steps (and a half-written last line
    from a crash) are about to be rerun, and plots must not show them twice."""
    if not path.exists():
        return
    keep = []
    for row in path.read_text().splitlines():
        try:
            if json.loads(row)["step"] <= last_step:
                keep.append(row + "\n")
        except (ValueError, KeyError, TypeError):
            pass
    write_atomic(path, "".join(keep))


def log_line(step, metrics, tasks):
    short = {"deduction": "ded", "abduction": "abd", "induction": "ind"}

    def per_task(key):
        return " ".join(f"{short[t]} {metrics.get(key.format(t), float('nan')):+.2f}" for t in tasks)
    phases = " ".join(f"{k} {metrics[f'time/{k}']:.1f}s" for k in PHASES)
    return (f"step {step} | P reward {per_task('propose/{}/reward')} valid {per_task('propose/{}/valid_rate')} | "
            f"S reward {per_task('solve/{}/reward')} acc {per_task('solve/{}/accuracy')} | loss {metrics['loss']:+.4f} "
            f"gnorm {metrics['grad_norm']:.2e} | {metrics['tokens_per_s']:.0f} tok/s {metrics['exec_per_s']:.0f} exec/s "
            f"| {phases}")


def dump_step(out, step, results, batches):
    """One JSONL row per sequence: its prompt's group (the samples of one prompt share it), response, reward, and the
    proposal (with gold outputs) or the task + verdict."""
    rows = []
    for (task, role), recs in results.items():
        for j, r in enumerate(recs):
            row = {"step": step, "task": task, "role": role, "group": r["group"], "response": r["text"],
                   "reward": r["reward"], "format_ok": r["format_ok"]}
            if role == "propose":
                row.update(valid=r["valid"], status=r["status"], learnability_acc=r["acc"], entry=r["entry"])
            else:
                row.update(correct=r["correct"], task_entry=batches[(task, role)][j]["entry"])
            rows.append(json.dumps(row))
    (out / "dumps").mkdir(exist_ok=True)
    write_atomic(out / "dumps" / f"step_{step:06d}.jsonl", "\n".join(rows) + "\n")


def open_tracker(cfg, out):
    """TensorBoard or wandb only when asked (lazy imports); returns a function(metrics, step) or None."""
    try:
        if cfg.log == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(out / "tb"))

            def log(m, step):  # flushed each step: the writer's own flush (every 120 s) dies with the process
                for k, v in m.items():
                    if isinstance(v, (int, float)):
                        writer.add_scalar(k, v, step)
                writer.flush()
            return log
        if cfg.log == "wandb":
            import wandb
            wandb.init(project="nanoazr", config=dataclasses.asdict(cfg), dir=str(out))
            return lambda m, step: wandb.log(m, step=step)
    except ImportError as e:
        die(f"--log={cfg.log} needs a package that is not installed ({e.name}): pip install {cfg.log}")
    return None


# -----------------------------------------------------------------------------
# The loop

def preflight(cfg, device, rank):
    """Everything that can be checked before the run writes anything, each failure one line: bad input never leaves
    a half-made --out behind, and never surfaces hours in (a crash after seeding, or at the first eval). Returns
    (out folder, checkpoint to resume or None, its saved config, seed buffers from --seed-data or None)."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        die(f"--out={cfg.out} is a file, not a folder; pick another path")
    if cfg.resume and not out.is_dir():
        die(f"--resume but --out={cfg.out} does not exist; give the folder of the run to continue")
    if cfg.log != "none":
        import importlib.util
        if importlib.util.find_spec(cfg.log) is None:
            die(f"--log={cfg.log} needs a package that is not installed: pip install {cfg.log}")
    try:
        kernels.backend(device)  # NANOAZR_KERNELS is read at the first sampling call
    except (ValueError, RuntimeError) as e:
        die(str(e))
    ckpt = latest_checkpoint(out) if cfg.resume else None
    if cfg.resume and ckpt is None:
        die(f"--resume but no checkpoint in {out / 'ckpt'}; drop --resume to start fresh")
    if not cfg.resume and latest_checkpoint(out) is not None:
        die(f"{out} already holds checkpoints; pass --resume to continue or choose a fresh --out")
    saved_step = checkpoint_step(ckpt) if ckpt is not None else 0  # also checks that its files are all there
    if saved_step >= cfg.steps:
        die(f"{ckpt} is already at step {saved_step}; pass --steps above it to train further")
    saved = json.loads((ckpt / "state.json").read_text()).get("config", {}) if ckpt is not None else {}
    if saved.get("optim", cfg.optim) != cfg.optim:  # AdamW and 8-bit AdamW states do not convert
        die(f"{ckpt} was trained with --optim={saved['optim']}; resume with that --optim (or start a fresh --out)")
    if saved.get("preset", cfg.preset) != cfg.preset:  # a preset sets a dozen flags: only a warning would train on
        die(f"{ckpt} was trained with --preset={saved['preset']}; resume with the run's own command plus --resume "
            f"(without it, batch size, lr, token caps, ... take --preset={cfg.preset}'s values)")
    seed_buffers = load_seed_buffers(cfg.seed_data) if cfg.seed_data and ckpt is None else None
    if cfg.eval_every:  # the in-loop CRUXEval data (every rank evaluates a share), now and not at step 10
        from eval.data import DataError, default_data_dir, load_benchmark
        if os.environ.get("NANOAZR_DATA") is not None and not default_data_dir().is_dir():  # azr.py has no --data-dir
            die(f"--eval_every={cfg.eval_every} needs CRUXEval: NANOAZR_DATA={os.environ['NANOAZR_DATA']} is not a "
                "folder; point it at the benchmark data folder, unset it (../shared/data, else the hub) or pass "
                "--eval_every=0")
        try:  # data_dir None: NANOAZR_DATA, else ../shared/data, else the hub (a folder passed here must exist)
            for benchmark in ("cruxeval-i", "cruxeval-o"):
                load_benchmark(benchmark, None, cfg.eval_limit or None)
        except DataError as e:
            die(f"--eval_every={cfg.eval_every} needs CRUXEval: {e} (or pass --eval_every=0)")
    return out, ckpt, saved, seed_buffers


def main(argv=None):
    cfg = parse_config(sys.argv[1:] if argv is None else argv)
    tasks = task_list(cfg)

    # distributed + device: plain torchrun env vars; NCCL on GPUs, gloo on CPU
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if cfg.device == "cuda" and not torch.cuda.is_available():
        die("--device=cuda but no CUDA device is visible; use --device=cpu (or --device=auto)")
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if cfg.deterministic:  # CPU kernels already are; CUDA's atomics-based backward kernels and cuBLAS are not
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read at cuBLAS's first use, i.e. after this
        torch.use_deterministic_algorithms(True)
    if use_cuda:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if cfg.fsdp == "on" and world == 1:
        die("--fsdp=on shards over ranks: launch with torchrun --nproc_per_node N (N >= 2) or use --fsdp=off")
    if world > 1 and not dist.is_initialized():
        # On GPUs NCCL carries CUDA tensors (FSDP, gradients) and gloo the few CPU ones (counts, the loss
        # statistics): NCCL alone rejects CPU tensors. Long timeout: rank 0 alone may run CRUXEval or save.
        minutes = os.environ.get("NANOAZR_DIST_TIMEOUT_MIN", "120")  # a stuck rank blocks the others this long
        try:
            timeout = datetime.timedelta(minutes=float(minutes))
        except ValueError:
            die(f"NANOAZR_DIST_TIMEOUT_MIN={minutes!r} is not a number of minutes (default 120)")
        dist.init_process_group("cpu:gloo,cuda:nccl" if use_cuda else "gloo", timeout=timeout)
    compute_dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}.get(
        cfg.dtype, torch.bfloat16 if use_cuda else torch.float32)
    out, ckpt, saved, seed_buffers = preflight(cfg, device, rank)

    # model + tokenizer: "tiny" is made on the spot (deterministic), everything else resolved by model.py
    if cfg.model != "tiny":
        try:
            source = resolve_checkpoint(cfg.model)
        except Exception as e:  # unknown names, offline hub ids, missing folders: model.py words the fix
            die(f"--model={cfg.model}: {e}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / f".write_test{rank}", "ok")
        (out / f".write_test{rank}").unlink()
    except OSError as e:
        die(f"--out={cfg.out} is not writable ({e.strerror}); pick another folder")
    if ckpt is None and rank == 0 and ((out / "metrics.jsonl").exists() or (out / "dumps").exists()):
        # logs of an earlier run that never saved a checkpoint: keep them, but out of the new run's way
        old = out / f"previous_{time.strftime('%Y%m%d-%H%M%S')}"
        old.mkdir()
        for name in ("metrics.jsonl", "dumps"):
            if (out / name).exists():
                os.replace(out / name, old / name)
        print0(f"moved the logs of an earlier run without checkpoints to {old}", rank=rank)
    if cfg.model == "tiny":  # rank 0 writes it into --out (deterministic: a resumed run gets the same one)
        import tiny
        source = out / "tiny_model"
        if rank == 0:
            tiny.make_tiny_checkpoint(source)
        if world > 1:
            dist.barrier()
    source = str(source)
    if ckpt is not None:
        check_same_model(ckpt, source)
        changed = [k for k, v in dataclasses.asdict(cfg).items()
                   if k not in ("steps", "resume", "out") and saved.get(k) != v]
        if changed:  # allowed (e.g. a new eval cadence), but the run is then no longer an exact continuation
            print0("warning: resuming with changed flags: "
                   + ", ".join(f"{k}={saved.get(k)}->{getattr(cfg, k)}" for k in changed), rank=rank)
    try:  # a broken folder (config, weights, tokenizer) gets model.py's one line, not a traceback
        tokenizer = load_tokenizer(source)
        qwen, master, sharded = setup_policy(str(ckpt or source), cfg, device, compute_dtype, world)
        ref_model = setup_reference(source, device, compute_dtype, sharded) if cfg.kl_coef > 0 else None
    except (CheckpointError, FileNotFoundError) as e:
        if ckpt is not None:
            die(f"checkpoint {ckpt} is damaged ({e}); delete that folder to resume from the checkpoint before it")
        die(f"cannot load the model: {e}")
    if tokenizer.eos_token_id is None:
        die(f"the tokenizer in {source} has no eos token, so rollouts could never end; use a Qwen2.5 tokenizer")
    master = optimizer_params(qwen, master, sharded, cfg)
    optimizer = make_optimizer(master if master is not None else list(qwen.parameters()), cfg)
    print0(f"config: {json.dumps(dataclasses.asdict(cfg))}", rank=rank)
    print0(f"model {source} on {device} ({compute_dtype}), {sum(p.numel() for p in qwen.parameters()) / 1e6:.1f}M "
           f"params, world {world}, fsdp {sharded}, fp32 master {master is not None}", rank=rank)

    try:  # the ranks of one machine share its cores
        sandbox = Sandbox(workers=cfg.sandbox_workers or max(1, (os.cpu_count() or 1) // world),
                          cpu_s=cfg.exec_timeout, wall_s=cfg.exec_timeout)
    except SandboxUnavailable as e:
        die(str(e))
    start_step = 0
    if ckpt is not None:
        buffers, start_step = load_training_state(ckpt, optimizer, sharded, qwen, rank, world, cfg.optim)
        print0(f"resumed from {ckpt} at step {start_step}", rank=rank)
        if rank == 0:
            truncate_metrics(out / "metrics.jsonl", start_step)
    elif seed_buffers is not None:
        buffers = seed_buffers
    else:
        print0(f"seeding phase: growing {cfg.seed_buffer_size} seeds from the zero triplet", rank=rank)
        buffers = run_seeding(qwen, tokenizer, sandbox, cfg, tasks, rank, world, sharded)
    print0("buffers: " + ", ".join(f"{t} {len(b)}" for t, b in buffers.items()), rank=rank)
    tracker = open_tracker(cfg, out) if rank == 0 else None
    eos = tokenizer.eos_token_id
    show_bars = rank == 0 and sys.stderr.isatty()  # tqdm bars on generation for interactive runs only

    for step in range(start_step + 1, cfg.steps + 1):
        t_step, clock = time.time(), {}
        rng = random.Random(f"{cfg.seed}-step-{step}")  # every sampling decision of this step derives from it
        batches = build_batches(buffers, tasks, cfg, step, tokenizer, rng)
        results = {}  # (task, role) -> records of the whole batch (all ranks), in batch order

        # ============================== PROPOSE ==============================
        # proposer rollouts -> validation in the sandbox -> learnability rollouts -> rewards -> buffers
        seeds = (derived_seed(cfg.seed, step, "propose", rank), derived_seed(cfg.seed, step, "learn", rank))
        local = propose_phase({task: batches[(task, "propose")][rank::world] for task in tasks}, qwen, tokenizer,
                              sandbox, cfg, seeds, clock, sharded, show_bars)
        for task in tasks:
            results[(task, "propose")] = gather_strided(local[task], rank, world)
            # every valid proposal joins its own buffer now, stamped with this step (no dedup, no filter); this
            # step's solver batches were drawn already, so solvers see these tasks at step + 1 (official lag)
            add_to_buffer(buffers[task], [r["entry"] for r in results[(task, "propose")] if r["valid"]], step,
                          cfg.buffer_cap)

        # ============================== SOLVE ================================
        # solver rollouts on the tasks drawn at the start of the step, all task types in one engine call
        t0 = time.time()
        mine = {task: batches[(task, "solve")][rank::world] for task in tasks}
        with_gathered_weights(qwen, sharded, True)
        completions = rollout(qwen, [it["prompt_ids"] for task in tasks for it in mine[task]], cfg, eos,
                              derived_seed(cfg.seed, step, "solve", rank), show_bars)
        with_gathered_weights(qwen, sharded, False)
        solved, start = {}, 0
        for task in tasks:
            own = completions[start:start + len(mine[task])]
            solved[task] = (own, [tokenizer.decode(c, skip_special_tokens=True) for c in own])
            start += len(mine[task])
        tick(clock, solve=time.time() - t0, gen_s=time.time() - t0, tokens=sum(map(len, completions)))

        # ============================== VERIFY ===============================
        # well-formatted answers are checked in the sandbox: -1 bad format, -0.5 wrong, +1 right
        for task in tasks:
            t0 = time.time()
            own, texts = solved[task]
            format_ok, correct, n_exec = check_answers(task, [it["entry"] for it in mine[task]], texts, sandbox)
            local = [{**response_record(it, c, cfg.max_response_tokens, eos), "format_ok": f, "correct": bool(ok),
                      "reward": solver_reward(f, ok), "text": t}
                     for it, c, f, ok, t in zip(mine[task], own, format_ok, correct, texts)]
            results[(task, "solve")] = gather_strided(local, rank, world)
            tick(clock, verify=time.time() - t0, exec_s=time.time() - t0, executions=n_exec)

        # ============================== UPDATE ===============================
        # TRR++ advantages within each (task, role) batch, then one PPO-clip step over every trained sequence
        t0 = time.time()
        flat = [(key, j, r) for key, recs in results.items() for j, r in enumerate(recs)]  # global order
        batch_of = {key: b for b, key in enumerate(results)}
        advantages = compute_advantages([r["reward"] for _, _, r in flat], [r["length"] for _, _, r in flat],
                                        [batch_of[key] for key, _, _ in flat],
                                        [(batch_of[key], r["group"]) for key, _, r in flat],
                                        cfg.advantage, cfg.whiten == "token")
        group_rewards = {}
        for key, _, r in flat:
            group_rewards.setdefault((key, r["group"]), set()).add(r["reward"])
        included = [(key[1] == "solve" or cfg.train_proposer)
                    and not (cfg.mask_overlong and r["truncated"])
                    and not (cfg.filter_groups and len(group_rewards[(key, r["group"])]) == 1)
                    for key, _, r in flat]
        weights = token_weights([r["length"] for _, _, r in flat], included, cfg.loss_agg)
        sequences = [{"prompt_ids": batches[key][j]["prompt_ids"], "response_ids": r["response_ids"],
                      "advantage": a, "weight": w}
                     for (key, j, r), a, w, keep in zip(flat, advantages, weights, included)
                     if keep and j % world == rank]  # each rank trains the sequences it generated
        qwen.train()
        if device.type == "cuda":  # the update's peak (weights, grads, optimizer, activations) for the memory plan
            torch.cuda.reset_peak_memory_stats(device)
        stats = update(qwen, optimizer, sequences, cfg, rank, world, master, ref_model, sharded)
        if device.type == "cuda":
            stats["gpu_peak_gb/update"] = torch.cuda.max_memory_allocated(device) / 2**30
        qwen.eval()
        tick(clock, update=time.time() - t0)

        # ============================== LOG ==================================
        counts = torch.tensor([clock.get("tokens", 0.0), clock.get("executions", 0.0)], dtype=torch.float64)
        if world > 1:
            dist.all_reduce(counts)  # generated tokens and executions of all ranks
        metrics = {"step": step, **stats, "sequences_trained": sum(included), "time/step": time.time() - t_step,
                   **{f"time/{k}": clock.get(k, 0.0) for k in PHASES},
                   "tokens_per_s": counts[0].item() / max(clock.get("gen_s", 0.0), 1e-9),
                   "exec_per_s": counts[1].item() / max(clock.get("exec_s", 0.0), 1e-9)}
        for (task, role), recs in results.items():
            metrics.update(batch_metrics(task, role, recs))
        metrics.update({f"buffer/{task}/size": len(buf) for task, buf in buffers.items()})
        if cfg.eval_every and step % cfg.eval_every == 0:  # greedy CRUXEval-I/O
            from eval.cruxeval import evaluate_cruxeval
            t0 = time.time()
            with_gathered_weights(qwen, sharded, True)
            # every rank holds the whole model (gathered under FSDP): each decodes 1/world of the problems
            scores = evaluate_cruxeval(qwen, tokenizer, sandbox, None, limit=cfg.eval_limit or None,
                                       max_new_tokens=cfg.eval_max_tokens,
                                       cuda_graphs=cfg.cuda_graphs and device.type == "cuda",
                                       rank=rank, world=world)
            with_gathered_weights(qwen, sharded, False)
            metrics.update({**{f"eval/{k}": v for k, v in scores.items()}, "time/eval": time.time() - t0})
        if rank == 0:
            print(log_line(step, metrics, tasks), flush=True)
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(metrics) + "\n")
            if tracker:
                tracker(metrics, step)
            if cfg.dump_every and step % cfg.dump_every == 0:
                dump_step(out, step, results, batches)
        if step % cfg.save_every == 0 or step == cfg.steps:
            save_checkpoint(out, step, qwen, optimizer, master, sharded, buffers, cfg, source, rank)
    sandbox.close()
    if world > 1:
        # Drop the FSDP modules first: they hold the process group through their device mesh, and a gloo group
        # left for the interpreter's exit to free aborted about 1 exit in 25 after all work was done (torch 2.13
        # CPU, "terminate called without an active exception").
        del qwen, optimizer, master, ref_model
        gc.collect()
        dist.barrier()  # every rank leaves together: a rank exiting while another still talks to gloo aborts it
        dist.destroy_process_group()


def rerun_advice(out):
    """How to go on after a stop: --resume from the last checkpoint in `out`, or, before the first one was saved,
    the same command afresh (--resume would find nothing to continue)."""
    if out is not None and latest_checkpoint(out) is None:
        return "no checkpoint was saved yet: rerun the same command without --resume to start over"
    return "rerun with the same flags and --resume to continue from the last checkpoint (it is intact)"


def entry(argv=None):
    """main() with one clear line for a full disk or Ctrl-C: every checkpoint is written to a temp folder and renamed,
    so the last complete one is intact and --resume continues from it."""
    argv, out = sys.argv[1:] if argv is None else argv, None
    try:
        out = parse_config(argv).out  # for the advice below; main() parses the same flags again
        main(argv)
    except KeyboardInterrupt:  # Ctrl-C reaches every rank: local rank 0 says it once
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and os.environ.get("LOCAL_RANK", "0") != "0":
            sys.exit(2)
        die(f"interrupted; {rerun_advice(out)}")
    except BrokenPipeError:  # `python azr.py --help | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        die(f"disk full while writing {e.filename2 or e.filename or 'output'}; free space, then {rerun_advice(out)}",
            this_rank_only=True)
    except RuntimeError as e:  # gloo: another rank died mid-collective; it printed why and torchrun stops us all
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and ("closed by peer" in str(e) or "reset by peer" in str(e)):
            sys.stderr.flush()
            os._exit(1)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "Timed out" in str(e):  # gloo; NCCL's watchdog aborts
            die("another rank stopped answering (stuck, or still busy alone after NANOAZR_DIST_TIMEOUT_MIN, default "
                "120 minutes); rerun with --resume", this_rank_only=True)
        raise


if __name__ == "__main__":
    entry()
