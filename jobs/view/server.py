"""The viewer's local server: read-only, its own routes only, on loopback unless told otherwise.

Python's own `http.server` (a threading server) serves it: the viewer answers a handful of GET
routes for one person at a time, so a web framework would add a dependency and nothing it needs.
Every route is matched whole (`ROUTES`); a path that matches none is a 404, so nothing outside the
viewer's assets and what `ViewData` reads from the store and its aggregate can be reached. Assets
are resolved and must stay inside the assets folder (`..`, encoded or not, and symlinks out are
refused). Only GET and HEAD are answered. Bound to another address than loopback, every request
must carry the access token (`?token=` once, then the cookie the server sets).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from jobs.view.compare import compare
from jobs.view.data import ViewData, ViewError
from jobs.view.evaluation import read_evaluations
from jobs.view.samples import decile_sample, top_sample

__all__ = ["ASSETS", "LOOPBACK", "ViewServer", "make_server", "safe_asset"]

ASSETS = Path(__file__).parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# No inline script or style, no other origin: a text that slipped into markup still could not run.
CSP = "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; object-src 'none'"
_ID = r"(\d{1,12})"
_NAME = r"([A-Za-z0-9_.-]{1,64})"


def safe_asset(root: Path, name: str) -> Path | None:
    """Return the file `name` inside `root`, or None when it is missing or resolves outside `root`."""
    base = root.resolve()
    path = (base / name).resolve()  # follows symlinks: one pointing out lands outside `base`
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def _int(params: dict, key: str) -> int | None:
    value = params.get(key, [""])[0]
    if value == "":
        return None
    if not re.fullmatch(r"-?\d{1,12}", value):
        raise ViewError(f"{key} must be an integer, got {value!r}")
    return int(value)


class ViewServer(ThreadingHTTPServer):
    """The HTTP server of one `ViewData`; `token` is None on loopback."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], data: ViewData, token: str | None, assets: Path = ASSETS) -> None:
        self.data = data
        self.token = token
        self.assets = assets
        self.loopback = address[0] in LOOPBACK
        super().__init__(address, Handler)

    def routes(self) -> list[tuple[re.Pattern, Callable]]:
        d = self.data
        one = _str
        routes = [
            (r"/data/overview\.json", lambda p: d.overview() | {"mode": "live"}),
            (r"/data/examples\.json", lambda p: d.examples(**_example_query(p))),
            (
                r"/data/top\.json",
                lambda p: top_sample(
                    d, one(p, "statistic"), one(p, "method"), _int(p, "layer") or 0, _int(p, "k") or 20
                ),
            ),
            (
                r"/data/concordance\.json",
                lambda p: d.concordance(
                    one(p, "method"),
                    _int(p, "layer") or 0,
                    word=one(p, "word"),
                    token=one(p, "token"),
                    limit=_int(p, "limit") or 100,
                ),
            ),
            (
                r"/data/deciles\.json",
                lambda p: decile_sample(
                    d.store,
                    one(p, "statistic"),
                    one(p, "method"),
                    _int(p, "layer") or 0,
                    _int(p, "per") or 2,
                    _int(p, "scan") or 5000,
                ),
            ),
            (r"/data/evaluations\.json", lambda p: read_evaluations(d)),
            (
                r"/data/compare\.json",
                lambda p: compare(
                    d, one(p, "method"), _int(p, "layer") or 0, _int(p, "k") or 20, _int(p, "scan") or 2000
                ),
            ),
        ]
        # One example's tokens and maps, of this store and (under `other/`) of the one compared with.
        for prefix, data in (("", d), ("other/", d.other)):
            if data is None:
                continue
            routes += [
                (rf"/data/{prefix}example/{_ID}\.json", lambda p, i, data=data: data.example(int(i))),
                (
                    rf"/data/{prefix}maps/{_ID}/{_NAME}/(token|word)/(layer|rollout)/(\d{{1,4}})\.f32",
                    lambda p, i, m, u, mode, layer, data=data: data.maps(int(i), m, int(layer), u, mode).tobytes(),
                ),
            ]
        if d.other is not None:
            routes.append((r"/data/other/overview\.json", lambda p: d.other.overview()))
        return [(re.compile(pattern), answer) for pattern, answer in routes]


def _same(given: str, token: str) -> bool:
    """Compare in constant time, as bytes (`compare_digest` refuses text that is not ASCII)."""
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def _str(params: dict, key: str) -> str:
    return params.get(key, [""])[0]


def _example_query(p: dict) -> dict:
    return {
        "q": _str(p, "q"),
        "min_len": _int(p, "min_len"),
        "max_len": _int(p, "max_len"),
        "sort": p.get("sort", ["example_id"])[0],
        "desc": p.get("desc", ["0"])[0] == "1",
        "offset": _int(p, "offset") or 0,
        "limit": _int(p, "limit") or 50,
    }


class Handler(BaseHTTPRequestHandler):
    server: ViewServer
    server_version = "vz-view"
    protocol_version = "HTTP/1.1"  # keep-alive: a page's dozen requests share one connection
    # Headers and body go out as two writes: with Nagle's algorithm on, the body then waits for the
    # browser's delayed ACK of the headers (40 ms on Linux), on every response of a kept-alive connection.
    disable_nagle_algorithm = True
    sys_version = ""

    def log_message(self, format: str, *args) -> None:  # one line per error only; a page makes many requests
        if args and str(args[1] if len(args) > 1 else "").startswith(("4", "5")):
            sys.stderr.write(f"vz view: {self.command} {self.path.split('?')[0]} -> {args[1]}\n")

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        url = urlsplit(self.path)
        params = parse_qs(url.query)
        cookie = self._allowed(params)
        if cookie is None:
            return self._send(403, b"forbidden: this server needs its access token (?token=...)\n", "text/plain")
        path = unquote(url.path)
        try:
            body, kind = self._route(path, params)
        except ViewError as err:
            return self._send(err.status, f"{err}\n".encode(), "text/plain")
        except Exception as err:  # a store that cannot be read: one line to the page, not a dropped connection
            return self._send(500, f"{type(err).__name__}: {err}\n".encode(), "text/plain")
        if body is None:
            return self._send(404, b"not found\n", "text/plain")
        self._send(200, body, kind, head=head, cookie=cookie)

    def _method_not_allowed(self) -> None:
        self.close_connection = True  # its body, if any, is never read: the connection cannot go on
        self._send(405, b"read-only\n", "text/plain")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed

    def _allowed(self, params: dict) -> str | None:
        """Return "" (allowed) or the cookie to set; None when the request must be refused."""
        if self.server.loopback:
            # A loopback server answers only its own names: a page elsewhere that rebinds its
            # domain to 127.0.0.1 sends another Host and gets nothing.
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
            return "" if host in LOOPBACK else None
        token = self.server.token or ""
        if _same(params.get("token", [""])[0], token):
            return f"vz_token={token}; HttpOnly; SameSite=Strict; Path=/"
        for part in (self.headers.get("Cookie") or "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == "vz_token" and _same(value, token):
                return ""
        return None

    def _route(self, path: str, params: dict) -> tuple[bytes | None, str]:
        if path in ("/", "/index.html"):
            path = "/static/index.html"
        if path.startswith("/static/"):
            found = safe_asset(self.server.assets, path[len("/static/") :])
            if found is None:
                return None, ""
            return found.read_bytes(), TYPES.get(found.suffix, "application/octet-stream")
        for pattern, answer in self.server.routes():
            match = pattern.fullmatch(path)
            if match:
                out = answer(params, *match.groups())
                if isinstance(out, bytes):
                    return out, "application/octet-stream"
                return json.dumps(out, allow_nan=False, default=str).encode(), "application/json"
        return None, ""

    def _send(self, status: int, body: bytes, kind: str, head: bool = False, cookie: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        if not head:
            self.wfile.write(body)


def make_server(data: ViewData, host: str = "127.0.0.1", port: int = 8765) -> ViewServer:
    """Return a server of `data` bound to `host:port` (port 0: a free one); off loopback, with a fresh token."""
    token = None if host in LOOPBACK else secrets.token_urlsafe(24)
    return ViewServer((host, port), data, token)
