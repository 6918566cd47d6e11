"""What a store's scores depend on, as hashes: a rerun that would mix in other scores is refused.

`data_identity` covers what the shared example and token arrays depend on besides the rows (the
cut into parts, the model's files, the token limit, the stored layers); the rows are identified by
content, per part (`data_hash`, checked by the driver on every rerun). Each method's identity adds
its options, the precision and the store dtype. Package versions are recorded and warned
about, never refused.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from jobs.score.validate import CheckedJob, JobError

__all__ = ["check_identity", "fingerprint", "hashed_identities", "identities", "versions"]


def fingerprint(files: str) -> str:
    """Hash every file of a local model (weights, config, tokenizer); a hub name hashes as its name."""
    path = Path(files)
    h = hashlib.sha256()
    found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
    if not found:
        h.update(f"name:{files}".encode())
    for p in found:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        with p.open("rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
    return h.hexdigest()[:32]


def versions() -> dict:
    """Return the versions of Python and of the packages the scores depend on."""
    import importlib.metadata as md
    import platform

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("vzcore", "torch", "transformers", "zarr", "ray", "datasets", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def hashed_identities(data: dict, per_method: dict[str, dict]) -> tuple[str, dict[str, str]]:
    """Return `(data_identity, {method: identity})`: the hash of `data`, and per method the hash of that
    identity, the method's name and what else its maps depend on (`per_method[method]`). Every job kind
    hashes the same way, so a store's identities never depend on which driver wrote it."""
    data_id = _hash(data)
    return data_id, {m: _hash({"data": data_id, "method": m, **extra}) for m, extra in per_method.items()}


def identities(job: CheckedJob) -> tuple[str, dict[str, str]]:
    """Return `(data_identity, {method: identity})` of a checked job."""
    cfg = job.cfg
    # The rows themselves are identified by content, part by part (`data_hash`), not by the
    # dataset's name: the same file moved is the same data, another file at the same path is not.
    data = {
        "part_size": cfg.part_size,
        "part_mb": cfg.part_mb,
        "model": fingerprint(job.model.files),
        "max_length": cfg.max_length,
        "layers": job.layers,
    }
    # Reduced forms and targeted rows change the part arrays; a dense store of every row keeps its identity.
    if job.form.reduced:
        data["store_form"] = job.form.to_attr()
    if not job.targets.all_rows:
        data["targets"] = job.targets.to_attr()
    per_method = {
        m: {"options": job.method_options[m], "precision": cfg.precision, "store_dtype": cfg.store_dtype}
        for m in cfg.methods
    }
    return hashed_identities(data, per_method)


RUN_IDENTITY = "part size, model weights/tokenizer, max length, layers, --store form or --targets"


def check_identity(stored: dict, data_id: str, identity: dict[str, str], covers: str = RUN_IDENTITY) -> None:
    """Refuse a store (its root attributes `stored`) made by another run (`covers` names what the data
    identity holds, for the message); warn on other versions."""
    if stored.get("data_identity") != data_id:
        raise JobError(
            f"the store holds another run ({covers} differ); pass --overwrite to replace it, or choose another --out"
        )
    clash = [m for m, h in identity.items() if m in stored.get("identity", {}) and stored["identity"][m] != h]
    if clash:
        raise JobError(
            f"the store's {clash} scores were made with other options, precision or store dtype; "
            "pass --overwrite to replace the store, or choose another --out"
        )
    if stored.get("versions") and stored["versions"] != versions():
        warnings.warn(
            f"package versions differ from the store's: {stored['versions']} (now {versions()})", stacklevel=3
        )
