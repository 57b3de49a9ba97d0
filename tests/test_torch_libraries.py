"""torch's libraries found for loading ahead of ``import torch`` (server/torch_libraries.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from server import torch_libraries


def test_the_files_are_torchs_global_deps_then_its_extension() -> None:
    (deps, deps_mode), (extension, extension_mode) = torch_libraries.libraries()
    assert deps.name == "libtorch_global_deps.so" and deps_mode & os.RTLD_GLOBAL
    assert extension.name.startswith("_C.") and not extension_mode & os.RTLD_GLOBAL


def test_torch_imports_and_computes_after_its_libraries_were_loaded_ahead() -> None:
    code = (
        "from server import torch_libraries\n"
        "torch_libraries.preload()\n"
        "import torch\n"
        "assert float(torch.ones(3).sum()) == 3.0\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
