"""engine.generate: greedy parity with transformers' generate(), cache == no cache, continuous batching
invariance, stopping, seeding, logprobs and bad input."""
import random

import pytest
import torch

import kernels
from model import KVCache, Qwen2, generate
from tiny import make_tiny_checkpoint

transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def torch_sampler_one_thread(monkeypatch):
    # These tests check the engine, not the kernels: use the torch sampler, not the (slow) Triton interpreter.
    monkeypatch.setenv("NANOAZR_KERNELS", "torch")
    # Tiny shapes gain nothing from intra-op threads, and on a busy 2-core machine every threaded op waits for a
    # descheduled worker (measured: one continuous-batching case 0.09 s with 1 thread, 13.7 s with 2).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def gqa_ckpt(tmp_path_factory):
    """Untied lm_head and 7 query heads per KV head: the other corner of the config space from tiny_ckpt."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("gqa7"), seed=3, hidden_size=56, num_attention_heads=7,
                                num_key_value_heads=1, num_hidden_layers=3, tie_word_embeddings=False)


def random_prompts(n, vocab, seed=0, lo=1, hi=40):
    rng = random.Random(seed)
    return [[rng.randrange(1, vocab) for _ in range(rng.randint(lo, hi))] for _ in range(n)]


@pytest.mark.parametrize("which", ["tiny", "gqa7"])
def test_greedy_matches_transformers_generate(which, tiny_ckpt, gqa_ckpt):
    folder = str(tiny_ckpt) if which == "tiny" else gqa_ckpt
    ours = Qwen2.from_pretrained(folder)
    hf = transformers.Qwen2ForCausalLM.from_pretrained(folder).eval()
    prompts = random_prompts(5, ours.config.vocab_size, seed=1)
    got = generate(ours, prompts, max_new_tokens=24, temperature=0, max_batch=3)
    for p, out in zip(prompts, got):
        ref = hf.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                          max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=0)
        assert out == ref[0, len(p):].tolist()


def test_cached_decode_equals_uncached_forward(gqa_ckpt):
    qwen = Qwen2.from_pretrained(gqa_ckpt)
    prompts = random_prompts(3, qwen.config.vocab_size, seed=2, lo=3, hi=12)
    conts = random_prompts(3, qwen.config.vocab_size, seed=3, lo=6, hi=6)  # 6 tokens fed one by one
    cache = KVCache(qwen.config, slots=3, max_len=32, device="cpu", dtype=torch.float32)
    T = max(map(len, prompts))
    ids = torch.tensor([p + [0] * (T - len(p)) for p in prompts])
    with torch.no_grad():
        qwen(ids, cache=cache, slots=torch.tensor([0, 1, 2]))
        pos = torch.tensor([len(p) for p in prompts])
        for t in range(6):
            step = qwen(torch.tensor([[c[t]] for c in conts]), cache=cache, positions=pos + t)[:, 0]  # [3, V]
            for b in range(3):
                full = qwen(torch.tensor([prompts[b] + conts[b][: t + 1]]))[0, -1]
                assert (step[b] - full).abs().max().item() < 1e-4


def test_continuous_batching_invariance(gqa_ckpt):
    qwen = Qwen2.from_pretrained(gqa_ckpt)  # untied: greedy outputs vary (a tied random model repeats its input)
    prompts = random_prompts(11, qwen.config.vocab_size, seed=4, hi=30)
    eos = qwen.config.eos_token_id
    # One greedy stop id that actually occurs, so sequences finish at different times and slots get refilled.
    probe = generate(qwen, prompts, max_new_tokens=16, temperature=0)
    stop = max({t for out in probe for t in out}, key=lambda t: sum(out.count(t) > 0 for out in probe))
    ref = generate(qwen, prompts, max_new_tokens=16, temperature=0, stop_token_ids=[stop, eos], max_batch=1)
    assert len({len(o) for o in ref}) > 1  # some stopped early: the refill path ran
    for kwargs in (dict(max_batch=3), dict(max_batch=64), dict(kv_cache_tokens=2 * (30 + 16)),
                   dict(max_batch=4, prefill_tokens=20)):
        assert generate(qwen, prompts, max_new_tokens=16, temperature=0, stop_token_ids=[stop, eos], **kwargs) == ref
    order = list(range(len(prompts)))
    random.Random(0).shuffle(order)
    shuffled = generate(qwen, [prompts[i] for i in order], max_new_tokens=16, temperature=0,
                        stop_token_ids=[stop, eos], max_batch=5)
    assert shuffled == [ref[i] for i in order]


@pytest.mark.parametrize("which", ["tiny", "gqa7"])
def test_static_decode_step_equals_eager(which, tiny_ckpt, gqa_ckpt):
    # cuda_graphs=True: the static-shape step that CUDA graphs record (fixed input buffers, batch padded to a power of
    # two, attention over the whole cache length). Off CUDA it runs eagerly: same tokens, same logprobs as the
    # eager step, while sequences stop at different times so the batch passes through several recorded sizes.
    qwen = Qwen2.from_pretrained(str(tiny_ckpt) if which == "tiny" else gqa_ckpt)
    prompts = random_prompts(11, qwen.config.vocab_size, seed=8, hi=30)
    probe = generate(qwen, prompts, max_new_tokens=16, temperature=0)
    stop = max({t for out in probe for t in out}, key=lambda t: sum(out.count(t) > 0 for out in probe))
    for kwargs in (dict(max_batch=7), dict(max_batch=64), dict(max_batch=4, prefill_tokens=20)):
        eager = generate(qwen, prompts, 16, temperature=0, stop_token_ids=[stop], **kwargs)
        assert len({len(o) for o in eager}) > 1  # rows finish at different steps: the batch size moves
        assert generate(qwen, prompts, 16, temperature=0, stop_token_ids=[stop], cuda_graphs=True, **kwargs) == eager
    a, lp_a = generate(qwen, prompts, 12, seed=3, return_logprobs=True, max_batch=5)
    b, lp_b = generate(qwen, prompts, 12, seed=3, return_logprobs=True, max_batch=5, cuda_graphs=True)
    assert a == b
    assert generate(qwen, prompts, 12, seed=3, max_batch=5) == a  # skipping the logprobs draws the same tokens
    assert max(abs(x - y) for la, lb in zip(lp_a, lp_b) for x, y in zip(la, lb)) < 1e-4


@pytest.fixture
def count_preemptions(monkeypatch):
    """engine.generate's queue, counting appendleft: the call a preemption makes (and nothing else does)."""
    import collections
    import types

    import engine
    preempted = []

    class CountingDeque(collections.deque):
        def appendleft(self, x):
            preempted.append(x)
            super().appendleft(x)

    monkeypatch.setattr(engine, "collections", types.SimpleNamespace(deque=CountingDeque))
    return preempted


def test_paged_cache_preemption_equals_unlimited_cache(gqa_ckpt, count_preemptions):
    # Budgets that hold one longest sequence but not all rows at once: blocks run out while rows grow, the newest rows
    # are preempted and later prefilled again from prompt + tokens so far. Greedy completions and their logprobs must
    # equal those of a cache with room for everything; the static (CUDA-graph) step must agree too.
    qwen = Qwen2.from_pretrained(gqa_ckpt)
    prompts = random_prompts(9, qwen.config.vocab_size, seed=9, lo=2, hi=30)
    ref, lp_ref = generate(qwen, prompts, 24, temperature=0, return_logprobs=True, block_size=4)
    for budget, block_size, graphs in ((54, 4, False), (80, 4, True), (120, 8, False), (64, 16, False)):
        count_preemptions.clear()
        got, lp = generate(qwen, prompts, 24, temperature=0, return_logprobs=True, kv_cache_tokens=budget,
                           block_size=block_size, cuda_graphs=graphs)
        assert count_preemptions, (budget, block_size)  # the budget really forced preemptions
        assert got == ref, (budget, block_size)
        assert max(abs(a - b) for x, y in zip(lp, lp_ref) for a, b in zip(x, y)) < 1e-4
    # whole-row blocks (block_size >= the longest sequence) under a budget of 2 rows: rows wait for blocks, never
    # grow, never preempt
    assert generate(qwen, prompts, 24, temperature=0, kv_cache_tokens=2 * 56, block_size=56) == ref
    # sampled: each logprob is still that of the full context, across preemptions and re-prefills
    count_preemptions.clear()
    out, lps = generate(qwen, prompts, 24, seed=1, return_logprobs=True, kv_cache_tokens=54, block_size=4)
    assert count_preemptions
    with torch.no_grad():
        for p, o, lp in zip(prompts, out, lps):
            logits = qwen(torch.tensor([p + o]))[0, len(p) - 1: -1]
            want = torch.log_softmax(logits, -1).gather(1, torch.tensor(o)[:, None])[:, 0]
            assert torch.allclose(torch.tensor(lp), want, atol=1e-4)


def test_preemption_takes_the_newest_row(gqa_ckpt, count_preemptions):
    """The victim is the most recently admitted row, so the first row admitted (the longest prompt, queued first)
    always progresses and is never preempted."""
    qwen = Qwen2.from_pretrained(gqa_ckpt)
    rng = random.Random(1)
    prompts = [[rng.randrange(1, qwen.config.vocab_size) for _ in range(8 + i)] for i in range(4)]  # 3 is longest
    generate(qwen, prompts, 24, temperature=0, kv_cache_tokens=48, block_size=4)
    assert count_preemptions and 3 not in count_preemptions


def test_copies_of_a_prompt_share_its_prefill_and_blocks(gqa_ckpt, count_preemptions):
    # AZR decodes each proposal 8 times (learnability) and GRPO samples a prompt several times: equal sequences in a
    # prefill group are prefilled once and share their full KV blocks. Completions must be those of each prompt
    # decoded alone, in every cache layout, also when preemptions drop and re-admit rows that share blocks.
    qwen = Qwen2.from_pretrained(gqa_ckpt)
    distinct = random_prompts(4, qwen.config.vocab_size, seed=10, lo=5, hi=30)
    prompts = [p for p in distinct for _ in range(3)] + random_prompts(2, qwen.config.vocab_size, seed=11)
    alone = [generate(qwen, [p], 20, temperature=0)[0] for p in prompts]
    prefilled = []
    forward = qwen.forward

    def counting_forward(ids, *args, **kwargs):
        if kwargs.get("slots") is not None:
            prefilled.append(ids.shape[0])
        return forward(ids, *args, **kwargs)

    qwen.forward = counting_forward
    for kwargs in (dict(), dict(block_size=4), dict(block_size=4, cuda_graphs=True),
                   dict(kv_cache_tokens=80, block_size=4), dict(kv_cache_tokens=3 * 50, block_size=50)):
        prefilled.clear()
        count_preemptions.clear()
        assert generate(qwen, prompts, 20, temperature=0, **kwargs) == alone, kwargs
        if "kv_cache_tokens" not in kwargs:  # everything fits at once: one prefill row per distinct prompt
            assert sum(prefilled) == 6, (kwargs, prefilled)
        if kwargs.get("kv_cache_tokens") == 80:  # rows were preempted (the blocks they shared outlive them)
            assert count_preemptions
    # sampled: copies go their own ways from the shared prompt, each logprob that of its own full context
    out, lps = generate(qwen, prompts, 12, seed=2, return_logprobs=True, block_size=4)
    assert len({tuple(o) for o in out[:3]}) > 1
    with torch.no_grad():
        for p, o, lp in zip(prompts, out, lps):
            logits = forward(torch.tensor([p + o]))[0, len(p) - 1: -1]
            want = torch.log_softmax(logits, -1).gather(1, torch.tensor(o)[:, None])[:, 0]
            assert torch.allclose(torch.tensor(lp), want, atol=1e-4)


def test_randomized_schedules_match_decoding_each_prompt_alone(gqa_ckpt):
    # Many schedules at once: copies, stop ids, KV budgets (preemption), block sizes from 1 to more than a row, batch
    # limits, prefill-token limits, CUDA-graph steps. Whatever the schedule, greedy completions are those of each
    # prompt decoded alone.
    qwen = Qwen2.from_pretrained(gqa_ckpt)
    V, rng, alone = qwen.config.vocab_size, random.Random(12), {}
    for case in range(20):
        distinct = random_prompts(rng.randint(1, 5), V, seed=100 + case, hi=30)
        prompts = [p for p in distinct for _ in range(rng.choice([1, 2, 3, 8]))]
        n, stops = rng.randint(1, 20), rng.sample(range(V), rng.choice([0, 1, 20]))
        max_len = max(map(len, prompts)) + n
        kw = dict(max_batch=rng.choice([1, 3, 64]), cuda_graphs=rng.random() < 0.3,
                  prefill_tokens=rng.choice([40, 16384]))
        if rng.random() < 0.5:
            kw["kv_cache_tokens"] = rng.randint(max_len, 3 * max_len)
        if rng.random() < 0.6:
            kw["block_size"] = rng.choice([1, 4, 16, max_len + 3])
        for p in distinct:
            key = (tuple(p), n, tuple(stops))
            if key not in alone:
                alone[key] = generate(qwen, [p], n, temperature=0, stop_token_ids=stops)[0]
        got = generate(qwen, prompts, n, temperature=0, stop_token_ids=stops, **kw)
        assert got == [alone[(tuple(p), n, tuple(stops))] for p in prompts], (case, kw)


def test_stop_ids_and_max_new_tokens(gqa_ckpt):
    qwen = Qwen2.from_pretrained(gqa_ckpt)
    prompts = random_prompts(6, qwen.config.vocab_size, seed=5)
    free = generate(qwen, prompts, max_new_tokens=12, temperature=0)
    assert all(len(o) == 12 for o in free)
    stop = free[0][4]
    stopped = generate(qwen, prompts, max_new_tokens=12, temperature=0, stop_token_ids=(stop,))
    for f, s in zip(free, stopped):
        expect = f[: f.index(stop)] if stop in f else f
        assert s == expect and stop not in s
    assert generate(qwen, prompts, max_new_tokens=0) == [[] for _ in prompts]
    assert all(len(o) == 1 for o in generate(qwen, prompts, max_new_tokens=1, temperature=0))
    assert generate(qwen, prompts, max_new_tokens=12, temperature=0, progress=True) == free


def test_seeded_sampling_reproducible_with_logprobs(tiny_ckpt):
    qwen = Qwen2.from_pretrained(tiny_ckpt)
    prompts = random_prompts(4, qwen.config.vocab_size, seed=6)
    a, lp_a = generate(qwen, prompts, 10, temperature=1.0, seed=123, return_logprobs=True, max_batch=2)
    b, lp_b = generate(qwen, prompts, 10, temperature=1.0, seed=123, return_logprobs=True, max_batch=2)
    c = generate(qwen, prompts, 10, temperature=1.0, seed=124, max_batch=2)
    assert a == b and lp_a == lp_b and a != c
    # each logprob is log_softmax of the full-context logits at that step, for the sampled token
    with torch.no_grad():
        for p, out, lps in zip(prompts, a, lp_a):
            assert len(lps) == len(out)
            logits = qwen(torch.tensor([p + out]))[0, len(p) - 1: -1]  # [len(out), V]
            ref = torch.log_softmax(logits, -1).gather(1, torch.tensor(out)[:, None])[:, 0]
            assert torch.allclose(torch.tensor(lps), ref, atol=1e-4)


def test_bad_input_errors(tiny_ckpt, tmp_path):
    qwen = Qwen2.from_pretrained(tiny_ckpt)
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generate(qwen, [[1, 2], []], 4)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        generate(qwen, [[qwen.config.vocab_size]], 4)
    with pytest.raises(ValueError, match="kv_cache_tokens=10 cannot hold"):
        generate(qwen, [[1] * 8], 4, kv_cache_tokens=10)
    with pytest.raises(ValueError, match="token id -1 outside"):  # the id that is wrong, not the largest
        generate(qwen, [[5, -1]], 4)
    short = Qwen2.from_pretrained(make_tiny_checkpoint(tmp_path / "short", max_position_embeddings=16))
    with pytest.raises(ValueError, match="longest prompt \\+ max_new_tokens = 17 exceeds the model's "
                                         "max_position_embeddings=16; lower max_new_tokens"):
        generate(short, [[1, 2], [1] * 10], 7)
    assert len(generate(short, [[1, 2], [1] * 10], 6, temperature=0)[1]) == 6  # 16 positions: fits
    for kwargs, words in [(dict(max_batch=0), "max_batch must be an int >= 1"),
                          (dict(block_size=0), "block_size must be an int >= 1"),
                          (dict(stop_token_ids=None), "stop_token_ids must be a list of int token ids"),
                          (dict(temperature=float("nan")), "temperature must be >= 0")]:
        with pytest.raises(ValueError, match=words):
            generate(qwen, [[1, 2]], 4, **kwargs)
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 0"):
        generate(qwen, [[1, 2]], -1)
    with pytest.raises(ValueError, match=r"prompt 0 must hold int token ids, got 1.5"):
        generate(qwen, [[1.5, 2]], 4)
    # tensors and tuples are token lists too
    assert generate(qwen, [torch.tensor([1, 2]), (3, 4)], 3, temperature=0) == generate(qwen, [[1, 2], [3, 4]], 3,
                                                                                       temperature=0)
    ids, logp = kernels.sample(torch.zeros(0, 7))  # no rows
    assert ids.shape == (0,) and logp.shape == (0,)


def test_default_kernel_backend_agrees(tiny_ckpt, monkeypatch):
    # NANOAZR_KERNELS=auto: under CI's TRITON_INTERPRET=1 this runs the Triton sampler (interpreted), elsewhere the
    # torch one. Greedy ids must match the torch backend's, and seeded sampling must repeat.
    qwen = Qwen2.from_pretrained(tiny_ckpt)
    prompts = random_prompts(2, qwen.config.vocab_size, seed=7, hi=10)
    ref = generate(qwen, prompts, 4, temperature=0)
    monkeypatch.setenv("NANOAZR_KERNELS", "auto")
    assert generate(qwen, prompts, 4, temperature=0) == ref
    assert generate(qwen, prompts, 4, seed=5) == generate(qwen, prompts, 4, seed=5)


def test_default_kv_budget_counts_k_and_v(tiny_ckpt, monkeypatch):
    """On CUDA the default KV budget is 60% of the free memory (including what the allocator holds unused) over the
    bytes of one token's K and V in every layer."""
    import engine
    qwen = Qwen2.from_pretrained(tiny_ckpt)
    c = qwen.config
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 ** 9, 2 * 10 ** 9))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3 * 10 ** 8)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 10 ** 8)
    per_token = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * 4  # fp32
    assert engine._default_kv_cache_tokens(qwen, "cuda") == int(0.6 * 1.2 * 10 ** 9) // per_token
    assert engine._default_kv_cache_tokens(qwen, "cpu") is None


def test_cpu_transposed_weight_copies_only_up_to_2_gib(tiny_ckpt):
    """A CPU decode keeps [in, out] copies of the projections for its few-row GEMMs, but not when they would take
    over 2 GiB (a large model on the CPU); such a model's layers are then called as they are."""
    qwen = Qwen2.from_pretrained(tiny_ckpt)
    cache = KVCache(qwen.config, 2, 32, "cpu", torch.float32, model=qwen)
    assert len(cache.weight_t) == 7 * qwen.config.num_hidden_layers + 1  # q, k, v, o, gate, up, down + the tied head
    big = torch.nn.Module()
    big.lm_head = torch.nn.Linear(32768, 16384, bias=False, device="meta")  # 2 GiB of fp32, plus one more layer
    big.extra = torch.nn.Linear(4, 4, device="meta")
    assert KVCache(qwen.config, 2, 32, "cpu", torch.float32, model=big).weight_t == {}
    big.extra = torch.nn.Identity()  # exactly 2 GiB still fits
    assert set(KVCache(qwen.config, 2, 32, "cpu", torch.float32, model=big).weight_t) == {big.lm_head}


def test_fsdp_lookup_without_torch_distributed(tiny_ckpt, monkeypatch):
    """With a torch built without distributed, generation finds no FSDP modules instead of failing to import."""
    import sys

    import engine
    qwen = Qwen2.from_pretrained(tiny_ckpt)
    monkeypatch.setitem(sys.modules, "torch.distributed.fsdp", None)
    assert engine._fsdp_modules(qwen) == []
