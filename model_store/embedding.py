"""Make a trained model the default shipped inside the package: fp16 weights, same manifest."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from model_store.checkpoint import MANIFEST, Checkpoint, verify, write_manifest


def embed_default(source: Checkpoint, target: Path) -> Checkpoint:
    """Copy ``source`` into ``target`` with weights halved to fp16 (the package must stay small).

    The manifest keeps the source's training record and metrics, and names its origin.
    """
    return halved_copy(source, target, "default", "rerun `prompt-models embed`")


def halved_copy(source: Checkpoint, target: Path, name: str, repair_hint: str) -> Checkpoint:
    """``source`` as checkpoint ``name`` in ``target``, fp16 weights, replacing ``target``."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source.path, tmp, ignore=shutil.ignore_patterns(MANIFEST, "*.png", ".*"))
    weights = tmp / "model.safetensors"
    tensors = load_file(str(weights))
    halved = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(halved, str(weights), metadata={"format": "pt"})
    fields = {k: v for k, v in source.manifest.items() if k not in {"files", "name", "created"}}
    fields["embedded_from"] = {"name": source.name, "created": source.manifest.get("created")}
    fields["dtype"] = "float16"
    write_manifest(tmp, name, **fields)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return verify(target, name, repair_hint)
