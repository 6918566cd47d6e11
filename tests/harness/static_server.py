"""A plain static file server that answers byte ranges, as web servers and object storage do: what
a static site of `vz view --build` is served by in the tests and the benchmark (the standard
library's `http.server` answers every GET whole)."""

from __future__ import annotations

import functools
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["RangeHandler", "serve_folder"]


class RangeHandler(SimpleHTTPRequestHandler):
    """Answer one byte range (`bytes=a-b`, `a-`, `-n`) with 206, anything else as `http.server`
    does; count the range requests, so that a test can tell a site used them."""

    disable_nagle_algorithm = True  # as a real server: no delayed-ACK stall between headers and body

    ranges = 0

    def log_message(self, format: str, *args) -> None:  # quiet: a page makes many requests
        pass

    def do_GET(self) -> None:
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        path = Path(self.translate_path(self.path))
        if match is None or not path.is_file() or match.groups() == ("", ""):
            return super().do_GET()
        size = path.stat().st_size
        first, last = match.groups()
        if first == "":  # the last `last` bytes
            start, stop = max(0, size - int(last)), size
        else:
            start, stop = int(first), min(size, int(last or size - 1) + 1)
        if start >= stop:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        type(self).ranges += 1
        with path.open("rb") as f:
            f.seek(start)
            body = f.read(stop - start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body)


def serve_folder(folder: Path, handler: type[SimpleHTTPRequestHandler] = RangeHandler) -> ThreadingHTTPServer:
    """Serve `folder` as a plain static file server on loopback in a daemon thread (stop it with `shutdown`)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
