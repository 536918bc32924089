"""What a GPU session must confirm: the CPU suite's contracts, on a CUDA device. Every test asserts correctness,
never speed, and the whole module is skipped without a CUDA device, so CPU CI is unaffected.

    python -m pytest -q tests/test_cuda.py          # on a GPU machine, without TRITON_INTERPRET (bench/gpu.sh runs it)

- model.py: CUDA fp32 logits equal CPU fp32 logits (plain and left-padded batches), the KV-cache prefill/decode
  paths equal the full forward, bf16 stays close to fp32, and SDPA's FlashAttention kernel (what the unpadded causal
  path gets on CUDA in bf16) equals SDPA's math kernel, forward and backward. model.py has no path through the
  separate flash-attn package (README: "not needed and not used"), so there is nothing of it to compare;
- engine.py: greedy generation on CUDA (fp32) token-identical to transformers' generate() on CUDA, with variable
  prompt lengths, stop ids and more prompts than cache rows (continuous batching refills); bf16 generation returns
  the right number of completions of the right lengths, seeded sampling repeats; the CUDA-graph decode step
  (cuda_graphs=True) gives the eager step's tokens and logprobs; the paged cache under a budget that forces
  preemptions gives the unlimited cache's completions, eager and with graphs;
- kernels/: the fused norm / rotary + KV write / SwiGLU kernels against the torch code they replace, at 7B sizes;
  decode_attention reads only each row's length (NaN past it) and matches float64; sample() greedy ==
  argmax, seeded reproducibility, top-k/top-p never leave the kept set on a real vocabulary row with -inf padding,
  token_logprobs forward/backward against float64 at the real vocabulary, for both backends (test_kernels.py's
  test_cuda_kernels_and_graph_capture covers the distribution and CUDA graphs);
- azr.py: the tiny preset runs 2 steps on CUDA, and 2 steps == 1 step + --resume + 1 step (deterministic mode); an
  8-bit AdamW checkpoint of 2 CPU FSDP processes resumes in one CUDA process (bitsandbytes' CUDA quantiser);
- eval/: `python -m eval` end to end on a tiny model (it picks CUDA by itself when a device is visible).
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import azr
import kernels
from kernels import logprobs as klp
from kernels import sampling as ks
from model import KVCache, Qwen2, Qwen2Config, generate
from test_azr_e2e import assert_same_run, read_metrics
from test_engine import count_preemptions, random_prompts  # noqa: F401 (a fixture)
from test_kernels import check_decode_attention_reads_only_each_rows_length
from tiny import make_tiny_checkpoint

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                                reason="needs a CUDA device and compiled Triton kernels (no TRITON_INTERPRET)")
DEVICE = "cuda"
REPO = Path(__file__).resolve().parents[1]
QWEN_VOCAB, QWEN_TOKENS = 151936, 151665  # Qwen2.5's embedding rows, and the tokenizer's ids (the rest is padding)


@pytest.fixture(autouse=True)
def auto_kernels(monkeypatch):
    # the default dispatch (Triton on CUDA), whatever the caller's shell set: these tests are about the GPU paths
    monkeypatch.setenv("NANOAZR_KERNELS", "auto")


@pytest.fixture(scope="module")
def sharp_ckpt(tmp_path_factory):
    """Untied, 2 query heads per KV head, random norm weights and biases (1 and 0 would hide a misplaced norm or a
    missing bias), and an lm_head with logits of std ~4, so greedy argmax does not flip between implementations
    that differ only in fp32 summation order: over the 200 greedy decisions of the parity test below the closest
    top-two pair is 4e-4 apart (measured on the CPU), ~40x the ~1e-5 such differences move logits of this size."""
    folder = make_tiny_checkpoint(tmp_path_factory.mktemp("sharp"), seed=3, tie_word_embeddings=False)
    qwen = Qwen2.from_pretrained(folder)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in qwen.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            elif name == "lm_head.weight":
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    qwen.save_pretrained(folder)
    return folder


def left_padded(seqs):
    """Left-padded ids and attention mask [B, T] for a list of 1-d token tensors."""
    T = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), T, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, T - len(s):], mask[b, T - len(s):] = s, 1
    return ids, mask


# ----------------------------------------------------------------------------------------------------------------
# model.py

@pytest.mark.parametrize("which", ["tiny", "sharp"])
def test_fp32_logits_cuda_equal_cpu(which, tiny_ckpt, sharp_ckpt):
    folder = str(tiny_ckpt) if which == "tiny" else sharp_ckpt
    cpu, gpu = Qwen2.from_pretrained(folder), Qwen2.from_pretrained(folder, device=DEVICE)
    assert gpu.device.type == DEVICE and gpu.dtype == torch.float32
    g = torch.Generator().manual_seed(0)
    V = cpu.config.vocab_size
    plain = torch.randint(0, V, (2, 13), generator=g)
    ids, mask = left_padded([torch.randint(1, V, (n,), generator=g) for n in (11, 5, 8)])
    with torch.no_grad():
        for args in ((plain, None), (ids, mask)):
            ref = cpu(args[0], attention_mask=args[1])
            got = gpu(args[0].to(DEVICE), attention_mask=None if args[1] is None else args[1].to(DEVICE)).cpu()
            real = slice(None) if args[1] is None else args[1].bool()  # padding positions are garbage on both
            # fp32 on both devices, no TF32 (PyTorch's default for matmuls): only summation order differs
            assert (got[real] - ref[real]).abs().max().item() < 1e-4 * max(1.0, ref.abs().max().item())
            assert torch.isfinite(got).all()
        hidden = gpu(plain.to(DEVICE), return_hidden=True)
        assert torch.equal(gpu.lm_head(hidden), gpu(plain.to(DEVICE)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cache_prefill_and_decode_equal_full_forward_cuda(sharp_ckpt, dtype):
    """The engine's two cached paths (right-padded prefill into cache rows, one-token decode at per-row positions)
    against the plain causal forward in fp32, all on CUDA. bf16 (the decode step's bf16-in, fp32-scores bmm) only
    within bf16's error (see test_bf16_cuda_close_to_fp32)."""
    qwen = Qwen2.from_pretrained(sharp_ckpt, device=DEVICE, dtype=dtype)
    ref = qwen if dtype == torch.float32 else Qwen2.from_pretrained(sharp_ckpt, device=DEVICE)
    tol = 1e-4 if dtype == torch.float32 else 0.02
    V = qwen.config.vocab_size
    prompts = random_prompts(3, V, seed=2, lo=3, hi=12)
    conts = random_prompts(3, V, seed=3, lo=5, hi=5)  # fed one token per decode step
    cache = KVCache(qwen.config, slots=3, max_len=32, device=DEVICE, dtype=dtype, model=qwen)
    T = max(map(len, prompts))
    ids = torch.tensor([p + [0] * (T - len(p)) for p in prompts], device=DEVICE)
    last = torch.tensor([len(p) - 1 for p in prompts], device=DEVICE)
    with torch.no_grad():
        first = qwen(ids, cache=cache, slots=torch.arange(3, device=DEVICE), last=last)  # [3, V]
        pos = torch.tensor([len(p) for p in prompts], device=DEVICE)
        steps = [qwen(torch.tensor([[c[t]] for c in conts], device=DEVICE), cache=cache, positions=pos + t)[:, 0]
                 for t in range(5)]  # 5 x [3, V]
        for b in range(3):
            full = ref(torch.tensor([prompts[b] + conts[b]], device=DEVICE))[0]  # [len, V] fp32
            scale = max(1.0, full.abs().max().item())
            assert (first[b].float() - full[len(prompts[b]) - 1]).abs().max().item() < tol * scale
            for t in range(5):
                assert (steps[t][b].float() - full[len(prompts[b]) + t]).abs().max().item() < tol * scale


def test_bf16_cuda_close_to_fp32(tiny_ckpt):
    fp32 = Qwen2.from_pretrained(tiny_ckpt, device=DEVICE)
    bf16 = Qwen2.from_pretrained(tiny_ckpt, device=DEVICE, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    g = torch.Generator().manual_seed(1)
    plain = torch.randint(0, fp32.config.vocab_size, (3, 40), generator=g)
    ids, mask = left_padded([torch.randint(1, fp32.config.vocab_size, (n,), generator=g) for n in (40, 17, 29)])
    with torch.no_grad():
        for x, m in ((plain, None), (ids, mask)):  # causal (flash) path and masked (memory-efficient) path
            x, m = x.to(DEVICE), None if m is None else m.to(DEVICE)
            a, b = fp32(x, attention_mask=m), bf16(x, attention_mask=m)
            assert b.dtype == torch.bfloat16
            real = slice(None) if m is None else m.bool()
            a, b = a[real], b[real].float()
            # bf16 keeps 8 significant bits (2^-9 = 0.2% per rounding) and each layer rounds a handful of times;
            # on the CPU this checkpoint measures 0.35% (max error / max logit) and 0.55% (mean / mean). 2% leaves
            # room for other accumulation orders, while a wrong cast, mask or rotary dtype errs by ~100%.
            assert (a - b).abs().max().item() < 0.02 * a.abs().max().item()
            assert (a - b).abs().mean().item() < 0.02 * a.abs().mean().item()


def test_sdpa_flash_kernel_equals_math_kernel(tmp_path):
    """On CUDA in bf16 the unpadded causal call (training and prefill: mask None, GQA) runs SDPA's FlashAttention
    kernel. Forward logits and backward gradients must be as close to the fp32 model as with SDPA's math kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    if not torch.backends.cuda.is_flash_attention_available():
        pytest.skip("this torch build has no FlashAttention kernel for SDPA")
    # head_dim 128 (Qwen2.5-7B's), 2 query heads per KV head
    folder = make_tiny_checkpoint(tmp_path / "hd128", hidden_size=512, intermediate_size=1024, num_attention_heads=4,
                                  num_key_value_heads=2)
    exact = Qwen2.from_pretrained(folder, device=DEVICE)
    bf16 = Qwen2.from_pretrained(folder, device=DEVICE, dtype=torch.bfloat16)
    ids = torch.randint(1, exact.config.vocab_size, (2, 96), generator=torch.Generator().manual_seed(0)).to(DEVICE)

    def run(model, backend):
        """(logits fp32 [B, T, V], all parameter gradients fp32 flattened) of a loss touching every position."""
        model.zero_grad(set_to_none=True)
        with sdpa_kernel(backend):
            logits = model(ids)
            logits.float().logsumexp(-1).mean().backward()
        return logits.detach().float(), torch.cat([p.grad.float().flatten() for p in model.parameters()])

    ref_logits, ref_grad = run(exact, SDPBackend.MATH)
    math_logits, math_grad = run(bf16, SDPBackend.MATH)
    try:
        flash_logits, flash_grad = run(bf16, SDPBackend.FLASH_ATTENTION)
    except RuntimeError as e:  # "No available kernel": the model's call shape is one the flash kernel refuses
        pytest.fail(f"SDPA's FlashAttention kernel refused the model's causal GQA call: {str(e).splitlines()[0]}")
    # Both kernels see the same bf16 q/k/v. Flash keeps the scores in fp32 on chip and rounds the probabilities to
    # bf16 for the PV product; math computes in fp32. The rest of the model's bf16 roundings dominate either way,
    # so the flash error stays within a small factor of the math error; an indexing, causality or GQA mistake
    # would be of the order of the logits themselves.
    err_math = (math_logits - ref_logits).abs().max().item()
    err_flash = (flash_logits - ref_logits).abs().max().item()
    assert err_flash <= 2 * err_math + 1e-3 * ref_logits.abs().max().item(), (err_flash, err_math)
    gerr_math, gerr_flash = (math_grad - ref_grad).norm().item(), (flash_grad - ref_grad).norm().item()
    assert gerr_flash <= 3 * gerr_math + 1e-3 * ref_grad.norm().item(), (gerr_flash, gerr_math)


# ----------------------------------------------------------------------------------------------------------------
# engine.py

def test_greedy_generation_cuda_matches_transformers_generate(sharp_ckpt):
    ours = Qwen2.from_pretrained(sharp_ckpt, device=DEVICE)
    hf = transformers.Qwen2ForCausalLM.from_pretrained(sharp_ckpt, dtype=torch.float32).to(DEVICE).eval()
    assert kernels.backend(DEVICE) == "triton"  # greedy goes through the Triton sampler
    V, eos = ours.config.vocab_size, ours.config.eos_token_id
    prompts = random_prompts(10, V, seed=11, lo=1, hi=40)
    # a stop id that greedy decoding actually emits, so rows finish at different steps and cache rows get refilled
    free = generate(ours, prompts, max_new_tokens=20, temperature=0)
    stop = max({t for out in free for t in out}, key=lambda t: sum(t in out for out in free))
    stops = [stop, eos]
    got = generate(ours, prompts, max_new_tokens=20, temperature=0, stop_token_ids=stops, max_batch=3)
    assert len({len(o) for o in got}) > 1, "no row stopped early: the refill path did not run"
    for p, f, out in zip(prompts, free, got):
        cut = next((i for i, t in enumerate(f) if t in stops), len(f))
        assert out == f[:cut]  # stopping only truncates
        with torch.no_grad():
            ref = hf.generate(torch.tensor([p], device=DEVICE), attention_mask=torch.ones(1, len(p), dtype=torch.long,
                                                                                          device=DEVICE),
                              max_new_tokens=20, do_sample=False, eos_token_id=stops, pad_token_id=0)
        ref = ref[0, len(p):].tolist()
        ref = ref[: next((i for i, t in enumerate(ref) if t in stops), len(ref))]  # HF keeps the stop id; we don't
        assert out == ref


def test_bf16_generation_counts_lengths_and_seeds(tiny_ckpt):
    qwen = Qwen2.from_pretrained(tiny_ckpt, device=DEVICE, dtype=torch.bfloat16)
    V = qwen.config.vocab_size
    prompts = random_prompts(20, V, seed=12, lo=1, hi=60)
    greedy = generate(qwen, prompts, 16, temperature=0, max_batch=6)
    assert len(greedy) == 20 and all(len(o) == 16 and all(0 <= t < V for t in o) for o in greedy)
    for kw in (dict(temperature=1.0), dict(temperature=0.7, top_k=50, top_p=0.9)):
        a, lp_a = generate(qwen, prompts, 16, seed=3, return_logprobs=True, max_batch=6, **kw)
        b, lp_b = generate(qwen, prompts, 16, seed=3, return_logprobs=True, max_batch=6, **kw)
        assert a == b and lp_a == lp_b, kw  # same seed, same completions and logprobs
        assert a != generate(qwen, prompts, 16, seed=4, max_batch=6, **kw), kw
        assert all(len(o) == 16 and len(lp) == 16 for o, lp in zip(a, lp_a)), kw
        assert all(math.isfinite(v) and v <= 0 for lp in lp_a for v in lp), kw
    # half the vocabulary stops: the near-uniform random model hits a stop id within a few tokens in every row
    # (a row reaching 16 tokens has probability ~2^-16), so rows finish at different steps and get refilled
    stop = range(V // 2, V)
    stopped = generate(qwen, prompts, 16, temperature=1.0, seed=5, stop_token_ids=stop, max_batch=6)
    assert len(stopped) == 20 and all(len(o) <= 16 and all(t < V // 2 for t in o) for o in stopped)
    assert sum(len(o) < 16 for o in stopped) >= 18 and len({len(o) for o in stopped}) > 1


def test_cuda_graph_decode_equals_eager(sharp_ckpt, monkeypatch):
    """generate(cuda_graphs=True) records the decode step once per batch size and replays it: in fp32 the same tokens
    and logprobs as the eager step while rows stop and get refilled (the batch passes through several sizes); in
    bf16 seeded sampling repeats from graph to graph."""
    replays = []
    graph_type = torch.cuda.CUDAGraph

    class CountingGraph(graph_type):
        def replay(self):
            replays.append(1)
            return super().replay()

    monkeypatch.setattr(torch.cuda, "CUDAGraph", CountingGraph)
    ours = Qwen2.from_pretrained(sharp_ckpt, device=DEVICE)
    prompts = random_prompts(20, ours.config.vocab_size, seed=13, lo=1, hi=40)
    free = generate(ours, prompts, max_new_tokens=20, temperature=0)
    stop = max({t for out in free for t in out}, key=lambda t: sum(t in out for out in free))
    kw = dict(max_new_tokens=20, stop_token_ids=[stop], max_batch=6, return_logprobs=True)
    eager, lp_eager = generate(ours, prompts, temperature=0, **kw)
    graphs, lp_graphs = generate(ours, prompts, temperature=0, cuda_graphs=True, **kw)
    assert len({len(o) for o in eager}) > 1, "no row stopped early: the batch size never changed"
    assert graphs == eager and len(replays) > 20
    assert max(abs(a - b) for x, y in zip(lp_eager, lp_graphs) for a, b in zip(x, y)) < 1e-4
    bf16 = Qwen2.from_pretrained(sharp_ckpt, device=DEVICE, dtype=torch.bfloat16)
    a = generate(bf16, prompts, 16, seed=3, max_batch=6, cuda_graphs=True)
    assert a == generate(bf16, prompts, 16, seed=3, max_batch=6, cuda_graphs=True)
    assert all(len(o) == 16 and all(0 <= t < ours.config.vocab_size for t in o) for o in a)


def test_paged_cache_preemption_on_cuda(sharp_ckpt, count_preemptions):
    """The paged cache under a budget that forces preemptions, through the Triton decode kernel (16-position blocks
    read through the block table), eager and as CUDA graphs: fp32 greedy completions and logprobs equal those of a
    cache with room for everything (whole-row blocks)."""
    ours = Qwen2.from_pretrained(sharp_ckpt, device=DEVICE)
    prompts = random_prompts(12, ours.config.vocab_size, seed=14, lo=2, hi=40)
    kw = dict(max_new_tokens=40, temperature=0, return_logprobs=True)
    ref, lp_ref = generate(ours, prompts, **kw)
    for graphs in (False, True):
        count_preemptions.clear()
        got, lp = generate(ours, prompts, kv_cache_tokens=160, block_size=16, cuda_graphs=graphs, **kw)
        assert count_preemptions, "the budget did not force a preemption"
        assert got == ref
        assert max(abs(a - b) for x, y in zip(lp, lp_ref) for a, b in zip(x, y)) < 1e-4


# ----------------------------------------------------------------------------------------------------------------
# kernels/

def real_vocab_logits(B, dtype, seed=0):
    """[B, 151936] logits with Qwen's padded tail at -inf and a head of 64 likely tokens, so that top-p cuts inside
    the head and top-k inside the body."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    x = torch.randn(B, QWEN_VOCAB, device=DEVICE, generator=g) * 2
    x[:, :64] += 6.0 * torch.rand(B, 64, device=DEVICE, generator=g)
    x[:, QWEN_TOKENS:] = -math.inf
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sample_greedy_is_argmax(dtype):
    x = real_vocab_logits(37, dtype)
    row = x[3].float()
    x[3, 17] = x[3, 200] = row.max() + 1.0  # a tie: the first index wins
    T = torch.tensor([0.0, 1.0, 0.7] * 12 + [0.0], device=DEVICE)
    ids, logp = kernels.sample(x, temperature=T, top_k=50, top_p=0.9,
                               generator=torch.Generator(device=DEVICE).manual_seed(0))
    assert ids.device.type == logp.device.type == DEVICE and ids.dtype == torch.int64 and logp.dtype == torch.float32
    greedy = T == 0
    assert torch.equal(ids[greedy], x[greedy].float().argmax(-1)) and ids[3] == 17
    # greedy rows report the model's own log_softmax at temperature 1, unfiltered
    ref = torch.log_softmax(x[greedy].double(), -1).gather(1, ids[greedy, None]).squeeze(1)
    torch.testing.assert_close(logp[greedy].double(), ref, atol=1e-4, rtol=0)
    ids0, logp0 = kernels.sample(x, temperature=0.0)  # the all-greedy (python scalar) kernel variant
    assert torch.equal(ids0, x.float().argmax(-1))
    torch.testing.assert_close(logp0.double(), torch.log_softmax(x.double(), -1).gather(1, ids0[:, None])[:, 0],
                               atol=1e-4, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sample_seeded_reproducibility(dtype):
    x = real_vocab_logits(64, dtype, seed=1)
    for kw in (dict(), dict(temperature=0.7), dict(top_p=0.9), dict(top_k=50), dict(top_k=50, top_p=0.9)):
        a = kernels.sample(x, generator=torch.Generator(device=DEVICE).manual_seed(42), **kw)
        b = kernels.sample(x, generator=torch.Generator(device=DEVICE).manual_seed(42), **kw)
        c = kernels.sample(x, generator=torch.Generator(device=DEVICE).manual_seed(43), **kw)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), kw
        assert not torch.equal(a[0], c[0]), kw
        d = kernels.sample(x, **kw)  # the device's default generator
        assert (d[0] < QWEN_TOKENS).all() and torch.isfinite(d[1]).all(), kw


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_top_k_top_p_stay_in_kept_set_real_vocab(dtype):
    B = 256
    x = real_vocab_logits(B, dtype, seed=2)
    # per-row knobs (tensors), then python scalars: both kernel variants
    T = torch.tensor([1.0, 0.7, 1.3, 0.5], device=DEVICE).repeat(B // 4)
    k = torch.tensor([0, 40, 1000, 5], device=DEVICE).repeat(B // 4)
    p = torch.tensor([0.9, 1.0, 0.8, 0.5], device=DEVICE).repeat(B // 4)
    for case in [(T, k, p), (1.0, 50, 1.0), (1.0, 0, 0.9), (0.8, 100, 0.7)]:
        Tc, kc, pc = (v if isinstance(v, torch.Tensor) else torch.full((B,), v, device=DEVICE) for v in case)
        z = x.double() / Tc[:, None].double()
        thr = ks.filter_threshold_reference(z, kc.long(), pc.double())  # float64 kept set: z >= thr
        kept_lse = torch.logsumexp(z.masked_fill(z < thr[:, None], -math.inf), -1)
        for seed in range(4):
            ids, logp = kernels.sample(x, temperature=case[0], top_k=case[1], top_p=case[2],
                                       generator=torch.Generator(device=DEVICE).manual_seed(seed))
            assert (ids < QWEN_TOKENS).all(), case          # never the -inf padding
            zi = z.gather(1, ids[:, None]).squeeze(1)
            assert (zi >= thr).all(), (case, torch.nonzero(zi < thr).flatten().tolist())
            # and the logprob is that of the renormalised kept distribution
            torch.testing.assert_close(logp.double(), zi - kept_lse, atol=1e-4, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_candidate_path_on_cuda_equals_the_radix_path(dtype, monkeypatch):
    """The top-k / top-p fast path as compiled for the GPU: LLM-like rows are served by their candidates (marked in a
    bitmask, listed by the threshold kernel through a global scratch and a barrier), with the radix select's
    thresholds and, from the same seed, its tokens and logprobs."""
    from test_kernels import lm_like_logits
    B = 64
    x = lm_like_logits(B, QWEN_VOCAB, torch.Generator().manual_seed(3)).to(DEVICE).to(dtype)
    x[:, QWEN_TOKENS:] = -math.inf
    T = torch.tensor([1.0, 0.7, 1.3, 1.0], device=DEVICE).repeat(B // 4)
    k = torch.tensor([0, 50, 0, 20], device=DEVICE).repeat(B // 4)
    p = torch.tensor([0.9, 0.95, 0.99, 1.0], device=DEVICE).repeat(B // 4)
    part = ks._partials(x, T, T, False, stats=True, most=ks.FILTER_SCAN)[:3]
    thr, todo = ks._candidate_threshold(x, T, k, p, *part, ks.CANDIDATES)
    assert todo.sum().item() == 0
    torch.testing.assert_close(thr, ks.filter_threshold_triton(x, T, k, p, candidates=0), atol=0, rtol=0)
    fast = ks.sample_triton(x, T, k, p, generator=torch.Generator(device=DEVICE).manual_seed(5))
    monkeypatch.setattr(ks, "CANDIDATES", 0)
    ids, logp = ks.sample_triton(x, T, k, p, generator=torch.Generator(device=DEVICE).manual_seed(5))
    assert torch.equal(ids, fast[0])
    torch.testing.assert_close(logp, fast[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_decode_attention_kernel_on_cuda_reads_only_each_rows_length(dtype):
    """Qwen2.5-7B head layout (28 query heads on 4 KV heads, head_dim 128), rows from 1 to 1,100 positions in shuffled
    16-position blocks, NaN in every position past a row's length: the compiled kernel against float64."""
    def on_cuda(q, k, v, lengths, table):
        return kernels.decode_attention(q.to(DEVICE), k.to(DEVICE), v.to(DEVICE), lengths.to(DEVICE),
                                        table.to(DEVICE)).cpu()
    check_decode_attention_reads_only_each_rows_length(on_cuda, torch.tensor([1, 63, 64, 65, 700, 1100]), 16,
                                                       28, 4, 128, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_layer_kernels_on_cuda(dtype):
    """kernels/fused.py compiled, at Qwen2.5-7B's sizes, against the torch code it replaces (run on the GPU too):
    norms and SwiGLU within 2 bf16 units in the last place on at most 1% of the values (test_fused.assert_close_ulp),
    rotary + cache write exact in bf16; and the engine's CUDA caches select the fused path."""
    from kernels import fused
    from test_fused import assert_close_ulp
    g = torch.Generator(device=DEVICE).manual_seed(0)
    B, D, F, H, KVH, hd = 64, 3584, 18944, 28, 4, 128

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, device=DEVICE) * scale).to(dtype)
    x, res, w = rand(B, 1, D, scale=3), rand(B, 1, D), 1 + rand(D, scale=0.1)
    assert_close_ulp(fused.rms_norm_triton(x, w, 1e-6), fused.rms_norm_reference(x, w, 1e-6))
    out, total = fused.add_rms_norm_triton(x, res, w, 1e-6)
    ref_out, ref_total = fused.add_rms_norm_reference(x, res, w, 1e-6)
    assert torch.equal(total, ref_total)
    assert_close_ulp(out, ref_out)
    gate, up = rand(B, 1, F, scale=4), rand(B, 1, F)
    assert_close_ulp(fused.silu_mul_triton(gate, up), fused.silu_mul_reference(gate, up))
    cfg = Qwen2Config(hidden_size=D, num_attention_heads=H, num_key_value_heads=KVH, num_hidden_layers=1,
                      intermediate_size=8, vocab_size=8)
    cache = KVCache(cfg, B, 2048, DEVICE, dtype, blocks=1 + B * 128, block_size=16)
    assert cache.fused is fused
    positions = torch.randint(0, 2048, (B,), generator=g, device=DEVICE)
    q, k, v = rand(B, 1, H * hd), rand(B, 1, KVH * hd), rand(B, 1, KVH * hd)
    index = ((1 + torch.randperm(B * 128, generator=g, device=DEVICE)[:B, None]) * KVH
             + torch.arange(KVH, device=DEVICE)) * 16 + positions[:, None] % 16
    caches = [torch.full_like(cache.k[0], float("nan")) for _ in range(4)]
    args = (q, k, v, cache.cos[positions], cache.sin[positions])
    got = fused.rotary_cache_write_triton(*args, caches[0], caches[1], index.reshape(-1))
    ref = fused.rotary_cache_write_reference(*args, caches[2], caches[3], index.reshape(-1))
    # bf16: the same roundings, bit-exact; fp32: the compiler may fuse x*cos + roll(x)*sin into one FMA
    tol = dict(atol=0, rtol=0) if dtype == torch.bfloat16 else dict(atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got, ref, **tol)
    torch.testing.assert_close(caches[0], caches[2], equal_nan=True, **tol)
    torch.testing.assert_close(caches[1], caches[3], equal_nan=True, **tol)


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_logprobs_real_vocab_forward_backward(backend, dtype, monkeypatch):
    monkeypatch.setenv("NANOAZR_KERNELS", backend)
    assert kernels.backend(DEVICE) == backend
    N, D, V, temperature = 300, 896, QWEN_VOCAB, 0.8  # Qwen2.5-0.5B's hidden size, a row count off every tile
    g = torch.Generator(device=DEVICE).manual_seed(0)
    hidden = torch.randn(N, D, device=DEVICE, generator=g).to(dtype)
    weight = (torch.randn(V, D, device=DEVICE, generator=g) * 0.05).to(dtype)
    targets = torch.randint(0, V, (N,), device=DEVICE, generator=g)
    # the definition in float64 on the same (rounded) values, with arbitrary upstream gradients
    h64, w64 = hidden.double().requires_grad_(), weight.double().requires_grad_()
    ref_lp, ref_H = klp.token_logprobs_naive(h64, w64, targets, temperature)
    c_lp = torch.linspace(-1, 1, N, dtype=torch.float64, device=DEVICE)
    c_H = torch.linspace(0.5, -0.3, N, dtype=torch.float64, device=DEVICE)
    ((ref_lp * c_lp).sum() + (ref_H * c_H).sum()).backward()
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    lp, H = kernels.token_logprobs(h, w, targets, temperature=temperature, with_entropy=True)
    assert lp.dtype == H.dtype == torch.float32 and (lp <= 0).all() and (H >= 0).all()
    # fp32: only summation order differs. bf16 inputs: products are exact in the fp32 accumulators, so the forward
    # stays near fp32 accuracy; the backward rounds dz and the gradients to bf16 (2^-9 relative), as
    # test_kernels.py's bf16 test allows.
    atol, grad_rtol = (1e-4, 1e-3) if dtype == torch.float32 else (1e-3, 2e-2)
    torch.testing.assert_close(lp.double(), ref_lp.detach(), atol=atol, rtol=0)
    torch.testing.assert_close(H.double(), ref_H.detach(), atol=atol, rtol=0)
    ((lp.double() * c_lp).sum() + (H.double() * c_H).sum()).backward()
    assert h.grad.dtype == w.grad.dtype == dtype
    for got, want in ((h.grad, h64.grad), (w.grad, w64.grad)):
        torch.testing.assert_close(got.double(), want, atol=grad_rtol * want.abs().max().item(), rtol=0)


# ----------------------------------------------------------------------------------------------------------------
# azr.py and eval/ end to end

def test_azr_tiny_preset_two_steps_on_cuda(tmp_path, capsys):
    azr.main(["--preset=tiny", "--device=cuda", "--steps=2", "--save_every=1", f"--out={tmp_path}"])
    log = capsys.readouterr().out
    assert "on cuda:0 (torch.bfloat16)" in log and "fp32 master True" in log, log[-2000:]
    m = read_metrics(tmp_path)
    assert [x["step"] for x in m] == [1, 2]
    for x in m:
        assert math.isfinite(x["loss"]) and math.isfinite(x["grad_norm"]) and x["grad_norm"] > 0
        assert x["sequences_trained"] > 0 and x["tokens_per_s"] > 0
    # the checkpoint holds the fp32 masters, moved away from the start by the two updates
    start = Qwen2.from_pretrained(str(tmp_path / "tiny_model"))
    final = Qwen2.from_pretrained(str(tmp_path / "ckpt" / "step_000002"))
    assert final.dtype == torch.float32
    assert any(not torch.equal(a, b) for a, b in zip(start.state_dict().values(), final.state_dict().values()))


_RUNS = r'''
import json, sys
import azr
for argv in json.loads(sys.argv[1]):
    azr.main(argv)
'''


def test_adamw8bit_fsdp_checkpoint_resumes_in_one_cuda_process(tiny_ckpt, tmp_path):
    """The 8-bit AdamW reshard on bitsandbytes' CUDA quantiser: a checkpoint that 2 CPU processes wrote under FSDP
    (gloo) resumes in one CUDA process without FSDP, steps, and the optimizer state it loaded equals the saved one
    within one 8-bit requantisation (test_azr_reshard.py checks the same on the CPU)."""
    pytest.importorskip("bitsandbytes")
    from test_azr_reshard import WORKER, full_state, launch, requantised
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    flags = [f"--model={tiny_ckpt}", "--batch_size=4", "--max_response_tokens=12", "--seed_rounds=0",
             "--sandbox_workers=1", "--optim=adamw8bit"]
    launch(2, REPO / "azr.py", flags + ["--steps=1", f"--out={tmp_path / 'a'}", "--fsdp=on", "--device=cpu"],
           {**env, "NANOAZR_KERNELS": "torch"})
    ckpt = tmp_path / "a" / "ckpt" / "step_000001"
    saved = full_state([ckpt / "optim_rank0.pt", ckpt / "optim_rank1.pt"])
    script, dumps = tmp_path / "worker.py", tmp_path / "dumps"
    script.write_text(WORKER)
    dumps.mkdir()
    launch(1, script, [str(REPO), str(dumps)] + flags + ["--steps=2", f"--out={tmp_path / 'a'}", "--resume",
                                                         "--fsdp=off", f"--device={DEVICE}"], env)
    assert [json.loads(x)["step"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    got = full_state([dumps / "loaded_rank0.pt"])
    assert got.keys() == saved.keys()
    for j in saved:
        for g, want in zip(got[j], saved[j]):
            assert requantised(g.cpu(), want), j


def test_azr_resume_identity_on_cuda(tmp_path):
    """2 steps straight == 1 step + --resume + 1 step. Bit-identical only with PyTorch's deterministic algorithms
    (CUDA's default backward kernels accumulate with atomics): --deterministic=true, which sets process-wide state,
    so the three runs go through one child process."""
    flags = ["--preset=tiny", "--device=cuda", "--deterministic=true", "--save_every=1", "--max_response_tokens=16"]
    runs = [flags + ["--steps=2", f"--out={tmp_path / 'a'}"], flags + ["--steps=1", f"--out={tmp_path / 'b'}"],
            flags + ["--steps=2", f"--out={tmp_path / 'b'}", "--resume"]]
    proc = subprocess.run([sys.executable, "-c", _RUNS, json.dumps(runs)], cwd=REPO, env=dict(os.environ),
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and "does not have a deterministic implementation" in proc.stderr:
        pytest.skip("an op on the training path has no deterministic CUDA kernel, so bit-identical resume cannot "
                    "be checked: " + next(line for line in proc.stderr.splitlines() if "deterministic" in line))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(tmp_path / "a", tmp_path / "b")


def test_eval_end_to_end_on_cuda(tiny_ckpt, tmp_path, capsys):
    from eval.__main__ import main
    # a two-problem data folder in the shared data's layout, so the test needs no data beside the repo
    data = tmp_path / "data"
    (data / "cruxeval").mkdir(parents=True)
    (data / "aime24").mkdir()
    crux = [{"id": "sample_0", "code": "def f(x):\n    return x * 2", "input": "3", "output": "6"},
            {"id": "sample_1", "code": "def f(s):\n    return s[::-1]", "input": "'abc'", "output": "'cba'"}]
    (data / "cruxeval" / "cruxeval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in crux))
    aime = [{"id": 1, "problem": "What is 2 + 3?", "answer": "5"},
            {"id": 2, "problem": "What is 7 * 6?", "answer": "42"}]
    (data / "aime24" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in aime))
    common = ["--model", str(tiny_ckpt), "--data-dir", str(data), "--sandbox-workers", "1", "--no-progress",
              "--max-new-tokens", "12"]
    assert main(common + ["--benchmarks", "cruxeval-o,aime24", "--out", str(tmp_path / "greedy")]) == 0
    err = capsys.readouterr().err
    assert " on cuda x1," in err, err[-2000:]  # eval chose the GPU by itself (and bf16 with it)
    summary = json.loads((tmp_path / "greedy" / "results.json").read_text())
    assert {b: r["n"] for b, r in summary["results"].items()} == {"cruxeval-o": 2, "aime24": 2}
    records = [json.loads(line) for line in (tmp_path / "greedy" / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(isinstance(r["verdict"], bool) for r in records)
    # sampling on the GPU: 3 samples per problem at temperature 1 -> pass@1..3
    assert main(common + ["--benchmarks", "aime24", "--samples", "3", "--temperature", "1.0",
                          "--out", str(tmp_path / "sampled")]) == 0
    sampled = json.loads((tmp_path / "sampled" / "results.json").read_text())["results"]["aime24"]
    assert set(sampled) == {"pass@1", "pass@2", "pass@3", "n"} and sampled["n"] == 2
