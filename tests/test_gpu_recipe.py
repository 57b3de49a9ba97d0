"""scripts/gpu_recipe.py on CPU with ``tiny``: what a lent GPU would run, end to end.

The device tool brings back at most 8 files of at most 16 MiB, named in letters, digits,
'.', '_' and '-': the parts must fit, and unpacking them must give a verified fp16 model.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from tests.conftest import REPO_ROOT, subprocess_env
from tests.study_prompts import write_prompts

RECIPE = REPO_ROOT / "scripts" / "gpu_recipe.py"
STEPS = 10


def _recipe(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(RECIPE), *args]
    env = subprocess_env(OMP_NUM_THREADS="1")
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)


def test_the_recipe_trains_packs_and_unpacks_a_verified_fp16_model(tmp_path: Path) -> None:
    corpus = write_prompts(tmp_path / "prompts.txt", count=2000)
    out = tmp_path / "out"
    trained = _recipe(
        *["--store", str(tmp_path / "gpu-store"), "train", "--preset", "tiny"],
        *["--data", str(corpus), "--out", str(out), "--budget-minutes", "5"],
        *["--reserve-minutes", "1", "--calibration-steps", "2", "--max-steps", str(STEPS)],
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    files = sorted(out.iterdir())
    assert len(files) <= 8
    for file in files:
        assert re.fullmatch(r"[A-Za-z0-9._-]+", file.name) and file.stat().st_size <= 16 << 20
    report = json.loads((out / "recipe.json").read_text())
    assert report["preset"]["max_steps"] == STEPS and report["tokens_per_s_measured"] > 0

    unpacked = _recipe("--store", str(tmp_path / "home"), "unpack", str(out))
    assert unpacked.returncode == 0, unpacked.stderr
    model_dir = tmp_path / "home" / "models" / "tiny"
    assert unpacked.stdout.strip() == str(model_dir)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["dtype"] == "float16"
    assert manifest["training"]["command"].endswith(f"--max-steps {STEPS}")
    assert manifest["metrics"] == report["metrics"]
    weights = load_file(model_dir / "model.safetensors")
    assert {str(tensor.dtype) for tensor in weights.values()} == {"torch.float16"}

    again = _recipe("--store", str(tmp_path / "home"), "unpack", str(out))
    assert again.returncode == 1 and "exists; remove it first" in again.stderr
    part = next(out.glob("tiny.tar.part-*"))
    damaged = bytearray(part.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    part.write_bytes(bytes(damaged))
    corrupt = _recipe("--store", str(tmp_path / "other"), "unpack", str(out))
    assert corrupt.returncode == 1 and "do not match tiny.tar.sha256" in corrupt.stderr
    assert not (tmp_path / "other" / "models" / "tiny").exists()
