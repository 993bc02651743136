"""``run_if``: skip a test unless this machine has what it needs, as Lightning's ``RunIf`` does.

    @run_if(cuda=True)            # a CUDA GPU
    @run_if(bf16_cpu=True)        # a CPU with bf16 units (AVX512-BF16 or AMX)
    @run_if(bf16_cuda=True)       # a GPU with native bf16 (compute capability >= 8.0)

The GPU tests run wherever a GPU is (a lent device machine, a user's workstation, a cluster
node) and are reported as skipped elsewhere, with the reason.
"""

from __future__ import annotations

import pytest
import torch


def run_if(*, cuda: bool = False, bf16_cpu: bool = False, bf16_cuda: bool = False) -> pytest.MarkDecorator:
    from bert_ner_probe.device import native_bf16

    reasons = []
    has_cuda = torch.cuda.is_available()
    if (cuda or bf16_cuda) and not has_cuda:
        reasons.append("a CUDA GPU")
    if bf16_cuda and has_cuda and not native_bf16(torch.device("cuda")):
        reasons.append("a GPU with native bf16")
    if bf16_cpu and not native_bf16(torch.device("cpu")):
        reasons.append("a CPU with bf16 units (AVX512-BF16 or AMX)")
    return pytest.mark.skipif(bool(reasons), reason="needs " + " and ".join(reasons))


#: The devices a device-parametrised test runs on: always the CPU, and CUDA where there is a GPU.
DEVICES = ["cpu", pytest.param("cuda", marks=run_if(cuda=True))]
