"""The viewer's server and data, without a browser: what it serves equals the store, and what it refuses."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from jobs.cli import app
from jobs.view import ViewData, build_site
from jobs.view.build import SITE_SCRIPTS, check_store_url, default_store_url
from jobs.view.data import ViewError
from jobs.view.samples import top_sample
from jobs.view.server import ASSETS, ViewServer, safe_asset
from tests.view.conftest import HOSTILE, METHODS, serve
from vzcore.ops.rollout import rollout as torch_rollout
from vzcore.store.reader import open_store

ROOT = Path(__file__).resolve().parents[2]


def get(url: str, path: str, headers: dict | None = None, method: str = "GET") -> tuple[int, bytes, dict]:
    """Send one raw request (the path exactly as given: no client-side normalisation of `..`)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body, dict(r.getheaders())


def get_json(url: str, path: str):
    status, body, _ = get(url, path)
    assert status == 200, body
    return json.loads(body)


def test_maps_are_the_stores_numbers(live, view_store):
    store = open_store(view_store)
    for eid in (0, 3):
        result = store.example(eid)
        words = result.word_level()
        for m in METHODS:
            for li, layer in enumerate(result.layers):
                _, body, _ = get(live, f"/data/maps/{eid}/{m}/token/layer/{layer}.f32")
                n = result.n
                np.testing.assert_array_equal(np.frombuffer(body, "<f4").reshape(n, n), result.scores[m][li])
                _, body, _ = get(live, f"/data/maps/{eid}/{m}/word/layer/{layer}.f32")
                w = len(words.words)
                np.testing.assert_allclose(np.frombuffer(body, "<f4").reshape(w, w), words.scores[m][li], atol=1e-7)
                _, body, _ = get(live, f"/data/maps/{eid}/{m}/token/rollout/{layer}.f32")
                want = torch_rollout(torch.from_numpy(result.scores[m]).double())[li].numpy()
                np.testing.assert_allclose(np.frombuffer(body, "<f4").reshape(n, n), want, rtol=1e-5, atol=1e-6)


def test_example_and_overview(live, view_store):
    store = open_store(view_store)
    ex = get_json(live, "/data/example/0.json")
    assert ex["text"] == HOSTILE and ex["pieces"] == store.example(0).tokens
    assert ex["special"][0] and ex["special"][-1] and not any(ex["special"][1:-1])
    assert ex["words"][1:3] == ["<script>", "&amp;"]  # markup travels as data, unchanged
    o = get_json(live, "/data/overview.json")
    assert (o["methods"], o["layers"], o["parts_done"], o["mode"]) == (list(METHODS), [0, 1, 2], 5, "live")
    assert {r["method"] for r in o["aggregate"]["layers"]} == set(METHODS)
    assert all(r.get("bucket") is None for r in o["aggregate"]["layers"])  # the 'all' rows only


def test_examples_filter_sort_and_top(live, view_store):
    lengths = open_store(view_store).examples_table().set_index("example_id")["length"]
    page = get_json(live, "/data/examples.json?sort=length&desc=1&limit=3")
    assert page["total"] == 10 and [r["length"] for r in page["rows"]] == sorted(lengths, reverse=True)[:3]
    page = get_json(live, "/data/examples.json?q=ONERROR")
    assert [r["example_id"] for r in page["rows"]] == [0]
    page = get_json(live, "/data/examples.json?min_len=8&max_len=10")
    assert sorted(r["example_id"] for r in page["rows"]) == sorted(lengths[(lengths >= 8) & (lengths <= 10)].index)
    top = get_json(live, "/data/top.json?statistic=self_mass&method=attention&layer=1&k=3")
    assert len(top["rows"]) == 3 and top["rows"][0]["value"] >= top["rows"][-1]["value"]


def test_top_from_the_aggregate_is_the_streamed_ranking(live, view_data):
    """The aggregate's top table (no map read) and streaming every map rank the same examples."""
    for stat in ("self_mass", "context_mass", "special_mass"):
        for layer in (0, 2):
            table = get_json(live, f"/data/top.json?statistic={stat}&method=attention&layer={layer}&k=4")
            assert table["source"] == "table"
            streamed = view_data.top(stat, "attention", layer, 4)  # vzcore.queries.top_examples
            assert [r["example_id"] for r in table["rows"]] == [r["example_id"] for r in streamed["rows"]]
            np.testing.assert_allclose([r["value"] for r in table["rows"]], [r["value"] for r in streamed["rows"]])
            assert [r["text"] for r in table["rows"]] == [r["text"] for r in streamed["rows"]]
    # Without an aggregate (or with one that does not cover the store's done parts): streamed, and said so.
    bare = top_sample(ViewData(view_data.store), "self_mass", "attention", 0, 4)
    assert bare["source"] == "stream" and bare["parts"] == 5
    assert bare["rows"] == get_json(live, "/data/top.json?statistic=self_mass&method=attention&layer=0&k=4")["rows"]
    with pytest.raises(ViewError, match="k must be 1 or more"):  # head(-2) would answer "all but the last 2"
        top_sample(view_data, "self_mass", "attention", 0, -2)
    stale = ViewData(view_data.store, view_data.aggregate)
    summary, frame = stale.top_table()
    last = str(summary["parts_used"][-1])
    stale._top = ({**summary, "part_ranges": {k: v for k, v in summary["part_ranges"].items() if k != last}}, frame)
    assert top_sample(stale, "self_mass", "attention", 0, 4)["source"] == "stream"
    # A part that grew under its index since (a later --limit): its ids differ from the aggregate's.
    start, stop = summary["part_ranges"][last]
    stale._top = ({**summary, "part_ranges": {**summary["part_ranges"], last: [start, stop - 1]}}, frame)
    assert top_sample(stale, "self_mass", "attention", 0, 4)["source"] == "stream"
    # An aggregate from before part ranges were kept: checked by part index.
    older = {k: v for k, v in summary.items() if k != "part_ranges"}
    stale._top = (older, frame)
    assert top_sample(stale, "self_mass", "attention", 0, 4)["source"] == "table"
    stale._top = ({**older, "parts_used": summary["parts_used"][:-1]}, frame)
    assert top_sample(stale, "self_mass", "attention", 0, 4)["source"] == "stream"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/data/example/999.json", 404),
        ("/data/maps/1/nope/token/layer/0.f32", 404),
        ("/data/maps/1/attention/token/layer/7.f32", 404),
        ("/data/examples.json?sort=text", 400),
        ("/data/examples.json?limit=x", 400),
        ("/static/../server.py", 404),
        ("/static/%2e%2e/server.py", 404),
        ("/static/..%2fserver.py", 404),
        ("/static/%2e%2e/%2e%2e/data.py", 404),
        ("/../../pyproject.toml", 404),
        ("/store.zarr/zarr.json", 404),  # the store's own files are not served: only what the routes read
    ],
)
def test_refusals(live, path, status):
    assert get(live, path)[0] == status


def test_read_only(live):
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert get(live, "/data/overview.json", method=method)[0] == 405


def test_security_headers_and_foreign_host(live):
    status, _, headers = get(live, "/")
    assert status == 200 and "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    # A page whose domain rebinds to 127.0.0.1 sends its own Host: refused.
    assert get(live, "/data/overview.json", headers={"Host": "evil.example:80"})[0] == 403


def test_assets_refuse_symlinks_out(tmp_path):
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "app.js").write_text("ok")
    (tmp_path / "secret.txt").write_text("secret")
    (assets / "link.js").symlink_to(tmp_path / "secret.txt")
    (assets / "dir").symlink_to(tmp_path)
    assert safe_asset(assets, "app.js") == (assets / "app.js").resolve()
    for name in ("link.js", "dir/secret.txt", "../secret.txt", str(tmp_path / "secret.txt")):
        assert safe_asset(assets, name) is None


def test_symlinked_asset_is_not_served(tmp_path, view_data):
    assets = tmp_path / "assets"
    assets.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (assets / "leak.js").symlink_to(tmp_path / "secret.txt")
    server = ViewServer(("127.0.0.1", 0), view_data, None, assets)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        status, body, _ = get(f"http://127.0.0.1:{server.server_address[1]}", "/static/leak.js")
        assert status == 404 and b"secret" not in body
    finally:
        server.shutdown()
        server.server_close()


def test_off_loopback_needs_the_token(view_data):
    server = serve(view_data, host="0.0.0.0")
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert server.token and len(server.token) >= 24
        assert get(url, "/")[0] == 403
        assert get(url, "/data/overview.json?token=wrong")[0] == 403
        status, _, headers = get(url, f"/?token={server.token}")
        assert status == 200
        cookie = headers["Set-Cookie"].split(";")[0]
        assert get(url, "/data/overview.json", headers={"Cookie": cookie})[0] == 200
        assert get(url, "/data/overview.json", headers={"Cookie": "vz_token=nope"})[0] == 403
        assert get(url, "/data/overview.json?token=%C3%A9t%C3%A9")[0] == 403  # not ASCII: refused, not a crash
    finally:
        server.shutdown()
        server.server_close()


def test_static_site_is_the_app_and_small_index_files(tmp_path, view_data, view_store, live):
    site = tmp_path / "site"
    count = build_site(view_data, site, limit=3)
    assert count == 3
    written = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    assert written == [
        "data/evaluations.json",
        "data/examples.json",
        "data/overview.json",
        "data/top.json",
        "index.html",
        "static/app.css",
        "static/fzstd.LICENSE",
        "static/site.js",
    ]  # no map: the site reads the store
    assert json.loads((site / "data/examples.json").read_text())["total"] == 3
    overview = json.loads((site / "data/overview.json").read_text())
    assert overview["mode"] == "static"
    # The store is read where it lies, relative to the site's folder.
    assert (site / overview["store_url"]).resolve() == view_store.resolve()
    assert str(view_store.parent) not in (site / "data/overview.json").read_text()  # no local path is shared
    assert overview["store"] == "store.zarr" and overview["aggregate"]["path"] == "store.aggregate"
    page = (site / "index.html").read_text()
    assert f'<meta name="vz-store" content="{overview["store_url"]}">' in page
    assert "Content-Security-Policy" in page and "connect-src &#x27;self&#x27;;" in page
    assert page.count("<script") == 1
    script = (site / "static/site.js").read_text()
    for name in SITE_SCRIPTS:  # every script whole, in order
        assert (ASSETS / name).read_text() in script
    with pytest.raises(FileExistsError):
        build_site(view_data, site)
    # Its top-k is the aggregate's table: the ranking that streaming every map gives.
    top = json.loads((site / "data/top.json").read_text())
    assert overview["top"] > 0 and len(top) == 3 * len(METHODS) * 3
    streamed = view_data.top("context_mass", "attention", 2, overview["top"])["rows"]
    assert top["context_mass/attention/2"] == streamed
    bare = tmp_path / "bare"  # no aggregate: no top-k in the site
    build_site(ViewData(view_data.store), bare, limit=1)
    assert not (bare / "data/top.json").exists()
    assert json.loads((bare / "data/overview.json").read_text())["top"] == 0


def test_the_vendored_decoder_is_the_packages_file_unchanged():
    """`static/vendor/fzstd.js` is fzstd 0.1.1's `umd/index.js` as its README records it, with its licence."""
    import hashlib

    vendor = ASSETS / "vendor"
    digest = hashlib.sha256((vendor / "fzstd.js").read_bytes()).hexdigest()
    assert f"sha256 `{digest}`" in (vendor / "README.md").read_text()
    assert "MIT License" in (vendor / "fzstd.LICENSE").read_text()


def test_static_site_store_url(tmp_path, view_data):
    build_site(view_data, tmp_path / "a", limit=1, store_url="https://bucket.s3.example.com/run.zarr/")
    overview = json.loads((tmp_path / "a/data/overview.json").read_text())
    assert overview["store_url"] == "https://bucket.s3.example.com/run.zarr"
    page = (tmp_path / "a/index.html").read_text()
    assert "connect-src &#x27;self&#x27; https://bucket.s3.example.com;" in page
    assert 'href="https://bucket.s3.example.com/run.zarr/plan/c/0/0"' in page
    for bad in ("javascript:alert(1)", "file:///etc", "//evil.example/x", 'run.zarr"><script>', "s3://b/run.zarr", ""):
        with pytest.raises(ValueError):
            check_store_url(bad)
    with pytest.raises(ValueError, match="--store-url"):
        default_store_url("s3://bucket/run.zarr", tmp_path / "b")


def test_command_line_refusals(tmp_path, view_store):
    runner = CliRunner()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for args, says in [
        ([str(tmp_path / "missing.zarr")], "no store"),
        ([str(view_store), "--port", "70000"], "--port"),
        ([str(view_store), "--build", str(tmp_path / "full")], "not a new or empty folder"),
        ([str(view_store), "--aggregate", str(tmp_path)], "layers.parquet"),
        ([str(view_store), "--evaluation", str(tmp_path)], "summary.parquet"),
        ([str(view_store), "--compare", str(tmp_path / "missing.zarr")], "no store"),
        ([str(view_store), "--store-url", "https://x.example/run.zarr"], "give --build too"),
        ([str(view_store), "--build", str(tmp_path / "s"), "--store-url", "javascript:alert(1)"], "--store-url"),
        (["s3://bucket/run.zarr", "--build", str(tmp_path / "s")], "--store-url"),
    ]:
        result = runner.invoke(app, ["view", *args])
        assert result.exit_code == 2, result.output
        assert says in result.output


def test_command_builds_a_site(tmp_path, view_store):
    result = CliRunner().invoke(app, ["view", str(view_store), "--build", str(tmp_path / "site"), "--limit", "2"])
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "site/data/examples.json").read_text())["rows"]) == 2


def test_the_server_loads_no_torch(view_store):
    """Serving reads the store with numpy alone: the viewer's modules and a map read import no torch."""
    code = (
        "import sys; from jobs.view import ViewData, make_server, build_site;"
        " from vzcore.store.reader import open_store;"
        f" d = ViewData(open_store({str(view_store)!r})); d.example(1); d.maps(1, 'attention', 2, 'word', 'rollout');"
        " print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_concordance_is_the_stores_rows(live, view_store):
    from vzcore.queries import token_rows, word_rows

    store = open_store(view_store)
    c = get_json(live, "/data/concordance.json?word=CAT&method=attention&layer=1")
    rows = word_rows(store, "cat", 1, "attention", ignore_case=True)
    occurrences = rows.groupby(["example_id", "word_position"])
    assert c["count"] == occurrences.ngroups > 0
    first = c["occurrences"][0]
    (eid, pos), g = next(iter(occurrences))
    assert (first["example_id"], first["position"]) == (eid, pos)
    np.testing.assert_allclose(first["weights"], g["weight"])
    # The mean row by offset sums to 1 (each row does), as does the mean row by source type over all types.
    assert sum(v for _, v in c["by_offset"]) == pytest.approx(1, abs=1e-3)
    t = get_json(live, "/data/concordance.json?token=%3Cscript%3E&method=value_zeroing&layer=0")
    assert t["count"] == token_rows(store, "<script>", 0, "value_zeroing").groupby(["example_id", "position"]).ngroups
    assert get(live, "/data/concordance.json?word=cat&token=cat&method=attention&layer=1")[0] == 400
    assert get(live, "/data/concordance.json?word=cat&method=nope&layer=1")[0] == 400


def test_evaluations_are_the_folders_tables(live, view_store):
    import pandas as pd

    got = get_json(live, "/data/evaluations.json")["evaluations"]
    assert [e["kind"] for e in got] == ["cue-alignment", "blank-out"]
    want = pd.read_parquet(view_store.parent / "evaluations/cue/summary.parquet")
    assert pd.DataFrame(got[0]["summary"]).equals(want)
    assert got[0]["accuracy"][0]["accuracy"] == 0.9 and got[1]["accuracy"] == []


def test_compare_ranks_by_the_stores_rows(live, view_store, other_store):
    from jobs.view.compare import row_change

    a, b = open_store(view_store), open_store(other_store)
    c = get_json(live, "/data/compare.json?method=attention&layer=2&k=3")
    assert (c["compared"], c["different_tokens"]) == (10, 0)
    changes = {
        i: row_change(a.example(i).scores["attention"][2], b.example(i).scores["attention"][2]) for i in range(10)
    }
    assert [r["example_id"] for r in c["rows"]] == sorted(changes, key=lambda i: -changes[i])[:3]
    assert c["rows"][0]["value"] == pytest.approx(changes[c["rows"][0]["example_id"]])
    _, body, _ = get(live, "/data/other/maps/4/attention/token/layer/1.f32")
    other = b.example(4).scores["attention"][1]
    np.testing.assert_array_equal(np.frombuffer(body, "<f4").reshape(other.shape), other)
    assert get_json(live, "/data/other/overview.json")["store"] == str(other_store)
    assert get(live, "/data/compare.json?method=nope&layer=2")[0] == 400


def test_row_change_is_the_total_variation_distance():
    from jobs.view.compare import row_change

    a = np.array([[1.0, 0.0], [0.5, 0.5]])
    b = np.array([[0.0, 1.0], [0.5, 0.5]])
    assert row_change(a, b) == 0.5  # one row moved all its mass, the other none
    assert row_change(a, a) == 0.0


def test_decile_sample_spans_the_statistic(live, view_store):
    from vzcore.queries import top_examples

    d = get_json(live, "/data/deciles.json?statistic=context_mass&method=attention&layer=1&per=1")
    everyone = top_examples(open_store(view_store), "context_mass", "attention", 1, k=10).set_index("example_id")
    assert d["scanned"] == len(everyone) == 10
    # Ten examples, one a decile: each of them once, from the lowest value to the highest.
    assert [r["decile"] for r in d["rows"]] == list(range(1, 11))
    assert [r["example_id"] for r in d["rows"]] == list(everyone.sort_values("value").index)
    for r in d["rows"]:
        assert r["value"] == pytest.approx(everyone.loc[r["example_id"], "value"])
    assert get(live, "/data/deciles.json?statistic=word_mass&method=attention&layer=1")[0] == 400


def test_the_command_warns_off_loopback_and_needs_its_token(view_store):
    """`python -m jobs.view --host 0.0.0.0` warns and prints the token every request then needs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.view", str(view_store), "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        url = line.split()[-1]
        assert line.startswith("warning:") and "?token=" in url
        base = "http://127.0.0.1:" + url.split(":")[2].split("/")[0]
        token = url.split("?token=")[1]
        assert get(base, "/data/overview.json")[0] == 403
        assert get(base, f"/data/overview.json?token={token}")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_rollout_is_vzcores_with_unscored_rows_too():
    from jobs.view.data import rollout

    rng = np.random.default_rng(0)
    maps = rng.random((3, 5, 5)).astype(np.float32)
    maps /= maps.sum(-1, keepdims=True)
    maps[1, 2] = np.nan  # a row not scored at the middle layer
    want = torch_rollout(torch.from_numpy(maps).double()).numpy()
    np.testing.assert_allclose(rollout(maps), want, rtol=1e-6, equal_nan=True)


def test_a_site_of_a_reduced_store_is_refused_until_the_site_reads_them(tmp_path):
    # the site's reader knows dense parts only: a v4 store (top-k or targeted rows) would draw wrong maps
    from tests.jobs.test_sparse_store import make_store, outcome
    from vzcore.store.forms import StoreForm

    rng = np.random.default_rng(0)
    outs = [outcome(i, {"value_zeroing": rng.random((1, 4, 4))}) for i in range(2)]
    path = tmp_path / "r.zarr"
    make_store(path, outs, causal=False, layers=1, form=StoreForm("top-k", 2, 0.0))
    result = CliRunner().invoke(app, ["view", str(path), "--build", str(tmp_path / "site")])
    assert result.exit_code == 2, result.output
    assert "reduced maps" in result.output and "vz view STORE" in result.output
    assert not (tmp_path / "site").exists()
