"""Batched generation for our Qwen2: paged KV cache, per-sequence stopping, continuous batching, CUDA graphs.

    from model import Qwen2, generate
    qwen = Qwen2.from_pretrained("qwen2.5-7b", device="cuda", dtype=torch.bfloat16)
    completions = generate(qwen, prompts, max_new_tokens=4096, temperature=1.0, stop_token_ids=[eos], seed=0)

How it works. One paged KVCache (model.py) is allocated per call: `slots` rows of a block table, and a pool of
blocks of `block_size` positions sized from a budget in tokens. The active sequences always occupy rows 0..n-1.
Each iteration either
  - admits waiting prompts into the free rows n.. with one batched, right-padded prefill forward (prompts of
    similar length together, so padding stays under 1/8 of the forward's tokens), giving each the blocks its
    prompt fills, or
  - runs one decode step for all n active rows (one new token each, each at its own position); a row whose new
    token starts a block gets a free one first.
A sequence that samples a stop id or reaches max_new_tokens returns its blocks and frees its row at once; the last
active row's table entry is moved into the hole, so the active rows stay a prefix. Freed rows are refilled with
waiting prompts, so short sequences never wait for long ones.

Blocks are handed out as sequences grow, so the budget holds as many sequences as their actual lengths allow, not
budget / (longest prompt + max_new_tokens). Prompts are admitted only while every active row keeps one spare block;
if a decode step still runs out, the most recently admitted rows are preempted: their blocks return to the pool and
they wait at the head of the queue, to be prefilled again from prompt + tokens so far (recomputation, as vLLM does).
Equal sequences admitted together (AZR's 8 learnability rollouts of a proposal, a prompt's GRPO samples) are
prefilled once: the copies share the prompt's full blocks (reference-counted, only ever read) and get their own
copy of its last, partial block, which their first decode step writes into.
When the budget holds every row at full length anyway (on CPU it is unlimited), each row gets one whole-row block;
on the dense attention path (CPU) row b then keeps block b + 1 and compaction moves K/V instead of table entries, so
attention reads the rows in place.
All sampling goes through `kernels.sample` (Triton on CUDA, torch reference on CPU).

Run `python engine.py` to check on a tiny random model that cached decoding (eager and static-shape steps, with and
without preemption) equals naive full-context decoding token for token.
"""
import collections
import contextlib

import torch
from torch.profiler import record_function

import kernels
from model import KVCache


def _default_kv_cache_tokens(model, device) -> int | None:
    """On CUDA: 60% of the free memory, in tokens of K+V over all layers. None (no limit) elsewhere."""
    if torch.device(device).type != "cuda":
        return None
    c = model.config
    bytes_per_token = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * model.dtype.itemsize
    # Memory PyTorch's allocator holds but does not use (e.g. the previous call's cache) is free for us too.
    free = torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(0.6 * free) // bytes_per_token


@torch.inference_mode()
def generate(model, prompts, max_new_tokens, temperature=1.0, top_k=0, top_p=1.0, stop_token_ids=(), seed=None,
             return_logprobs=False, progress=False, max_batch=256, kv_cache_tokens=None, prefill_tokens=16384,
             cuda_graphs=False, block_size=None):
    """Generate one completion per prompt.

    Args:
        prompts: list of token-id lists (any lengths).
        max_new_tokens: cap on sampled tokens per completion (a sampled stop id counts toward it).
        temperature, top_k, top_p: passed to kernels.sample; temperature=0 is greedy.
        stop_token_ids: a completion ends at the first of these; the stop id is not included.
        return_logprobs: also return each sampled token's log-probability (see kernels.sample).
        seed: makes sampling reproducible: the same arguments give the same completions. The tokens also depend on
            the schedule (which rows share a step draws the random numbers), so max_batch, a kv_cache_tokens budget
            tight enough to preempt, or generating a subset of the prompts changes them; greedy decoding never
            changes. On CUDA the default budget follows the free memory: pass kv_cache_tokens for runs that must
            repeat exactly.
        progress: show a tqdm bar of finished sequences.
        max_batch: most sequences decoded together (rows of the block table).
        kv_cache_tokens: KV cache budget in tokens (at least one longest prompt + max_new_tokens). Default: 60% of
            free GPU memory on CUDA; elsewhere every row gets room for the longest sequence (no preemption).
        prefill_tokens: most padded tokens in one prefill forward (bounds activation memory).
        cuda_graphs: record the decode step as CUDA graphs and replay them (see make_decode_step). Elsewhere than
            on CUDA the same static-shape step runs eagerly (how the CPU tests check it).
        block_size: positions per KV cache block. Default: 16 when the budget cannot give every row room for the
            longest sequence; otherwise one block per row (pages would buy nothing, and whole rows are cheapest).
    Returns:
        completions (list of token-id lists, in prompt order), plus logprobs (one float list per completion,
        the sampled tokens' log-probabilities) when return_logprobs.
    """
    device, config = model.device, model.config
    prompts = [_token_list(p, f"prompt {i}") for i, p in enumerate(prompts)]
    stop_token_ids = _token_list(stop_token_ids, "stop_token_ids")
    for name, value, low in (("max_new_tokens", max_new_tokens, 0), ("max_batch", max_batch, 1),
                             ("prefill_tokens", prefill_tokens, 1), ("block_size", block_size, 1),
                             ("kv_cache_tokens", kv_cache_tokens, 1)):
        if value is not None and (type(value) is not int or value < low):
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    completions = [[] for _ in prompts]
    logprobs = [[] for _ in prompts]
    if not prompts or max_new_tokens == 0:
        return (completions, logprobs) if return_logprobs else completions
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty; every prompt needs at least one token")
        if min(p) < 0 or max(p) >= config.vocab_size:  # (min/max: C speed over AZR's ~2M prompt tokens per call)
            bad = next(t for t in p if not 0 <= t < config.vocab_size)
            raise ValueError(f"prompt {i} has token id {bad} outside the vocabulary [0, {config.vocab_size})")

    max_len = max(len(p) for p in prompts) + max_new_tokens
    if max_len > config.max_position_embeddings:
        raise ValueError(f"longest prompt + max_new_tokens = {max_len} exceeds the model's "
                         f"max_position_embeddings={config.max_position_embeddings}; lower max_new_tokens")
    if kv_cache_tokens is None:
        kv_cache_tokens = _default_kv_cache_tokens(model, device)
    slots = min(len(prompts), max_batch)
    if block_size is None:
        block_size = max_len if kv_cache_tokens is None or kv_cache_tokens >= slots * max_len else 16
    per_seq = -(-max_len // block_size)  # blocks of the longest possible sequence
    n_blocks = slots * per_seq  # enough that nothing is ever preempted
    if kv_cache_tokens is not None:
        if kv_cache_tokens < max_len:
            raise ValueError(f"kv_cache_tokens={kv_cache_tokens} cannot hold one sequence of {max_len} tokens "
                             "(longest prompt + max_new_tokens); raise it or lower max_new_tokens")
        n_blocks = min(n_blocks, max(per_seq, kv_cache_tokens // block_size))
    tight = n_blocks < slots * per_seq  # else every row can always have room for the longest sequence
    # Whole-row blocks on the dense attention path (CPU): keep row b's cache in block b + 1, moving K/V rather than
    # table entries when rows are compacted, so the dense path reads the rows in place instead of gathering them
    # every layer of every step (tiny shape on CPU: 5-10% faster decoding).
    in_place = per_seq == 1 and not tight and not kernels.fused_decode_attention(device, config.head_dim)
    if cuda_graphs:
        _check_gathered(model)
    cache = KVCache(config, slots, max_len, device, model.dtype, model=model, blocks=1 + n_blocks,
                    block_size=block_size)
    cache.in_place = in_place
    free_blocks = list(range(n_blocks, 0, -1))  # block 0 is the padding sink (model.KVCache); pop() gives 1, 2, ...
    refs = [0] * (1 + n_blocks)  # rows holding each block: copies of one prompt share its full blocks

    stop = set(stop_token_ids)
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    # Longest prompts first: they tend to be the slowest to finish, and neighbours in the queue have similar
    # lengths, so a prefill group wastes little on padding.
    waiting = collections.deque(sorted(range(len(prompts)), key=lambda i: -len(prompts[i])))
    # Host-side state of the active rows 0..n-1 (python lists: the scheduler never syncs the device for them):
    # request index; tokens already in the cache; token to feed next; cache blocks; admission order
    row_req, row_pos, row_last, row_blocks, row_admitted = [], [], [], [], []
    admitted = 0
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(prompts), desc="generate", unit="seq")

    def sequence(req):  # what a prefill feeds: the prompt, plus the tokens sampled before a preemption
        return prompts[req] + completions[req]

    def sample(logits):  # logits [n, V] (model dtype; the sampler computes in fp32) -> python lists
        # (the named ranges show in torch.profiler: bench/generate.py --profile splits a call's time by them)
        with record_function("generate: sample + wait for the GPU"):
            ids, lps = kernels.sample(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator,
                                      with_logprobs=return_logprobs)
            return ids.tolist(), (lps.tolist() if return_logprobs else None)

    def record(ids, lps, first=0):
        """Append the new token of rows first, first+1, ...; returns the rows that finished (stop id or cap)."""
        done = []
        for j, tok in enumerate(ids):
            row = first + j
            req = row_req[row]
            if tok in stop:
                done.append(row)
                continue
            completions[req].append(tok)
            if return_logprobs:
                logprobs[req].append(lps[j])
            row_last[row] = tok
            if len(completions[req]) >= max_new_tokens:
                done.append(row)
        return done

    def remove(rows):
        """Free these rows and their blocks. Highest row first: every row above the one being freed is then still
        active, so the last row is a live sequence, and moving it down keeps rows 0..n-1 dense."""
        for row in sorted(rows, reverse=True):
            last = len(row_req) - 1
            if in_place:  # block row + 1 takes the last row's cached positions; blocks stay with their rows
                if row != last:
                    n = row_pos[last]
                    cache.k[:, row + 1, :, :n] = cache.k[:, last + 1, :, :n]
                    cache.v[:, row + 1, :, :n] = cache.v[:, last + 1, :, :n]
                row_blocks[last] = row_blocks[row]
            else:
                for b in row_blocks[row]:
                    refs[b] -= 1
                    if not refs[b]:
                        free_blocks.append(b)
                cache.block_table[row] = cache.block_table[last]
            for state in (row_req, row_pos, row_last, row_blocks, row_admitted):
                state[row] = state[last]
            cache.block_table[last] = 0  # a free row points at the padding sink (CUDA-graph padding rows write there)
            for state in (row_req, row_pos, row_last, row_blocks, row_admitted):
                state.pop()

    def finish(done):  # rows that sampled a stop id or reached max_new_tokens
        remove(done)
        if bar is not None:
            bar.update(len(done))

    def take_block():  # a free block for one row
        b = free_blocks.pop()
        refs[b] = 1
        return b

    def admit():
        """Pop a prefill group from the queue: up to the free rows, prefill_tokens padded tokens, 1/8 padding, and
        the free blocks (keeping one spare block per active row). A sequence equal to one already in the group (the
        8 learnability rollouts of a proposal, a prompt's GRPO samples) is a copy: it costs no prefill and shares the
        other's full blocks. [] when it is better to decode first."""
        free_rows = slots - len(row_req)
        # Admit when a useful group can be prefilled together: the batch is empty, enough rows are free, or the
        # queue fits. Admitting one prompt per decode step would pay a whole forward for a single row.
        useful = 1 if not row_req else min(max(1, slots // 8), len(waiting))
        if not waiting or free_rows < useful:
            return []
        group, seen, T, total, need = [], set(), 0, 0, 0  # seen: the distinct sequences prefilled
        while waiting and len(group) < free_rows:
            seq = tuple(sequence(waiting[0]))
            n, copy = len(seq), seq in seen
            t, size = max(T, n), len(seen) + 1  # size: prefilled rows with this one
            # Length buckets: stop the group once padding would exceed 1/8 of its [size, t] tokens; the shorter
            # prompts left in the queue form the next group(s), admitted before the next decode step. (CPU, 1
            # thread, 32 prompts of 16-64 tokens, small shape: prefill 169 -> 99 ms.)
            if group and not copy and (size * t > prefill_tokens or 8 * (size * t - total - n) > size * t):
                break
            blocks = int(n % block_size > 0) if copy else -(-n // block_size)  # a copy owns only its partial block
            spare = len(row_req) + len(group) + 1 if per_seq > 1 else 0  # whole-row blocks never need another
            if tight and (row_req or group) and need + blocks > len(free_blocks) - spare:
                # Out of blocks (keeping a spare one for every row, this one included, or the next steps would
                # preempt). Too few fit to be worth a forward: decode until rows finish and return theirs.
                if len(group) < useful:
                    waiting.extendleft(reversed(group))
                    return []
                break
            group.append(waiting.popleft())
            need += blocks
            if not copy:
                seen.add(seq)
                T, total = t, total + n
        return group

    def preempt_until_blocks_suffice():
        """Before a decode step: the rows whose new token starts a block need one each. While the pool cannot serve
        them all, preempt the most recently admitted row (its blocks return; it waits at the head of the queue).
        It ends with at least one row: a lone row holds under per_seq blocks while it still grows, and the pool has
        per_seq. The oldest rows always progress, so a preempted row gets its blocks once they finish."""
        while True:
            needy = [r for r in range(len(row_req)) if row_pos[r] == len(row_blocks[r]) * block_size]
            if len(needy) <= len(free_blocks):
                return needy
            victim = max(range(len(row_req)), key=row_admitted.__getitem__)
            waiting.appendleft(row_req[victim])
            remove([victim])

    decode = make_decode_step(model, cache, cuda_graphs)
    while waiting or row_req:
        group = admit()
        if group:
            with record_function("generate: prefill"):
                seqs = [sequence(r) for r in group]
                lens = [len(q) for q in seqs]
                source = {}
                # src[j] == j: sequence j is prefilled; else it is a copy of sequence src[j]
                src = [source.setdefault(tuple(q), j) for j, q in enumerate(seqs)]
                prefilled = [j for j in range(len(group)) if src[j] == j]
                T = max(lens)
                first = len(row_req)
                blocks = []
                for j, n in enumerate(lens):
                    if in_place:  # whole-row blocks, row b in block b + 1
                        blocks.append([first + j + 1])
                    elif src[j] == j:
                        blocks.append([take_block() for _ in range(-(-n // block_size))])
                    else:  # the full blocks of the copied prompt are only ever read: share them
                        shared = blocks[src[j]][:n // block_size]
                        for b in shared:
                            refs[b] += 1
                        blocks.append(shared + ([take_block()] if n % block_size else []))
                table = [b + [0] * (-(-T // block_size) - len(b)) for b in blocks]  # [group, T / bs]; pad -> sink
                cache.block_table[first:first + len(group), :len(table[0])] = torch.tensor(table, device=device)
                # Right padding: the causal mask alone is then right for every real token (see Attention).
                ids = torch.tensor([seqs[j] + [0] * (T - lens[j]) for j in prefilled], device=device)
                rows = torch.tensor([first + j for j in prefilled], device=device)
                last = torch.tensor([lens[j] - 1 for j in prefilled], device=device)  # the last token predicts
                logits = model(ids, cache=cache, slots=rows, last=last)  # [prefilled, V]
                for j in range(len(group)):
                    if src[j] != j and lens[j] % block_size:  # a copy's own partial block: the prompt's last positions
                        c, m = lens[j] // block_size, lens[j] % block_size
                        a, b = blocks[src[j]][c], blocks[j][c]
                        cache.k[:, b, :, :m], cache.v[:, b, :, :m] = cache.k[:, a, :, :m], cache.v[:, a, :, :m]
                at = {j: i for i, j in enumerate(prefilled)}
                new_ids, new_lps = sample(logits[torch.tensor([at[src[j]] for j in range(len(group))], device=device)])
                row_req += group
                row_pos += lens
                row_last += [0] * len(group)
                row_blocks += blocks
                row_admitted += range(admitted, admitted + len(group))
                admitted += len(group)
                finish(record(new_ids, new_lps, first))
            continue

        # One decode step: row b feeds row_last[b] at position row_pos[b] (the first free cache position).
        needy = preempt_until_blocks_suffice() if per_seq > 1 else []  # one whole-row block: nothing to hand out
        if needy:
            new = [take_block() for _ in needy]
            for r, b in zip(needy, new):
                row_blocks[r].append(b)
            where = torch.tensor([needy, [len(row_blocks[r]) - 1 for r in needy], new], device=device)  # [3, k]
            cache.block_table[where[0], where[1]] = where[2]
        with record_function("generate: decode step"):
            logits = decode(row_last, row_pos)  # [n, V]
        new_ids, new_lps = sample(logits)
        for row in range(len(row_pos)):
            row_pos[row] += 1
        finish(record(new_ids, new_lps))

    if bar is not None:
        bar.close()
    return (completions, logprobs) if return_logprobs else completions


def _token_list(ids, what):
    """A list of python ints from a list, tuple, tensor or array of integer token ids; ValueError otherwise."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        raise ValueError(f"{what} must be a list of int token ids, got {type(ids).__name__}")
    ids = list(ids)
    if not set(map(type, ids)) <= {int}:
        bad = next(t for t in ids if type(t) is not int)
        raise ValueError(f"{what} must hold int token ids, got {bad!r} ({type(bad).__name__})")
    return ids


def make_decode_step(model, cache, graphs=False):
    """Returns decode(tokens, positions) -> next-token logits [n, V] for cache rows 0..n-1, where row b feeds
    tokens[b] at position positions[b] (python lists of n ints).

    graphs=False: one eager forward over exactly n rows, attending up to max(positions).

    graphs=True: a forward with static shapes, recorded once per batch size as a CUDA graph and replayed. Why: a
    decode step of Qwen2.5-7B is ~850 small kernels (30 per layer); launched from Python they take longer on the host
    than the GPU needs to read the 15 GB of weights, so the GPU would idle. A replay launches them all at once.
    What makes the step recordable: the inputs live in fixed buffers (`inputs`); n is rounded up to the next
    recorded size (powers of two up to the cache's slots) and the padding rows feed token 0 at position 0 of free
    rows (rows >= n are free: their block-table rows point at the padding block 0, or, in place, at their own
    unused block, which a prefill overwrites before it is read); attention covers the whole cache length with
    per-row lengths (on CUDA the Triton kernel reads only each row's own length, so the static length costs
    nothing); the forward has no host sync. Sampling stays outside the graph (it owns the RNG). The
    graphs are recorded inside each generate call, for the sizes it meets: they hold the addresses of this call's
    cache and of the weights FSDP gathered for it. Off CUDA the same static-shape step runs eagerly.
    """
    device = cache.k.device
    slots = cache.block_table.shape[0]
    zero = torch.zeros(slots, dtype=torch.long, device=device)  # decode rows hold one token: logits at index 0
    if not graphs:
        def decode(tokens, positions):
            n = len(tokens)
            return model(torch.tensor(tokens, device=device)[:, None], cache=cache,
                         positions=torch.tensor(positions, device=device), last=zero[:n],
                         max_position=max(positions))  # a Python int: no host sync for the mask length
        return decode

    sizes = sorted({1 << i for i in range(slots.bit_length()) if 1 << i < slots} | {slots})
    inputs = torch.zeros(2, slots, dtype=torch.long, device=device)  # static [tokens; positions] of rows 0..slots-1
    max_position = cache.positions.shape[0] - 1
    recorded = {}  # size -> (CUDA graph, its logits [size, V])
    pool = torch.cuda.graph_pool_handle() if device.type == "cuda" else None  # one memory pool for all sizes

    def forward(size):
        with _without_fsdp_hooks(model):
            return model(inputs[0, :size, None], cache=cache, positions=inputs[1, :size], last=zero[:size],
                         max_position=max_position)

    def decode(tokens, positions):
        n = len(tokens)
        size = next(s for s in sizes if s >= n)
        pad = [0] * (size - n)
        inputs[:, :size].copy_(torch.tensor([tokens + pad, positions + pad]))
        if device.type != "cuda":
            return forward(size)[:n]
        if size not in recorded:
            # Warm up on a side stream first (compiles the Triton kernels, sizes cuBLAS workspaces), as recording
            # requires. It writes the same K/V the replay below writes again, so running it twice changes nothing.
            with record_function("generate: record a CUDA graph"):
                side = torch.cuda.Stream(device)
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    forward(size)
                torch.cuda.current_stream(device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    logits = forward(size)
                recorded[size] = (graph, logits)
        graph, logits = recorded[size]
        graph.replay()
        return logits[:n]

    return decode


def _fsdp_modules(model):
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch built without distributed
        return []
    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def _check_gathered(model):
    """A static decode step runs without FSDP's hooks, so every weight must already be gathered."""
    from torch.distributed.tensor import DTensor
    if _fsdp_modules(model) and any(isinstance(p, DTensor) for p in model.parameters()):
        raise ValueError("cuda_graphs=True on an FSDP-sharded model needs its weights gathered first "
                         "(azr.with_gathered_weights(qwen, True, True) around generation)")


@contextlib.contextmanager
def _without_fsdp_hooks(model):
    """Run FSDP2-wrapped modules as plain modules. FSDP2's forward hooks make its communication streams wait on the
    current stream, which a CUDA graph cannot record ("unjoined" streams), and a replay would skip them anyway.
    During generation they have nothing to do: azr.with_gathered_weights gathered every layer beforehand and keeps
    it gathered (reshard_after_forward off), so the modules' parameters are the full, plain tensors."""
    modules = _fsdp_modules(model)
    saved = [(m._forward_pre_hooks, m._forward_hooks) for m in modules]
    try:
        for m in modules:
            m._forward_pre_hooks, m._forward_hooks = collections.OrderedDict(), collections.OrderedDict()
        yield
    finally:
        for m, (pre, post) in zip(modules, saved):
            m._forward_pre_hooks, m._forward_hooks = pre, post


if __name__ == "__main__":
    # Cached, continuously batched greedy decoding must equal naive decoding that re-runs the whole context.
    import tempfile

    from model import Qwen2
    from tiny import make_tiny_checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        qwen = Qwen2.from_pretrained(make_tiny_checkpoint(tmp))
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(1, qwen.config.vocab_size, (n,), generator=g).tolist() for n in (3, 17, 8, 30, 1)]
    fast = generate(qwen, prompts, max_new_tokens=20, temperature=0, max_batch=2)
    assert generate(qwen, prompts, max_new_tokens=20, temperature=0, max_batch=3, cuda_graphs=True) == fast
    assert generate(qwen, prompts, max_new_tokens=20, temperature=0, kv_cache_tokens=60, block_size=4) == fast
    for p, out in zip(prompts, fast):
        seq = list(p)
        with torch.no_grad():
            for _ in range(20):
                seq.append(int(qwen(torch.tensor([seq]))[0, -1].argmax()))
        assert seq[len(p):] == out, (seq[len(p):], out)
    print(f"ok: cached decoding == naive decoding for {len(prompts)} prompts")
