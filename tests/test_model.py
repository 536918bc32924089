"""model.py against transformers' Qwen2ForCausalLM (the reference), plus loading, saving and error messages.

Every reference model gets random biases and norm weights too (HF initialises them to 0 and 1, which would hide
a missing bias or a misplaced norm), is saved with save_pretrained and loaded by our code.
"""
import json
import os
import shutil

import pytest
import torch

from model import SHORT_NAMES, CheckpointError, Qwen2, load_tokenizer, resolve_checkpoint
from tiny import make_tiny_checkpoint

transformers = pytest.importorskip("transformers")

# (name, hidden, heads, kv heads, layers, tied): 1, 2 and 7 query heads per KV head, tied and untied.
# Each uses its own rope_theta, so reading the wrong theta (or none) fails the logits test.
CONFIGS = [
    ("mha-tied", 64, 4, 4, 2, True, 10000.0),
    ("gqa2-untied", 64, 4, 2, 2, False, 1000000.0),
    ("gqa7-tied", 56, 7, 1, 3, True, 500.0),
]


def make_reference(tmp_path, hidden, heads, kv_heads, layers, tied, theta=10000.0, vocab=173, seed=0):
    """A random HF Qwen2ForCausalLM saved to tmp_path; returns (hf_model, folder)."""
    cfg = transformers.Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=3 * hidden,
                                   num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                                   tie_word_embeddings=tied, rope_theta=theta, max_position_embeddings=512)
    torch.manual_seed(seed)
    hf = transformers.Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.normal_(1.0 if "norm" in name else 0.0, 0.05 if "norm" not in name else 0.1)
    folder = str(tmp_path / "ref")
    hf.save_pretrained(folder)
    return hf, folder


@pytest.fixture(scope="module", params=CONFIGS, ids=[c[0] for c in CONFIGS])
def pair(request, tmp_path_factory):
    _, hidden, heads, kv, layers, tied, theta = request.param
    hf, folder = make_reference(tmp_path_factory.mktemp(request.param[0]), hidden, heads, kv, layers, tied, theta)
    return hf, Qwen2.from_pretrained(folder), folder


@pytest.mark.parametrize("T", [1, 7, 13])
def test_logits_match_transformers(pair, T):
    hf, ours, _ = pair
    ids = torch.randint(0, hf.config.vocab_size, (2, T), generator=torch.Generator().manual_seed(T))
    with torch.no_grad():
        diff = (ours(ids) - hf(ids).logits).abs().max().item()
    assert diff < 1e-4


def test_left_padded_batch_matches_unpadded(pair):
    hf, ours, _ = pair
    g = torch.Generator().manual_seed(1)
    lens, T = [11, 5, 8], 11
    seqs = [torch.randint(1, hf.config.vocab_size, (n,), generator=g) for n in lens]
    ids = torch.zeros(len(lens), T, dtype=torch.long)
    mask = torch.zeros(len(lens), T, dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, T - len(s):], mask[b, T - len(s):] = s, 1
    with torch.no_grad():
        padded = ours(ids, attention_mask=mask)
        # the reference needs the positions spelled out to skip the padding (its generate() does the same)
        ref = hf(ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
        for b, s in enumerate(seqs):
            alone = ours(s[None])[0]
            assert (padded[b, T - len(s):] - alone).abs().max().item() < 1e-4
            assert (padded[b, T - len(s):] - ref[b, T - len(s):]).abs().max().item() < 1e-4
    assert torch.isfinite(padded).all()  # padding rows are garbage but never NaN


def test_return_hidden_is_final_norm_output(pair):
    hf, ours, _ = pair
    ids = torch.randint(0, hf.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        hidden = ours(ids, return_hidden=True)
        ref = hf(ids, output_hidden_states=True).hidden_states[-1]
        assert hidden.shape == (2, 9, hf.config.hidden_size)
        assert (hidden - ref).abs().max().item() < 1e-4
        assert torch.equal(ours.lm_head(hidden), ours(ids))


def test_state_dict_keys_equal_checkpoint_keys(pair):
    _, ours, folder = pair
    from safetensors import safe_open
    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as f:
        assert set(ours.state_dict()) == set(f.keys())
    if ours.config.tie_word_embeddings:
        assert ours.lm_head.weight is ours.model.embed_tokens.weight


def test_bf16_close_to_fp32(pair):
    _, ours, folder = pair
    bf = Qwen2.from_pretrained(folder, dtype=torch.bfloat16)
    assert bf.dtype == torch.bfloat16
    ids = torch.randint(0, ours.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = ours(ids), bf(ids)
    assert b.dtype == torch.bfloat16
    assert (a - b.float()).abs().max().item() < 0.05 * a.abs().max().item()


def test_save_pretrained_roundtrip_loads_in_transformers(pair, tmp_path):
    hf, ours, _ = pair
    ours.save_pretrained(tmp_path / "ours")
    assert sorted(os.listdir(tmp_path / "ours")) == ["config.json", "model.safetensors"]  # no temp files left
    config = json.load(open(tmp_path / "ours" / "config.json"))
    assert config["architectures"] == ["Qwen2ForCausalLM"] and config["model_type"] == "qwen2"
    back = transformers.Qwen2ForCausalLM.from_pretrained(tmp_path / "ours").eval()
    again = Qwen2.from_pretrained(tmp_path / "ours")
    ids = torch.randint(0, hf.config.vocab_size, (1, 6), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert (back(ids).logits - hf(ids).logits).abs().max().item() < 1e-5
        assert torch.equal(again(ids), ours(ids))


def test_save_pretrained_with_given_state_dict(tmp_path):
    ours = Qwen2.from_pretrained(make_tiny_checkpoint(tmp_path / "a"))
    other = Qwen2.from_pretrained(make_tiny_checkpoint(tmp_path / "b", seed=1))
    full = dict(other.state_dict(), **{"lm_head.weight": other.lm_head.weight})  # as a gather may return it
    ours.save_pretrained(tmp_path / "c", state_dict=full)
    loaded = Qwen2.from_pretrained(tmp_path / "c")
    for k, v in other.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_gradient_checkpointing_same_grads(tiny_ckpt):
    ids = torch.randint(0, 500, (2, 12), generator=torch.Generator().manual_seed(5))
    grads = []
    for ckpt in (False, True):
        qwen = Qwen2.from_pretrained(tiny_ckpt).train()
        qwen.gradient_checkpointing = ckpt
        qwen(ids, return_hidden=True).pow(2).mean().backward()
        grads.append({n: p.grad.clone() for n, p in qwen.named_parameters()})
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], atol=1e-6), n


def test_sharded_checkpoint_loads(tmp_path):
    hf, _ = make_reference(tmp_path, 64, 4, 2, 2, False)
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert os.path.exists(tmp_path / "sharded" / "model.safetensors.index.json")
    ours = Qwen2.from_pretrained(tmp_path / "sharded")
    ids = torch.randint(0, hf.config.vocab_size, (1, 5), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert (ours(ids) - hf(ids).logits).abs().max().item() < 1e-4

    # a missing shard and a truncated shard each give one clear line naming the file
    index = json.load(open(tmp_path / "sharded" / "model.safetensors.index.json"))
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    data = open(tmp_path / "sharded" / shards[1], "rb").read()
    open(tmp_path / "sharded" / shards[1], "wb").write(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"cannot read .*{shards[1]}.*truncated") as e:
        Qwen2.from_pretrained(tmp_path / "sharded")
    assert "\n" not in str(e.value)
    os.remove(tmp_path / "sharded" / shards[1])
    with pytest.raises(FileNotFoundError, match=f"shard {shards[1]} .* is missing") as e:
        Qwen2.from_pretrained(tmp_path / "sharded")
    assert "\n" not in str(e.value)


def test_one_line_errors(tmp_path, tiny_ckpt):
    def error_of(fn, exc):
        with pytest.raises(exc) as e:
            fn()
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "not found" in error_of(lambda: Qwen2.from_pretrained(str(tmp_path / "nope")), FileNotFoundError)
    assert "unknown model name 'qwen9-13b'" in error_of(lambda: resolve_checkpoint("qwen9-13b"), ValueError)
    os.makedirs(tmp_path / "empty")
    assert "no config.json" in error_of(lambda: Qwen2.from_pretrained(tmp_path / "empty"), FileNotFoundError)
    llama = dict(json.load(open(os.path.join(tiny_ckpt, "config.json"))), model_type="llama",
                 architectures=["LlamaForCausalLM"])
    os.makedirs(tmp_path / "llama")
    json.dump(llama, open(tmp_path / "llama" / "config.json", "w"))
    msg = error_of(lambda: Qwen2.from_pretrained(tmp_path / "llama"), CheckpointError)  # what azr.py reports in a line
    assert "'llama'" in msg and "Qwen2" in msg
    os.makedirs(tmp_path / "noweights")
    config = json.load(open(os.path.join(tiny_ckpt, "config.json")))
    json.dump(config, open(tmp_path / "noweights" / "config.json", "w"))
    assert "no model.safetensors" in error_of(lambda: Qwen2.from_pretrained(tmp_path / "noweights"), FileNotFoundError)

    def variant(name, edit):  # a copy of the tiny checkpoint with one thing broken
        folder = tmp_path / name
        shutil.copytree(tiny_ckpt, folder)
        edit(folder)
        return folder

    def config_with(**changes):
        return lambda f: json.dump(dict(config, **changes), open(f / "config.json", "w"))
    for folder, words in [
        (variant("kv0", config_with(num_key_value_heads=0)), "num_key_value_heads=0 must be a positive integer"),
        (variant("hidden_str", config_with(hidden_size="64")), "hidden_size='64' must be a positive integer"),
        (variant("yarn", config_with(rope_scaling={"rope_type": "yarn", "factor": 4.0})), "asks for rope scaling"),
        (variant("swa", config_with(use_sliding_window=True)), "sliding-window attention is not implemented"),
        (variant("gelu", config_with(hidden_act="gelu")), "Qwen2 uses silu"),
        (variant("kv3", config_with(num_key_value_heads=3)), "is not a multiple of num_key_value_heads=3"),
        (variant("badjson", lambda f: open(f / "config.json", "w").write('{"a":')), "config.json is not valid JSON"),
        (variant("listjson", lambda f: open(f / "config.json", "w").write("[1]")), "holds a list"),
        (variant("badindex", lambda f: open(f / "model.safetensors.index.json", "w").write('{"weight_map": [1]}')),
         "has no weight_map"),
        (variant("shape", config_with(intermediate_size=2 * config["intermediate_size"])),
         "the config and the weights come from different models"),
    ]:
        assert words in error_of(lambda: Qwen2.from_pretrained(folder), CheckpointError), folder
    assert "yarn" in json.dumps(json.load(open(tmp_path / "yarn" / "config.json")))  # beside rope_parameters
    notok = variant("notok", lambda f: [os.remove(f / n) for n in os.listdir(f) if n.startswith("tokenizer")])
    assert "no tokenizer in" in error_of(lambda: load_tokenizer(notok), CheckpointError)
    badtok = variant("badtok", lambda f: open(f / "tokenizer.json", "w").write("{"))
    assert "tokenizer.json is not valid JSON" in error_of(lambda: load_tokenizer(badtok), CheckpointError)
    oddtok = variant("oddtok", lambda f: open(f / "tokenizer.json", "w").write('{"version": "1.0"}'))  # no tokenizer
    assert "cannot load the tokenizer in" in error_of(lambda: load_tokenizer(oddtok), CheckpointError)

    def vocab_only(f):  # slow-tokenizer files only (no tokenizer.json to check first), and broken ones
        os.remove(f / "tokenizer.json")
        open(f / "vocab.json", "w").write("{}")
    assert "cannot load the tokenizer in" in error_of(lambda: load_tokenizer(variant("vocab", vocab_only)),
                                                      CheckpointError)

    def other_keys(f):  # weights of another layout: one tensor missing, one the config knows nothing of
        from safetensors.torch import load_file, save_file
        state = load_file(f / "model.safetensors")
        state["model.extra.weight"] = state.pop("model.norm.weight")
        save_file(state, f / "model.safetensors")
    msg = error_of(lambda: Qwen2.from_pretrained(variant("keys", other_keys)), CheckpointError)
    assert "does not match its config.json: missing ['model.norm.weight'], unexpected ['model.extra.weight']" in msg
    assert "must be a floating torch.dtype" in error_of(lambda: Qwen2.from_pretrained(tiny_ckpt, dtype="bfloat16"),
                                                        ValueError)
    if not torch.cuda.is_available():
        assert "CUDA is not available" in error_of(lambda: Qwen2.from_pretrained(tiny_ckpt, device="cuda"), ValueError)


def test_full_disk_in_safetensors_is_an_oserror(tmp_path, tiny_ckpt, monkeypatch):
    """safetensors reports a full disk with its own error type; callers (azr.py's one-line message) need ENOSPC."""
    import errno

    import model
    qwen = Qwen2.from_pretrained(tiny_ckpt)

    def full(state, file, metadata=None):
        raise RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                           "\"No space left on device\" })")
    monkeypatch.setattr(model, "save_file", full)
    with pytest.raises(OSError) as e:
        qwen.save_pretrained(tmp_path / "out")
    assert e.value.errno == errno.ENOSPC and not os.listdir(tmp_path / "out")  # no half-written file left


    def broken(state, file, metadata=None):  # any other error stays what it is; the partial temp file goes
        open(file, "wb").write(b"partial")
        raise RuntimeError("Error while serializing: tensor is not contiguous")
    monkeypatch.setattr(model, "save_file", broken)
    with pytest.raises(RuntimeError, match="not contiguous"):
        qwen.save_pretrained(tmp_path / "out")
    assert not os.listdir(tmp_path / "out")


def test_short_names():
    assert SHORT_NAMES["qwen2.5-7b"] == "Qwen/Qwen2.5-7B"
    assert SHORT_NAMES["qwen2.5-coder-7b"] == "Qwen/Qwen2.5-Coder-7B"
    assert SHORT_NAMES["qwen2.5-0.5b"] == "Qwen/Qwen2.5-0.5B"
    assert SHORT_NAMES["qwen2.5-7b-instruct"] == "Qwen/Qwen2.5-7B-Instruct"
    assert SHORT_NAMES["azr-coder-7b"] == "andrewzh/Absolute_Zero_Reasoner-Coder-7b"
    from eval.report import paper_key
    for name, hub_id in SHORT_NAMES.items():  # the eval table finds the paper's column for every short name
        if name.startswith("azr-") or name in ("qwen2.5-7b", "qwen2.5-coder-7b", "qwen2.5-7b-instruct"):
            assert paper_key(hub_id) == name and paper_key(name) == name


def test_tiny_checkpoint_deterministic_and_loadable(tmp_path, tiny_ckpt):
    again = make_tiny_checkpoint(tmp_path / "again")
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert open(os.path.join(tiny_ckpt, name), "rb").read() == open(os.path.join(again, name), "rb").read()
    other = Qwen2.from_pretrained(make_tiny_checkpoint(tmp_path / "other", seed=1, num_hidden_layers=3))
    assert other.config.num_hidden_layers == 3
    with pytest.raises(TypeError, match=r"make_tiny_checkpoint got unknown config fields \['hidden'\]"):
        make_tiny_checkpoint(tmp_path / "typo", hidden=32)
    with pytest.raises(ValueError, match=r"vocab_size=64 is smaller than the tokenizer \(\d+ tokens\)"):
        make_tiny_checkpoint(tmp_path / "small", vocab_size=64)
    tok = load_tokenizer(tiny_ckpt)
    qwen = Qwen2.from_pretrained(tiny_ckpt)
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token_id == tok.eos_token_id
    assert qwen.config.vocab_size >= len(tok) and qwen.config.eos_token_id == tok.eos_token_id
    text = "def f(x):\n    return sorted(x)[::-1]  # <think> reasoning </think>"
    ids = tok(text).input_ids
    assert tok.decode(ids) == text and len(ids) < len(text) / 2  # byte-level BPE with learned merges
    hf = transformers.Qwen2ForCausalLM.from_pretrained(tiny_ckpt).eval()
    with torch.no_grad():
        assert (qwen(torch.tensor([ids])) - hf(torch.tensor([ids])).logits).abs().max().item() < 1e-4


def test_reads_transformers4_style_config():
    # Qwen2.5-7B's published config.json (transformers 4.x layout: top-level rope_theta, rope_scaling null).
    from model import Qwen2Config
    d = {"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
         "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02,
         "intermediate_size": 18944, "max_position_embeddings": 131072, "max_window_layers": 28,
         "model_type": "qwen2", "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
         "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": False,
         "torch_dtype": "bfloat16", "transformers_version": "4.43.1", "use_cache": True,
         "use_sliding_window": False, "vocab_size": 152064, "rope_scaling": None}
    c = Qwen2Config.from_hf(d)
    assert (c.head_dim, c.rope_theta, c.tie_word_embeddings, c.vocab_size) == (128, 1e6, False, 152064)
    with pytest.raises(ValueError, match="rope scaling"):
        Qwen2Config.from_hf(dict(d, rope_scaling={"type": "yarn", "factor": 4.0}))


def test_tied_checkpoint_with_a_stored_lm_head_copy_loads(tmp_path, tiny_ckpt):
    """Some tied checkpoints also store lm_head.weight; the tie makes it redundant and loading must not refuse it."""
    from safetensors.torch import load_file, save_file
    folder = tmp_path / "copy"
    shutil.copytree(tiny_ckpt, folder)
    state = load_file(folder / "model.safetensors")
    state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    qwen = Qwen2.from_pretrained(folder)
    assert torch.equal(qwen.lm_head.weight, qwen.model.embed_tokens.weight)


def test_save_pretrained_removes_a_stale_shard_index(tmp_path, tiny_ckpt):
    """Saving over an earlier sharded save deletes its index, or loaders would read the old shards."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "old-00001.safetensors"}}))
    qwen = Qwen2.from_pretrained(tiny_ckpt)
    qwen.save_pretrained(folder)
    assert not (folder / "model.safetensors.index.json").exists()
    assert torch.equal(Qwen2.from_pretrained(folder).model.embed_tokens.weight, qwen.model.embed_tokens.weight)


def test_config_takes_the_first_of_several_eos_ids():
    from model import Qwen2Config
    d = {"model_type": "qwen2", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
         "intermediate_size": 128, "num_hidden_layers": 1, "vocab_size": 100, "eos_token_id": [7, 9]}
    assert Qwen2Config.from_hf(d).eos_token_id == 7


def test_config_without_tie_or_rope_keys_reads_as_transformers_does(tmp_path):
    """A config.json that leaves out tie_word_embeddings or rope_theta gets transformers' Qwen2Config defaults (untied,
    theta 10000), not the 0.5B values of our dataclass: a tied default would silently drop the stored lm_head."""
    hf, folder = make_reference(tmp_path, 64, 4, 2, 2, tied=False, theta=10000.0)
    config = json.load(open(os.path.join(folder, "config.json")))
    for key in ("tie_word_embeddings", "rope_parameters", "rope_theta"):
        config.pop(key, None)
    json.dump(config, open(os.path.join(folder, "config.json"), "w"))
    again = transformers.Qwen2ForCausalLM.from_pretrained(folder).eval()
    ours = Qwen2.from_pretrained(folder)
    assert (ours.config.tie_word_embeddings, ours.config.rope_theta) == (False, 10000.0)
    ids = torch.randint(0, hf.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert torch.equal(again(ids).logits, hf(ids).logits)  # transformers reads the same model back
        assert (ours(ids) - hf(ids).logits).abs().max().item() < 1e-4


def test_hub_name_with_a_partial_local_snapshot_downloads_the_rest(tmp_path, tiny_ckpt, monkeypatch):
    """The local HF cache is tried first, but a snapshot without its weights (only the tokenizer or config fetched
    before, or an interrupted download missing a shard) must not be returned while the hub can complete it. Offline,
    the partial folder is returned so that loading names the missing file."""
    import huggingface_hub
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(os.path.join(tiny_ckpt, "config.json"), partial / "config.json")
    shutil.copy(os.path.join(tiny_ckpt, "tokenizer.json"), partial / "tokenizer.json")
    calls = []

    def fake_snapshot_download(repo_id, allow_patterns=None, local_files_only=False):
        calls.append(local_files_only)
        if local_files_only:
            return str(partial)
        if online:
            return str(tiny_ckpt)
        raise OSError("no network")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    online = True
    assert resolve_checkpoint("qwen2.5-0.5b") == str(tiny_ckpt) and calls == [True, False]
    # a sharded snapshot with one shard missing is partial too
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    json.dump(index, open(partial / "model.safetensors.index.json", "w"))
    shutil.copy(os.path.join(tiny_ckpt, "model.safetensors"), partial / "model-00001-of-00002.safetensors")
    calls.clear()
    assert resolve_checkpoint("Qwen/Qwen2.5-0.5B") == str(tiny_ckpt) and calls == [True, False]
    online = False
    assert resolve_checkpoint("qwen2.5-0.5b") == str(partial)
    with pytest.raises(FileNotFoundError, match="shard model-00002-of-00002.safetensors .* is missing"):
        Qwen2.from_pretrained("qwen2.5-0.5b")
    # a complete local snapshot is used as it is, with no download
    calls.clear()
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, allow_patterns=None, local_files_only=False: calls.append(local_files_only)
                        or str(tiny_ckpt))
    assert resolve_checkpoint("qwen2.5-0.5b") == str(tiny_ckpt) and calls == [True]


    def offline_and_not_cached(repo_id, allow_patterns=None, local_files_only=False):
        raise OSError("not in the cache" if local_files_only else "no network")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline_and_not_cached)
    with pytest.raises(FileNotFoundError, match=r"^'qwen2.5-0.5b' is not a local folder and downloading "
                                                r"Qwen/Qwen2.5-0.5B from the Hugging Face hub failed \(OSError\)"):
        resolve_checkpoint("qwen2.5-0.5b")


def test_a_snapshot_without_config_json_is_partial(tmp_path, tiny_ckpt):
    """A cached hub snapshot holding the weights but no config.json is not used as it is (the hub completes it)."""
    import model
    shutil.copy(os.path.join(tiny_ckpt, "model.safetensors"), tmp_path / "model.safetensors")
    assert not model._has_weights(str(tmp_path))
    shutil.copy(os.path.join(tiny_ckpt, "config.json"), tmp_path / "config.json")
    assert model._has_weights(str(tmp_path))
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": ')  # a download cut off mid-file
    assert not model._has_weights(str(tmp_path))
