"""CUDA libraries that CTranslate2 opens by name, taken from pip's NVIDIA packages.

CTranslate2's PyPI wheels open cuBLAS 12 (``libcublas.so.12``) at their first GPU pass.
The ``nvidia-cublas-cu12`` package (a dependency of CUDA 12 builds of torch, or installed
by ``scripts/setup.sh`` on a GPU machine) holds it, but outside the loader's search path,
so without ``LD_LIBRARY_PATH`` Whisper could not use the GPU. Loading those files into
the process first, by path, lets CTranslate2's ``dlopen`` by name find them: the loader
matches a library already loaded by its soname. They are loaded ``RTLD_LOCAL`` (their
symbols stay out of the process-wide namespace, beside another CUDA's cuBLAS). A missing
package changes nothing; :func:`voice.stt.whisper.check_runs_on_cuda` still says what is
missing.
"""

from __future__ import annotations

import ctypes
import importlib.util
from pathlib import Path

CUBLAS_12 = ("libcublasLt.so.12", "libcublas.so.12")
"""In load order: libcublas needs libcublasLt."""


def pip_cublas_12() -> list[Path]:
    """The cuBLAS 12 files of an installed ``nvidia-cublas-cu12`` (``nvidia/cublas/lib``),
    in load order; empty when it is not installed (or lacks one of them)."""
    try:
        spec = importlib.util.find_spec("nvidia.cublas")
    except ModuleNotFoundError:  # no nvidia namespace at all
        return []
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        found = [Path(folder) / "lib" / name for name in CUBLAS_12]
        if all(path.is_file() for path in found):
            return found  # one copy only: the first folder that holds both
    return []


def preload_pip_cublas() -> list[Path]:
    """Load :func:`pip_cublas_12` into the process (``RTLD_LOCAL``); the files loaded.
    Idempotent (the loader keeps one copy of each file). Raises ``OSError`` for a file
    that cannot load."""
    paths = pip_cublas_12()
    for path in paths:
        ctypes.CDLL(str(path), mode=ctypes.RTLD_LOCAL)
    return paths
