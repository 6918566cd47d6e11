"""The static site in a real headless Chromium: built for a store, served with the store beside it by
a plain static file server, it reads the store's own Zarr arrays (shard indices and chunks by Range
request, zstd decoded in the page) and shows exactly the store's numbers, as the live server does."""

from __future__ import annotations

import csv
import io
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest

from jobs.view import ViewData, build_site
from tests.harness.static_server import RangeHandler, serve_folder
from tests.harness.synthetic_store import _write_done_part, init_root, write_random_store
from tests.view.conftest import HOSTILE
from tests.view.test_view_browser import drawn, hover_values, open_example, ready
from vzcore.store.layout import STATUS_SCORED
from vzcore.store.location import Location
from vzcore.store.reader import open_store
from vzcore.store.writer import ExampleOutcome

pytestmark = pytest.mark.slow  # a real Chromium: another process


@pytest.fixture(scope="module")
def site(view_data, view_store):
    """A site of `view_store` built beside it, and the folder holding both served with Range support."""
    folder = view_store.parent / "site"
    build_site(view_data, folder, limit=4)
    server = serve_folder(view_store.parent)
    yield f"http://127.0.0.1:{server.server_address[1]}/site"
    server.shutdown()
    server.server_close()


def csv_values(page) -> np.ndarray:
    with page.expect_download() as info:
        page.click("#csv")
    rows = list(csv.reader(io.StringIO(Path(info.value.path()).read_text())))
    return np.array([[float(v) for v in r[2:]] for r in rows[1:]])


def test_site_shows_the_stores_numbers(page, site, view_data, view_store, shots):
    store = open_store(view_store)
    before = RangeHandler.ranges
    page.goto(f"{site}/#/examples")
    page.wait_for_selector("#examples tr >> nth=1")
    assert page.locator("#examples tr").count() == 5  # the table lists 4; any example opens
    page.goto(f"{site}/#/examples?sample=top-k&top=self_mass&method=attention&layer=1&k=3")
    page.wait_for_selector("#examples tr >> nth=1")  # the aggregate's top examples, carried by the site
    assert "aggregate" in page.inner_text("#count")
    ids = [int(t) for t in page.locator("#examples td a").all_inner_texts()]
    assert ids == [r["example_id"] for r in view_data.top("self_mass", "attention", 1, 3)["rows"]]
    open_example(page, site, 2)
    assert view_data.example(2)["text"] in page.inner_text("#page")  # a listed example's text, from the table
    eid = 7
    result = store.example(eid)
    open_example(page, site, eid, "m=value_zeroing&l=2")
    assert page.locator("#sentence .tok").all_inner_texts() == view_data.example(eid)["tokens"]
    m = result.scores["value_zeroing"][2]
    np.testing.assert_array_equal(hover_values(page, 2), m[2])  # float16 read as the server reads it
    page.select_option("#hover", "source")
    page.wait_for_function("() => location.hash.includes('hover=source')")
    drawn(page)
    np.testing.assert_array_equal(hover_values(page, 1), m[:, 1])
    page.screenshot(path=str(shots / "static-example.png"), full_page=True)
    page.keyboard.press("ArrowLeft")  # another layer, read from the same chunk
    page.wait_for_function("() => document.getElementById('page').dataset.ready.endsWith(':1:token:layer')")
    np.testing.assert_array_equal(csv_values(page), result.scores["value_zeroing"][1])
    assert RangeHandler.ranges > before  # it asked for parts of objects, not whole ones


@pytest.mark.parametrize(
    "query", ["m=attention&l=0&mode=rollout", "m=value_zeroing&l=2&unit=word&mode=rollout", "m=attention&l=1&unit=word"]
)
def test_site_words_and_rollout_are_the_servers(page, site, view_data, query):
    state = dict(p.split("=") for p in query.split("&"))
    for eid in (0, 5):  # example 0 has a word of two pieces
        open_example(page, site, eid, query)
        want = view_data.maps(eid, state["m"], int(state["l"]), state.get("unit", "token"), state.get("mode", "layer"))
        np.testing.assert_allclose(csv_values(page), want, rtol=1e-6, atol=1e-7)
        labels = view_data.example(eid)["words" if state.get("unit") == "word" else "tokens"]
        assert page.locator("#sentence .tok").all_inner_texts() == labels


def test_site_keeps_markup_as_text(page, site):
    open_example(page, site, 0)
    assert ready(page) == "0:value_zeroing:2:token:layer"
    assert page.evaluate("window.__pwned") is None
    assert "<script>" in page.locator("#sentence .tok").all_inner_texts()
    assert HOSTILE in page.inner_text("#page")  # the text, from the site's table, shown as text
    assert page.locator("#page script, #page img").count() == 0


@pytest.fixture(scope="module")
def long_store(tmp_path_factory):
    """A causal store whose maps span two inner chunks of one shard (14 examples of 128 tokens, 6
    layers: 49,536 float16 values each, chunks of 524,288), with failed examples among them."""
    folder = tmp_path_factory.mktemp("site-long")
    write_random_store(folder / "store.zarr", 14, causal=True, lengths=(128, 128), part_size=14, fail_every=5)
    store = open_store(folder / "store.zarr")
    build_site(ViewData(store), folder / "site", limit=3)
    return folder, store


@pytest.mark.parametrize("handler", [RangeHandler, SimpleHTTPRequestHandler], ids=["ranges", "whole-objects"])
def test_site_reads_sharded_causal_maps(page, long_store, handler):
    folder, store = long_store
    server = serve_folder(folder, handler)
    base = f"http://127.0.0.1:{server.server_address[1]}/site"
    try:
        for eid in (10, 11, 13):  # 11 straddles the inner chunks' boundary
            result = store.example(eid)
            open_example(page, base, eid, "m=attention&l=5")
            np.testing.assert_array_equal(csv_values(page), result.scores["attention"][5])
        page.goto(f"{base}/#/example/9")  # failed: said, not drawn
        page.wait_for_selector("#page .error")
        assert "not scored" in page.inner_text("#page .error")
    finally:
        server.shutdown()
        server.server_close()


def test_site_labels_byte_level_pieces(page, tmp_path):
    """GPT-2's byte-level pieces read as their text (`vzcore.tokens.sequence_texts`), a character cut
    across two pieces included, as the live server shows them."""
    pieces = ["<|endoftext|>", "The", "Ġcaf", "Ã©", "Ġis", "Ġ", "æ", "Ĺ", "¥", "Ċ"]
    path = tmp_path / "store.zarr"
    plan = [{"part": 0, "start": 0, "stop": 1}]
    init_root(path, methods=["attention"], layers=[0], causal=True, plan=plan, special_token_ids=[0])
    n = len(pieces)
    maps = np.tril(np.ones((1, n, n), dtype=np.float32))
    outcome = ExampleOutcome(
        0,
        STATUS_SCORED,
        tokens=pieces,
        token_ids=list(range(n)),
        word_ids=[None, 0, 1, 1, 2, 3, 3, 3, 3, 4],
        scores={"attention": maps / maps.sum(-1, keepdims=True)},
    )
    _write_done_part(Location(str(path)), plan[0], [outcome], ["attention"], causal=True, num_maps=1, special_ids=[0])
    data = ViewData(open_store(path))
    build_site(data, tmp_path / "site")
    server = serve_folder(tmp_path)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/site"
        for unit in ("token", "word"):
            open_example(page, base, 0, f"unit={unit}")
            want = data.example(0)["words" if unit == "word" else "tokens"]
            assert page.locator("#sentence .tok").all_inner_texts() == want
    finally:
        server.shutdown()
        server.server_close()
