"""Tests for kernels/: fused sampling, fused token logprobs and decode attention, against exact float64 references.

Every test that goes through the public API runs once per available backend: "torch" always, "triton" when
TRITON_INTERPRET=1 (CI) or on a GPU. A fixture forces the backend with NANOAZR_KERNELS and replaces the OTHER
implementation with a function that raises, so a passing test proves which path ran.
Sampling is checked by distribution: many identical rows in one batch give many independent draws, and a
chi-square test compares their histogram with the exact (temperature, top-k, top-p) distribution.
"""
import importlib.util
import math
import os
from pathlib import Path

import pytest
import torch

import kernels
from kernels import attention as ka
from kernels import logprobs as klp
from kernels import sampling as ks

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
# the interpreter evaluates masked-out lanes too (log(0), inf - inf) and numpy warns about them; results are masked
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning",
                                        "ignore:invalid value:RuntimeWarning", "ignore:overflow:RuntimeWarning")
BACKENDS = ["torch"] + (["triton"] if INTERPRET else [])


def _raise(name):
    def f(*args, **kwargs):
        raise AssertionError(f"{name} ran, but the test forced the other backend")
    return f


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    monkeypatch.setenv("NANOAZR_KERNELS", request.param)
    if request.param == "triton":
        monkeypatch.setattr(ks, "sample_reference", _raise("sample_reference"))
        monkeypatch.setattr(klp, "_forward_torch", _raise("_forward_torch"))
        monkeypatch.setattr(klp, "_logits_grad_torch", _raise("_logits_grad_torch"))
    else:
        monkeypatch.setattr(ks, "sample_triton", _raise("sample_triton"))
        monkeypatch.setattr(klp, "_forward_triton", _raise("_forward_triton"))
    assert kernels.backend("cpu") == request.param
    return request.param


# ----------------------------------------------------------------------------------------------------------------
# dispatch

def test_dispatch_default_and_override(monkeypatch):
    monkeypatch.delenv("NANOAZR_KERNELS", raising=False)
    assert kernels.backend("cpu") == ("triton" if INTERPRET else "torch")
    monkeypatch.setenv("NANOAZR_KERNELS", "torch")
    assert kernels.backend("cpu") == "torch"
    monkeypatch.setenv("NANOAZR_KERNELS", "fast")
    with pytest.raises(ValueError, match="NANOAZR_KERNELS"):
        kernels.backend("cpu")
    if not INTERPRET:
        monkeypatch.setenv("NANOAZR_KERNELS", "triton")
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
            kernels.backend("cpu")


def test_dispatch_reads_the_interpreter_flag(monkeypatch):
    # with or without TRITON_INTERPRET in this run: forcing triton on a CPU tensor needs the interpreter flag
    pytest.importorskip("triton")
    monkeypatch.setenv("NANOAZR_KERNELS", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        kernels.backend("cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert kernels.backend("cpu") == "triton"
    monkeypatch.setenv("NANOAZR_KERNELS", "auto")
    assert kernels.backend("cpu") == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert kernels.backend("cpu") == "torch"


def test_dispatch_without_triton(monkeypatch):
    """An install without triton: auto takes the torch code even under TRITON_INTERPRET=1, and asking for triton
    says what to install."""
    import sys
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` raises ImportError
    kernels._triton_importable.cache_clear()
    try:
        assert not kernels._triton_importable()
        monkeypatch.setenv("NANOAZR_KERNELS", "auto")
        assert kernels.backend("cpu") == "torch"
        monkeypatch.setenv("NANOAZR_KERNELS", "triton")
        with pytest.raises(RuntimeError, match="NANOAZR_KERNELS=triton but triton is not installed; pip install"):
            kernels.backend("cpu")
    finally:
        kernels._triton_importable.cache_clear()


def test_kernels_work_on_an_install_without_triton():
    """The kernel modules import without triton (CPU-only installs) and every public function runs its torch code."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['triton'] = None\n"
            "import torch, kernels\n"
            "from kernels import attention, fused, logprobs, sampling\n"
            "assert attention.triton is fused.triton is logprobs.triton is sampling.triton is None\n"
            "assert kernels.backend('cpu') == 'torch' and not kernels.fused_layers('cpu')\n"
            "x = torch.randn(3, 11)\n"
            "assert torch.equal(kernels.sample(x, temperature=0)[0], x.argmax(-1))\n"
            "h, w = torch.randn(4, 8), torch.randn(11, 8)\n"
            "t = torch.tensor([0, 3, 10, 5])\n"
            "want = torch.log_softmax(h @ w.T, -1).gather(1, t[:, None]).squeeze(1)\n"
            "torch.testing.assert_close(kernels.token_logprobs(h, w, t), want)\n"
            "print('ok')\n")
    env = {**os.environ, "TRITON_INTERPRET": "1", "NANOAZR_KERNELS": "auto"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr[-2000:]


def test_import_is_cheap_and_not_the_hf_kernels_package():
    import subprocess
    import sys
    code = "import sys, kernels; assert 'triton' not in sys.modules; from kernels import get_kernel"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert "cannot import name 'get_kernel'" in r.stderr, r.stderr  # what bitsandbytes' probe expects


# ----------------------------------------------------------------------------------------------------------------
# sampling: exact distributions

def exact_distribution(logits, temperature, top_k, top_p):
    """float64 oracle, written independently of the kernels: a plain python walk over the sorted values."""
    x = logits.double()
    z = x / temperature
    finite = torch.isfinite(z)
    vals = sorted(set(z[finite].tolist()), reverse=True)
    keep = finite.clone()
    if 0 < top_k < int(finite.sum()):
        kth = sorted(z[finite].tolist(), reverse=True)[top_k - 1]
        keep &= z >= kth
    p = torch.where(keep, torch.exp(z - z[keep].max()), torch.zeros_like(z))
    p = p / p.sum()
    if top_p < 1:
        for v in vals:                        # smallest value set {z >= v} whose mass reaches top_p
            if p[z >= v].sum() >= top_p:
                keep &= z >= v
                break
    q = torch.where(keep, torch.exp(z - z[keep].max()), torch.zeros_like(z))
    return q / q.sum()


def assert_chi_square(ids, probs):
    """Histogram of ids vs probs (float64 [V]); masked tokens must never appear. Fails with p < 1e-5."""
    n, V = ids.numel(), probs.numel()
    counts = torch.bincount(ids, minlength=V).double()
    assert counts.numel() == V, f"token id out of range: {ids.max()}"
    support = probs > 0
    assert counts[~support].sum() == 0, f"drew excluded tokens {torch.nonzero(counts * ~support).flatten().tolist()}"
    expected = probs[support] * n
    stat = float(((counts[support] - expected) ** 2 / expected).sum())
    df = int(support.sum()) - 1
    if df == 0:
        return
    z = 4.265  # one-sided normal quantile at 1e-5; Wilson-Hilferty chi-square quantile
    crit = df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3
    assert stat < crit, f"chi-square {stat:.1f} >= {crit:.1f} (df={df}): {counts.tolist()} vs {expected.tolist()}"


DRAWS = 1 << 15
CASES = [  # (name, logits, temperature, top_k, top_p)
    ("plain_masked", [2.0, 1.0, -math.inf, 0.5, 0.0, -1.0, -math.inf, 1.5], 0.8, 0, 1.0),
    ("hot", [2.0, 1.0, 0.0, -1.0, -2.0, -3.0], 2.5, 0, 1.0),
    ("top_k_ties", [3.0, 2.0, 2.0, 1.0, 2.0, 0.0, -1.0], 1.0, 2, 1.0),        # keeps 3 and all three 2s
    ("top_k_signed_zeros", [1.0, 0.0, -0.0, -1.0], 1.0, 2, 1.0),   # -0.0 == 0.0 (tied, kept), though its key is lower
    ("top_p_signed_zeros", [1.0, 0.0, -0.0, -1.0], 1.0, 0, 0.7),
    ("top_k_top_p_signed_zeros", [1.0, 0.0, -0.0, -1.0], 1.0, 2, 0.7),  # top-p over top-k's 3 kept: all 3 stay
    ("top_p_below_boundary", [math.log(v) for v in (0.4, 0.3, 0.2, 0.1)], 1.0, 0, 0.699),
    ("top_p_above_boundary", [math.log(v) for v in (0.4, 0.3, 0.2, 0.1)], 1.0, 0, 0.701),
    ("top_p_ties", [math.log(v) for v in (0.2, 0.3, 0.2, 0.1, 0.2)], 1.0, 0, 0.4),  # boundary inside a tie
    ("top_k_then_top_p", [1.0, 0.2, -0.3, 0.9, 0.0, -2.0, 0.5, 0.4, -1.0, -math.inf], 0.7, 6, 0.8),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])    # bf16: the 4-pass radix select
@pytest.mark.parametrize("name,row,T,k,p", CASES, ids=[c[0] for c in CASES])
def test_sample_distribution_scalar_params(backend, name, row, T, k, p, dtype):
    x = torch.tensor(row).to(dtype)
    probs = exact_distribution(x.float(), T, k, p)                # the oracle sees the same (rounded) logits
    g = torch.Generator().manual_seed(1234)
    ids, logp = kernels.sample(x.repeat(DRAWS, 1), temperature=T, top_k=k, top_p=p, generator=g)
    assert ids.dtype == torch.int64 and logp.dtype == torch.float32 and ids.shape == logp.shape == (DRAWS,)
    assert_chi_square(ids, probs)
    # the logprob returned is exactly log p(id) under the distribution sampled from
    torch.testing.assert_close(logp.double(), probs.log()[ids], atol=2e-6, rtol=0)


def test_sample_distribution_per_row_params(backend):
    # all cases interleaved in ONE batch with per-row tensors: each row must use its own temperature/top-k/top-p
    V = max(len(c[1]) for c in CASES)
    rows = torch.full((len(CASES), V), -math.inf)
    for i, c in enumerate(CASES):
        rows[i, :len(c[1])] = torch.tensor(c[1])
    n = DRAWS // 2
    x = rows.repeat(n, 1)                                        # row r is case r % len(CASES)
    T = torch.tensor([c[2] for c in CASES]).repeat(n)
    k = torch.tensor([c[3] for c in CASES]).repeat(n)
    p = torch.tensor([c[4] for c in CASES]).repeat(n)
    ids, logp = kernels.sample(x, temperature=T, top_k=k, top_p=p, generator=torch.Generator().manual_seed(7))
    for i, c in enumerate(CASES):
        probs = exact_distribution(rows[i], c[2], c[3], c[4])
        assert_chi_square(ids[i::len(CASES)], probs)
        torch.testing.assert_close(logp[i::len(CASES)].double(), probs.log()[ids[i::len(CASES)]], atol=2e-6, rtol=0)


def test_greedy_is_argmax(backend):
    torch.manual_seed(0)
    x = torch.randn(9, 301)
    x[3, 17] = x[3, 200] = x[3].max() + 1.0                       # tie: the first index wins
    x[5, 250:] = -math.inf
    T = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.7, 0.0, 0.0, 2.0, 0.0])
    ids, logp = kernels.sample(x, temperature=T, top_k=5, top_p=0.5, generator=torch.Generator().manual_seed(0))
    greedy = T == 0
    assert torch.equal(ids[greedy], x[greedy].argmax(-1))
    assert ids[3] == 17
    # greedy rows report the model's own log_softmax at temperature 1, unfiltered
    ref = torch.log_softmax(x[greedy].double(), -1).gather(1, ids[greedy, None]).squeeze(1)
    torch.testing.assert_close(logp[greedy].double(), ref, atol=1e-5, rtol=0)
    ids0, logp0 = kernels.sample(x, temperature=0.0)
    assert torch.equal(ids0, x.argmax(-1))


def test_seed_reproducibility(backend):
    x = torch.randn(16, 5000, generator=torch.Generator().manual_seed(0))
    for kw in (dict(), dict(top_p=0.9), dict(top_k=50)):
        a = kernels.sample(x, generator=torch.Generator().manual_seed(42), **kw)
        b = kernels.sample(x, generator=torch.Generator().manual_seed(42), **kw)
        c = kernels.sample(x, generator=torch.Generator().manual_seed(43), **kw)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[0], c[0])


def test_without_logprobs_same_tokens(backend):
    # with_logprobs=False (the engine when nobody asked for logprobs) draws exactly the same tokens
    x = torch.randn(6, 3000, generator=torch.Generator().manual_seed(5))
    x[2] = -math.inf
    x[3, ::7] = float("nan")
    for kw in (dict(temperature=0.0), dict(), dict(top_p=0.9), dict(temperature=torch.tensor([0.0, 1, 0.5, 0, 1, 2]))):
        ids, logp = kernels.sample(x, generator=torch.Generator().manual_seed(1), **kw)
        ids2, none = kernels.sample(x, generator=torch.Generator().manual_seed(1), with_logprobs=False, **kw)
        assert none is None and torch.equal(ids, ids2), kw


@pytest.mark.skipif(not INTERPRET, reason="Triton path needs TRITON_INTERPRET=1 on CPU")
def test_split_vocab_gives_identical_tokens(monkeypatch):
    """One uniform per row picks the token, so the split layout must not change the draw. The interpreter's tiles
    (65,536 columns) keep V = 3001 in one split whatever num_splits asks for; tiles of 1,024 columns let the sampler
    split it in 1, 2 or 3 (boundaries at 2048, or 1024 and 2048), and most of each row's mass sits on the columns
    beside those boundaries, so draws land on both sides of them."""
    monkeypatch.setattr(ks, "_tile", lambda: 1024)
    layouts = []                                                 # (chunk, n_splits) of each launcher call
    splits = ks._splits
    monkeypatch.setattr(ks, "_splits", lambda *a, **kw: layouts.append(splits(*a, **kw)) or layouts[-1])
    x = torch.randn(12, 3001, generator=torch.Generator().manual_seed(1))
    x[:, [1022, 1023, 1024, 1025, 2046, 2047, 2048, 2049]] += 8.0
    x[1, [1023, 2048]] = x[3, [1024, 2048]] = 20.0               # greedy rows: a max tied across splits
    T = torch.tensor([1.0, 0.0, 0.5, 0.0, 1.3, 0.9, 1.0, 0.7, 1.0, 2.0, 1.0, 0.8])
    runs = []
    for n in (1, 2, 3):
        runs.append(ks.sample_triton(x, T, top_p=0.95, generator=torch.Generator().manual_seed(3), num_splits=n))
        assert layouts[-1][1] == n                               # the sampler's own call comes last
    assert runs[0][0][[1, 3]].tolist() == [1023, 1024]           # the first index of the max wins
    for ids, logp in runs[1:]:
        assert torch.equal(ids, runs[0][0])
        torch.testing.assert_close(logp, runs[0][1], atol=1e-6, rtol=0)


@pytest.mark.skipif(not INTERPRET, reason="Triton path needs TRITON_INTERPRET=1 on CPU")
def test_split_vocab_ties_across_splits_and_same_draws():
    """Under the interpreter a split is up to 65,536 columns, so only V > 65,536 really splits (3 splits here): a max
    tied across splits is the first index for greedy rows and for a row holding +inf; sampled rows draw the same
    tokens and logprobs for 1, 2 or 3 splits."""
    V = 140000
    x = torch.randn(5, V, generator=torch.Generator().manual_seed(2))
    x[0, [50, 139000]] = 10.0
    x[1, [70000, 139000]] = 10.0
    x[2, [100, 139500]] = math.inf
    T = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.7])
    runs = [ks.sample_triton(x, T, generator=torch.Generator().manual_seed(3), num_splits=n) for n in (1, 2, 3)]
    for ids, logp in runs:
        assert ids[:3].tolist() == [50, 70000, 100]
        assert torch.equal(ids, runs[0][0])
        torch.testing.assert_close(logp, runs[0][1], atol=1e-5, rtol=0)


@pytest.mark.skipif(not INTERPRET, reason="Triton path needs TRITON_INTERPRET=1 on CPU")
@pytest.mark.parametrize("name,row,T,k,p", [c for c in CASES if c[3] or c[4] < 1],
                         ids=[c[0] for c in CASES if c[3] or c[4] < 1])
def test_radix_path_samples_the_same_distribution(monkeypatch, name, row, T, k, p):
    """With the candidate path off (CANDIDATES = 0) every filtered row goes through the radix select, the masked
    sampling pass and the select kernel: the same distributions (chi-square), and the same draws as the candidate
    path, which samples its rows itself (one uniform per row from the same seed, inverted in column order)."""
    x = torch.tensor(row).repeat(DRAWS // 4, 1)
    fast = ks.sample_triton(x, T, k, p, generator=torch.Generator().manual_seed(5))
    monkeypatch.setattr(ks, "CANDIDATES", 0)
    ids, logp = ks.sample_triton(x, T, k, p, generator=torch.Generator().manual_seed(5))
    probs = exact_distribution(x[0], T, k, p)
    assert_chi_square(ids, probs)
    torch.testing.assert_close(logp.double(), probs.log()[ids], atol=2e-6, rtol=0)
    assert torch.equal(ids, fast[0])
    torch.testing.assert_close(logp, fast[1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_masked_rows_never_nan(backend, dtype):
    x = torch.randn(4, 64)
    x[0, 10:] = -math.inf                                         # masked vocabulary tail
    x[1] = -math.inf                                              # nothing left: id 0, logprob -inf
    x[2, ::2] = float("nan")                                      # NaN counts as -inf
    x[3, 5] = 1e30                                                # one huge finite logit
    x = x.to(dtype)
    x0 = x.clone()
    for kw in (dict(), dict(top_k=3), dict(top_p=0.7), dict(temperature=0.0), dict(temperature=0.3, top_k=5),
               dict(top_k=20)):                                   # row 0: top-k past its 10 finite logits
        ids, logp = kernels.sample(x, generator=torch.Generator().manual_seed(0), **kw)
        torch.testing.assert_close(x, x0, equal_nan=True, rtol=0, atol=0)  # the caller's logits stay untouched
        assert not torch.isnan(logp).any(), kw
        assert ids[0] < 10 and ids[1] == 0 and logp[1] == -math.inf and ids[2] % 2 == 1 and ids[3] == 5, kw
        assert (logp <= 0).all() and torch.isfinite(logp[[0, 2, 3]]).all(), kw


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_huge_finite_logits(backend, dtype):
    """Finite z = logit / T past 2.4e38, where z * log2(e) overflows fp32: row 0's max must be drawn with logprob 0,
    row 1 (two finite logits, both huge and negative) must draw one of them and never a -inf column, row 2 reaches
    z = 3e38 through its temperature (0.01)."""
    big = 3e38 if dtype == torch.bfloat16 else torch.finfo(torch.float32).max    # (bf16 rounds fp32's max to inf)
    x = torch.zeros(3, 40)
    x[0, 5] = big
    x[1] = -math.inf
    x[1, [7, 9]] = -big
    x[2, 11] = 3e36
    T = torch.tensor([1.0, 1.0, 0.01])
    for seed in range(4):
        ids, logp = kernels.sample(x.to(dtype), temperature=T, generator=torch.Generator().manual_seed(seed))
        assert ids[0] == 5 and ids[1] in (7, 9) and ids[2] == 11, ids
        torch.testing.assert_close(logp, torch.tensor([0.0, -math.log(2), 0.0]), atol=1e-6, rtol=0)


def test_cold_temperature_large_logits(backend):
    """T = 2^-10 on logits ~4000: z = logit / T ~ 4e6 and every z - max (0, -0.5, -1, -1.5) are exact, but z * log2(e)
    has an fp32 ulp of 1/2, so exp2(z * log2 e - max * log2 e) is off by up to 19%: the draw must follow exp(z - max),
    the distribution whose logprobs are returned."""
    x = torch.tensor([4000.0 - j * 2.0 ** -11 for j in range(4)])
    T = 2.0 ** -10
    probs = exact_distribution(x, T, 0, 1.0)
    ids, logp = kernels.sample(x.repeat(DRAWS, 1), temperature=T, generator=torch.Generator().manual_seed(5))
    assert_chi_square(ids, probs)
    torch.testing.assert_close(logp.double(), probs.log()[ids], atol=2e-6, rtol=0)


def test_real_vocabulary_bf16(backend):
    # Qwen's embedding has 151,936 rows but the tokenizer ~151,665: the padded tail is -inf
    V, real = 151936, 151665
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, V, generator=g) * 3).to(torch.bfloat16)
    x[:, real:] = -math.inf
    T = torch.tensor([1.0, 0.6, 0.0, 1.0])
    k = torch.tensor([0, 40, 0, 1000])
    p = torch.tensor([1.0, 1.0, 1.0, 0.9])
    ids, logp = kernels.sample(x, temperature=T, top_k=k, top_p=p, generator=g)
    assert (ids < real).all() and (logp <= 0).all() and torch.isfinite(logp).all()
    xf = x.float()
    assert ids[2] == xf[2].argmax()
    z1 = xf[1] / 0.6
    assert z1[ids[1]] >= z1.topk(40).values[-1]                  # inside the top-40
    for i, Ti in ((0, 1.0), (1, 0.6), (3, 1.0)):                  # logprob under the (filtered) distribution
        probs = exact_distribution(xf[i], Ti, int(k[i]), float(p[i]))
        assert abs(float(logp[i]) - math.log(float(probs[ids[i]]))) < 1e-4


@pytest.mark.skipif(not INTERPRET, reason="Triton path needs TRITON_INTERPRET=1 on CPU")
@pytest.mark.parametrize("candidates", [None, 0], ids=["candidates", "radix"])
@pytest.mark.parametrize("V,dtype", [(7, torch.float32), (1000, torch.float32), (151936, torch.float32),
                                     (1000, torch.bfloat16), (1000, torch.float16), (151936, torch.bfloat16)])
def test_threshold_kernel_matches_reference(V, dtype, candidates):
    """Both ways to the threshold: the candidate path (every row of the small vocabularies; at 151,936 these
    Gaussian rows hold too many candidates and go on to the radix select) and the radix select alone."""
    g = torch.Generator().manual_seed(V)
    B = 6
    x = torch.randn(B, V, generator=g) * 2
    x[:, 1::3] = x[:, ::3][:, :x[:, 1::3].shape[1]]              # plenty of exact ties
    x[0, V // 2:] = -math.inf
    x[3:] -= 8                                                   # negative boundaries too (their keys' low bits are 1s)
    x = x.to(dtype)                                              # bf16/fp16: 4 and 5 radix passes instead of 8
    k = torch.tensor([0, 1, 3, V // 2, V, 0])
    p = torch.tensor([0.9, 1.0, 0.5, 0.95, 0.3, 1e-6])
    thr = ks.filter_threshold_triton(x, torch.ones(B), k, p, candidates=candidates)
    ref = ks.filter_threshold_reference(x.float(), k, p)
    if dtype == torch.float32:
        torch.testing.assert_close(thr, ref, atol=0, rtol=0)
    else:  # the threshold may sit just below a negative boundary value: the kept sets must be identical
        assert (ref < 0).any() and (ref > 0).any()                   # both signs of boundary are exercised
        assert torch.equal(x.float() >= thr[:, None], x.float() >= ref[:, None])
        assert ((thr <= ref) & ((thr == ref) | (ref < 0))).all()


@pytest.mark.skipif(not INTERPRET, reason="Triton path needs TRITON_INTERPRET=1 on CPU")
@pytest.mark.parametrize("candidates", [None, 0], ids=["candidates", "radix"])
def test_threshold_kernel_at_the_exact_top_p_boundary(candidates):
    """Both searches keep the top token alone when its mass is exactly top_p (masses 1, 1/2, 1/2 are exact in
    fp32), like the reference; a hair more than p brings in the tied pair."""
    z = torch.tensor([[0.0, math.log(0.5), math.log(0.5)], [1.0, 0.0, -1.0]])
    p = torch.tensor([0.5, 0.5])
    p[1] = torch.softmax(z[1], -1)[0]
    for top_p in (p, torch.nextafter(p, p + 1)):
        thr = ks.filter_threshold_triton(z, torch.ones(2), torch.zeros(2, dtype=torch.long), top_p,
                                         candidates=candidates)
        torch.testing.assert_close(thr, ks.filter_threshold_reference(z, torch.zeros(2, dtype=torch.long), top_p),
                                   atol=0, rtol=0)
    assert thr[0].item() == z[0, 1].item()


@pytest.mark.skipif(not INTERPRET, reason="Triton path needs TRITON_INTERPRET=1 on CPU")
@pytest.mark.parametrize("candidates", [None, 0], ids=["candidates", "radix"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_threshold_kernel_top_k_at_or_past_the_vocabulary_keeps_all(dtype, candidates):
    # per-row top_k tensors are not checked: k >= V means no top-k filter (-inf), as in the reference (which clamps);
    # so does a k past the row's finite logits (row 3: the k-th largest is -inf), in every dtype
    x = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    x[3, 5:] = -math.inf
    x = x.to(dtype)
    k, p = torch.tensor([50, 53, 10**6, 10]), torch.ones(4)
    thr = ks.filter_threshold_triton(x, torch.ones(4), k, p, has_topp=False, candidates=candidates)
    assert thr.tolist() == [-math.inf] * 4 == ks.filter_threshold_reference(x.float(), k, p).tolist()


def lm_like_logits(B, V, generator):
    """bench/kernels.py's rows shaped like a language model's (a Gaussian bulk plus 50 informative tokens)."""
    spec = importlib.util.spec_from_file_location("bench_kernels", Path(__file__).parents[1] / "bench" / "kernels.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.lm_like_logits(B, V, "cpu", torch.float32, generator)


@pytest.mark.skipif(not INTERPRET, reason="Triton path needs TRITON_INTERPRET=1 on CPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_candidate_path_takes_lm_like_rows_at_the_real_vocabulary(dtype):
    """At 151,936 tokens, rows shaped like an LLM's find their threshold among their candidates (todo = 0), equal
    to the radix select's and the reference's, with per-row temperatures; the rows it cannot serve go to the radix
    select: a flat row (too many candidates), a top-k past the row's finite logits (too few), a capacity of 16."""
    g = torch.Generator().manual_seed(0)
    B, V = 8, 151936
    x = lm_like_logits(B, V, g)
    x[5] = torch.randn(V, generator=g) * 0.5                      # flat: tens of thousands of candidates
    x[6, 100:] = -math.inf                                        # 100 finite logits, top_k 200
    x[7, :40] = x[7, 40:80]                                       # ties at the boundary
    x = x.to(dtype)
    T = torch.tensor([1.0, 0.7, 1.0, 1.0, 1.3, 1.0, 1.0, 0.5])
    k = torch.tensor([0, 20, 0, 50, 0, 0, 200, 30])
    p = torch.tensor([0.9, 0.95, 0.95, 1.0, 0.99, 0.9, 1.0, 0.8])
    part = ks._partials(x, T, T, False, stats=True)[:3]
    _, todo = ks._candidate_threshold(x, T, k, p, *part, ks.CANDIDATES)
    assert todo.tolist() == [0, 0, 0, 0, 0, 1, 1, 0]
    assert ks._candidate_threshold(x, T, k, p, *part, 16)[1].tolist() == [1] * 8
    thr = ks.filter_threshold_triton(x, T, k, p)
    torch.testing.assert_close(thr, ks.filter_threshold_triton(x, T, k, p, candidates=0), atol=0, rtol=0)
    ref = ks.filter_threshold_reference(x.float() / T[:, None], k, p)          # in scaled units
    assert torch.equal(x.float() / T[:, None] >= ref[:, None], x.float() >= thr[:, None])
    if dtype == torch.float32:
        torch.testing.assert_close(thr[:5], ref[:5] * T[:5], atol=0, rtol=0)


@pytest.mark.skipif(not INTERPRET, reason="Triton path needs TRITON_INTERPRET=1 on CPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_candidate_search_when_candidates_share_most_of_their_key(dtype):
    """The candidate search starts below the leading bits its candidates' keys share: rows whose candidates are all
    one value, a single candidate, or two values one unit in the last place apart (every bit shared but the last)."""
    one = torch.tensor(1.0, dtype=dtype)
    x = torch.full((4, 8), -math.inf)
    x[0] = 3.0                                                   # all tied: top-k 2 keeps all eight
    x[1, 2] = 2.0                                                # a single finite logit
    x[2, :2] = torch.stack([one, torch.nextafter(one, 2 * one)]).float()
    x[3, :2] = -x[2, :2]                                         # the same below zero
    x = x.to(dtype)
    k, p = torch.tensor([2, 0, 1, 1]), torch.tensor([1.0, 0.5, 1.0, 0.3])
    part = ks._partials(x, torch.ones(4), torch.ones(4), False, stats=True)[:3]
    thr, todo = ks._candidate_threshold(x, torch.ones(4), k, p, *part, ks.CANDIDATES)
    ref = ks.filter_threshold_reference(x.float(), k, p)
    assert todo.tolist() == [0, 0, 0, 0]
    assert torch.equal(x.float() >= thr[:, None], x.float() >= ref[:, None])
    assert (x.float() >= thr[:, None]).sum(1).tolist() == [8, 1, 1, 1]


@pytest.mark.skipif(not INTERPRET, reason="Triton path needs TRITON_INTERPRET=1 on CPU")
def test_candidate_path_with_the_gpu_tiles(monkeypatch):
    """With a GPU's tiles (2,048 columns; the interpreter's hold 65,536, so a split is one step) the first pass takes
    its statistics from each split's first step only (a fifteenth of a 152k row) and the loop does the rest: LLM-like
    rows still find their threshold among their candidates, and keep what the reference keeps."""
    monkeypatch.setattr(ks, "_tile", lambda: 2048)
    g = torch.Generator().manual_seed(1)
    B, V = 3, 151936
    x = lm_like_logits(B, V, g).to(torch.bfloat16)
    T, k, p = torch.tensor([1.0, 0.7, 1.2]), torch.tensor([0, 40, 0]), torch.tensor([0.9, 0.95, 0.99])
    part = ks._partials(x, T, T, False, stats=True, most=ks.FILTER_SCAN)[:3]
    assert part[0].shape == (B, 5)                                # splits of 30,720 columns: 15 steps each
    z = x.double() / T[:, None]
    lse = (part[0].double() + part[1].double().log()).logsumexp(-1)  # the splits' (max, mass) -> the row's
    torch.testing.assert_close(lse, z.logsumexp(-1), atol=1e-5, rtol=0)
    assert torch.equal(part[2][:, :, 0], torch.full((B, 5), 2048.0))  # the statistics count each first step
    thr, todo = ks._candidate_threshold(x, T, k, p, *part, ks.CANDIDATES)
    assert todo.tolist() == [0] * B
    ref = ks.filter_threshold_reference(x.float() / T[:, None], k, p)
    assert torch.equal(x.float() / T[:, None] >= ref[:, None], x.float() >= thr[:, None])


@pytest.mark.skipif(not INTERPRET, reason="Triton path needs TRITON_INTERPRET=1 on CPU")
def test_candidate_listing_of_full_words_and_its_capacity(monkeypatch):
    """The candidate kernel marks candidates in a bitmask of 32-column words and the threshold kernel lists them,
    one round per bit a word holds: words with every bit set (bit 31 is the int32 sign), candidates in one word
    and in neighbouring ones, and exactly as many candidates as slots (served) or one more (left to the radix).
    The rows it serves draw the same tokens as the radix path from the same seed (both invert in column order)."""
    V = 3000
    g = torch.Generator().manual_seed(4)
    x = torch.randn(8, V, generator=g)
    x[0, 64:128] += 12.0                                          # two full words (bits 0-31 of words 2 and 3)
    x[1, 31::32] += 12.0                                          # bit 31 of every word
    x[2, 1000:1003] = 15.0                                        # a tie of three in one word
    x[3, [5, 37, 38, 2999]] += torch.tensor([14.0, 13.0, 15.0, 12.0])  # last column of the row
    x[4:] = x[:4]
    T = torch.tensor([1.0, 0.8, 1.0, 1.2, 1.0, 0.8, 1.0, 1.2])
    k = torch.tensor([40, 0, 2, 0, 0, 50, 0, 3])
    p = torch.tensor([0.9, 0.95, 1.0, 0.9, 0.5, 1.0, 0.99, 0.8])
    part = ks._partials(x, T, T, False, stats=True)[:3]
    assert ks._candidate_threshold(x, T, k, p, *part, ks.CANDIDATES)[1].tolist() == [0] * 8
    fast = ks.sample_triton(x.repeat(64, 1), T.repeat(64), k.repeat(64), p.repeat(64),
                            generator=torch.Generator().manual_seed(9))
    monkeypatch.setattr(ks, "CANDIDATES", 0)
    ids, logp = ks.sample_triton(x.repeat(64, 1), T.repeat(64), k.repeat(64), p.repeat(64),
                                 generator=torch.Generator().manual_seed(9))
    assert torch.equal(ids, fast[0])
    torch.testing.assert_close(logp, fast[1], atol=1e-6, rtol=0)
    assert len(set(ids[0::8].tolist())) > 20 and len(set(ids[1::8].tolist())) > 20  # draws spread over the words
    # capacity 16: with top-k 3 the floor is the max, so the candidates are the tokens tied with it
    y = torch.zeros(2, 32)
    y[0, 16:] = 10.0                                              # 16 candidates: they fit
    y[1, 15:] = 10.0                                              # 17: one too many
    ones = torch.ones(2)
    part = ks._partials(y, ones, ones, False, stats=True)[:3]
    thr, todo = ks._candidate_threshold(y, ones, torch.tensor([3, 3]), ones, *part, 16)
    assert todo.tolist() == [0, 1] and thr[0].item() == 10.0


@pytest.mark.skipif(not INTERPRET, reason="Triton path needs TRITON_INTERPRET=1 on CPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_candidate_listing_of_row_blocks_with_inactive_rows(monkeypatch, dtype):
    """The threshold kernel lists several rows per program, a block of bitmask words per step: with a GPU's tiles,
    V = 9,000 and 2,048 slots, programs of 4 rows list 320 words 256 at a time (the last step mostly past the row),
    with candidates on both sides of the steps' boundary (bit 31 of word 255, bit 0 of word 256). Rows the fast
    path does not apply to (greedy, a +inf logit, no finite logit, no filter) sit in the same blocks: the marking
    pass never writes their words, and nothing reads them. The rows it serves keep what the reference keeps and
    draw what the radix path draws."""
    monkeypatch.setattr(ks, "_tile", lambda: 2048)
    g = torch.Generator().manual_seed(3)
    V = 9000
    x = lm_like_logits(8, V, g)
    x[2, 8191] = x[2].max() + 3.0
    x[2, 8192] = x[2].max() + 2.0
    x[3, 5] = math.inf
    x[4] = -math.inf
    x[6, 3::7] = float("nan")
    x = x.to(dtype)
    T = torch.tensor([1.0, 0.0, 0.8, 1.0, 1.0, 1.0, 1.2, 0.9])
    k = torch.tensor([20, 5, 0, 3, 0, 0, 10, 0])
    p = torch.tensor([0.9, 0.9, 0.95, 1.0, 0.5, 1.0, 0.9, 0.7])   # row 5: no filter
    served = torch.tensor([0, 2, 6, 7])
    part = ks._partials(x, T, T, False, stats=True, most=ks.FILTER_SCAN)[:3]
    thr, todo = ks._candidate_threshold(x, T, k, p, *part, 2048)
    assert todo.tolist() == [0] * 8                              # (inactive rows are not the radix's either)
    z = x.float().nan_to_num(nan=-math.inf) / torch.where(T > 0, T, 1.0)[:, None]
    ref = ks.filter_threshold_reference(z, k, p)
    assert torch.equal((z >= ref[:, None])[served], (x.float() >= thr[:, None])[served])
    monkeypatch.setattr(ks, "CANDIDATES", 2048)
    fast = ks.sample_triton(x, T, k, p, generator=torch.Generator().manual_seed(9))
    monkeypatch.setattr(ks, "CANDIDATES", 0)
    ids, logp = ks.sample_triton(x, T, k, p, generator=torch.Generator().manual_seed(9))
    assert torch.equal(ids, fast[0])
    torch.testing.assert_close(logp, fast[1], atol=1e-5, rtol=0)


def test_threshold_reference_at_the_exact_top_p_boundary():
    """top-p keeps the smallest prefix whose mass reaches p: a top token holding exactly p is kept alone."""
    z = torch.tensor([[1.0, 0.0, -1.0, -2.0]])
    p = torch.softmax(z, -1)[0, 0]
    assert ks.filter_threshold_reference(z, torch.tensor([0]), p[None]).item() == 1.0
    assert ks.filter_threshold_reference(z, torch.tensor([0]), torch.nextafter(p, p + 1)[None]).item() == 0.0


def test_sample_rejects_bad_arguments():
    x = torch.randn(2, 5)
    with pytest.raises(ValueError, match="top_p"):
        kernels.sample(x, top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        kernels.sample(x, temperature=-1.0)
    with pytest.raises(ValueError, match=r"\[B, V\]"):
        kernels.sample(x[0])
    with pytest.raises(ValueError, match="top_k"):
        kernels.sample(x, top_k=torch.tensor([1, 2, 3]))
    for kwargs, words in ((dict(top_k=1.5), "top_k must be an integer >= 0"), (dict(top_k=-1), "top_k must be")):
        with pytest.raises(ValueError, match=words):
            kernels.sample(x, **kwargs)
    with pytest.raises(ValueError, match="logits must be a float tensor, got torch.int64"):
        kernels.sample(torch.ones(2, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"empty vocabulary \(V = 0\)"):
        kernels.sample(torch.zeros(2, 0))


def test_sample_takes_0d_knobs_and_strided_logits(backend):
    """A 0-d tensor knob applies to every row; logits whose columns are not contiguous (a transposed view) sample
    like their contiguous copy."""
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(0)).t()  # [6, 40], column stride 6
    assert x.stride(-1) != 1
    ids, logp = kernels.sample(x, temperature=torch.tensor(0.0))
    assert torch.equal(ids, x.argmax(-1))
    ref = torch.log_softmax(x.double(), -1).gather(1, ids[:, None]).squeeze(1)
    torch.testing.assert_close(logp.double(), ref, atol=1e-5, rtol=0)
    a = kernels.sample(x, top_k=torch.tensor(3), generator=torch.Generator().manual_seed(1))
    b = kernels.sample(x.contiguous(), top_k=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1])
    assert all(int(i) in x[r].topk(3).indices.tolist() for r, i in enumerate(a[0]))


# ----------------------------------------------------------------------------------------------------------------
# decode attention

def check_decode_attention_reads_only_each_rows_length(attend, lengths, block_size, H, KVH, hd, dtype, seed=0):
    """attend(q, k, v, lengths, block_table) on a paged cache whose rows own shuffled blocks (plus spare table entries
    pointing at block 0), and where every position past a row's length, block 0 and every unowned block hold NaN, so
    an implementation that read one, or read a block out of order, would return NaN or a wrong value; against float64
    attention on the same values laid out densely. Shared by the interpreter test here and the compiled one in
    test_cuda.py."""
    g = torch.Generator().manual_seed(seed)
    B, n_max = len(lengths), int(lengths.max())
    per_row = -(-n_max // block_size) + 1  # one spare table column (points at block 0)
    n_blocks = 1 + B * per_row + 3  # block 0, the rows' blocks, 3 unowned
    q = torch.randn(B, H, hd, generator=g).to(dtype)
    dense_k = torch.randn(B, KVH, per_row * block_size, hd, generator=g).to(dtype)  # [B, KVH, positions, hd]
    dense_v = torch.randn(B, KVH, per_row * block_size, hd, generator=g).to(dtype)
    k = torch.full((n_blocks, KVH, block_size, hd), math.nan, dtype=dtype)
    v = torch.full((n_blocks, KVH, block_size, hd), math.nan, dtype=dtype)
    table = torch.zeros(B + 2, per_row, dtype=torch.long)  # 2 rows more than the batch, as the engine's free rows
    order = (1 + torch.randperm(n_blocks - 1, generator=g)).tolist()
    for b, n in enumerate(lengths.tolist()):
        for j in range(-(-n // block_size)):
            table[b, j] = blk = order.pop()
            m = min(block_size, n - j * block_size)  # positions of this block inside the row's length
            k[blk, :, :m] = dense_k[b, :, j * block_size: j * block_size + m]
            v[blk, :, :m] = dense_v[b, :, j * block_size: j * block_size + m]
    got = attend(q, k, v, lengths, table)
    assert got.dtype == dtype and got.shape == (B, H, hd) and torch.isfinite(got).all()
    dense_table = torch.arange(B * per_row).view(B, per_row)  # the dense copy as blocks in order
    dk = dense_k.double().view(B, KVH, per_row, block_size, hd).transpose(1, 2).reshape(-1, KVH, block_size, hd)
    dv = dense_v.double().view(B, KVH, per_row, block_size, hd).transpose(1, 2).reshape(-1, KVH, block_size, hd)
    want = ka.decode_attention_reference(q.double(), dk, dv, lengths, dense_table)
    tol = 1e-5 if dtype == torch.float32 else 2e-2  # bf16: the output's own rounding (2^-9) over values of |x| < 2
    torch.testing.assert_close(got.double(), want, atol=tol, rtol=tol)


@pytest.mark.skipif(not INTERPRET, reason="Triton path needs TRITON_INTERPRET=1 on CPU")
@pytest.mark.parametrize("split,programs", [(ka.SPLIT_T, 0), (64, 0), (ka.SPLIT_T, 64)])
@pytest.mark.parametrize("H,KVH,hd,block_size,dtype", [(4, 2, 16, 16, torch.float32), (7, 1, 32, 4, torch.float32),
                                                       (2, 2, 16, 64, torch.float32), (4, 2, 16, 16, torch.bfloat16)])
def test_decode_attention_kernel_reads_only_each_rows_length(H, KVH, hd, block_size, dtype, split, programs):
    """Rows of lengths 1 to 130 (across the kernel's 64-position steps and the cache's blocks) in shuffled blocks;
    with split=64 each row's positions are also split over several programs (3 to 4 chunks of 64, the later ones
    empty for short rows) and combined; with programs=64 the occupancy rule splits them in 2 chunks of 128."""
    def attend(*args):
        return ka.decode_attention_triton(*args, split=split, programs=programs)
    check_decode_attention_reads_only_each_rows_length(attend, torch.tensor([1, 63, 64, 65, 130]), block_size, H,
                                                       KVH, hd, dtype, seed=H * hd)


@pytest.mark.skipif(not INTERPRET, reason="Triton path needs TRITON_INTERPRET=1 on CPU")
def test_decode_attention_combines_more_chunks_than_one_combine_step():
    """A row of 600 positions in chunks of 64: 10 chunks, more than the 8 the combine kernel takes per step, so it
    walks them in two steps (a row of 1 position leaves 9 of its chunks empty)."""
    def attend(*args):
        return ka.decode_attention_triton(*args, split=64, programs=0)
    check_decode_attention_reads_only_each_rows_length(attend, torch.tensor([1, 600]), 16, 4, 2, 16, torch.float32,
                                                       seed=5)


def test_decode_chunks():
    """How decode attention splits rows: by length (at most `split` positions), then by occupancy (down to 128)."""
    assert ka.decode_chunks(64, 4, 320) == (1, 320)                      # no target (CPU): one chunk per row
    assert ka.decode_chunks(64, 4, 570, programs=528) == (3, 192)        # 256 programs -> 768
    assert ka.decode_chunks(128, 4, 2106, programs=528) == (3, 704)      # long enough rows: split by length only
    assert ka.decode_chunks(4, 4, 8192, programs=528) == (32, 256)       # the tail: a few long rows
    assert ka.decode_chunks(64, 4, 100, programs=528) == (1, 128)        # never below 128 positions
    for B, cap, programs in ((1, 1, 0), (3, 4097, 528), (256, 8320, 528), (2, 129, 10**6)):
        S, chunk = ka.decode_chunks(B, 4, cap, programs=programs)
        assert chunk % 64 == 0 and (S - 1) * chunk < cap <= S * chunk   # every position in one chunk, none empty


def test_decode_attention_reference_reads_blocks_in_table_order():
    """The torch path (the engine's on CPU) gathers each row's blocks in table order: against per-head attention over
    the blocks concatenated by hand."""
    lengths = torch.tensor([3, 8, 5, 1])  # whole blocks of 4 for row 1; the others end inside a block
    g = torch.Generator().manual_seed(1)
    H, KVH, hd, bs = 4, 2, 8, 4
    q = torch.randn(4, H, hd, generator=g, dtype=torch.float64)
    k = torch.randn(12, KVH, bs, hd, generator=g, dtype=torch.float64)
    v = torch.randn(12, KVH, bs, hd, generator=g, dtype=torch.float64)
    table = torch.tensor([[7, 0], [3, 9], [11, 2], [5, 0]])
    got = ka.decode_attention_reference(q, k, v, lengths, table)
    for b, n in enumerate(lengths.tolist()):
        kb = torch.cat([k[blk] for blk in table[b].tolist()], dim=1)[:, :n]  # [KVH, n, hd]
        vb = torch.cat([v[blk] for blk in table[b].tolist()], dim=1)[:, :n]
        for h in range(H):
            w = torch.softmax(kb[h // 2] @ q[b, h] / math.sqrt(hd), dim=0)
            torch.testing.assert_close(got[b, h], w @ vb[h // 2])


def test_decode_attention_reference_matches_plain_softmax_attention():
    """The oracle itself (grouped heads, dense under the mask) against per-head attention written out, on a static
    layout (row b in blocks 1 + b of one block each, as model.KVCache lays out a static cache)."""
    g = torch.Generator().manual_seed(0)
    H, KVH, hd, lengths = 6, 2, 8, torch.tensor([3, 1, 5])
    q = torch.randn(3, H, hd, generator=g, dtype=torch.float64)
    k = torch.randn(4, KVH, 6, hd, generator=g, dtype=torch.float64)
    v = torch.randn(4, KVH, 6, hd, generator=g, dtype=torch.float64)
    got = ka.decode_attention_reference(q, k, v, lengths, torch.tensor([[1], [2], [3]]))
    for b, n in enumerate(lengths.tolist()):
        for h in range(H):
            kv = h // (H // KVH)
            w = torch.softmax(k[1 + b, kv, :n] @ q[b, h] / math.sqrt(hd), dim=0)
            torch.testing.assert_close(got[b, h], w @ v[1 + b, kv, :n])


# ----------------------------------------------------------------------------------------------------------------
# token logprobs

def _check_logprobs(hidden, weight, targets, temperature, dtype, atol, grad_rtol):
    """Forward + backward of kernels.token_logprobs (in `dtype`) vs the naive float64 definition."""
    h64 = hidden.to(dtype).double().requires_grad_()
    w64 = weight.to(dtype).double().requires_grad_()
    ref_lp, ref_H = klp.token_logprobs_naive(h64, w64, targets, temperature)
    c_lp = torch.linspace(-1, 1, targets.numel(), dtype=torch.float64)   # arbitrary upstream grads
    c_H = torch.linspace(0.5, -0.3, targets.numel(), dtype=torch.float64)
    ((ref_lp * c_lp).sum() + (ref_H * c_H).sum()).backward()
    h = hidden.to(dtype).requires_grad_()
    w = weight.to(dtype).requires_grad_()
    lp, H = kernels.token_logprobs(h, w, targets, temperature=temperature, with_entropy=True)
    assert lp.dtype == H.dtype == torch.float32
    assert (lp <= 0).all() and torch.isfinite(lp).all() and (H >= 0).all()
    torch.testing.assert_close(lp.double(), ref_lp.detach(), atol=atol, rtol=0)
    torch.testing.assert_close(H.double(), ref_H.detach(), atol=atol, rtol=0)
    ((lp.double() * c_lp).sum() + (H.double() * c_H).sum()).backward()
    assert h.grad.dtype == dtype and w.grad.dtype == dtype
    for got, want in ((h.grad, h64.grad), (w.grad, w64.grad)):
        scale = want.abs().max().item()
        torch.testing.assert_close(got.double(), want, atol=grad_rtol * scale, rtol=0)


@pytest.mark.parametrize("N,D,V,T", [(1, 16, 17, 1.0), (37, 48, 1000, 0.7), (5, 24, 8200, 1.3), (64, 32, 151936, 1.0)])
def test_token_logprobs_fp32(backend, N, D, V, T):
    g = torch.Generator().manual_seed(N * V)
    hidden = torch.randn(N, D, generator=g)
    weight = torch.randn(V, D, generator=g) * 0.5
    targets = torch.randint(0, V, (N,), generator=g)
    _check_logprobs(hidden, weight, targets, T, torch.float32, atol=2e-5, grad_rtol=1e-4)


def test_token_logprobs_targets_at_chunk_edges(backend):
    # targets on both sides of each 4096-column chunk boundary (V = 8200: chunks end at 4096, 8192), at T != 1
    g = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(8, 16, generator=g), torch.randn(8200, 16, generator=g) * 0.5
    targets = torch.tensor([0, 4095, 4096, 4097, 8191, 8192, 8199, 100])
    _check_logprobs(hidden, weight, targets, 0.8, torch.float32, atol=2e-5, grad_rtol=1e-4)


def test_token_logprobs_bf16(backend):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(33, 40, generator=g)
    weight = torch.randn(3001, 40, generator=g) * 0.5
    targets = torch.randint(0, 3001, (33,), generator=g)
    # fp32 accumulation of bf16 inputs: |dlogprob| <= 1e-3 against float64 on the same (rounded) values
    _check_logprobs(hidden, weight, targets, 1.0, torch.bfloat16, atol=1e-3, grad_rtol=2e-2)


def test_token_logprobs_never_positive(backend):
    # rows where the target's logit dominates by ~1e3: exact logprob is -0.0, rounding must not make it positive
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(20, 16, generator=g)
    weight = torch.randn(500, 16, generator=g) * 0.01
    targets = torch.randint(0, 500, (20,), generator=g)
    weight[targets] = hidden * 50.0
    lp, H = kernels.token_logprobs(hidden, weight, targets, with_entropy=True)
    assert (lp <= 0).all() and torch.isfinite(lp).all() and torch.isfinite(H).all() and (H >= 0).all()
    # huge logits (|z| ~ 1e4) stay finite too
    lp = kernels.token_logprobs(hidden * 100, weight, targets)
    assert (lp <= 0).all() and torch.isfinite(lp).all()


def test_token_logprobs_api(backend):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(6, 8, generator=g, requires_grad=True)
    weight = torch.randn(50, 8, generator=g)                      # frozen weight: grad only to hidden
    targets = torch.randint(0, 50, (6,), generator=g)
    lp = kernels.token_logprobs(hidden, weight, targets)
    assert isinstance(lp, torch.Tensor) and lp.shape == (6,)
    lp.sum().backward()
    assert hidden.grad is not None and weight.grad is None
    w = weight.clone().requires_grad_()                           # and the other way round
    kernels.token_logprobs(hidden.detach(), w, targets).sum().backward()
    w64 = w.detach().double().requires_grad_()
    klp.token_logprobs_naive(hidden.detach().double(), w64, targets)[0].sum().backward()
    torch.testing.assert_close(w.grad.double(), w64.grad, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="targets must lie"):
        kernels.token_logprobs(hidden, weight, torch.full((6,), 50))
    with pytest.raises(ValueError, match="flatten"):
        kernels.token_logprobs(hidden[None], weight, targets)
    with pytest.raises(ValueError, match=r"targets must be \[N\]=\[6\], got \(3,\)"):
        kernels.token_logprobs(hidden, weight, targets[:3])
    for temperature in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            kernels.token_logprobs(hidden, weight, targets, temperature=temperature)


def test_same_loss_curve_as_naive(backend):
    # a few SGD steps on a toy lm_head: the fused loss (logprob + entropy bonus) must follow the naive curve
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(48, 24, generator=g)
    targets = torch.randint(0, 700, (48,), generator=g)
    w0 = torch.randn(700, 24, generator=g) * 0.1
    curves = []
    for fused in (True, False):
        w = w0.clone().requires_grad_()
        losses = []
        for _ in range(5):
            if fused:
                lp, H = kernels.token_logprobs(hidden, w, targets, with_entropy=True)
            else:
                lp, H = klp.token_logprobs_naive(hidden, w, targets)
            loss = -(lp.mean() + 1e-3 * H.mean())
            losses.append(loss.item())
            loss.backward()
            with torch.no_grad():
                w -= 5.0 * w.grad
                w.grad = None
        curves.append(losses)
    assert curves[0][-1] < curves[0][0] - 0.5                    # it does learn
    torch.testing.assert_close(torch.tensor(curves[0]), torch.tensor(curves[1]), atol=1e-4, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                    reason="needs a CUDA GPU and compiled kernels (not the interpreter)")
def test_cuda_kernels_and_graph_capture():
    dev = "cuda"
    assert kernels.backend(dev) == "triton"
    name, row, T, k, p = CASES[-1]
    x = torch.tensor(row, device=dev)
    probs = exact_distribution(x.cpu(), T, k, p)
    ids, logp = kernels.sample(x.repeat(1 << 18, 1), temperature=T, top_k=k, top_p=p,
                               generator=torch.Generator(device=dev).manual_seed(0))
    assert_chi_square(ids.cpu(), probs)
    torch.testing.assert_close(logp.double().cpu(), probs.log()[ids.cpu()], atol=2e-6, rtol=0)
    # no host sync inside: the sampler captures into a CUDA graph, and each replay draws fresh noise
    logits = torch.randn(64, 151936, device=dev)
    kernels.sample(logits, top_p=0.9)                              # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out_ids, out_logp = kernels.sample(logits, top_p=0.9)
    draws = []
    for _ in range(3):
        graph.replay()
        draws.append(out_ids.clone())
    assert not torch.equal(draws[0], draws[1]) and (out_logp <= 0).all() and torch.isfinite(out_logp).all()
    # fused logprobs on the GPU, bf16 in, against float64
    gen = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(300, 128, generator=gen), torch.randn(151936, 128, generator=gen) * 0.05
    targets = torch.randint(0, 151936, (300,), generator=gen)
    ref, ref_H = klp.token_logprobs_naive(hidden.bfloat16().double(), weight.bfloat16().double(), targets)
    lp, H = kernels.token_logprobs(hidden.bfloat16().to(dev), weight.bfloat16().to(dev), targets.to(dev),
                                   with_entropy=True)
    torch.testing.assert_close(lp.double().cpu(), ref, atol=1e-3, rtol=0)
    torch.testing.assert_close(H.double().cpu(), ref_H, atol=1e-3, rtol=0)


# ----------------------------------------------------------------------------------------------------------------
# GPU compilation without a GPU: the interpreter does not type-check like the compiler does, so compile every
# kernel at its GPU launch configuration through Triton's real pipeline (TTIR -> PTX -> cubin via the bundled
# ptxas) for an H100 (sm_90) and an A100 (sm_80), within each card's shared memory per block (a launch on the card
# would fail with OutOfResources). Runs in a subprocess because TRITON_INTERPRET=1 replaces @triton.jit.

_COMPILE_SCRIPT = r'''
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from kernels import attention as ka, fused as kf, logprobs as kl, sampling as ks

SHARED_MAX = {80: 166912, 90: 232448}  # bytes of shared memory one block may use: A100, H100 (CUDA programming guide)
SHARED_MAX = {cc: n for cc, n in SHARED_MAX.items() if str(cc) in sys.argv[1:]}  # the targets this process builds
assert SHARED_MAX, f"no known target among {sys.argv[1:]}: name 80 and/or 90"

ALIGNED_INTS = {"stride_b", "V", "CHUNK", "D", "chunk", "block_size", "stride_tb", "stride_kblk", "stride_kh",
                "stride_kt", "stride_q", "stride_k", "stride_v", "stride_qb", "stride_qh", "stride_ob", "stride_oh"}

def build(fn, sig, const, **opts):
    # as a real launch specialises: pointers (torch allocations) and these sizes and strides divisible by 16, which
    # picks vectorised layouts; Triton 3.6 failed to lower one such layout that the unspecialised build never made
    attrs = {(fn.arg_names.index(name),): [["tt.divisibility", 16]] for name, ty in sig.items()
             if ty.startswith("*") or name in ALIGNED_INTS}
    for cc, limit in SHARED_MAX.items():
        k = triton.compile(ASTSource(fn, sig, const, attrs), target=GPUTarget("cuda", cc, 32), options=opts)
        assert "cubin" in k.asm, (fn.__name__, cc)
        assert k.metadata.shared <= limit, (fn.__name__, cc, k.metadata.shared)

for dt in ("*fp32", "*bf16"):
    # the launcher's tiles (a quarter of _tile() with the masses), at a real vocabulary and at 8 tokens
    for mass, BB, BV in ((True, 1, 512), (False, 1, 2048), (True, 32, 16), (False, 128, 16)):
        build(ks._radix_hist_kernel, dict(logits_ptr=dt, stride_b="i32", temp_ptr="*fp32", mxs_ptr="*fp32",
              prefix_ptr="*i64", thr_key_ptr="*i64", todo_ptr="*i32", count_ptr="*i32", mass_ptr="*fp32", B="i32",
              V="i32", CHUNK="i32", n_splits="i32", shift="i32", MASS="constexpr", BLOCK_B="constexpr",
              BLOCK_V="constexpr"),
              dict(MASS=mass, BLOCK_B=BB, BLOCK_V=BV), num_warps=8)
    for thr in (True, False):
        run = 256 if dt == "*bf16" else 128                           # the launcher's runs: 512 bytes
        # vocabularies: a real one; 832 tokens (one split of 1,024 columns, 2 rows); 8 tokens (128 rows)
        for BB, BS, BR, BC in ((1, 64, 2048 // run, run), (2, 16, 1024 // run, run), (128, 16, 1, 16)):
            build(ks._sample_partial_kernel, dict(logits_ptr=dt, stride_b="i32", temp_ptr="*fp32", thr_ptr="*fp32",
                  drawn_ptr="*i32", part_max_ptr="*fp32", part_sum_ptr="*fp32", part_stats_ptr="*fp32", B="i32",
                  V="i32", CHUNK="i32",
                  n_splits="i32", HAS_THR="constexpr", STATS="constexpr", BLOCK_B="constexpr", BLOCK_R="constexpr",
                  BLOCK_C="constexpr"), dict(HAS_THR=thr, STATS=not thr, BLOCK_B=BB, BLOCK_R=BR, BLOCK_C=BC))
            build(ks._sample_select_kernel, dict(logits_ptr=dt, stride_b="i32", temp_ptr="*fp32", thr_ptr="*fp32",
                  drawn_ptr="*i32", seed_ptr="*i64", part_max_ptr="*fp32", part_sum_ptr="*fp32", ids_ptr="*i64",
                  logp_ptr="*fp32", B="i32", V="i32", CHUNK="i32", n_splits="i32", HAS_THR="constexpr",
                  BLOCK_B="constexpr",
                  BLOCK_S="constexpr", BLOCK_R="constexpr", BLOCK_C="constexpr"),
                  dict(HAS_THR=thr, BLOCK_B=BB, BLOCK_S=BS, BLOCK_R=BR, BLOCK_C=BC))
for mass in (True, False):
    for first, last_bits, write in ((True, 0, False), (False, 32, True)):
        for BB, BS in ((2, 64), (64, 2)):  # a real vocabulary's splits; a tiny vocabulary's single split
            build(ks._radix_descend_kernel, dict(count_ptr="*i32", mass_ptr="*fp32", prefix_ptr="*i64",
                  need_k_ptr="*i64", need_p_ptr="*fp32", topk_ptr="*i64", topp_ptr="*fp32", thr_key_ptr="*i64",
                  thr_ptr="*fp32", todo_ptr="*i32", B="i32", V="i32", n_splits="i32", MASS="constexpr",
                  FIRST="constexpr", LAST_BITS="constexpr", WRITE_THR="constexpr", BLOCK_B="constexpr",
                  BLOCK_S="constexpr"),
                  dict(MASS=mass, FIRST=first, LAST_BITS=last_bits, WRITE_THR=write, BLOCK_B=BB, BLOCK_S=BS))
rows = dict(temp_ptr="*fp32", topk_ptr="*i64", topp_ptr="*fp32", part_max_ptr="*fp32", part_sum_ptr="*fp32",
            part_stats_ptr="*fp32")
for dt, bits in (("*bf16", 16), ("*fp32", 32)):
    # a real vocabulary at B >= 8 (one row per program, 38 splits of 4,096); 8 tokens at B = 4,096 (one split)
    for BB, BV, BP in ((1, 2048, 64), (64, 32, 1)):
        build(ks._candidates_kernel, dict(logits_ptr=dt, stride_b="i32", **rows, bits_ptr="*i32", B="i32", V="i32",
              CHUNK="i32", n_splits="i32", n_parts="i32", n_sigma="fp32", BLOCK_B="constexpr", BLOCK_V="constexpr",
              BLOCK_P="constexpr"), dict(BLOCK_B=BB, BLOCK_V=BV, BLOCK_P=BP))
    for BB, BN, BW, BP in ((1, 8192, 1024, 64), (512, 16, 1, 1)):
        for draw in (True, False):
            build(ks._candidate_threshold_kernel, dict(bits_ptr="*i32", idx_ptr="*i32", logits_ptr=dt,
                  stride_b="i32", **rows, seed_ptr="*i64", thr_ptr="*fp32", todo_ptr="*i32", drawn_ptr="*i32",
                  ids_ptr="*i64", logp_ptr="*fp32", B="i32", V="i32", n_words="i32", n_parts="i32", n_sigma="fp32",
                  KEY_BITS="constexpr", DRAW="constexpr", BLOCK_B="constexpr", BLOCK_N="constexpr",
                  BLOCK_W="constexpr", BLOCK_P="constexpr"),
                  dict(KEY_BITS=bits, DRAW=draw, BLOCK_B=BB, BLOCK_N=BN, BLOCK_W=BW, BLOCK_P=BP), num_warps=16)
for dt, BN, BV, prec in (("*bf16", 128, 64, "tf32"), ("*fp32", 64, 128, "ieee")):
    build(kl._logprobs_fwd_kernel, dict(h_ptr=dt, w_ptr=dt, tgt_ptr="*i64", m_ptr="*fp32", s_ptr="*fp32",
          e_ptr="*fp32", t_ptr="*fp32", N="i32", V="i32", D="i32", CHUNK="i32", n_splits="i32", inv_T="fp32",
          WITH_ENTROPY="constexpr", UPCAST="constexpr", PRECISION="constexpr", BLOCK_N="constexpr",
          BLOCK_V="constexpr", BLOCK_D="constexpr"),
          dict(WITH_ENTROPY=True, UPCAST=False, PRECISION=prec, BLOCK_N=BN, BLOCK_V=BV, BLOCK_D=64), num_warps=8)
build(kl._logits_grad_kernel, dict(z_ptr="*fp32", tgt_ptr="*i64", lse_ptr="*fp32", ent_ptr="*fp32",
      dlogp_ptr="*fp32", dH_ptr="*fp32", N="i32", C="i32", c0="i32", inv_T="fp32", WITH_ENTROPY="constexpr",
      BLOCK_N="constexpr", BLOCK_C="constexpr"), dict(WITH_ENTROPY=True, BLOCK_N=16, BLOCK_C=256))
for dt, ieee in (("*bf16", False), ("*fp32", True)):
    for split in (False, True):
        build(ka._decode_attention_kernel, dict(q_ptr=dt, k_ptr=dt, v_ptr=dt, len_ptr="*i64", table_ptr="*i64",
              out_ptr=dt, acc_ptr="*fp32", m_ptr="*fp32", s_ptr="*fp32", scale="fp32", block_size="i32",
              chunk="i32", stride_qb="i32", stride_qh="i32", stride_tb="i32", stride_kblk="i32", stride_kh="i32",
              stride_kt="i32", G="constexpr", HD="constexpr", BLOCK_G="constexpr", BLOCK_T="constexpr",
              IEEE="constexpr", UPCAST="constexpr", SPLIT="constexpr"),
              dict(G=7, HD=128, BLOCK_G=16, BLOCK_T=ka.LAUNCH["block_t"], IEEE=ieee, UPCAST=False, SPLIT=split),
              num_warps=ka.LAUNCH["num_warps"], num_stages=ka.LAUNCH["num_stages"])  # the engine's launch
    for G, BG in ((7, 8), (1, 1)):  # Qwen2.5-7B's 7 query heads per KV head; plain multi-head attention
        build(ka._decode_attention_combine_kernel, dict(acc_ptr="*fp32", m_ptr="*fp32", s_ptr="*fp32", out_ptr=dt,
              stride_ob="i32", stride_oh="i32", S="i32", G="constexpr", HD="constexpr", BLOCK_G="constexpr",
              BLOCK_S="constexpr"), dict(G=G, HD=128, BLOCK_G=BG, BLOCK_S=8))
for dt in ("*bf16", "*fp32"):
    for res in (True, False):
        build(kf._rms_norm_kernel, dict(x_ptr=dt, res_ptr=dt, w_ptr=dt, out_ptr=dt, sum_ptr=dt, D="i32", eps="fp32",
              HAS_RES="constexpr", BLOCK_D="constexpr"), dict(HAS_RES=res, BLOCK_D=4096), num_warps=8)
    build(kf._rotary_cache_write_kernel, dict(q_ptr=dt, k_ptr=dt, v_ptr=dt, cos_ptr=dt, sin_ptr=dt, kc_ptr=dt,
          vc_ptr=dt, idx_ptr="*i64", q_out_ptr=dt, stride_q="i32", stride_k="i32", stride_v="i32", H="i32",
          KVH="i32", HD="constexpr"), dict(HD=128), num_warps=1)
    build(kf._silu_mul_kernel, dict(g_ptr=dt, u_ptr=dt, out_ptr=dt, n="i32", BLOCK="constexpr"), dict(BLOCK=1024))
print("compiled")
'''


def run_compiler_script(script, tmp_path, argvs=((),)):
    """Run a script that compiles kernels with the real Triton compiler (not the interpreter) in fresh processes,
    one per argument list in argvs, side by side (compiling is single-threaded; CI has two cores)."""
    import subprocess
    import sys
    pytest.importorskip("triton")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    procs = []
    for i, argv in enumerate(argvs):
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env["TRITON_CACHE_DIR"] = str(tmp_path / f"cache{i}")   # really compile, never reuse a cached cubin
        procs.append(subprocess.Popen([sys.executable, "-c", script, *argv], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, cwd=repo, env=env))
    for argv, proc in zip(argvs, procs):
        out, err = proc.communicate(timeout=600)
        if "ptxas" in err and "not found" in err.lower():
            pytest.skip("triton wheel without ptxas")
        assert proc.returncode == 0 and "compiled" in out, (argv, err[-3000:])


def test_kernels_compile_for_h100_and_a100(tmp_path):
    run_compiler_script(_COMPILE_SCRIPT, tmp_path, (["90"], ["80"]))  # sm_90 and sm_80 side by side


_FUSED_EXP_SCRIPT = r"""
import re
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from kernels import sampling as ks

rows = dict(temp_ptr="*fp32", topk_ptr="*i64", topp_ptr="*fp32", part_max_ptr="*fp32", part_sum_ptr="*fp32",
            part_stats_ptr="*fp32")
builds = [(ks._candidate_threshold_kernel, dict(bits_ptr="*i32", idx_ptr="*i32", logits_ptr="*bf16", stride_b="i32",
           **rows, seed_ptr="*i64", thr_ptr="*fp32", todo_ptr="*i32", drawn_ptr="*i32", ids_ptr="*i64",
           logp_ptr="*fp32", B="i32", V="i32", n_words="i32", n_parts="i32", n_sigma="fp32", KEY_BITS="constexpr",
           DRAW="constexpr", BLOCK_B="constexpr", BLOCK_N="constexpr", BLOCK_W="constexpr", BLOCK_P="constexpr"),
           dict(KEY_BITS=16, DRAW=True, BLOCK_B=1, BLOCK_N=256, BLOCK_W=64, BLOCK_P=1)),
          (ks._radix_hist_kernel, dict(logits_ptr="*bf16", stride_b="i32", temp_ptr="*fp32", mxs_ptr="*fp32",
           prefix_ptr="*i64", thr_key_ptr="*i64", todo_ptr="*i32", count_ptr="*i32", mass_ptr="*fp32", B="i32",
           V="i32", CHUNK="i32", n_splits="i32", shift="i32", MASS="constexpr", BLOCK_B="constexpr",
           BLOCK_V="constexpr"), dict(MASS=True, BLOCK_B=1, BLOCK_V=256)),
          (ks._sample_partial_kernel, dict(logits_ptr="*bf16", stride_b="i32", temp_ptr="*fp32", thr_ptr="*fp32",
           drawn_ptr="*i32", part_max_ptr="*fp32", part_sum_ptr="*fp32", part_stats_ptr="*fp32", B="i32", V="i32",
           CHUNK="i32", n_splits="i32", HAS_THR="constexpr", STATS="constexpr", BLOCK_B="constexpr",
           BLOCK_R="constexpr", BLOCK_C="constexpr"),
           dict(HAS_THR=True, STATS=True, BLOCK_B=1, BLOCK_R=1, BLOCK_C=256))]
op = re.compile(r"\s*(fma|mul|ex2)\.[\w.]*f32\s+(%\w+),\s*([^;]*);")
for fn, sig, const in builds:
    ptx = triton.compile(ASTSource(fn, sig, const, {}), target=GPUTarget("cuda", 90, 32)).asm["ptx"]
    fused = set()   # registers holding an fma's result, or it times a constant (log2 e)
    for m in map(op.match, ptx.splitlines()):
        if m and (m[1] == "fma" or m[1] == "mul" and any(r.strip() in fused for r in m[3].split(","))):
            fused.add(m[2])
        elif m and m[1] == "ex2":
            assert m[3].strip() not in fused, (fn.__name__, m[0])
print("compiled")
"""


def test_softmax_weights_are_not_fused_into_an_fma(tmp_path):
    """exp(z - M) must be exactly 1 at the max: the kernels put a select between z = x * scale and the subtraction,
    else sm_90 fuses them into fma(x, scale, -M), the exponent is z's rounding error, and for |z| >= 2^31 the max's
    weight is 0 or inf (the candidate threshold kernel then saw a top-k kept mass of 0 and served a NaN threshold:
    token 0, logprob -inf, for logits 3e30 at T = 0.7 with top-k and top-p). Checked in the PTX for sm_90."""
    run_compiler_script(_FUSED_EXP_SCRIPT, tmp_path)


def test_token_logprobs_empty_batch():
    """A micro-batch can hold no response tokens at all: both paths return empty, differentiable results."""
    h = torch.zeros(0, 16, requires_grad=True)
    w = torch.randn(37, 16, requires_grad=True)
    logp, ent = kernels.token_logprobs(h, w, torch.zeros(0, dtype=torch.long), with_entropy=True)
    assert logp.shape == (0,) and ent.shape == (0,)
    (logp.sum() + ent.sum()).backward()
    assert w.grad is None or not w.grad.any()
