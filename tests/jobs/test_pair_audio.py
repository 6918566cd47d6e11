"""Audio pairs in the job's step: read, checked and resampled on the worker; bad audio is one line per
example in the failure table (the part's `failures`, the examples table's `reason`), never a crash."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest

pytest.importorskip("zarr")

import transformers

from jobs.score.pairstep import PairSpec, score_pair_examples
from vzcore import seq2seq
from vzcore.audio import decode_audio
from vzcore.store.completion import write_done
from vzcore.store.location import Location
from vzcore.store.pairwriter import write_pair_part
from vzcore.store.reader import open_store
from vzcore.store.root import RootAttrs, write_root_attrs
from vzcore.store.sites import SiteLayout


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny_whisper(tiny_seq2seq_models):
    fe = transformers.WhisperFeatureExtractor(feature_size=8, sampling_rate=16000, hop_length=160)
    fe.n_samples, fe.nb_max_frames = 32 * 160, 32  # the tiny model's window: 32 frames of 10 ms (0.32 s)
    return seq2seq.load_seq2seq(tiny_seq2seq_models["whisper"], feature_extractor=fe)


def test_bad_audio_fails_its_example_with_one_line_and_the_rest_is_scored(tiny_whisper, tmp_path):
    tone = np.sin(np.arange(2000) / 5).astype(np.float32) * 0.3  # 0.25 s at 8 kHz: resampled to 16 kHz
    (tmp_path / "noise.wav").write_bytes(b"this is not audio at all")
    (tmp_path / "ok.wav").write_bytes(wav_bytes(tone, 8000))
    rows = [
        {"source": {"path": "ok.wav", "bytes": wav_bytes(tone, 8000)}, "target": None},
        {"source": {"path": "noise.wav", "bytes": None}, "target": None},  # from the data file's folder
        {"source": {"path": "empty.wav", "bytes": wav_bytes(np.zeros(0, np.float32), 16000)}, "target": None},
        {"source": {"path": "slow.wav", "bytes": wav_bytes(tone, 500)}, "target": None},
        {"source": {"path": "long.wav", "bytes": wav_bytes(np.zeros(16000, np.float32), 16000)}, "target": None},
        {"source": {"path": "missing.wav", "bytes": None}, "target": None},
        {"source": None, "target": None},
        {"source": {"path": str(tmp_path / "ok.wav"), "bytes": None}, "target": None},
    ]
    sites = (SiteLayout("encoder", (1,), 2), SiteLayout("decoder", (0, 1), 2), SiteLayout("cross", (0, 1), 2))
    spec = PairSpec("tiny", ("value_zeroing", "attention"), "cosine", sites, 3, Location(str(tmp_path / "s.zarr")),
                    "float32", audio=True, audio_base=str(tmp_path))  # fmt: skip
    outs = score_pair_examples(tiny_whisper, list(range(len(rows))), rows, spec.methods, spec)
    reasons = {o.example_id: o.reason for o in outs if not o.scored}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6]
    assert "noise.wav: unreadable audio" in reasons[1]
    assert "no samples (empty audio)" in reasons[2]
    assert "sampling rate 500 Hz cannot be resampled" in reasons[3]
    assert "longer than the model's 0.32 s window" in reasons[4]
    assert reasons[5] == "AudioError: missing.wav: no such audio file"  # named as the data names it: no machine path
    assert [r for r in reasons.values() if str(tmp_path) in r] == []
    assert "no audio in this row" in reasons[6]
    assert all("\n" not in r for r in reasons.values())
    # what the worker scored is what the library gives for the same waveform (as the 16-bit file holds it)
    heard = decode_audio(wav_bytes(tone, 8000)).samples
    want = seq2seq.score_pairs(tiny_whisper, [heard], [None], sampling_rate=8000, max_new_tokens=3, frames="audio",
                               methods=["value_zeroing", "attention"], layers={"encoder": [1]})[0]  # fmt: skip
    for k in (0, 7):
        # the 13 frames holding the 0.25 s, of the window's 16 (`score_pairs(frames="audio")`)
        assert outs[k].decoding == "greedy" and outs[k].source_ids == [-1] * 13
        for site in ("encoder", "decoder", "cross"):
            np.testing.assert_allclose(outs[k].scores["value_zeroing"][site], want.sites[site].scores["value_zeroing"])
    # the failure table: one line per example in the part's tables
    write_pair_part(spec.location, 0, outs, spec.methods, sites=sites, rows=rows, store_dtype="float32")
    root = spec.location.open_group(mode="a")
    attrs = RootAttrs(methods=list(spec.methods), layers=[0, 1], model_num_layers=2, causal=False,
                      model_type="whisper", plan=[{"part": 0, "start": 0, "stop": 8}],
                      sites=[s.to_attr() for s in sites], source_kind="frames")  # fmt: skip
    write_root_attrs(root, attrs)
    write_done(root, [attrs.mask_of(spec.methods)])
    ex = open_store(tmp_path / "s.zarr").table("examples").to_pandas().set_index("example_id")
    assert ex.loc[4, "status"] == "failed" and ex.loc[4, "reason"] == reasons[4]
    assert ex.loc[0, "text"] == "ok.wav" and ex.loc[0, "decoding"] == "greedy"
    r = open_store(tmp_path / "s.zarr").example(7)
    assert r.source_ids is None and r.source_tokens[:2] == ["0.00s", "0.02s"]


def test_audio_rows_reach_the_workers_undecoded(tmp_path):
    """A `datasets` Audio column is read as its file's bytes; a column of file names as names (paths from
    the data file's folder): the driver decodes nothing."""
    import datasets

    from jobs.score.pairdata import open_pairs

    tone = wav_bytes(np.sin(np.arange(800) / 3).astype(np.float32) * 0.2, 16000)
    (tmp_path / "a.wav").write_bytes(tone)
    ds = datasets.Dataset.from_dict({"audio": [str(tmp_path / "a.wav")], "text": ["hello"]})
    ds.cast_column("audio", datasets.Audio()).save_to_disk(str(tmp_path / "ds"))
    rows = open_pairs(str(tmp_path / "ds"), None, "train", "audio", "text", None, None, audio=True).rows(0, 1)
    assert rows[0]["source"]["bytes"] == tone and rows[0]["target"] == "hello"
    (tmp_path / "list.csv").write_text("file,text\na.wav,hello\n")
    rows = open_pairs(str(tmp_path / "list.csv"), None, "train", "file", None, None, None, audio=True).rows(0, 1)
    # named as the data names it (the actor finds it from the data file's folder), with its size
    assert rows == [{"source": {"path": "a.wav", "bytes": None, "size": len(tone)}, "target": None}]


def test_audio_file_rows_are_named_as_the_data_names_them_with_their_size(tmp_path):
    """The part's data hash: the same folder moved resumes; another file (another size) under the same
    name is other data; no machine path lands in a row (nor so in the store's examples table)."""
    import shutil

    from jobs.score.pairdata import open_pairs
    from vzcore.store.layout import texts_fingerprint

    def folder(name: str, seconds: float) -> str:
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "u0.wav").write_bytes(wav_bytes(np.zeros(int(8000 * seconds), np.float32), 8000))
        (tmp_path / name / "speech.csv").write_text("file,text\nu0.wav,hello\n")
        return str(tmp_path / name / "speech.csv")

    def rows(data: str) -> list[dict]:
        return open_pairs(data, None, "train", "file", "text", None, None, True).rows(0, 1)

    first = rows(folder("a", 0.25))
    assert first[0]["source"]["path"] == "u0.wav"
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert texts_fingerprint(rows(str(tmp_path / "b" / "speech.csv"))) == texts_fingerprint(first)
    assert texts_fingerprint(rows(folder("a", 0.5))) != texts_fingerprint(first)


def test_audio_parts_are_planned_by_the_frames_each_utterance_fills(tmp_path):
    """The driver reads each file's header, not its samples: an utterance is planned as the encoder frames
    its duration fills (as the actor will score it), not Whisper's whole window; where no header says
    (not audio, a missing file), the window stands as the bound."""
    import types

    from jobs.score.pairjob import _planned_frames
    from vzcore.audio import audio_seconds

    config = types.SimpleNamespace(model_type="whisper", max_source_positions=1500, sampling_rate=16000)
    short = wav_bytes(np.zeros(8000, np.float32), 8000)  # 1 s: 50 frames of 20 ms
    (tmp_path / "a.wav").write_bytes(wav_bytes(np.zeros(4100, np.float32), 16000))  # 0.25625 s: 13 frames
    (tmp_path / "junk.wav").write_bytes(b"not audio")
    assert audio_seconds(short) == 1.0 and audio_seconds(tmp_path / "junk.wav") is None
    assert _planned_frames(config, {"path": "x.wav", "bytes": short}, None) == 50
    assert _planned_frames(config, {"path": "a.wav", "bytes": None, "size": 1}, tmp_path) == 13
    assert _planned_frames(config, {"path": "junk.wav", "bytes": None}, tmp_path) == 1500
    assert _planned_frames(config, {"path": "gone.wav", "bytes": None}, tmp_path) == 1500
    assert _planned_frames(config, None, tmp_path) == 1500
    long = wav_bytes(np.zeros(16000 * 40, np.float32), 16000)  # longer than the window: refused by the actor
    assert _planned_frames(config, {"path": "l.wav", "bytes": long}, None) == 1500
    soundfile = pytest.importorskip("soundfile")
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(16000 * 2, np.float32), 16000, format="FLAC")
    assert audio_seconds(buf.getvalue()) == 2.0
    assert _planned_frames(config, {"path": "f.flac", "bytes": buf.getvalue()}, None) == 100


def test_an_audio_file_that_cannot_be_read_is_named_as_the_caller_names_it(tmp_path, monkeypatch):
    import vzcore.audio as audio

    (tmp_path / "locked.wav").write_bytes(wav_bytes(np.zeros(160, np.float32), 16000))

    def denied(path, where):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(audio, "_read", denied)
    with pytest.raises(audio.AudioError) as err:
        audio.read_audio(tmp_path / "locked.wav", "locked.wav")
    assert str(err.value) == "locked.wav: cannot be read (Permission denied)"
