"""Weights load from safetensors only: a pickle never reaches torch.load (issue 19, item 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch


@pytest.fixture()
def pickled_model_dir(tmp_path: Path, default_model_dir: Path) -> Path:
    """The default model's config and tokenizer with its weights as a pickle only."""
    directory = tmp_path / "pickled"
    directory.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (directory / name).write_bytes((default_model_dir / name).read_bytes())
    torch.save({"transformer.wte.weight": torch.zeros(1)}, directory / "pytorch_model.bin")
    return directory


def test_no_loader_unpickles_weights(
    pickled_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_store.loading import load_causal_lm
    from server.engine.hf_runner import HFRunner

    unpickled: list[Any] = []
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: unpickled.append(args))
    for load in (HFRunner.from_directory, load_causal_lm):
        with pytest.raises(OSError, match="safetensors"):
            load(pickled_model_dir)
    assert unpickled == []
