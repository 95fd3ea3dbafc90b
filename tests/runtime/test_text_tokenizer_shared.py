"""Versions of a model with the same tokenizer file and settings share one tokenizer while any of them is
loaded (a hot swap does not build the vocabulary again: runtime/text_tokenizer.py ``shared``)."""

from __future__ import annotations

import gc
import shutil

from edge_mm.runtime.text_tokenizer import TextTokenizer


def test_the_same_file_and_settings_share_one_tokenizer_while_it_is_used(tiny_settings, tmp_path):
    source = next(tiny_settings.path("runtime.artifacts_dir").rglob("tokenizer.json"))
    # max_length 29: settings no loaded model uses (another test's models may still hold their own tokenizer)
    copy = tmp_path / "2" / "tokenizer.json"  # another version's folder, the same file
    copy.parent.mkdir()
    shutil.copyfile(source, copy)
    first = TextTokenizer.shared(source, max_length=29, pad_id=0)
    assert TextTokenizer.shared(copy, max_length=29, pad_id=0) is first
    assert TextTokenizer.shared(copy, max_length=17, pad_id=0) is not first  # other settings: its own
    assert TextTokenizer.shared(copy, max_length=29, pad_id=0, stride=4) is not first
    copy.write_bytes(copy.read_bytes() + b"\n")  # another file (keyed by its bytes)
    other = TextTokenizer.shared(copy, max_length=29, pad_id=0)
    assert other is not first
    encoded = first.encode(["a fine day"])
    assert other.encode(["a fine day"]).lengths == encoded.lengths
    key = next(k for k, v in TextTokenizer._live.items() if v is first)
    del first, other
    gc.collect()
    assert key not in TextTokenizer._live  # released with the last model that used it
