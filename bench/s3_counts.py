"""A local S3 server (moto) for benchmarks, and the HTTP requests it served per operation, by kind.

    with local_s3() as s3:                       # moto_server on loopback, one bucket; ended by its pid
        with s3.counting() as counts:
            vzcore.open_store(s3.url("run.zarr"), storage_options=s3.storage_options)
        print(counts)                            # Counter({'GET': 3, 'HEAD': 1, ...})

Requests are counted from the server's own log (one line per request), so whatever process made
them counts: this one, a subprocess, a Ray worker. Between operations a marker request (a HEAD on a
bucket name nothing else uses) is sent and waited for in the log, so each operation's lines are
exactly those between its two markers.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["LocalS3", "have_moto", "local_s3", "request_kind"]

BUCKET = "vzbench"
_MARKER = "vz-marker-"
# werkzeug's request line, e.g. `"GET /vzbench/s1000.zarr/zarr.json HTTP/1.1" 200 -` (maybe ANSI-coloured).
_LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+) HTTP/[0-9.]+')


def _moto_server() -> Path:
    return Path(sys.executable).with_name("moto_server")


def have_moto() -> bool:
    """Return True when a moto server and s3fs can be used here."""
    try:
        import s3fs  # noqa: F401
    except ImportError:
        return False
    return _moto_server().exists()


def request_kind(method: str, target: str) -> str:
    """Name an S3 request: GET, HEAD, PUT, LIST (a listing GET), DELETE (one object or a batch POST)."""
    query = target.partition("?")[2]
    keys = {kv.partition("=")[0] for kv in query.split("&") if kv}
    if method == "GET" and keys & {"list-type", "prefix", "delimiter", "marker", "continuation-token"}:
        return "LIST"
    if method == "POST" and "delete" in keys:
        return "DELETE"
    return method


class LocalS3:
    """A running moto server: its endpoint, fsspec storage options, and request counting."""

    def __init__(self, endpoint: str, log: Path) -> None:
        self.endpoint = endpoint
        self.storage_options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint}}
        self._log = log
        self._offset = 0
        self._markers = 0

    def url(self, name: str) -> str:
        return f"s3://{BUCKET}/{name}"

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options)

    def _mark(self) -> list[tuple[str, str]]:
        """Send a marker request; return the requests logged since the previous marker."""
        self._markers += 1
        name = f"{_MARKER}{self._markers}"
        with suppress(urllib.error.HTTPError):  # moto answers 404 (no such bucket): the line is logged all the same
            urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{name}", method="HEAD"), timeout=10)
        lines: list[tuple[str, str]] = []
        pos = self._offset
        deadline = time.monotonic() + 30
        with open(self._log, "rb") as f:
            while True:
                f.seek(pos)
                data = f.read()
                for raw in data[: data.rfind(b"\n") + 1].splitlines(keepends=True):  # whole lines only
                    pos += len(raw)
                    m = _LINE.search(raw.decode(errors="replace"))
                    if not m:
                        continue
                    target = m.group(2).lstrip("/")
                    if target.partition("?")[0] == name:
                        self._offset = pos
                        return lines
                    if not target.startswith(_MARKER):
                        lines.append((m.group(1), m.group(2)))
                if time.monotonic() > deadline:
                    raise TimeoutError(f"marker {name} never reached the moto server's log {self._log}")
                time.sleep(0.01)

    @contextmanager
    def counting(self) -> Iterator[Counter]:
        """Count the requests served while the block runs, by kind (`request_kind`); filled on exit."""
        self._mark()
        counts: Counter = Counter()
        try:
            yield counts
        finally:
            counts.update(request_kind(method, target) for method, target in self._mark())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_s3() -> Iterator[LocalS3]:
    """Start moto_server on a free loopback port with one empty bucket; end it by its pid on exit."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="vz-moto-") as tmp:
        log = Path(tmp) / "moto.log"
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [str(_moto_server()), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=err
            )
        try:
            s3 = LocalS3(f"http://127.0.0.1:{port}", log)
            for _ in range(300):
                try:
                    s3.filesystem().mkdir(BUCKET)
                    break
                except Exception as err:
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"moto_server exited ({proc.returncode}): {log.read_text()[-2000:]}"
                        ) from err
                    time.sleep(0.1)
            else:
                raise RuntimeError("moto_server did not start in 30 s")
            yield s3
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
