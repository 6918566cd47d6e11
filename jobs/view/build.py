"""Write a static site of a store: the viewer's app and a few small index files; the maps stay in the store.

The site reads the store itself over plain HTTP, beside it (`../run.zarr`, the default for a local
store) or elsewhere (`store_url`, e.g. an S3 bucket over HTTPS): the app carries a reader of the
store's Zarr v3 arrays (`static/zarr.js`: shard indices and chunks by HTTP Range request, zstd
decoded by the vendored fzstd) and computes what the live server computes in Python (token labels,
words, rollout: `static/storesite.js`). Any example of the store opens; the examples table lists
the first `limit` scored ones (or `ids`). What the site writes: `index.html` (which store, and the
first reads started with the page), `static/site.js` (the app's scripts as one file: one request),
`static/app.css`, the vendored decoder's licence, and `data/overview.json`, `data/examples.json`,
`data/evaluations.json`.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from jobs.view.data import MAX_PAGE, ViewData
from jobs.view.evaluation import read_evaluations
from jobs.view.samples import static_top
from jobs.view.server import ASSETS
from vzcore.store.layout import REDUCED_LAYOUT

__all__ = ["SITE_SCRIPTS", "SITE_TOP", "build_site", "check_store_url", "default_store_url"]

# The app's scripts in the order they load (later ones call earlier ones), joined into `site.js`.
SITE_SCRIPTS = ("vendor/fzstd.js", "zarr.js", "storesite.js", "app.js", "example.js", "runs.js")
SITE_TOP = 100  # top examples a site carries per statistic, method and layer, from the aggregate's table


def check_store_url(url: str) -> str:
    """Return `url` if a page can read a store there (a relative path or an http(s) URL); raise
    ValueError otherwise (another scheme, or characters that do not belong in a URL)."""
    url = url.rstrip("/")
    if not url or re.search(r"[\s\"'<>\\]", url):
        raise ValueError(f"--store-url {url!r}: not a URL a page can read")
    scheme = urlsplit(url).scheme
    if scheme not in ("", "http", "https") or url.startswith("//"):
        raise ValueError(f"--store-url {url!r}: give an http(s) URL or a path relative to the site")
    return url


def default_store_url(store_path: str, out: Path) -> str:
    """Return where the site finds a local store: its path relative to the site's folder."""
    if "://" in store_path and not store_path.startswith("file://"):
        raise ValueError(
            f"{store_path} is not a local folder: say where a browser reads it with --store-url (https://...)"
        )
    local = Path(store_path.removeprefix("file://")).resolve()
    return Path(os.path.relpath(local, Path(out).resolve())).as_posix()


def _index_html(store_url: str) -> str:
    """The site's page: the store it reads, a Content-Security-Policy (a static server sends none),
    and the store's first objects preloaded (they are wanted before the app's script has run)."""
    origin = urlsplit(store_url)
    connect = "'self'" + (f" {origin.scheme}://{origin.netloc}" if origin.scheme else "")
    csp = (
        f"default-src 'self'; connect-src {connect}; img-src 'self' data: blob:; script-src 'self';"
        " style-src 'self'; object-src 'none'; base-uri 'none'"
    )
    url = html.escape(store_url, quote=True)
    preload = "".join(
        f'<link rel="preload" href="{url}/{key}" as="fetch" crossorigin="anonymous">\n'
        for key in ("zarr.json", "plan/zarr.json", "plan/c/0/0", "done/zarr.json", "done/c/0")
    )
    page = (ASSETS / "index.html").read_text()
    scripts = re.compile(r'<script defer src="static/[a-z]+\.js"></script>\n')
    head = (
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(csp, quote=True)}">\n'
        f'<meta name="vz-store" content="{url}">\n{preload}<script defer src="static/site.js"></script>\n'
    )
    page, count = scripts.subn("", page)
    if count == 0:
        raise RuntimeError("the app's index.html names no script")
    return page.replace("</head>", head + "</head>")


def build_site(
    data: ViewData,
    out: Path,
    limit: int = 200,
    ids: Sequence[int] | None = None,
    store_url: str | None = None,
) -> int:
    """Write the site of `data` into `out` (new or empty), reading the store at `store_url` (default:
    the local store's path relative to `out`); return how many examples its table lists."""
    out = Path(out)
    if data.store.layout == REDUCED_LAYOUT:  # the site's reader knows dense v3 parts only
        raise ValueError(
            f"a static site reads stores of dense maps; {data.store.path} keeps reduced maps (vz score --store"
            " top-k/auto or --targets: layout v4): browse it with the local server (vz view STORE) instead"
        )
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: a site is written into a new or empty folder")
    url = check_store_url(store_url) if store_url is not None else default_store_url(data.store.path, out)
    (out / "static").mkdir(parents=True, exist_ok=True)
    (out / "static/site.js").write_text("\n".join((ASSETS / name).read_text() for name in SITE_SCRIPTS))
    shutil.copy(ASSETS / "app.css", out / "static/app.css")
    shutil.copy(ASSETS / "vendor/fzstd.LICENSE", out / "static/fzstd.LICENSE")
    (out / "index.html").write_text(_index_html(url))
    limit = len(ids) if ids is not None else limit
    rows: list[dict] = []
    offset = 0
    while len(rows) < limit:
        page = data.examples(offset=offset, limit=MAX_PAGE, ids=ids)
        rows += [r for r in page["rows"] if r["status"] == "scored"]
        offset += MAX_PAGE
        if offset >= page["total"]:
            break
    rows = rows[:limit]
    # A static site answers no question over many examples (deciles, concordance, compare): those
    # need the server. Its top-k is the aggregate's table, when there is one that answers.
    top = static_top(data, SITE_TOP)
    overview = data.overview() | {"mode": "static", "compare": None, "store_url": url, "top": SITE_TOP if top else 0}
    # A site is for sharing: where the store and the aggregate lie on this machine stays here.
    overview["store"] = url if urlsplit(url).scheme else Path(data.store.path.rstrip("/")).name
    if overview["aggregate"]:
        overview["aggregate"] = overview["aggregate"] | {"path": Path(str(data.aggregate).rstrip("/")).name}
    _write(out / "data/overview.json", overview)
    _write(out / "data/evaluations.json", read_evaluations(data))
    _write(out / "data/examples.json", {"total": len(rows), "offset": 0, "rows": rows})
    if top:
        _write(out / "data/top.json", top)
    return len(rows)


def _write(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, allow_nan=False, default=str))
