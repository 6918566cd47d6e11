"""A small store whose texts and tokens hold markup (the viewer must show it as text), its
aggregate, and the viewer served from it on loopback in a thread of the test process."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from jobs.view import ViewData, make_server
from tests.harness.synthetic_store import _write_done_part, init_root, random_maps
from vzcore.store.layout import STATUS_SCORED
from vzcore.store.location import Location
from vzcore.store.writer import ExampleOutcome

METHODS = ("value_zeroing", "attention")
LAYERS = 3
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
# Two texts per part, five parts; the pieces of example 0 hold markup, and some words are two pieces.
PIECES = ["[CLS]", "the", "cat", "sat", "on", "##to", "mat", "<script>", "&amp;", "[SEP]"]


def write_view_store(path: Path, count: int = 10, part_size: int = 2, maps_seed: int = 8) -> None:
    """Write the test store; another `maps_seed` gives the same texts and tokens with other maps."""
    rng, maps_rng = np.random.default_rng(7), np.random.default_rng(maps_seed)
    plan = [
        {"part": k, "start": a, "stop": min(a + part_size, count)} for k, a in enumerate(range(0, count, part_size))
    ]
    init_root(
        path,
        methods=METHODS,
        layers=list(range(LAYERS)),
        causal=False,
        plan=plan,
        special_token_ids=[0, 9],
        config={"model": "view-test", "methods": list(METHODS)},
    )
    for p in plan:
        outs, texts = [], []
        for i in range(p["start"], p["stop"]):
            body = [7, 8, 1, 2] if i == 0 else rng.integers(1, 9, int(rng.integers(4, 12))).tolist()
            ids = [0, *body, 9]
            words, w = [None], 0
            for k, t in enumerate(body):  # a "##" piece continues the word before it
                w += 0 if (k and PIECES[t].startswith("##")) else 1
                words.append(w - 1)
            words.append(None)
            n = len(ids)
            outs.append(
                ExampleOutcome(
                    i,
                    STATUS_SCORED,
                    tokens=[PIECES[t] for t in ids],
                    token_ids=ids,
                    word_ids=words,
                    scores={m: random_maps(maps_rng, LAYERS, n, False) for m in METHODS},
                )
            )
            texts.append(HOSTILE if i == 0 else " ".join(PIECES[t] for t in body))
        _write_done_part(
            Location(str(path)), p, outs, METHODS, causal=False, num_maps=LAYERS, texts=texts, special_ids=[0, 9]
        )


@pytest.fixture(scope="session")
def view_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("view") / "store.zarr"
    write_view_store(path)
    return path


def aggregate_of(store: Path) -> Path:
    from jobs.aggregate import AggregateConfig, aggregate

    out = store.with_suffix(".aggregate")
    aggregate(str(store), out, config=AggregateConfig(plots=False), log=lambda *a: None)
    return out


@pytest.fixture(scope="session")
def view_aggregate(view_store) -> Path:
    return aggregate_of(view_store)


@pytest.fixture(scope="session")
def other_store(view_store) -> Path:
    """The same texts as `view_store`, other maps (as a fine-tuned model would give)."""
    path = view_store.parent / "other.zarr"
    write_view_store(path, maps_seed=9)
    return path


def write_evaluations(folder: Path) -> list[Path]:
    """Write a cue-alignment and a blank-out output folder with the columns `vz evaluate` writes."""
    import json

    import pandas as pd

    cue, blank = folder / "cue", folder / "blank"
    for path, kind in ((cue, "cue-alignment"), (blank, "blank-out")):
        path.mkdir(parents=True)
        (path / "config.json").write_text(json.dumps({"kind": kind, "model": "minilm", "methods": list(METHODS)}))
    rows = [
        dict(
            method=m,
            layer=layer,
            phenomenon=ph,
            mean=0.1 * layer + k / 10,
            ci_low=0.0,
            ci_high=0.5,
            random=0.12,
            examples=40,
        )
        for k, m in enumerate(METHODS)
        for layer in range(LAYERS)
        for ph in ("ana", "all")
    ]
    pd.DataFrame(rows).to_parquet(cue / "summary.parquet")
    pd.DataFrame([dict(phenomenon="all", accuracy=0.9, pairs=80, undecided=0)]).to_parquet(cue / "accuracy.parquet")
    rows = [
        dict(method=m, layer=layer, rollout=False, mean=0.2 + 0.05 * layer, std=0.1, examples=30)
        for m in METHODS
        for layer in range(LAYERS)
    ]
    pd.DataFrame(rows).to_parquet(blank / "summary.parquet")
    return [cue, blank]


@pytest.fixture(scope="session")
def view_data(view_store, view_aggregate, other_store) -> ViewData:
    from vzcore.store.reader import open_store

    evaluations = write_evaluations(view_store.parent / "evaluations")
    return ViewData(
        open_store(view_store),
        view_aggregate,
        evaluations=[str(p) for p in evaluations],
        other=ViewData(open_store(other_store), aggregate_of(other_store)),
    )


def serve(data: ViewData, host: str = "127.0.0.1"):
    """Start a viewer server on a free port in a daemon thread; return it (stop it with `shutdown`)."""
    server = make_server(data, host, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="session")
def live(view_data):
    server = serve(view_data)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


SHOTS = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def shots(tmp_path_factory, request) -> Path:
    """The folder of the browser tests' screenshots (named at the end of the run)."""
    folder = tmp_path_factory.mktemp("view-screenshots")
    request.config.stash[SHOTS] = folder
    return folder


def pytest_terminal_summary(terminalreporter, config) -> None:
    if SHOTS in config.stash:
        terminalreporter.write_line(f"vz view screenshots: {config.stash[SHOTS]}")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
]


@pytest.fixture(scope="session")
def browser():
    """A headless system Chromium through Playwright (skipped, saying why, where either is missing)."""
    reason = "the playwright package is not installed (pip: dev extra)"
    sync_api = pytest.importorskip("playwright.sync_api", reason=reason)
    if CHROMIUM is None:
        pytest.skip("no system Chromium (`make setup` installs Debian's chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, shots):
    """A fresh tab that fails its test on any console error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    yield pg
    context.close()
    assert errors == [], f"console errors: {errors}"
