"""Qwen2 / Qwen2.5 written out by hand: config, RMSNorm, rotary, grouped-query attention, SwiGLU, loading.

One file, Hugging Face parameter names, so an official checkpoint's safetensors load with no conversion and
`state_dict()` keys equal the checkpoint's keys. Three ways to call the network:

    qwen(input_ids, attention_mask)                  training / scoring: logits [B, T, V], causal, no cache
    qwen(input_ids, cache=cache, slots=slots)        engine prefill: right-padded prompts written into cache rows
    qwen(input_ids, cache=cache, positions=pos)      engine decode: one new token per active cache row

The batched generation engine lives in engine.py; `generate` is re-exported here so callers can write
`from model import generate`.
"""
import errno
import json
import os
import re
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from safetensors import safe_open
from safetensors.torch import save_file

import kernels


# ----------------------------------------------------------------------------------------------------------------
# Config: the fields of a Hugging Face Qwen2 config.json that change the computation.

class CheckpointError(ValueError):
    """A checkpoint folder that cannot be used as it is; the message is one line naming the file and the fix."""


@dataclass
class Qwen2Config:
    vocab_size: int = 151936
    hidden_size: int = 896
    intermediate_size: int = 4864
    num_hidden_layers: int = 24
    num_attention_heads: int = 14
    num_key_value_heads: int = 2
    head_dim: int = 0                      # 0 = hidden_size // num_attention_heads (what every Qwen2.5 uses)
    max_position_embeddings: int = 32768
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    tie_word_embeddings: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in (int, "int") and (type(v) is not int or v <= 0) and not (f.name == "head_dim" and v == 0):
                raise CheckpointError(f"config {f.name}={v!r} must be a positive integer; fix config.json")
        if not self.head_dim:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise CheckpointError(f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                                  f"num_key_value_heads={self.num_key_value_heads}; fix config.json")

    @classmethod
    def from_hf(cls, d: dict, where: str = "config.json") -> "Qwen2Config":
        """Read an HF config dict, refusing anything that would silently compute something else."""
        if d.get("model_type") != "qwen2":
            arch = ",".join(d.get("architectures") or []) or "unknown architecture"
            raise CheckpointError(f"{where} is model_type '{d.get('model_type')}' ({arch}), not 'qwen2': "
                                  "nanoAZR only runs Qwen2/Qwen2.5 checkpoints")
        # transformers >= 5 nests rope_theta in rope_parameters; older configs keep it top-level. Qwen's YaRN recipe
        # adds a rope_scaling block, which may sit beside a default rope_parameters: both must be plain rotary.
        rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
        for block in (d.get("rope_parameters"), d.get("rope_scaling")):
            if isinstance(block, dict) and block.get("rope_type", block.get("type", "default")) != "default":
                raise CheckpointError(f"{where} asks for rope scaling {block}; only the default rotary is "
                                      "implemented (remove the block to run without YaRN)")
        if d.get("use_sliding_window"):
            raise CheckpointError(f"{where} has use_sliding_window=true; sliding-window attention is not implemented")
        if d.get("hidden_act", "silu") != "silu":
            raise CheckpointError(f"{where} has hidden_act={d['hidden_act']!r}; Qwen2 uses silu")
        kw = {f.name: d[f.name] for f in fields(cls) if d.get(f.name) is not None}
        # A key the file leaves out means what transformers' Qwen2Config means by it, not our dataclass's 0.5B
        # default: an untied lm_head (tied would silently drop the stored lm_head.weight) and rope_theta 10000.
        kw.setdefault("tie_word_embeddings", False)
        kw["rope_theta"] = float(rope.get("rope_theta", d.get("rope_theta", 10000.0)))
        if isinstance(kw.get("eos_token_id"), list):   # Instruct configs list several; generation passes its own
            kw["eos_token_id"] = kw["eos_token_id"][0]
        return cls(**kw)

    def to_hf(self, dtype: torch.dtype) -> dict:
        """config.json in the format transformers writes (both rope_theta spellings, so 4.x and 5.x read it)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_act="silu",
                 torch_dtype=str(dtype).removeprefix("torch."), use_sliding_window=False, sliding_window=None,
                 max_window_layers=self.num_hidden_layers, attention_dropout=0.0, use_cache=True,
                 rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta})
        return d


# ----------------------------------------------------------------------------------------------------------------
# Building blocks

class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, x):
        # x * rsqrt(mean(x^2) + eps) in fp32, cast back *before* the weight multiply: the order Qwen2 was
        # trained with, which matters for bf16 parity. (F.rms_norm: one call instead of five.)
        if x.dtype == torch.float32:  # no casts: two no-op calls cost a third of a tiny model's norm on CPU
            return self.weight * F.rms_norm(x, self.weight.shape, eps=self.variance_epsilon)
        h = F.rms_norm(x.float(), self.weight.shape, eps=self.variance_epsilon)
        return self.weight * h.to(x.dtype)


def rotary_cos_sin(positions, head_dim: int, theta: float, dtype):
    """positions [B, T] long -> cos, sin [B, 1, T, head_dim] (the 1 broadcasts over heads).

    Computed from the positions on every forward (a handful of tiny ops, shared by all layers) instead of a
    table, so a 131k-context config costs no memory and every row may sit at its own position (the engine's
    per-slot positions). The angles are made in fp32 exactly as the reference does, then cast to the activation
    dtype. sin comes back with its first half negated, ready for apply_rotary."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float, device=positions.device) / head_dim))
    angles = positions[:, None, :, None].float() * inv_freq  # [B, 1, T, hd/2]
    cos, sin = angles.cos(), angles.sin()
    return torch.cat((cos, cos), dim=-1).to(dtype), torch.cat((-sin, sin), dim=-1).to(dtype)


def apply_rotary(x, cos, sin):
    """x [B, H, T, hd]. Qwen2 checkpoints use the *half-split* convention: dimension i is paired with i + hd/2,
    not with its neighbour 2i+1 as in the original RoPE paper (interleaved pairing with these weights runs but
    produces garbage). With x = [x1, x2] the result is [x1*c - x2*s, x2*c + x1*s]; rolling x by hd/2 gives
    [x2, x1] and sin is pre-signed [-s, s], so it is 4 ops instead of the 8 of a chunk-and-cat version."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin


class KVCache:
    """Paged KV cache: k, v [layers, blocks, KVH, block_size, hd] and a block table [slots, max_len / block_size].

    Position t of the sequence in row b lives in block block_table[b, t // block_size], at offset t % block_size.
    Why pages: a row of max_len positions per sequence sizes every row for the longest prompt plus max_new_tokens
    (up to 14k tokens in AZR), while most rollouts end far earlier; with blocks handed out as sequences grow, the
    same memory holds several times more sequences at once (engine.py). Block 0 is never handed out: table entries
    that hold no sequence point at it, so the K/V that padding writes (prefill padding, the padding rows of a CUDA
    graph step) land there and are never read.

    Without `blocks`, every row gets max_len positions of its own up front (a static cache, blocks = 1 + slots x
    max_len / block_size); the engine passes `blocks` and fills the table itself. The rotary table and the per-head
    offsets are built once here, so a decode step only indexes them (decode is op-count bound on small models)."""

    def __init__(self, config: Qwen2Config, slots: int, max_len: int, device, dtype, model=None, blocks=None,
                 block_size=16):
        L, KVH, hd = config.num_hidden_layers, config.num_key_value_heads, config.head_dim
        per_row = -(-max_len // block_size)
        static = blocks is None
        if static:
            blocks = 1 + slots * per_row
        self.block_size = block_size
        self.k = torch.zeros(L, blocks, KVH, block_size, hd, device=device, dtype=dtype)
        self.v = torch.zeros(L, blocks, KVH, block_size, hd, device=device, dtype=dtype)
        self.block_table = torch.zeros(slots, per_row, dtype=torch.long, device=device)  # 0 = no block
        if static:
            self.block_table += 1 + torch.arange(slots * per_row, device=device).view(slots, per_row)
        self.positions = torch.arange(per_row * block_size, device=device)  # [P], P = per_row * block_size >= max_len
        cos, sin = rotary_cos_sin(self.positions[None], hd, config.rope_theta, dtype)  # [1, 1, P, hd]
        self.cos, self.sin = cos[0, 0], sin[0, 0]  # [P, hd]: the same values the forward would compute
        self.heads = torch.arange(KVH, device=device)[:, None]  # [KVH, 1]
        # For the in-place layout (row b is block b + 1): the flat row of (block b + 1, head h, offset 0), [slots*KVH]
        self.row_base = self.flat_index(1 + torch.arange(slots, device=device)[:, None],
                                        torch.zeros(1, 1, dtype=torch.long, device=device))
        # Set by Qwen2.forward for the current call, shared by all layers:
        self.write_index = None  # [rows*KVH*T]: rows of the flat [blocks*KVH*block_size, hd] view each K/V goes to
        self.lengths = None  # [B] visible positions of each row in the current decode step
        self.plan = None  # the dense decode attention's (mask, gather rows) for the current step, or None
        self.in_place = False  # set by the engine when row b's K/V are whole-row block b + 1 (read in place)
        # CUDA: norms, rotary + cache write and SwiGLU as fused Triton kernels (kernels/fused.py: ~30 -> 4 small
        # launches per layer, what a decode step of a large model spends beyond reading its weights)
        self.fused = None  # or the module kernels.fused (imported only then: it imports triton)
        if kernels.fused_layers(device):
            from kernels import fused
            self.fused = fused
        # Fused decode also projects q, k and v with one GEMM over a copy of each layer's three weights side by side,
        # {Attention: ([(H + 2*KVH) * hd, D], bias)}: q/k/v took 21 us per 7B layer as three GEMMs on an H200 (k and
        # v, 3.7 MB each, mostly launch and tail), where their 33 MB of weights read in 7 us. 0.9 GB for Qwen2.5-7B,
        # made per generate call (training changes the weights). Not for FSDP-sharded weights, which are whole only
        # inside a layer's forward.
        self.qkv = {}
        if self.fused and model is not None:
            from torch.distributed.tensor import DTensor
            if not any(isinstance(p, DTensor) for p in model.parameters()):
                self.qkv = {m: (torch.cat([m.q_proj.weight, m.k_proj.weight, m.v_proj.weight]).detach(),
                                torch.cat([m.q_proj.bias, m.k_proj.bias, m.v_proj.bias]).detach())
                            for m in model.modules() if isinstance(m, Attention)}

        # CPU only: for the few rows of a decode step, the CPU GEMM runs 25-40% faster with the weight stored
        # [in, out] than with nn.Linear's [out, in] (measured, 1 thread: [32, 256] x [256, 704] 69 vs 92 us). So
        # for this call we keep a transposed copy of every projection, if the copies fit in 2 GB. On CUDA
        # cuBLAS does not care and the memory matters, so nothing is copied there.
        self.weight_t = {}
        if model is not None and torch.device(device).type == "cpu":
            layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
            if not isinstance(model.lm_head, nn.Linear):
                layers.append(model.lm_head)  # the tied head
            if sum(m.weight.numel() * m.weight.element_size() for m in layers) <= 2 << 30:
                # (weight [in, out], bias or None); plain tensors, so the decode step skips nn.Module calls
                self.weight_t = {m: (m.weight.detach().t().contiguous(),
                                     None if getattr(m, "bias", None) is None else m.bias.detach())
                                 for m in layers}

    def flat_index(self, blocks, offsets):
        """Rows of the flat [blocks*KVH*block_size, hd] view of one layer's cache: blocks, offsets [N, T] (block id and
        offset of each position) -> [N*KVH*T], ordered like K reshaped from [N, KVH, T, hd]."""
        return ((blocks[:, None] * self.heads.shape[0] + self.heads) * self.block_size + offsets[:, None]).reshape(-1)

    def linear(self, layer, x):
        """layer(x) for x [..., in], through the transposed copy when there is one."""
        w = self.weight_t.get(layer)
        if w is None:
            return layer(x)
        y = x @ w[0]  # [..., out]; matmul then add beats addmm for a few rows (measured)
        return y if w[1] is None else y + w[1]


class Attention(nn.Module):
    def __init__(self, config: Qwen2Config, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head, self.head_dim = (config.num_attention_heads, config.num_key_value_heads,
                                                      config.head_dim)
        D, hd = config.hidden_size, config.head_dim
        # Qwen2's one architectural quirk: q/k/v projections carry a bias, o_proj does not.
        self.q_proj = nn.Linear(D, self.n_head * hd, bias=True)
        self.k_proj = nn.Linear(D, self.n_kv_head * hd, bias=True)
        self.v_proj = nn.Linear(D, self.n_kv_head * hd, bias=True)
        self.o_proj = nn.Linear(self.n_head * hd, D, bias=False)

    def forward(self, x, cos, sin, mask, cache=None, slots=None, positions=None):
        B, T = (x.shape[0], 1) if x.dim() == 2 else x.shape[:2]  # decode carries [B, D], one token per row
        H, KVH, hd = self.n_head, self.n_kv_head, self.head_dim
        proj = cache.linear if cache is not None else (lambda layer, h: layer(h))
        if cache is not None and cache.fused and positions is not None and not hd & (hd - 1):
            # Decode on CUDA: rotary for q and k and the K/V cache write in one kernel, q comes back [B, H, hd]
            # (the kernel's head_dim is a power of two, as in every Qwen2.5; other sizes take the torch code below)
            kc, vc = cache.k[self.layer_idx], cache.v[self.layer_idx]  # [blocks, KVH, block_size, hd]
            merged = cache.qkv.get(self)
            if merged is not None:  # one GEMM, then views: [B, 1, (H + 2*KVH) * hd] -> q, k, v
                q, k, v = F.linear(x, *merged).split([H * hd, KVH * hd, KVH * hd], dim=-1)
            else:
                q, k, v = proj(self.q_proj, x), proj(self.k_proj, x), proj(self.v_proj, x)  # [B, 1, (H|KVH)*hd]
            q = cache.fused.rotary_cache_write_triton(q, k, v, cos.view(B, hd), sin.view(B, hd), kc, vc,
                                                      cache.write_index)
            y = kernels.decode_attention(q, kc, vc, cache.lengths, cache.block_table, cache.plan)  # [B, H, hd]
            return proj(self.o_proj, y.view(B, H * hd))
        q = proj(self.q_proj, x).view(B, T, H, hd).transpose(1, 2)    # [B, H, T, hd]
        k = proj(self.k_proj, x).view(B, T, KVH, hd).transpose(1, 2)  # [B, KVH, T, hd]
        v = proj(self.v_proj, x).view(B, T, KVH, hd).transpose(1, 2)  # [B, KVH, T, hd]
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)

        if cache is not None:
            # Write the new K/V into their cache blocks: one index_copy_ through the flat [blocks*KVH*bs, hd] view,
            # with the index Qwen2.forward computed once for all layers. Prefill padding past a row's own blocks goes
            # to block 0; padding inside its last block lies past the row's length, masked until decode overwrites it.
            kc, vc = cache.k[self.layer_idx], cache.v[self.layer_idx]  # [blocks, KVH, block_size, hd]
            kc.view(-1, hd).index_copy_(0, cache.write_index, k.reshape(-1, hd))  # k [B, KVH, T, hd]
            vc.view(-1, hd).index_copy_(0, cache.write_index, v.reshape(-1, hd))
        if cache is None or slots is not None:
            # Training, scoring, or prefill: prefill rows are fresh prompts starting at position 0, right-padded, so
            # the plain causal mask over this call's own K/V is already right for every real token.
            gqa = H != KVH
            if mask is not None and gqa and x.is_cuda:
                # With a mask only the memory-efficient CUDA kernel avoids building [B, H, T, T] scores, and it
                # has no GQA support: give it K/V repeated to H heads ([B, H, T, hd]) instead.
                k, v, gqa = k.repeat_interleave(H // KVH, dim=1), v.repeat_interleave(H // KVH, dim=1), False
            # mask None -> plain causal (flash kernels); else bool [B, 1, T, T] for left-padded batches.
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None,
                                               enable_gqa=gqa)  # [B, H, T, hd]
            y = y.transpose(1, 2).reshape(B, T, H * hd)  # [B, T, H*hd]
            return proj(self.o_proj, y)
        # Decode: row b holds one new token at positions[b]. fp32 scores and softmax whatever the cache dtype, as
        # training's SDPA computes them; on CUDA a Triton kernel that reads only each row's own length through the
        # block table, elsewhere dense matmuls over the gathered blocks (kernels/attention.py)
        y = kernels.decode_attention(q.reshape(B, H, hd), kc, vc, cache.lengths, cache.block_table,
                                     cache.plan)  # [B, H, hd]
        return proj(self.o_proj, y.view(B, H * hd))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: Qwen2Config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x, cache=None):
        if cache is not None:
            gate, up = cache.linear(self.gate_proj, x), cache.linear(self.up_proj, x)
            act = cache.fused.silu_mul_triton(gate, up) if cache.fused else F.silu(gate) * up
            return cache.linear(self.down_proj, act)
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm transformer layer (HF name: Qwen2DecoderLayer)."""

    def __init__(self, config: Qwen2Config, layer_idx: int):
        super().__init__()
        self.self_attn = Attention(config, layer_idx)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, cos, sin, mask, cache=None, slots=None, positions=None):
        if cache is not None and cache.fused:  # CUDA inference: the residual add fused into the second norm
            norm1, norm2 = self.input_layernorm, self.post_attention_layernorm
            h = cache.fused.rms_norm_triton(x, norm1.weight, norm1.variance_epsilon)
            h, x = cache.fused.add_rms_norm_triton(self.self_attn(h, cos, sin, mask, cache, slots, positions), x,
                                                   norm2.weight, norm2.variance_epsilon)
            return x + self.mlp(h, cache)
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, slots, positions)
        return x + self.mlp(self.post_attention_layernorm(x), cache)


class Body(nn.Module):
    """The `model.` prefix of the HF parameter names: embeddings, layers, final norm."""

    def __init__(self, config: Qwen2Config):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class TiedLMHead(nn.Module):
    """lm_head that reuses the embedding matrix (tie_word_embeddings). It owns no parameter, so state_dict()
    has exactly the keys of an HF tied checkpoint (which stores no lm_head.weight), while `lm_head.weight`
    still works for the fused logprob kernel."""

    def __init__(self, embed_tokens: nn.Embedding):
        super().__init__()
        self._embed = (embed_tokens,)  # a tuple, so nn.Module does not register it a second time

    @property
    def weight(self):
        return self._embed[0].weight

    def forward(self, x):
        return F.linear(x, self.weight)


# ----------------------------------------------------------------------------------------------------------------
# The model

class Qwen2(nn.Module):
    def __init__(self, config: Qwen2Config):
        super().__init__()
        self.config = config
        self.model = Body(config)
        self.lm_head = (TiedLMHead(self.model.embed_tokens) if config.tie_word_embeddings
                        else nn.Linear(config.hidden_size, config.vocab_size, bias=False))
        self.gradient_checkpointing = False
        if self.model.embed_tokens.weight.device.type != "meta":
            self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        # HF's initialisation (normal, std 0.02; zero biases); only used for random tiny models.
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, input_ids, attention_mask=None, return_hidden=False, cache=None, slots=None,
                positions=None, last=None, max_position=None):
        """input_ids [B, T] long. Returns logits [B, T, V], or hidden [B, T, D] (after the final norm) when
        return_hidden.

        attention_mask [B, T] (1 = token, 0 = left padding): real tokens get the positions and logits they would
        have without the padding. cache + slots [B]: prefill of right-padded prompts into those cache rows.
        cache + positions [B]: decode one token (T == 1) per cache row 0..B-1 at those positions.
        last [B] long: return only the logits at position last[b] of each row, [B, V] (the engine's next-token
        logits; computing them inside forward keeps lm_head within the call, as FSDP's unsharding expects).
        max_position: max(positions) as a Python int when the caller knows it (saves a host sync per decode step)."""
        B, T = input_ids.shape
        device = input_ids.device
        decode = positions is not None
        # Decode carries the one token of each row as x [B, D]: the layers are token-wise except attention, and on
        # CPU the reshapes around a 3D matmul cost more than a tiny model's GEMM (tiny.py's decode step: ~5% faster).
        x = self.model.embed_tokens(input_ids[:, 0] if decode else input_ids)  # [B, D] or [B, T, D]
        mask = None  # None = plain causal
        if decode:
            assert cache is not None and T == 1, "positions= is the decode path: pass cache= and one token per row"
            L = (int(positions.max()) if max_position is None else max_position) + 1
            cache.lengths = positions + 1  # [B] visible positions of each row, its new token included
            bs, KVH = cache.block_size, cache.heads.shape[0]
            # The dense attention path's mask and gather rows over positions 0..L-1, once for all layers (the Triton
            # kernel reads the block table itself and needs neither)
            cache.plan = (None if kernels.fused_decode_attention(device, self.config.head_dim)
                          else kernels.decode_plan(cache.lengths, cache.block_table, L, KVH, bs, x.dtype,
                                                   cache.in_place))
            if cache.in_place:  # row b is block b + 1: its rows of the flat view start at cache.row_base
                cache.write_index = cache.row_base[:B * KVH] + positions[:, None].expand(B, KVH).reshape(-1)
            else:
                blocks = cache.block_table[:B].gather(1, (positions // bs)[:, None])  # [B, 1]
                cache.write_index = cache.flat_index(blocks, (positions % bs)[:, None])  # [B*KVH]
            cos, sin = cache.cos[positions][:, None, None], cache.sin[positions][:, None, None]  # [B, 1, 1, hd]
        elif cache is not None:
            # Prefill: every row starts at position 0; position t of row slots[i] goes to its block t // bs.
            t = cache.positions[:T]
            cache.write_index = cache.flat_index(cache.block_table[slots][:, t // cache.block_size],
                                                 (t % cache.block_size)[None])  # [B*KVH*T]
            cos, sin = cache.cos[None, None, :T], cache.sin[None, None, :T]  # [1, 1, T, hd]
        else:
            if attention_mask is not None and not bool(attention_mask.all()):
                am = attention_mask.bool()
                pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # [B, T]: first real token at 0
                causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()
                # A padding query would see no key at all (NaN softmax), so it also sees itself; its output is
                # garbage nobody reads, and real queries never see padding keys.
                eye = torch.eye(T, dtype=torch.bool, device=device)
                mask = (causal & (am[:, None, :] | eye))[:, None]  # [B, 1, T, T]
            else:
                pos = torch.arange(T, device=device)[None]  # [1, T], broadcast over rows
            cos, sin = rotary_cos_sin(pos, self.config.head_dim, self.config.rope_theta, x.dtype)

        use_ckpt = self.gradient_checkpointing and cache is None and torch.is_grad_enabled()
        for layer in self.model.layers:
            if use_ckpt:
                # Recompute this layer's activations in backward instead of storing them.
                x = torch.utils.checkpoint.checkpoint(layer, x, cos, sin, mask, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask, cache, slots, positions)
        x = self.model.norm(x)
        if decode:  # x [B, D] holds each row's only position, which is all `last` can select
            x = x if last is not None else x[:, None]  # [B, 1, D] like any call without `last`
        elif last is not None:
            x = x[torch.arange(B, device=device), last]  # [B, D]
        if return_hidden:
            return x
        return cache.linear(self.lm_head, x) if cache is not None else self.lm_head(x)

    @property
    def device(self):
        return self.model.embed_tokens.weight.device

    @property
    def dtype(self):
        return self.model.embed_tokens.weight.dtype

    # ------------------------------------------------------------------------------------------------------------
    # Loading and saving (HF safetensors layout)

    @classmethod
    def from_pretrained(cls, path, device="cpu", dtype=torch.float32) -> "Qwen2":
        folder = resolve_checkpoint(path)
        config = read_config(folder)
        # Build on the meta device (no memory, no random init: seconds instead of minutes for 7B), then adopt
        # the loaded tensors with assign=True.
        with torch.device("meta"):
            qwen = cls(config)
        state = load_safetensors(folder, device, dtype)
        state = {k: v for k, v in state.items() if not k.endswith("rotary_emb.inv_freq")}
        if config.tie_word_embeddings:
            state.pop("lm_head.weight", None)  # some tied checkpoints store a copy; the tie makes it redundant
        expected = set(qwen.state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise CheckpointError(f"checkpoint {folder} does not match its config.json: missing {missing[:3]}"
                                  f"{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
                                  f"{'...' if len(unexpected) > 3 else ''}")
        shapes = {k: tuple(v.shape) for k, v in qwen.state_dict().items()}
        wrong = [k for k in shapes if tuple(state[k].shape) != shapes[k]]
        if wrong:
            k = wrong[0]
            raise CheckpointError(f"checkpoint {folder}: {k} has shape {tuple(state[k].shape)} but config.json implies "
                                  f"{shapes[k]} ({len(wrong)} tensor(s) disagree); the config and the weights come "
                                  "from different models")
        qwen.load_state_dict(state, strict=True, assign=True)
        return qwen.eval()

    def save_pretrained(self, path, state_dict=None):
        """Write config.json + model.safetensors atomically (temp file, then rename). state_dict lets a caller
        pass full weights gathered from FSDP shards; tensors are saved as they are (dtype included)."""
        os.makedirs(path, exist_ok=True)
        state = self.state_dict() if state_dict is None else state_dict
        state = {k: v.detach().contiguous().cpu() for k, v in state.items()
                 if not (k == "lm_head.weight" and self.config.tie_word_embeddings)}  # HF stores no tied copy
        dtype = next(iter(state.values())).dtype
        write_atomic(os.path.join(path, "model.safetensors"), lambda tmp: _save_safetensors(state, tmp))
        config = json.dumps(self.config.to_hf(dtype), indent=2)
        write_atomic(os.path.join(path, "config.json"), config)
        # A stale index from an earlier sharded save would point loaders at old shards.
        stale = os.path.join(path, "model.safetensors.index.json")
        if os.path.exists(stale):
            os.remove(stale)


def _save_safetensors(state, file):
    try:
        save_file(state, file, metadata={"format": "pt"})
    except Exception as e:  # safetensors' own error type: give a full disk the errno Python's own writes carry
        if "No space left on device" in str(e) or "os error 28" in str(e):
            raise OSError(errno.ENOSPC, "No space left on device", file) from None
        raise


def write_atomic(path, content):
    """Write `content` (str, or a function that writes the given temp path) to `path` via a temp file + rename, so a
    crash or a full disk never leaves a half-written file. Used by save_pretrained, and by azr.py and eval/ for the
    files they write whole (step dumps, `latest`, eval results); azr.py also renames each checkpoint folder whole."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        if callable(content):
            content(tmp)
        else:
            with open(tmp, "w") as fh:
                fh.write(content)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_config(folder) -> Qwen2Config:
    file = os.path.join(folder, "config.json")
    if not os.path.isfile(file):
        raise FileNotFoundError(f"no config.json in {folder}: not a Hugging Face model folder")
    d = _read_json(file, "config.json")
    if not isinstance(d, dict):
        raise CheckpointError(f"{file} holds a {type(d).__name__}, not a JSON object; re-download config.json")
    return Qwen2Config.from_hf(d, where=file)


def _read_json(file, what):
    try:
        with open(file) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file} is not valid JSON ({e}); re-download {what}") from None


def load_safetensors(folder, device="cpu", dtype=None) -> dict:
    """All tensors of a single-file or sharded (model.safetensors.index.json) checkpoint, cast to dtype."""
    device = torch.device(device)  # a bad device string fails here, not as a "corrupt file"
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} asked for, but CUDA is not available here; load on device='cpu'")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch.dtype such as torch.bfloat16, got {dtype!r}")
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        weight_map = _read_json(index, "model.safetensors.index.json")
        weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"{index} has no weight_map of tensor names to shard files; re-download it")
        files = sorted(set(weight_map.values()))
    elif os.path.isfile(os.path.join(folder, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {folder}")
    state = {}
    for name in files:
        file = os.path.join(folder, name)
        if not os.path.isfile(file):
            raise FileNotFoundError(f"shard {name} listed in {index} is missing from {folder}; re-download it")
        try:
            with safe_open(file, framework="pt", device=str(device)) as f:
                for key in f.keys():
                    t = f.get_tensor(key)
                    state[key] = t.to(dtype) if dtype is not None else t
        except Exception as e:  # safetensors reports truncation as a header/size error deep inside
            raise CheckpointError(f"cannot read {file} (truncated or corrupt? re-download it): "
                                  f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return state


# ----------------------------------------------------------------------------------------------------------------
# Names -> folders, tokenizer

_QWEN25 = ("0.5b", "1.5b", "3b", "7b", "14b", "32b", "72b")
_CODER = ("0.5b", "1.5b", "3b", "7b", "14b", "32b")
SHORT_NAMES = {f"qwen2.5-{s}": f"Qwen/Qwen2.5-{s.upper()}" for s in _QWEN25}
SHORT_NAMES |= {f"qwen2.5-{s}-instruct": f"Qwen/Qwen2.5-{s.upper()}-Instruct" for s in _QWEN25}
SHORT_NAMES |= {f"qwen2.5-coder-{s}": f"Qwen/Qwen2.5-Coder-{s.upper()}" for s in _CODER}
SHORT_NAMES |= {f"qwen2.5-coder-{s}-instruct": f"Qwen/Qwen2.5-Coder-{s.upper()}-Instruct" for s in _CODER}
# the paper's released AZR checkpoints (azr-spec.md 9.5), named as eval/report.py's paper columns
SHORT_NAMES |= {f"azr-coder-{s}": f"andrewzh/Absolute_Zero_Reasoner-Coder-{s}" for s in ("3b", "7b", "14b")}
SHORT_NAMES |= {f"azr-base-{s}": f"andrewzh2/Absolute_Zero_Reasoner-Base-{s}" for s in ("7b", "14b")}


def resolve_checkpoint(name_or_path) -> str:
    """A local folder, a short name (qwen2.5-7b) or a hub id (Qwen/Qwen2.5-7B) -> local folder path."""
    name = str(name_or_path)
    if os.path.isdir(name):
        return name
    repo_id = SHORT_NAMES.get(name.lower())
    if repo_id is None:
        looks_like_hub_id = re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name) and not os.path.isabs(name)
        if not looks_like_hub_id:
            if os.sep in name or name.startswith("."):
                raise FileNotFoundError(f"checkpoint folder not found: {name}")
            raise ValueError(f"unknown model name {name!r}: not a local folder and not a short name "
                             f"(known: {', '.join(k for k in SHORT_NAMES if 'instruct' not in k)}, ...-instruct)")
        repo_id = name
    from huggingface_hub import snapshot_download
    patterns = ["*.json", "*.safetensors", "*.txt", "tokenizer*"]
    try:  # the local HF cache first, so offline machines with a downloaded model just work
        local = snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True)
    except Exception:
        local = None
    # The cached snapshot is whatever was fetched before (only a tokenizer, or an interrupted download short of a
    # shard): use it as it is only when its weights are all there.
    if local is not None and _has_weights(local):
        return local
    try:
        return snapshot_download(repo_id, allow_patterns=patterns)
    except Exception as e:
        if local is not None:  # offline: loading the partial snapshot names the file it lacks
            return local
        raise FileNotFoundError(f"{name!r} is not a local folder and downloading {repo_id} from the Hugging Face "
                                f"hub failed ({type(e).__name__}); pass a local checkpoint folder") from None


def _has_weights(folder) -> bool:
    """Whether a folder holds config.json and every safetensors file its weights need (single or sharded)."""
    if not os.path.isfile(os.path.join(folder, "config.json")):
        return False
    index = os.path.join(folder, "model.safetensors.index.json")
    if not os.path.isfile(index):
        return os.path.isfile(os.path.join(folder, "model.safetensors"))
    try:
        with open(index) as f:
            files = set(json.load(f)["weight_map"].values())
    except Exception:  # unreadable: not complete (loading it reports why)
        return False
    return all(os.path.isfile(os.path.join(folder, f)) for f in files)


def load_tokenizer(path):
    """The fast tokenizer stored beside the weights (tokenizer.json + tokenizer_config.json)."""
    from transformers import AutoTokenizer
    folder = resolve_checkpoint(path)
    if not any(os.path.isfile(os.path.join(folder, f)) for f in ("tokenizer.json", "vocab.json")):
        # (transformers would build an empty tokenizer, and every prompt would encode to nothing)
        raise CheckpointError(f"no tokenizer in {folder} (tokenizer.json); copy the tokenizer files of the base "
                              "model (tokenizer.json, tokenizer_config.json) beside the weights")
    if os.path.isfile(os.path.join(folder, "tokenizer.json")):  # a truncated file: name it (transformers would not)
        _read_json(os.path.join(folder, "tokenizer.json"), "tokenizer.json")
    try:
        return AutoTokenizer.from_pretrained(folder)
    except Exception as e:  # OSError, ValueError, TypeError, ...: whatever the folder's files made transformers raise
        raise CheckpointError(f"cannot load the tokenizer in {folder} ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); re-download its tokenizer files") from None


def generate(model, prompts, max_new_tokens, **kwargs):
    """Batched generation with continuous batching; see engine.generate for the arguments. It lives in
    engine.py (imported here lazily, so importing either module first works)."""
    from engine import generate as engine_generate
    return engine_generate(model, prompts, max_new_tokens, **kwargs)
