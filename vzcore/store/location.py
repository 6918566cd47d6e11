"""Where a store lives: a local folder or an fsspec URL (`s3://bucket/run.zarr`).

The one place that tells the two apart, opens the Zarr group and reaches plain files beside it.
zarr and fsspec are imported inside functions so that `import vzcore` stays free of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["Location", "is_url"]


def is_url(path: str) -> bool:
    """Return True for a remote fsspec URL such as `s3://bucket/run.zarr` (a `file://` URL is local)."""
    return "://" in str(path) and not str(path).startswith("file://")


# What botocore raises when it finds no credentials, or only some (matched by name: vzcore does not import it).
_NO_CREDENTIALS = ("NoCredentialsError", "PartialCredentialsError")
CREDENTIALS_HELP = (
    "pass them as storage options (`--storage-option key=... --storage-option secret=...`, plus"
    " `endpoint_url=...` for a server other than AWS; in Python `storage_options={...}`) or set"
    " AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL)"
)


@dataclass(frozen=True)
class Location:
    """A store's path or URL and the fsspec options that reach it (never recorded anywhere)."""

    path: str
    storage_options: dict = field(default_factory=dict, hash=False, compare=False, repr=False)

    @property
    def is_url(self) -> bool:
        return is_url(self.path)

    def _options(self) -> dict:
        if "://" not in self.path:
            return {}
        options = dict(self.storage_options)
        if self.path.startswith(("s3://", "s3a://")):
            # s3fs asks for an object's size (a HEAD) before every whole-object read, to split large
            # ones; a store reads whole objects only for small ones (metadata, the index, short
            # arrays: maps are read by byte range), so that HEAD would double its requests.
            options.setdefault("max_concurrency", 1)
        return options

    def access_problem(self, err: BaseException) -> str | None:
        """Say what is missing when `err` (or an error it came from) is object storage refusing
        access; None otherwise (and always for a local folder). Without this, a store that cannot
        be reached for want of credentials reads as "no store"."""
        seen: BaseException | None = err if self.is_url else None
        while seen is not None:
            if type(seen).__name__ in _NO_CREDENTIALS:
                return f"no credentials for object storage ({seen}): {CREDENTIALS_HELP}"
            if isinstance(seen, PermissionError):
                return f"access denied ({seen}): check the credentials; {CREDENTIALS_HELP}"
            seen = seen.__cause__ or seen.__context__
        return None

    def absolute(self) -> str:
        """The path as another process in another working folder must see it."""
        return self.path if "://" in self.path else str(Path(self.path).resolve())

    def open_group(self, mode: Literal["r", "r+", "a", "w", "w-"] = "r", path: str | None = None):
        """Open the store's root group (or the group at `path` inside it) with zarr.

        Every vz store is Zarr v3: saying so spares zarr its probes for v2 metadata (three reads
        that miss, each a request on object storage)."""
        import zarr

        options = self._options()
        kw: dict[str, Any] = {"storage_options": options} if "://" in self.path else {}
        return zarr.open_group(store=self.path, mode=mode, path=path, zarr_format=3, **kw)

    def filesystem(self, name: str = "") -> tuple[Any, str]:
        """Return `(fs, path)` of `name` inside the store (the store itself for `""`)."""
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.path, **self._options())
        return fs, f"{root.rstrip('/')}/{name}" if name else root

    def open_file(self, name: str, mode: str = "rb"):
        """Open the plain file `name` inside the store (e.g. `tables/examples/00000.parquet`)."""
        import fsspec

        return fsspec.open(f"{self.path.rstrip('/')}/{name}", mode, **self._options())
