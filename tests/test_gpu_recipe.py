"""scripts/gpu_recipe.py on CPU with ``tiny``: what a lent GPU would run, end to end.

The device tool brings back at most 8 files of at most 16 MiB, named in letters, digits,
'.', '_' and '-': the parts must fit, and unpacking them must give a verified fp16 model.
The script runs in this process (torch is loaded once) with its own store.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest
from safetensors.torch import load_file

from model_store.paths import STORE_ENV
from tests.conftest import REPO_ROOT
from tests.study_prompts import write_prompts

RECIPE = REPO_ROOT / "scripts" / "gpu_recipe.py"
STEPS = 10


def _load_recipe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_recipe", RECIPE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recipe_trains_packs_and_unpacks_a_verified_fp16_model(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recipe = _load_recipe()
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "unused"))  # the script sets it; undone after
    corpus = write_prompts(tmp_path / "prompts.txt", count=2000)
    out = tmp_path / "out"
    train_args = [
        *["--store", str(tmp_path / "gpu-store"), "train", "--preset", "tiny"],
        *["--data", str(corpus), "--out", str(out), "--budget-minutes", "5"],
        *["--reserve-minutes", "1", "--calibration-steps", "2", "--max-steps", str(STEPS)],
    ]
    assert recipe.main(train_args) == 0, capsys.readouterr().err[-3000:]
    files = sorted(out.iterdir())
    assert len(files) <= 8
    for file in files:
        assert re.fullmatch(r"[A-Za-z0-9._-]+", file.name) and file.stat().st_size <= 16 << 20
    report = json.loads((out / "recipe.json").read_text())
    assert report["preset"]["max_steps"] == STEPS and report["tokens_per_s_measured"] > 0

    # a rerun on the same machine keeps the run it sized (here: finds it published)
    rerun = [*train_args[:-1], str(STEPS // 2)]
    assert recipe.main(rerun) == 0, capsys.readouterr().err[-3000:]
    assert json.loads((out / "recipe.json").read_text())["preset"]["max_steps"] == STEPS
    capsys.readouterr()

    assert recipe.main(["--store", str(tmp_path / "home"), "unpack", str(out)]) == 0
    model_dir = tmp_path / "home" / "models" / "tiny"
    assert capsys.readouterr().out.strip() == str(model_dir)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["dtype"] == "float16"
    assert manifest["training"]["command"].endswith(f"--max-steps {STEPS}")
    assert manifest["metrics"] == report["metrics"]
    weights = load_file(model_dir / "model.safetensors")
    assert {str(tensor.dtype) for tensor in weights.values()} == {"torch.float16"}

    assert recipe.main(["--store", str(tmp_path / "home"), "unpack", str(out)]) == 1
    assert "exists; remove it first" in capsys.readouterr().err
    part = next(out.glob("tiny.tar.part-*"))
    damaged = bytearray(part.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    part.write_bytes(bytes(damaged))
    assert recipe.main(["--store", str(tmp_path / "other"), "unpack", str(out)]) == 1
    assert "do not match tiny.tar.sha256" in capsys.readouterr().err
    assert not (tmp_path / "other" / "models" / "tiny").exists()
