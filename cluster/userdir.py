"""A private folder per user for what a run leaves on this machine: the records of the processes a
local cluster started, and the tracebacks of unexpected errors.

It lives in the system temporary directory (writable even where HOME is not), one per user id, and
is used only while it is a real folder of this user that no one else can read or write: a shared
temporary directory lets anyone create a folder of that name first.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["UnsafeFolderError", "private_dir"]


class UnsafeFolderError(RuntimeError):
    """The per-user folder exists but is not this user's private folder: nothing is read from or written to it."""


def private_dir(name: str) -> Path:
    """Return `<tmp>/vz-<uid>/<name>`, made mode 0700 if missing; raise `UnsafeFolderError` if it is not private."""
    base = Path(tempfile.gettempdir()) / f"vz-{os.getuid()}"
    for folder in (base, base / name):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
        _check_private(folder)
    return base / name


def _check_private(folder: Path) -> None:
    st = os.lstat(folder)  # not followed: a link to someone else's folder is refused, not trusted
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeFolderError(f"{folder} is not a folder (a link or a file): remove it, then rerun")
    if st.st_uid != os.getuid():
        raise UnsafeFolderError(f"{folder} belongs to user id {st.st_uid}, not to you: remove it, then rerun")
    if st.st_mode & 0o077:
        raise UnsafeFolderError(
            f"{folder} is open to other users (mode {stat.S_IMODE(st.st_mode):04o}): `chmod 700 {folder}`, then rerun"
        )
