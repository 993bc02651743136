"""The device, dtype and precision policy (bert_ner_probe/device.py), and bf16 autocast where the CPU has bf16 units."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from run_if import run_if

from bert_ner_probe.data.corpus import IGNORE_INDEX
from bert_ner_probe.device import autocast, native_bf16, release_host_memory, training_precision
from bert_ner_probe.errors import UserError
from bert_ner_probe.probes.batch import PaddedBatch
from bert_ner_probe.probes.bilstm import BiLSTMProbe

pytestmark = pytest.mark.usefixtures("one_thread")


CPU = torch.device("cpu")


def test_training_precision_of_the_probe(monkeypatch):
    import bert_ner_probe.device as dev

    assert training_precision("fp32", CPU) == "fp32"
    assert training_precision("auto", CPU) == ("bf16" if native_bf16(CPU) else "fp32")
    monkeypatch.setattr(dev, "native_bf16", lambda device: True)  # a CPU with AMX or AVX512-BF16
    assert training_precision("bf16", CPU) == "bf16" and training_precision("auto", CPU) == "bf16"
    monkeypatch.setattr(dev, "native_bf16", lambda device: False)  # an older CPU: no bf16 LSTM in oneDNN
    assert training_precision("auto", CPU) == "fp32"
    with pytest.raises(UserError, match="bf16 needs a CPU with bf16 units"):
        training_precision("bf16", CPU)
    monkeypatch.undo()
    with pytest.raises(UserError, match="fp16 is for fine-tuning"):
        training_precision("fp16", CPU)
    with pytest.raises(UserError, match="float16"):  # autocast would run cuDNN's LSTM in float16
        training_precision("bf16", torch.device("cuda"))


@run_if(bf16_cpu=True)
@pytest.mark.parametrize("crf, mix", [(False, None), (True, None), (False, 3), (True, 3)])
def test_bf16_autocast_forward_gives_float32_emissions_close_to_fp32(crf, mix):
    torch.manual_seed(0)
    model = BiLSTMProbe(6, 4, hidden_size=8, num_layers=2, dropout=0.0, crf=crf, mix_layers=mix).eval()
    x, lengths = torch.randn((3, 5, mix, 6) if mix else (3, 5, 6)), torch.tensor([5, 2, 4])
    ref = model.emissions(x, lengths)
    with autocast(CPU, "bf16"):
        low = model.emissions(x, lengths)
    assert low.dtype == torch.float32
    assert not torch.equal(low, ref)  # it did run in bf16 ...
    torch.testing.assert_close(low, ref, rtol=0.05, atol=0.02)  # ... to bf16's precision (8 bits)
    with autocast(CPU, "fp32"):
        assert torch.equal(model.emissions(x, lengths), ref)
    # Loss, gradients and decoding run under bf16 too, with float32 gradients.
    tags = torch.full((3, 5), IGNORE_INDEX, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        tags[i, :n] = torch.arange(n) % 4
    model.train()
    with autocast(CPU, "bf16"):
        loss = model.loss(PaddedBatch.of(x, lengths, tags))
        best = model.decode(PaddedBatch.of(x, lengths))
        pred = [best[i, : int(n)].tolist() for i, n in enumerate(lengths)]
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
    assert [len(p) for p in pred] == [5, 2, 4]


def test_precision_policy_of_fine_tuning(monkeypatch):
    import bert_ner_probe.device as dev
    from bert_ner_probe.errors import UserError

    def tp(precision, device):
        return dev.training_precision(precision, device, finetune=True)

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(dev, "native_bf16", lambda device: device.type == "cuda")  # an Ampere GPU, an old CPU
    assert (tp("auto", cuda), tp("auto", cpu)) == ("bf16", "fp32")
    monkeypatch.setattr(dev, "native_bf16", lambda device: device.type == "cpu")  # a pre-Ampere GPU, an AMX CPU
    assert (tp("auto", cuda), tp("auto", cpu)) == ("fp16", "bf16")
    assert (dev.training_precision("auto", cuda), dev.training_precision("auto", cpu)) == ("fp32", "bf16")  # probe
    assert tp("fp32", cpu) == "fp32" and tp("fp16", cuda) == "fp16"
    with pytest.raises(UserError, match="fp16 is for fine-tuning on a CUDA device"):
        tp("fp16", cpu)
    with pytest.raises(UserError, match=r"expected one of auto \| fp32 \| bf16 \| fp16"):
        tp("fp8", cpu)


@run_if(cuda=True)
def test_the_policy_on_this_gpu():
    """On a real GPU: the probe trains in fp32, fine-tuning in bf16 where native (else fp16 + scaler)."""
    from bert_ner_probe.device import encoder_dtype, resolve_device

    cuda = resolve_device("auto")
    assert cuda.type == "cuda" and resolve_device("cuda:0").index == 0
    native = native_bf16(cuda)
    assert native == (torch.cuda.get_device_capability(cuda) >= (8, 0))
    assert training_precision("auto", cuda) == "fp32"
    assert training_precision("auto", cuda, finetune=True) == ("bf16" if native else "fp16")
    assert encoder_dtype("auto", cuda) == ("bfloat16" if native else "float32")
    with pytest.raises(UserError, match="float16"):
        training_precision("bf16", cuda)


def test_cuda_asked_for_without_a_gpu_is_one_user_error(monkeypatch):
    from bert_ner_probe.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == CPU
    with pytest.raises(UserError, match="torch sees no CUDA device"):
        resolve_device("cuda:1")
    with pytest.raises(UserError, match="device must be auto, cpu or cuda"):
        resolve_device("tpu")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc/self/statm")
def test_release_host_memory_gives_the_heaps_free_pages_back():
    """Every other 64 KiB block freed: 128 MiB of free chunks between live ones, which free() cannot give back
    (they are not at the heap's top) and malloc_trim can, page by page."""
    def rss() -> int:
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    blocks = [bytearray(64 * 1024) for _ in range(4096)]  # below glibc's mmap threshold: from the heap
    live = blocks[1::2]
    del blocks
    before = rss()
    assert release_host_memory()
    assert before - rss() > 64 * 2**20
    assert sum(len(b) for b in live) == 2048 * 64 * 1024  # what is still in use stays


_FIVE_STEPS = """
import os, resource, torch
from bert_ner_probe.device import keep_on_heap

def faults_of_five_steps():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        grad = torch.zeros(30522, 384)  # Shape: BERT's vocabulary x MiniLM's width, float32
        del grad
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults_of_five_steps()
print(keep_on_heap(32 * 2**20), faults_of_five_steps(), keep_on_heap(30522 * 384 * 4), end=" ")
faults_of_five_steps()  # the first block of that size comes from the system once
print(faults_of_five_steps(), os.sysconf("SC_PAGE_SIZE"))
"""


@pytest.mark.skipif(not release_host_memory(), reason="glibc only")
def test_keep_on_heap_stops_a_gradient_sized_block_from_faulting_in_at_every_step():
    """A 47 MB block freed and allocated again, as a fine-tuned encoder's word-embedding gradient is at every
    step: glibc maps it anew each time (11,500 page faults) until keep_on_heap raises its mmap threshold.
    In a fresh process: the threshold, once raised, stays raised for the process."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _FIVE_STEPS], capture_output=True, text=True, check=True).stdout
    below, faults_before, raised, faults_after, page = out.split()
    pages = 30522 * 384 * 4 // int(page)
    assert below == "False" and raised == "True"  # 32 MiB: glibc keeps such blocks by itself, nothing to change
    assert int(faults_before) > 4 * pages and int(faults_after) < pages



def test_only_the_command_keeps_gradients_on_the_heap(monkeypatch, tmp_path, conll_dir, one_thread):
    """glibc's thresholds are the process's: a run through the Python API leaves them alone, a run as the command
    runs it (its Session says tune_malloc) raises them for the model's gradients. (What raising them does is the
    test above; whether a later 47 MB block faults in also depends on what the heap kept free, so this test
    watches the decision, in run.py, and lets nothing change this process's malloc.)"""
    import bert_ner_probe.run as run_module
    from bert_ner_probe.api import compose_config, probe
    from bert_ner_probe.memo import Session

    calls = []
    monkeypatch.setattr(run_module, "keep_gradients_on_heap", lambda model: calls.append(type(model).__name__))
    small = ["debug=smoke", "data.limit.train=20", "data.limit.dev=10", "data.limit.test=10", f"data.dir={conll_dir}",
             f"cache_dir={tmp_path / 'cache'}", "write_predictions=false"]
    probe(small, out_dir=tmp_path / "api")
    assert calls == []
    run_module.run_probe(compose_config(small), tmp_path / "command", Session(tune_malloc=True))
    assert calls == ["BiLSTMProbe"]
    from bert_ner_probe.main import _SESSION

    assert _SESSION.tune_malloc and not Session().tune_malloc  # the command's session asks; a fresh one does not
