"""Shared fixtures: where the benchmark data lives, and a tiny random Qwen2 checkpoint."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    # The benchmark data and AZR seed buffers live beside the repo in ../shared/data (never copied in).
    d = Path(os.environ.get("NANOAZR_DATA", REPO.parent / "shared" / "data"))
    if not d.is_dir():
        pytest.skip(f"benchmark data not found at {d}; set NANOAZR_DATA")
    return d


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny random Qwen2 checkpoint folder (config.json, model.safetensors, tokenizer files)."""
    from tiny import make_tiny_checkpoint
    return Path(make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt"))
