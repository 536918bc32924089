"""Text in, text out: tokenize prompts, run our batched engine (`model.generate`), decode completions."""
import sys

from model import generate


def stop_ids(tokenizer) -> list[int]:
    """EOS plus the chat end-of-turn tokens when the vocabulary has them (Qwen: <|endoftext|>, <|im_end|>).

    The math harness stops at these too; without <|im_end|> a base model in the chat template keeps writing turns."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    vocab = tokenizer.get_vocab()
    ids |= {vocab[t] for t in ("<|endoftext|>", "<|im_end|>") if t in vocab}
    return sorted(ids)


def complete(model, tokenizer, texts: list[str], max_new_tokens: int, temperature: float = 0.0, samples: int = 1,
             seed: int | None = 0, progress: bool = False, cuda_graphs: bool = False) -> list:
    """Completions for prompt texts, in order: one string per prompt, or (samples > 1) a list of `samples` strings.

    temperature 0 is greedy. cuda_graphs: the engine's CUDA-graph decode step. max_new_tokens is lowered, with a note on stderr, when the longest prompt plus it would
    exceed the model's context (max_position_embeddings).
    """
    prompts = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    if not prompts:
        return []
    room = model.config.max_position_embeddings - max(len(p) for p in prompts)
    if room <= 0:
        raise ValueError(f"a prompt of {max(len(p) for p in prompts)} tokens does not fit the model's context of "
                         f"{model.config.max_position_embeddings} tokens")
    if max_new_tokens > room:
        print(f"note: max_new_tokens {max_new_tokens} -> {room} to fit the model's context", file=sys.stderr)
        max_new_tokens = room
    # Each prompt repeated `samples` times, adjacent, so completions regroup by slicing.
    flat = [p for p in prompts for _ in range(samples)]
    out = generate(model, flat, max_new_tokens, temperature=temperature, stop_token_ids=stop_ids(tokenizer),
                   seed=seed, progress=progress, cuda_graphs=cuda_graphs)
    decoded = [tokenizer.decode(c, skip_special_tokens=False) for c in out]
    if samples == 1:
        return decoded
    return [decoded[i * samples:(i + 1) * samples] for i in range(len(prompts))]
