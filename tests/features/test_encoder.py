"""The encoder folder's fingerprint: follows file content, kept while the files are unchanged."""

from __future__ import annotations

import os
from pathlib import Path


def test_encoder_fingerprint_follows_file_content_and_is_kept_while_files_are_unchanged(tmp_path):
    from bert_ner_probe.features import encoder
    from bert_ner_probe.stamped_memo import StampedMemo

    memo, hashed = StampedMemo(), []
    real_open = open

    def counting_open(path, *args, **kwargs):  # the files the hash reads
        hashed.append(Path(path).name)
        return real_open(path, *args, **kwargs)

    def fingerprint(location):
        return encoder.fingerprint(location, memo)

    (tmp_path / "config.json").write_text("{}")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x00" * 64)
    first = fingerprint(str(tmp_path))
    import builtins

    builtins.open, before = counting_open, len(hashed)
    try:
        assert fingerprint(str(tmp_path)) == first  # unchanged files: kept, nothing read
    finally:
        builtins.open = real_open
    assert len(hashed) == before == 0 and len(memo) == 1
    assert encoder.fingerprint(str(tmp_path)) == first  # without a memo: hashed again, same value
    st = weights.stat()
    weights.write_bytes(b"\x01" * 64)  # same size, other weights
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    second = fingerprint(str(tmp_path))
    assert second != first
    (tmp_path / "extra.bin").write_bytes(b"x")  # a new file
    assert fingerprint(str(tmp_path)) not in (first, second)
    (tmp_path / "extra.bin").unlink()
    assert fingerprint(str(tmp_path)) == second
