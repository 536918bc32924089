"""A tiny random Qwen2 checkpoint for tests and `--preset tiny`: written by our own model code, with a small
byte-level BPE tokenizer trained on the spot, so no download is ever needed.

    from tiny import make_tiny_checkpoint
    folder = make_tiny_checkpoint("/tmp/tiny")            # config.json, model.safetensors, tokenizer files
    folder = make_tiny_checkpoint("/tmp/t2", num_hidden_layers=4, seed=1)

The folder loads with `model.Qwen2.from_pretrained`, `transformers.Qwen2ForCausalLM.from_pretrained` and
`transformers.AutoTokenizer.from_pretrained`. The same arguments always give the same files.
"""
import os

import torch

from model import Qwen2, Qwen2Config

EOS = "<|endoftext|>"

# A few kilobytes of the kind of text AZR produces (English reasoning, R1 tags, small Python programs), so the
# learned merges make typical prompts a few hundred tokens rather than a few thousand bytes.
CORPUS = [
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>.",
    "User: Given the code snippet and the input, predict the output. Assistant: <think> Let me trace the "
    "function step by step. First the list is sorted, then every element is doubled, so the result is "
    "the sum of the doubled values. </think> <answer> 42 </answer>",
    "Design a program that requires deep algorithmic reasoning to deduce. The snippet must be deterministic, "
    "take an input, return an output, and the input must be valid for the function. Do not use random, time, "
    "files, network or the operating system.",
    "Given a set of input and output pairs and a message, write the function f that maps each input to its "
    "output. Write the answer as a python code block with a single function definition.",
    "def f(numbers):\n    total = 0\n    for i, n in enumerate(numbers):\n        if n % 2 == 0:\n"
    "            total += n * i\n        else:\n            total -= n\n    return total\n",
    "def f(s: str) -> str:\n    result = []\n    for ch in s:\n        if ch.isalpha():\n"
    "            result.append(ch.upper())\n        elif ch.isdigit():\n            result.append(str(int(ch) + 1))\n"
    "    return ''.join(result)\n",
    "def f(matrix):\n    rows = len(matrix)\n    cols = len(matrix[0]) if rows else 0\n"
    "    return [[matrix[r][c] for r in range(rows)] for c in range(cols)]\n",
    "from collections import defaultdict\n\ndef f(words):\n    groups = defaultdict(list)\n"
    "    for w in words:\n        groups[''.join(sorted(w))].append(w)\n"
    "    return sorted(len(g) for g in groups.values())\n",
    "def f(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n\nassert f(12, 18) == 6\n",
    "def f(d: dict) -> list:\n    keys = sorted(d, key=lambda k: (d[k], k))\n    return [(k, d[k]) for k in keys]\n",
    "```python\ndef f(x):\n    return x[::-1]\n```\n```input\n'hello world'\n```\n```output\n'dlrow olleh'\n```",
    "The quick brown fox jumps over the lazy dog. Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. "
    "Symbols: ( ) [ ] { } < > = + - * / % == != <= >= and or not in is None True False.",
    "I think the answer is correct because each step follows from the previous one; let me double check the "
    "edge cases: an empty list, a single element, negative numbers and duplicates.",
]


def train_tokenizer(vocab_size: int):
    """A byte-level BPE (the same family as Qwen's tokenizer) learned from CORPUS; EOS is id 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    return tok


def make_tiny_checkpoint(out_dir, seed: int = 0, tokenizer_vocab: int = 1024, **overrides) -> str:
    """Write a tiny random Qwen2 + tokenizer to out_dir and return the folder path.

    overrides: any Qwen2Config field (hidden_size, num_hidden_layers, num_key_value_heads, vocab_size, ...).
    vocab_size defaults to the tokenizer size rounded up to a multiple of 64 and must be >= it."""
    from transformers import PreTrainedTokenizerFast
    out_dir = str(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    tok = train_tokenizer(tokenizer_vocab)
    n_tok = tok.get_vocab_size()
    eos_id = tok.token_to_id(EOS)
    cfg = dict(vocab_size=-(-n_tok // 64) * 64, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
               rope_theta=1000000.0, tie_word_embeddings=True, bos_token_id=eos_id, eos_token_id=eos_id)
    unknown = set(overrides) - set(Qwen2Config.__dataclass_fields__)
    if unknown:
        raise TypeError(f"make_tiny_checkpoint got unknown config fields {sorted(unknown)}")
    cfg.update(overrides)
    if cfg["vocab_size"] < n_tok:
        raise ValueError(f"vocab_size={cfg['vocab_size']} is smaller than the tokenizer ({n_tok} tokens)")

    # Seed a private generator state so the weights depend on `seed` only, not on what ran before.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        qwen = Qwen2(Qwen2Config(**cfg))
    qwen.save_pretrained(out_dir)

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS, bos_token=None,
                                   model_max_length=cfg["max_position_embeddings"])
    fast.save_pretrained(out_dir)
    return out_dir


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="Write a tiny random Qwen2 checkpoint (weights + tokenizer).")
    ap.add_argument("out_dir", nargs="?", default="tiny-ckpt", help="folder to write (default: tiny-ckpt)")
    ap.add_argument("--seed", type=int, default=0, help="weights seed (the same seed gives the same files)")
    args = ap.parse_args()
    print(make_tiny_checkpoint(args.out_dir, seed=args.seed))
