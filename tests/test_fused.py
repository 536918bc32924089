"""kernels/fused.py: the engine's fused norm / rotary + KV write / SwiGLU kernels against model.py's torch code.

The kernels run under TRITON_INTERPRET=1 (CI) and are compared with the references, which are exactly the torch
code they replace in the model: equal in fp32 to rounding, and in bf16 up to one unit in the last place of a few
values (fp32 sums in another order). A model-level test forces the fused path on the CPU and checks that greedy
generation and decode logits do not change. The GPU run is tests/test_cuda.py's generation tests.
"""
import os

import pytest
import torch

import kernels
from model import KVCache, Qwen2, Qwen2Config
from engine import generate

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
pytestmark = [pytest.mark.skipif(not INTERPRET, reason="the Triton kernels need TRITON_INTERPRET=1 on CPU"),
              # the interpreter evaluates masked-out lanes of the sampler too (log(0)); results are masked
              pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning",
                                         "ignore:invalid value:RuntimeWarning")]
if INTERPRET:
    from kernels import fused


def assert_close_ulp(out, ref):
    """fp32: within rounding of a different summation order. bf16: at most 2 units in the last place (an fp32
    intermediate a hair different rounds to the neighbouring bf16 value, and the weight multiply after it can carry
    that to 2 units of the output), in at most 1% of the values (the others equal). The compiled kernels' rsqrt/exp
    differ from torch's in the last fp32 bits (an H200 showed 2-unit differences in the norm)."""
    if out.dtype == torch.float32:
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        return
    diff = (out.float() - ref.float()).abs()
    mag = ref.float().abs().clamp(min=torch.finfo(out.dtype).tiny)
    ulp = torch.exp2(torch.floor(torch.log2(mag))) * torch.finfo(out.dtype).eps  # spacing of values at |ref|
    assert (diff <= 2 * ulp).all(), (diff / ulp).max()
    assert (diff > 0).float().mean() <= 0.01, (diff > 0).float().mean()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 64), (3, 5, 100), (7, 1, 896)])
def test_rms_norm_and_add_rms_norm(dtype, shape):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g) * 3).to(dtype)
    res = torch.randn(shape, generator=g).to(dtype)
    w = (1 + 0.1 * torch.randn(shape[-1], generator=g)).to(dtype)
    assert_close_ulp(fused.rms_norm_triton(x, w, 1e-6), fused.rms_norm_reference(x, w, 1e-6))
    out, total = fused.add_rms_norm_triton(x, res, w, 1e-6)
    ref_out, ref_total = fused.add_rms_norm_reference(x, res, w, 1e-6)
    assert torch.equal(total, ref_total)  # one rounded add: exact
    assert_close_ulp(out, ref_out)
    assert out.shape == total.shape == x.shape and out.dtype == dtype


def test_rms_norm_eps_counts():
    # eps is added to the mean square before the rsqrt: it dominates for tiny activations (and zeros give zeros)
    x = torch.full((2, 64), 1e-4)
    x[1] = 0.0
    w = torch.ones(64)
    for eps in (1e-6, 1e-2):
        out = fused.rms_norm_triton(x, w, eps)
        torch.testing.assert_close(out, fused.rms_norm_reference(x, w, eps), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out[0], torch.full((64,), 1e-4 / (1e-8 + eps) ** 0.5), atol=1e-6, rtol=1e-5)
        assert out[1].eq(0).all()


@pytest.mark.parametrize("merged", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("H, KVH, hd", [(4, 2, 16), (7, 1, 64), (28, 4, 128)])
def test_rotary_cache_write(dtype, H, KVH, hd, merged):
    """Separate q, k, v tensors, or views into one merged projection [B, 1, (H + 2*KVH) * hd] (model.py's decode)."""
    g = torch.Generator().manual_seed(1)
    B, blocks, bs = 5, 9, 4
    if merged:
        q, k, v = torch.randn(B, 1, (H + 2 * KVH) * hd, generator=g).to(dtype).split([H * hd, KVH * hd, KVH * hd], -1)
    else:
        q = torch.randn(B, 1, H * hd, generator=g).to(dtype)
        k = torch.randn(B, 1, KVH * hd, generator=g).to(dtype)
        v = torch.randn(B, 1, KVH * hd, generator=g).to(dtype)
    cfg = Qwen2Config(hidden_size=H * hd, num_attention_heads=H, num_key_value_heads=KVH, num_hidden_layers=1,
                      intermediate_size=8, vocab_size=8)
    cache = KVCache(cfg, B, 64, "cpu", dtype)  # its rotary table: the one the model uses
    positions = torch.tensor([0, 3, 17, 40, 63])
    cos, sin = cache.cos[positions], cache.sin[positions]  # [B, hd]
    # every row writes one distinct (block, head, offset); everything else must stay as it was (NaN)
    table = torch.randperm(blocks, generator=g)[:B]
    index = ((table[:, None] * KVH + torch.arange(KVH)) * bs + positions[:, None] % bs).reshape(-1)
    caches = [torch.full((blocks, KVH, bs, hd), float("nan"), dtype=dtype) for _ in range(4)]
    out = fused.rotary_cache_write_triton(q, k, v, cos, sin, caches[0], caches[1], index)
    ref = fused.rotary_cache_write_reference(q, k, v, cos, sin, caches[2], caches[3], index)
    assert out.shape == (B, H, hd)
    torch.testing.assert_close(out, ref, atol=0, rtol=0)  # the same roundings: bit-exact
    torch.testing.assert_close(caches[0], caches[2], atol=0, rtol=0, equal_nan=True)
    torch.testing.assert_close(caches[1], caches[3], atol=0, rtol=0, equal_nan=True)
    assert caches[0].isnan().sum() == caches[0].numel() - B * KVH * hd


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_silu_mul(dtype):
    g = torch.Generator().manual_seed(2)
    gate = (torch.randn(3, 1, 2000, generator=g) * 4).to(dtype)  # 6000 elements: several programs, a ragged end
    up = torch.randn(3, 1, 2000, generator=g).to(dtype)
    assert_close_ulp(fused.silu_mul_triton(gate, up), fused.silu_mul_reference(gate, up))


def test_model_with_fused_layers_generates_the_same(monkeypatch):
    """The engine's forwards with the fused kernels forced on (CPU, interpreter): greedy completions equal the torch
    path's, and so do the prefill + decode logits of one step (fp32)."""
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    qwen = Qwen2(cfg).eval()
    prompts = [[5, 9, 11], list(range(1, 20)), [7]]
    with torch.no_grad():
        plain = generate(qwen, prompts, 6, temperature=0)
        logits = {}
        for forced in (False, True):
            monkeypatch.setattr(kernels, "fused_layers", lambda device, forced=forced: forced)
            cache = KVCache(cfg, 2, 32, "cpu", torch.float32, model=qwen)
            assert (cache.fused is not None) == forced and len(cache.qkv) == (2 if forced else 0)  # merged q/k/v
            ids = torch.tensor([[3, 4, 5, 6], [8, 9, 10, 11]])
            qwen(ids, cache=cache, slots=torch.tensor([0, 1]), last=torch.tensor([3, 3]))
            logits[forced] = qwen(torch.tensor([[12], [13]]), cache=cache, positions=torch.tensor([4, 4]),
                                  last=torch.zeros(2, dtype=torch.long), max_position=4)
        torch.testing.assert_close(logits[True], logits[False], atol=1e-5, rtol=1e-5)
        assert generate(qwen, prompts, 6, temperature=0) == plain  # fused_layers still forced on


def test_fused_layers_with_a_head_dim_the_rotary_kernel_cannot_take(monkeypatch):
    """The rotary + KV-write kernel needs a power-of-two head_dim; with another (here 12) the fused forward keeps the
    fused norms and SwiGLU but rotates and writes K/V in torch, with the same greedy completions."""
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=96, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    qwen = Qwen2(cfg).eval()
    prompts = [[5, 9, 11], list(range(1, 20)), [7]]
    plain = generate(qwen, prompts, 4, temperature=0)
    monkeypatch.setattr(kernels, "fused_layers", lambda device: True)
    assert generate(qwen, prompts, 4, temperature=0) == plain
