"""How fast the viewer draws, measured in a real headless Chromium (the system's `chromium`).

    python -m bench.view [--examples 1000000] [--cache ~/.cache/vz-bench] [--repeat 5]
    python -m bench.view --quick        # 2,000 examples, one try each: what tests/bench runs

Each figure is the time from a page's navigation start to the first frame after it drew (the app
marks `vz-rendered`), over a fresh tab each try, served by `vz view`'s server on loopback:
- the overview of a store of `--examples` random examples (`tests.harness.synthetic_store`; built
  once into `--cache`, how long it took is printed), with an aggregate's curves;
- its examples table (the first page: the examples table's id, length and text columns are read);
- an example page's first heatmap at n = 16, 128 and 512 tokens: a different example each try (the
  server's cache never holds it). The long examples live in stores of their own (a store of 10⁶
  examples of 512 tokens would hold 10¹¹ values); reading one example touches only its part.
- the same pages of a static site (`vz view --build`) beside each store, served by a plain file
  server that answers Range requests (`tests.harness.static_server`): the page reads the store's
  own chunks and decodes them itself.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from jobs.view import ViewData, build_site, make_server
from tests.harness.static_server import serve_folder
from tests.harness.synthetic_store import write_random_store
from vzcore.store.reader import open_store

METHODS = ("value_zeroing", "attention", "attention_norm")
LAYERS = 6
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARGS += ["--no-first-run", "--disable-gpu"]


def cached_store(folder: Path, name: str, count: int, lengths: tuple[int, int], part_size: int) -> tuple[Path, float]:
    """Return a random store (built once; a `built` file marks it whole) and the seconds its build took."""
    path = folder / f"{name}.zarr"
    mark = folder / f"{name}.built"
    if mark.exists():
        return path, float(mark.read_text())
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    write_random_store(path, count, methods=METHODS, num_layers=LAYERS, lengths=lengths, part_size=part_size)
    seconds = time.perf_counter() - t0
    mark.write_text(f"{seconds:.1f}")
    return path, seconds


def cached_aggregate(folder: Path, store: Path) -> Path:
    """An aggregate of `store` (its tables have one row per method, layer and bucket: the same size
    whatever the corpus size, so the first parts stand for all)."""
    from jobs.aggregate import AggregateConfig, aggregate

    out = folder / f"{store.stem}.aggregate"
    if not (out / "summary.json").exists():
        aggregate(str(store), out, config=AggregateConfig(plots=False), log=lambda *a: None)
    return out


class Viewer:
    """A viewer server of one store in a thread of this process."""

    def __init__(self, store: Path, aggregate: Path | None = None) -> None:
        self.server = make_server(ViewData(open_store(store), aggregate), "127.0.0.1", 0)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Site:
    """A static site of one store, built afresh beside the stores (`cache/sites/NAME`, reading
    `../../NAME.zarr`), and the cache folder served by a range-capable static file server."""

    def __init__(self, cache: Path, store: Path, aggregate: Path | None = None) -> None:
        folder = cache / "sites" / store.stem
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(exist_ok=True)
        build_site(ViewData(open_store(store), aggregate), folder, limit=200)
        self.server = serve_folder(cache)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sites/{store.stem}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def paint_ms(browser, url: str, ready: str) -> float:
    """Open `url` in a fresh tab; return milliseconds from navigation start to the `vz-rendered` mark."""
    page = browser.new_page()
    try:
        page.goto(url)
        page.wait_for_selector(ready)
        page.wait_for_function("() => performance.getEntriesByName('vz-rendered').length > 0")
        return float(page.evaluate("() => performance.getEntriesByName('vz-rendered')[0].startTime"))
    finally:
        page.close()


def step_ms(browser, url: str, hashes: list[str]) -> list[float]:
    """Open `url`, then go to each of `hashes` in the same tab (as the n/p keys do); return the
    milliseconds from each route change to the first frame after it drew."""
    page = browser.new_page()
    try:
        page.goto(url)
        page.wait_for_function("() => performance.getEntriesByName('vz-rendered').length > 0")
        times = []
        for k, h in enumerate(hashes, start=2):
            page.evaluate(f"() => {{ location.hash = {h!r}; }}")
            page.wait_for_function(f"() => performance.getEntriesByName('vz-rendered').length >= {k}")
            times.append(
                page.evaluate(
                    "() => performance.getEntriesByName('vz-rendered').at(-1).startTime"
                    " - performance.getEntriesByName('vz-route').at(-1).startTime"
                )
            )
        return times
    finally:
        page.close()


def figure(name: str, times: list[float], limit_ms: float | None = None) -> None:
    med = statistics.median(times)
    verdict = "" if limit_ms is None else f"  (goal < {limit_ms:.0f} ms: {'met' if med < limit_ms else 'MISSED'})"
    print(f"{name:40s} median {med:8.1f} ms   min {min(times):8.1f}   max {max(times):8.1f}   n={len(times)}{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1_000_000)
    parser.add_argument("--cache", type=Path, help="where the stores are built once (default ~/.cache/vz-bench)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--quick", action="store_true", help="2,000 examples, one try each")
    args = parser.parse_args()
    if args.quick:
        args.examples, args.repeat = 2000, 1
    if args.cache is None:  # --quick builds its small stores afresh, in a folder removed afterwards
        args.cache = Path(tempfile.mkdtemp(prefix="vz-bench-view-")) if args.quick else Path.home() / ".cache/vz-bench"
    args.cache.mkdir(parents=True, exist_ok=True)
    try:
        run(args)
    finally:
        if args.quick and args.cache.name.startswith("vz-bench-view-"):
            shutil.rmtree(args.cache, ignore_errors=True)


def run(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    big, built = cached_store(args.cache, f"view-{args.examples}", args.examples, (8, 16), 10_000)
    agg_source, _ = cached_store(args.cache, "view-aggregated", 2000, (8, 16), 500)
    aggregate = cached_aggregate(args.cache, agg_source)
    long = {
        n: cached_store(args.cache, f"view-n{n}-{2 * args.repeat + 1}", 2 * args.repeat + 1, (n, n), 500)[0]
        for n in (128, 512)
    }
    print(
        f"store: {args.examples} examples, {len(METHODS)} methods, {LAYERS} layers, 8-16 tokens; built in {built:.0f} s"
    )
    print(f"chromium: {args.chromium}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS, headless=True)
        served = {
            "vz view (its server)": lambda path, agg=None: Viewer(path, agg),
            "static site (a file server; the page reads the store)": lambda path, agg=None: Site(args.cache, path, agg),
        }
        for kind, serve in served.items():
            print(f"-- {kind}")
            pages(browser, args, serve(big, aggregate), long, serve)
        browser.close()


def pages(browser, args: argparse.Namespace, viewer, long: dict, serve) -> None:
    """The overview, the examples table and example pages of `viewer`, then the long stores' examples."""
    try:
        times = [paint_ms(browser, f"{viewer.url}/#/", "#curves canvas") for _ in range(args.repeat)]
        figure("overview (with aggregate curves)", times, 1000)
        times = [paint_ms(browser, f"{viewer.url}/#/examples", "#examples tr") for _ in range(args.repeat)]
        figure("examples table, first page", times)
        ids = [(k * 7919) % args.examples for k in range(1, args.repeat + 1)]
        times = [paint_ms(browser, f"{viewer.url}/#/example/{i}", "canvas.heatmap") for i in ids]
        figure("example page, n = 8-16 (this store)", times, 300)
        others = [(k * 7919 + 13) % args.examples for k in range(1, args.repeat + 1)]  # not read yet
        times = step_ms(browser, f"{viewer.url}/#/example/1", [f"#/example/{i}" for i in others])
        figure("  next example in the same tab", times, 300)
    finally:
        viewer.close()
    for n, path in long.items():
        viewer = serve(path)
        try:
            times = [paint_ms(browser, f"{viewer.url}/#/example/{i}", "canvas.heatmap") for i in range(args.repeat)]
            figure(f"example page, n = {n}", times, 300 if n <= 128 else 1000)
            later = [f"#/example/{i}" for i in range(args.repeat + 1, 2 * args.repeat + 1)]  # not read yet
            times = step_ms(browser, f"{viewer.url}/#/example/{args.repeat}", later)
            figure("  next example in the same tab", times, 300 if n <= 128 else 1000)
        finally:
            viewer.close()


if __name__ == "__main__":
    main()
