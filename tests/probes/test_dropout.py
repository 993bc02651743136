"""The fast dropout (bert_ner_probe.probes/dropout.py): keeps or zeroes and rescales; identity in evaluation."""

from __future__ import annotations

import pytest
import torch

from bert_ner_probe.probes.dropout import Dropout, dropout

pytestmark = pytest.mark.usefixtures("one_thread")


def test_dropout_keeps_or_zeroes_and_rescales():
    x = torch.full((200, 500), 3.0, requires_grad=True)
    torch.manual_seed(0)
    y = dropout(x, 0.25, training=True)
    kept = y != 0
    assert torch.all(y[kept] == 4.0)  # 3 / (1 - 0.25)
    assert abs(1 - kept.float().mean().item() - 0.25) < 0.01  # 100,000 draws: about 0.003 standard error
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() * 4 / 3)


def test_dropout_is_the_identity_in_evaluation_and_at_zero():
    x = torch.randn(4, 5)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    module = Dropout(0.5).eval()
    assert module(x) is x and "p=0.5" in repr(module)
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            dropout(x, p, training=True)
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            Dropout(p)
