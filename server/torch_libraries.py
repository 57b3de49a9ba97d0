"""Load torch's shared libraries before ``import torch``, without holding the GIL.

Importing an extension module holds the GIL while the dynamic loader maps and relocates it,
and the one behind ``torch._C`` pulls in libtorch_cpu: on these machines that froze every
other thread, the event loop and the model thread serving the statistics included, for up to
a second (0.2 s at most once this runs first). A call through ctypes releases the GIL, so
``dlopen`` called that way does the same work while requests go on being answered; ``import
torch`` then finds the libraries loaded. Same files, same flags as torch's own import: its
global dependencies with ``RTLD_GLOBAL``, ``torch._C`` local. Where this does not apply (not
Linux, no torch, a layout it does not know), it does nothing and the import does it all.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import importlib.util
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def libraries() -> list[tuple[Path, int]]:
    """The files ``import torch`` loads first, with the flags it loads them with."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return []
    root = Path(spec.origin).parent
    found = [(root / "lib" / "libtorch_global_deps.so", os.RTLD_GLOBAL | os.RTLD_NOW)]
    found += [
        (root / f"_C{suffix}", os.RTLD_NOW) for suffix in importlib.machinery.EXTENSION_SUFFIXES
    ]
    return [(path, mode) for path, mode in found if path.is_file()]


def preload() -> None:
    """``dlopen`` torch's libraries with the GIL released (see the module docstring)."""
    if sys.platform != "linux" or "torch" in sys.modules:
        return
    try:
        dlopen = ctypes.CDLL(None).dlopen
    except AttributeError:  # a C library without dlopen in the global scope
        return
    dlopen.restype = ctypes.c_void_p
    dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    for path, mode in libraries():
        if not dlopen(os.fsencode(path), mode):
            log.debug("could not preload %s; the import will load it", path)
            return
