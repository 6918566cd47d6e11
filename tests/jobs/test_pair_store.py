"""Layout v5: an encoder–decoder's sites in a store, written and read back (`vzcore.store.sites`).

Every read is compared with the maps written (float32 stores: exact); stores written before v5
existed (`data/before_v5`, by the v3/v4 writer) still read as they did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr")

from tests.harness.synthetic_store import write_random_pair_store
from vzcore.result import Seq2SeqResult
from vzcore.store import StoreError
from vzcore.store.reader import open_store
from vzcore.store.sites import SiteLayout, pack_sites, unpack_sites
from vzcore.store.verify import verify_store

BEFORE_V5 = Path(__file__).parent / "data" / "before_v5"


@pytest.fixture(scope="module")
def pair_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.zarr"
    outs = write_random_pair_store(path, 7, fail_every=4)
    return path, {o.example_id: o for o in outs}


def test_pack_sites_round_trips_and_packs_the_decoder_triangle_only():
    sites = [SiteLayout("encoder", (0,), 1), SiteLayout("decoder", (0, 1), 2), SiteLayout("cross", (1,), 2)]
    rng = np.random.default_rng(0)
    maps = {"encoder": rng.random((1, 3, 3)), "decoder": np.tril(rng.random((2, 4, 4))), "cross": rng.random((1, 4, 3))}
    flat = pack_sites(sites, maps, 3, 4)
    assert len(flat) == 9 + 2 * 10 + 12  # encoder 3x3, decoder two lower triangles of 4, cross 4x3
    back = unpack_sites(sites, flat, 3, 4)
    for name, x in maps.items():
        np.testing.assert_array_equal(back[name], x)
    with pytest.raises(ValueError, match="cross"):
        pack_sites(sites, {**maps, "cross": rng.random((1, 3, 4))}, 3, 4)


def test_examples_read_back_every_site_and_both_streams(pair_store):
    path, outs = pair_store
    store = open_store(path)
    assert store.layout == 5 and store.sites == ["encoder", "decoder", "cross"]
    for eid, o in outs.items():
        if not o.scored:
            continue
        r = store.example(eid)
        assert isinstance(r, Seq2SeqResult)
        assert r.source_ids == list(o.source_ids) and r.target_ids == list(o.target_ids)
        assert r.source_tokens == list(o.source_tokens) and r.target_tokens == list(o.target_tokens)
        assert r.target_from == ("greedy" if o.decoding == "greedy" else "given")
        assert r.sites["decoder"].site.causal and not r.sites["cross"].site.square
        for m, per_site in o.scores.items():
            for name, x in per_site.items():
                np.testing.assert_array_equal(r.sites[name].scores[m], x)
    assert [s.name for s in store.info.site_layouts] == ["encoder", "decoder", "cross"]
    assert store.info.site_layouts[2].layers == (1,)


def test_a_square_site_reads_as_a_single_stack_store(pair_store):
    path, outs = pair_store
    store = open_store(path)
    for name, stream in (("encoder", "source"), ("decoder", "target")):
        view = store.site(name)
        assert view.causal == (name == "decoder")
        seen = []
        for batch in view.iter_examples(batch_size=2):
            for eid, r in batch:
                seen.append(eid)
                o = outs[eid]
                assert r.token_ids == list(getattr(o, f"{stream}_ids"))
                for m in o.scores:
                    np.testing.assert_array_equal(r.scores[m], o.scores[m][name])
        assert seen == sorted(e for e, o in outs.items() if o.scored)
    with pytest.raises(StoreError, match="not square"):
        store.site("cross")
    with pytest.raises(StoreError, match="no site"):
        store.site("self")
    with pytest.raises(StoreError, match="sites"):
        store.xarray(0)


def test_tables_say_each_stream_and_how_the_target_was_decoded(pair_store):
    path, outs = pair_store
    store = open_store(path)
    ex = store.table("examples").to_pandas().set_index("example_id")
    assert ex.loc[3, "status"] == "failed" and ex.loc[3, "reason"] == "synthetic failure"
    assert ex.loc[2, "decoding"] == "greedy" and ex.loc[0, "decoding"] == "forced"
    assert ex.loc[0, "target_text"] == "target 0" and ex.loc[0, "text"] == "source 0"
    tok = store.table("tokens").to_pandas()
    for stream in ("source", "target"):
        got = tok[(tok.example_id == 1) & (tok.stream == stream)].token.tolist()
        assert got == list(getattr(outs[1], f"{stream}_tokens"))
    assert verify_store(str(path)) == []


def test_audio_sources_are_frames(tmp_path):
    outs = write_random_pair_store(tmp_path / "a.zarr", 2, audio=True)
    r = open_store(tmp_path / "a.zarr").example(0)
    assert r.source_ids is None and r.source_tokens == list(outs[0].source_tokens)
    assert r.sites["encoder"].site.targets.kind == "frames"
    said = {line.split(":")[0].strip(): line for line in open_store(tmp_path / "a.zarr").describe().splitlines()}
    assert "source positions are frames" in said["site encoder"] and "source positions are frames" in said["site cross"]
    assert "source positions" not in said["site decoder"]  # the decoder reads the target stream only


def test_an_unknown_site_is_refused(tmp_path):
    write_random_pair_store(tmp_path / "b.zarr", 1)
    from vzcore.store.location import Location

    root = Location(str(tmp_path / "b.zarr")).open_group(mode="r+")
    root.attrs["sites"] = [{"name": "prefix", "layers": [0], "num_layers": 1}]
    with pytest.raises(StoreError, match="unknown site 'prefix'"):
        open_store(tmp_path / "b.zarr")


@pytest.mark.parametrize("name", ["v3", "v4"])
def test_stores_written_before_v5_still_read(name):
    """Written by the v3/v4 writer before sites existed; `maps.npz` holds what its reader gave then."""
    expect = np.load(BEFORE_V5 / "maps.npz")
    store = open_store(BEFORE_V5 / f"{name}.zarr")
    assert store.layout == {"v3": 3, "v4": 4}[name] and store.sites == ["self"]
    seen = 0
    for batch in store.iter_examples():
        for eid, r in batch:
            for m, x in r.scores.items():
                np.testing.assert_array_equal(x, expect[f"{name}/{eid}/{m}"])
                seen += 1
    assert seen == len([k for k in expect.files if k.startswith(f"{name}/")])
