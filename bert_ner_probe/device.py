"""The one device, dtype and precision policy of a run: where it runs and in which number format.

* :func:`resolve_device` — ``auto`` → CUDA when torch sees a GPU, else the CPU.
* :func:`native_bf16` — whether the device multiplies bf16 matrices in hardware
  (a GPU of compute capability ≥ 8.0; a CPU with AMX or AVX512-BF16 units).
* :func:`encoder_dtype` — the frozen encoder's weights: ``auto`` → bfloat16
  where :func:`native_bf16`, else float32. It keys the feature cache.
* :func:`training_precision` — the autocast format of a training loop:

  ==========  =====================  ===================================
  ``auto``     probe (BiLSTM)         fine-tuning (the encoder trained)
  ==========  =====================  ===================================
  CPU          bf16 if native, fp32   bf16 if native, fp32
  CUDA         fp32                   bf16 if native, else fp16 + scaler
  ==========  =====================  ===================================

  The probe refuses ``bf16`` on CUDA (autocast runs cuDNN's LSTM in float16
  whatever is asked, and its loop has no loss scaler) and on a CPU without
  bf16 units (oneDNN has no bf16 LSTM there); ``fp16`` needs CUDA.
* :func:`autocast` — the context for a resolved precision.
* :func:`to_device_nowait` — host → GPU copies through pinned memory.
* :func:`release_host_memory` — what a finished job freed goes back to the system.
* :func:`keep_on_heap` — blocks a training step frees and allocates again stay mapped
  (:func:`keep_gradients_on_heap` for a model's gradients); a process-wide
  setting, so only a command's own process makes it.
* :func:`trim_heap` — the heap's free pages back to the system (between an extraction's batches).
* :func:`reset_peak_rss` and :func:`peak_rss` — a job's own peak resident set size.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import resource
import sys
from pathlib import Path
from typing import Callable, Optional, Tuple

import torch

from bert_ner_probe.choice import Choice
from bert_ner_probe.errors import UserError


class EncoderDtype(Choice):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Precision(Choice):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


TORCH_DTYPES = {EncoderDtype.float32: torch.float32, EncoderDtype.bfloat16: torch.bfloat16,
                EncoderDtype.float16: torch.float16}


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={device!r} asked for, but torch sees no CUDA device")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UserError(f"device must be auto, cpu or cuda[:N], got {device!r}") from None


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware.

    True for a CUDA GPU with bf16 support (Ampere and later) and for a CPU
    with AMX or AVX512-BF16 units (e.g. Xeon Sapphire Rapids, AMD Zen 4);
    elsewhere bf16 is emulated and slower than float32.
    """
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":  # private torch helpers (torch >= 2.3); absent → assume no bf16 units
        checks = (getattr(torch.cpu, "_is_amx_tile_supported", None),
                  getattr(torch.cpu, "_is_avx512_bf16_supported", None))
        return any(bool(check()) for check in checks if check is not None)
    return False


def encoder_dtype(dtype: EncoderDtype | str, device: torch.device | str) -> EncoderDtype:
    """``auto`` → bfloat16 where ``device`` has native bf16 (:func:`native_bf16`), else float32."""
    dtype = EncoderDtype.parse(dtype, "encoder.dtype")
    if dtype != EncoderDtype.auto:
        return dtype
    device = resolve_device(device) if isinstance(device, str) else device
    return EncoderDtype.bfloat16 if native_bf16(device) else EncoderDtype.float32


def torch_dtype(dtype: EncoderDtype | str) -> torch.dtype:
    """The torch dtype of a resolved encoder dtype (``auto`` must be resolved first)."""
    dtype = EncoderDtype.parse(dtype, "encoder.dtype")
    if dtype == EncoderDtype.auto:
        raise ValueError("encoder.dtype=auto must be resolved with encoder_dtype() first")
    return TORCH_DTYPES[dtype]


def training_precision(precision: Precision | str, device: torch.device, *, finetune: bool = False) -> Precision:
    """The autocast format of a training loop on ``device`` (see the table in the module docstring)."""
    precision = Precision.parse(precision, "trainer.precision")
    if precision == Precision.fp16 and (device.type != "cuda" or not finetune):
        raise UserError("trainer.precision=fp16 is for fine-tuning on a CUDA device (it trains with a gradient "
                        "scaler there); use bf16 or fp32 " + ("on the CPU" if finetune else "for the probe"))
    if precision == Precision.bf16 and device.type == "cuda" and not finetune:
        raise UserError("trainer.precision=bf16 is for CPUs: on CUDA, autocast runs cuDNN's LSTM in float16; "
                        "use fp32 (or auto) there")
    if precision == Precision.bf16 and device.type == "cpu" and not finetune and not native_bf16(device):
        raise UserError("trainer.precision=bf16 needs a CPU with bf16 units (AVX512-BF16 or AMX) for the probe: "
                        "oneDNN has no bf16 LSTM without them, and this CPU has neither; use fp32 (or auto)")
    if precision != Precision.auto:
        return precision
    if native_bf16(device) and (device.type == "cpu" or finetune):
        return Precision.bf16
    return Precision.fp16 if device.type == "cuda" and finetune else Precision.fp32


def autocast(device: torch.device, precision: Precision | str) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision (bf16 or fp16; a no-op for fp32)."""
    if precision in (Precision.bf16, Precision.fp16):
        return torch.autocast(device.type, dtype=torch.bfloat16 if precision == Precision.bf16 else torch.float16)
    return contextlib.nullcontext()


def to_device_nowait(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; a host tensor goes to a GPU through pinned memory, so the host does not wait.

    (A copy from pageable host memory makes the host wait until the GPU has
    finished everything queued before it.)
    """
    if t.device.type == "cpu" and device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
GLIBC_MMAP_THRESHOLD_MAX = 32 * 2 ** 20  # the most glibc's own (dynamic) mmap threshold rises to, 64-bit


@functools.lru_cache(maxsize=None)
def _glibc(function: str) -> Optional[Callable[..., int]]:
    """glibc's ``malloc_trim`` or ``mallopt``, or None where the C library has none (macOS, musl, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), function) if name else None
    except (OSError, AttributeError):
        return None


def release_host_memory() -> bool:
    """Collect garbage, then hand the heap's free pages back to the system; False where the C library cannot.

    glibc keeps what tensors of many sizes freed as free chunks inside its heap,
    where it counts in the process's resident size. An extraction frees
    hundreds of MB of batch buffers before training allocates; the jobs of a
    sweep run one after another in one process, so without this each job
    would start from the resident size the jobs before it reached.
    ``malloc_trim(0)`` returns every whole free page of the heap
    (``madvise(MADV_DONTNEED)``); live memory is untouched.
    """
    gc.collect()
    return trim_heap()


def trim_heap() -> bool:
    """``malloc_trim(0)``: every whole free page of glibc's heap back to the system; False where the C library cannot.

    An encoder pass allocates and frees hundreds of MB of activations whose sizes change with every
    batch's shape. Freed blocks of one batch's sizes rarely fit the next batch's, so without this the
    resident set of an extraction grows batch after batch with free but unreturned memory (for a
    base-size encoder, by hundreds of MB over a split); trimmed after each batch, it stays near the
    pass's live memory, for a few percent of the pass's time (mapping every large block on its own
    instead, ``M_MMAP_THRESHOLD``, faults each block in anew and cost a quarter; bench.md).
    """
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim(0)  # returns whether any page went back, which depends on the heap's state, not on us
    return True


def keep_on_heap(nbytes: int) -> bool:
    """Serve host allocations of up to ``nbytes`` from glibc's heap and keep them mapped when freed; False where
    the C library cannot, or where glibc already does (``nbytes`` ≤ 32 MiB).

    glibc maps every allocation above its mmap threshold (which it raises by
    itself, but to 32 MiB at most) with its own ``mmap`` and unmaps it when
    freed. A training step frees its gradients (``zero_grad(set_to_none=True)``)
    and the next backward allocates them again, so a gradient above 32 MiB (the
    word-embedding matrix of a fine-tuned encoder: 30,522 × 384 float32 is 47 MB)
    is faulted in page by page at every step, which costs several times the
    step's ``memset`` of it (bench.md). ``mallopt`` raises the mmap threshold above
    ``nbytes`` and the heap's trim threshold to twice that (glibc's own ratio),
    for the rest of the process: freed blocks of that size are reused, and
    :func:`release_host_memory` still returns them between jobs.
    """
    if nbytes <= GLIBC_MMAP_THRESHOLD_MAX:
        return False
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    threshold = int(nbytes) + 2 ** 20  # room for the block's header and alignment
    return bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * threshold))


def keep_gradients_on_heap(model: torch.nn.Module) -> bool:
    """:func:`keep_on_heap` for the largest gradient of ``model`` (its largest trainable parameter).

    Each training step frees its gradients and allocates them again; on a CPU this keeps the blocks mapped.
    It changes glibc's settings for the whole process: the command line calls it (a run whose
    :class:`~bert_ner_probe.memo.Session` says ``tune_malloc``, the benchmark), not the Python API.
    """
    return keep_on_heap(max((p.numel() * p.element_size() for p in model.parameters() if p.requires_grad), default=0))
def reset_peak_rss() -> bool:
    """Start measuring this process's peak resident set size afresh; False where it cannot be reset.

    On Linux, writing ``5`` to ``/proc/self/clear_refs`` resets the process's high-water
    mark (``VmHWM`` in ``/proc/self/status``) to its present resident size, so each job
    of a sweep that runs in one process measures its own peak. Elsewhere (or where
    ``/proc`` is read-only) the peak stays the process's since it started.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _vm_hwm_kib() is not None


def _vm_hwm_kib() -> Optional[int]:
    """``VmHWM`` of ``/proc/self/status`` in KiB, or None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss(since_reset: bool) -> Tuple[float, str]:
    """``(MiB, scope)``: the peak resident set size since :func:`reset_peak_rss` (``since_reset``, scope
    ``"job"``) from ``VmHWM``, else since the process started (``getrusage``'s ``ru_maxrss``, scope ``"process"``)."""
    hwm = _vm_hwm_kib() if since_reset else None
    if hwm is not None:
        return hwm / 1024, "job"
    return maxrss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss), "process"


def maxrss_mb(maxrss: int) -> float:
    """``ru_maxrss`` (of this process or of waited-for children) in MiB: KiB on Linux, bytes on macOS."""
    return maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)

