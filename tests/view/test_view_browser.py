"""The viewer in a real headless Chromium: each page renders, hovering recolours by the store's numbers,
the layer and method switch, the CSV export equals `store.example`, markup in the store stays text,
and no page logs an error. Screenshots of each page go to the folder printed at the end of the run."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from tests.view.conftest import HOSTILE, METHODS
from vzcore.store.reader import open_store

pytestmark = pytest.mark.slow  # a real Chromium: another process


def open_example(page, base: str, eid: int, query: str = "") -> None:
    page.goto(f"{base}/#/example/{eid}?{query}")
    drawn(page)
    page.wait_for_selector("#sentence .tok")


def drawn(page) -> None:
    """Waits until the page shows the URL's state (the previous state's page stays until then)."""
    page.wait_for_function("() => document.body.dataset.drawn === location.hash")


def ready(page) -> str:
    return page.eval_on_selector("#page", "el => el.dataset.ready || ''")


def hover_values(page, index: int) -> np.ndarray:
    page.hover(f"#sentence .tok >> nth={index}")
    return np.array(page.eval_on_selector_all("#sentence .tok", "els => els.map(e => Number(e.dataset.value))"))


def test_overview(page, live, shots):
    page.goto(f"{live}/#/")
    page.wait_for_selector("#facts")
    assert "view-test" in page.inner_text("#facts")
    assert page.locator("#curves canvas").count() >= 5
    page.screenshot(path=str(shots / "overview.png"), full_page=True)


def test_a_slow_earlier_page_never_paints_over_a_later_one(page, live):
    page.goto(f"{live}/#/")
    drawn(page)

    def slowly(route):
        page.wait_for_timeout(800)  # the examples answer after the overview has been asked for
        route.continue_()

    page.route("**/data/examples.json*", slowly)
    page.evaluate("() => { location.hash = '#/examples'; }")
    page.evaluate("() => setTimeout(() => { location.hash = '#/'; }, 100)")
    page.wait_for_timeout(1500)
    drawn(page)
    assert page.evaluate("() => location.hash") == "#/"
    assert page.locator("#facts").count() == 1 and page.locator("#examples").count() == 0


def test_examples_table(page, live, shots):
    page.goto(f"{live}/#/examples")
    page.wait_for_selector("#examples tr >> nth=1")
    assert page.locator("#examples tr").count() == 11
    page.fill("#q", "onerror")
    page.press("#q", "Enter")
    page.wait_for_function("() => document.querySelectorAll('#examples tr').length === 2")
    assert HOSTILE in page.inner_text("#examples")  # shown as text, never as markup
    page.select_option("#top-sample", "deciles")
    page.select_option("#top-top", "context_mass")
    page.click("#top button")
    page.wait_for_function("() => location.hash.includes('sample=deciles')")
    # The previous table stays until the new one replaces it: wait for what the new one says.
    page.wait_for_function("() => document.querySelector('#count')?.innerText.includes('deciles')")
    page.wait_for_selector("#examples tr >> nth=1")
    assert page.inner_text("#examples tr >> nth=0").split("\t")[0] == "decile"
    page.screenshot(path=str(shots / "examples-deciles.png"), full_page=True)
    page.select_option("#top-sample", "top-k")
    page.click("#top button")
    page.wait_for_function("() => location.hash.includes('sample=top-k')")
    # No map read: the counts line names the aggregate's table once the new table is drawn.
    page.wait_for_function("() => document.querySelector('#count')?.innerText.includes(\"per-example table\")")
    page.wait_for_selector("#examples tr >> nth=1")
    assert "from the aggregate's per-example table" in page.inner_text("#count")
    page.screenshot(path=str(shots / "examples-top.png"), full_page=True)
    page.goto(f"{live}/#/examples?sort=length&desc=1")
    page.wait_for_selector("#examples tr >> nth=1")
    page.screenshot(path=str(shots / "examples.png"), full_page=True)


def test_example_hover_layer_method_and_csv(page, live, view_store, shots, tmp_path):
    store = open_store(view_store)
    eid = 3
    result = store.example(eid)
    open_example(page, live, eid, "m=value_zeroing&l=2")
    page.screenshot(path=str(shots / "example.png"), full_page=True)
    # Hover a target: the sentence shows its row; hover as a source: its column.
    m = result.scores["value_zeroing"][2]
    np.testing.assert_allclose(hover_values(page, 2), m[2], rtol=1e-6)
    page.select_option("#hover", "source")
    page.wait_for_function("() => location.hash.includes('hover=source')")
    drawn(page)
    np.testing.assert_allclose(hover_values(page, 1), m[:, 1], rtol=1e-6)
    page.screenshot(path=str(shots / "example-hover.png"), full_page=True)
    # Keys move between layers; the checkbox switches the method.
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("() => document.getElementById('page').dataset.ready.endsWith(':1:token:layer')")
    np.testing.assert_allclose(hover_values(page, 1), result.scores["value_zeroing"][1][:, 1], rtol=1e-6)
    page.check("input.method[value=attention]")
    page.uncheck("input.method[value=value_zeroing]")
    page.wait_for_function("() => document.getElementById('page').dataset.ready.includes(':attention:1:')")
    assert ready(page) == f"{eid}:attention:1:token:layer"
    page.select_option("#hover", "target")
    page.wait_for_function("() => location.hash.includes('hover=target')")
    drawn(page)
    np.testing.assert_allclose(hover_values(page, 0), result.scores["attention"][1][0], rtol=1e-6)
    # The CSV holds the numbers of the view: here the store's map, row by row.
    with page.expect_download() as info:
        page.click("#csv")
    rows = list(csv.reader(io.StringIO(Path(info.value.path()).read_text())))
    assert rows[0][2:] == [
        f"{j}:{t}" for j, t in enumerate(page.eval_on_selector_all("#sentence .tok", "e => e.map(x => x.textContent)"))
    ]
    values = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    np.testing.assert_allclose(values, result.scores["attention"][1], rtol=1e-6)
    page.keyboard.press("n")
    page.wait_for_function(f"() => document.getElementById('page').dataset.ready.startsWith('{eid + 1}:')")


def test_example_side_by_side_words_and_hidden_specials(page, live, view_store, shots):
    store = open_store(view_store)
    eid = 0
    open_example(page, live, eid, f"m={','.join(METHODS)}&l=1&unit=word&hide=1")
    assert page.locator("canvas.heatmap").count() == 2
    words = store.example(eid).word_level()
    page.screenshot(path=str(shots / "example-methods-words.png"), full_page=True)
    # The sentence follows the first panel (value_zeroing): word 0's row without specials, renormalised.
    want = words.scores["value_zeroing"][1][1:-1, 1:-1]
    np.testing.assert_allclose(hover_values(page, 0), want[0] / want[0].sum(), rtol=1e-5)
    open_example(page, live, eid, f"m={','.join(METHODS)}&l=1&diff=1&scale=global")
    assert page.locator("canvas.heatmap").count() == 1
    page.screenshot(path=str(shots / "example-difference.png"), full_page=True)


def test_markup_in_the_store_is_only_text(page, live):
    open_example(page, live, 0)
    assert ready(page) == "0:value_zeroing:2:token:layer"  # no state in the URL: the first method, the last layer
    assert page.evaluate("window.__pwned") is None
    assert HOSTILE in page.inner_text("#page")
    assert "<script>" in page.locator("#sentence .tok").all_inner_texts()
    assert page.locator("#page script, #page img").count() == 0


def test_concordance(page, live, view_store, shots):
    page.goto(f"{live}/#/concordance")
    page.wait_for_selector("#c-query")
    page.fill("#c-query", "cat")
    page.select_option("#c-layer", "1")
    page.press("#c-query", "Enter")
    page.wait_for_selector("#occurrences tr >> nth=1")
    c = view_data_concordance(view_store)
    first = page.eval_on_selector_all(
        "#occurrences tr:nth-child(2) .tok", "els => els.map(e => Number(e.dataset.value))"
    )
    np.testing.assert_allclose(first, c["occurrences"][0]["weights"], rtol=1e-6)
    page.screenshot(path=str(shots / "concordance.png"), full_page=True)
    page.click("#occurrences tr:nth-child(2) a")
    page.wait_for_selector("#sentence .tok")


def view_data_concordance(view_store) -> dict:
    from jobs.view import ViewData

    return ViewData(open_store(view_store)).concordance("value_zeroing", 1, word="cat")


def test_evaluation(page, live, shots):
    page.goto(f"{live}/#/evaluation")
    page.wait_for_selector("#cue-summary tr >> nth=1")
    assert page.locator("#cue-summary tr").count() == 1 + len(METHODS) * 3  # the 'all' rows only
    assert page.locator("#blank-out-summary tr").count() == 1 + len(METHODS) * 3
    assert "random baseline" in page.inner_text("#page")
    page.screenshot(path=str(shots / "evaluation.png"), full_page=True)


def test_compare(page, live, view_store, other_store, shots):
    page.goto(f"{live}/#/compare?method=attention&layer=2&run=1")
    page.wait_for_selector("#changed tr >> nth=1")
    assert page.locator("#compare-curves canvas").count() == 3
    page.screenshot(path=str(shots / "compare.png"), full_page=True)
    eid = int(page.inner_text("#changed tr:nth-child(2) a"))
    page.click("#changed tr:nth-child(2) a")
    page.wait_for_selector("#sentence .tok")
    assert page.locator("canvas.heatmap").count() == 2  # this store's map beside the other's
    page.screenshot(path=str(shots / "compare-example.png"), full_page=True)
    page.check("#diff")
    page.wait_for_function("() => location.hash.includes('diff=1')")
    drawn(page)
    # The difference panel: this store's row minus the other's.
    a, b = (open_store(p).example(eid).scores["attention"][2] for p in (view_store, other_store))
    np.testing.assert_allclose(hover_values(page, 1), a[1] - b[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("query", ["m=attention&l=1", "m=value_zeroing,attention&l=2&unit=word&mode=rollout"])
def test_copy_python_reads_the_same_numbers(page, live, view_data, query):
    open_example(page, live, 4, query)
    page.click("#python")
    lines = page.inner_text("#python-lines")
    scope: dict = {}
    exec(lines, scope)  # the lines as a user pastes them
    state = dict(p.split("=") for p in query.split("&"))
    for t, method in enumerate(state["m"].split(",")):
        want = view_data.maps(4, method, int(state["l"]), state.get("unit", "token"), state.get("mode", "layer"))
        np.testing.assert_allclose(scope[f"maps_{t}"], want, rtol=1e-5, atol=1e-6)


def test_png_svg_and_top_k_exports(page, live, view_store):
    from xml.etree import ElementTree

    result = open_store(view_store).example(0)
    n = result.n
    open_example(page, live, 0, "m=attention&l=1&topk=2")
    with page.expect_download() as info:
        page.click("#png")
    assert Path(info.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with page.expect_download() as info:
        page.click("#svg")
    svg = ElementTree.parse(info.value.path()).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    assert len(svg.findall(f"{ns}rect")) == n * n
    assert "<script>" in [t.text for t in svg.findall(f"{ns}text")]  # a label, escaped in the file, never markup
    with page.expect_download() as info:
        page.click("#csv")
    rows = list(csv.reader(io.StringIO(Path(info.value.path()).read_text())))[1:]
    values = np.array([[float(v) for v in r[2:]] for r in rows])
    want = result.scores["attention"][1]
    for got_row, row in zip(values, want, strict=True):  # each row keeps its two largest entries, the rest 0
        top = np.argsort(row)[-2:]
        np.testing.assert_allclose(got_row[top], row[top], rtol=1e-6)
        assert np.count_nonzero(got_row) == 2


def test_unscored_rows_stay_unscored(page, live):
    """A NaN row (a target not scored) is neither zeros nor renormalised, and no top-k turns it into numbers."""
    open_example(page, live, 1)
    got = page.evaluate(
        "() => { const m = viewMatrix(new Float32Array([NaN, NaN, 0.5, 1.5]), 2, [0, 1], true);"
        " return [Array.from(m, String), Array.from(topkRows(m, 2, 1), String), colour(NaN, 1, false)]; }"
    )
    assert got[0] == ["NaN", "NaN", "0.25", "0.75"]
    assert got[1] == ["NaN", "NaN", "0", "0.75"]
    assert got[2] == [225, 225, 225]
