"""How many jobs of a sweep run at once (bert_ner_probe/training/concurrency.py)."""

from __future__ import annotations

import os

import pytest

from bert_ner_probe.errors import UserError
from bert_ner_probe.training.concurrency import (
    ENV,
    concurrent_jobs,
    worker_threads,
    workers,
)


def test_a_number_is_taken_as_it_is():
    assert concurrent_jobs(1, "cpu") == 1
    assert concurrent_jobs("3", "cpu") == 3


def test_auto_is_one_on_the_cpu():
    assert concurrent_jobs("auto", "cpu") == 1


@pytest.mark.parametrize("bad", [0, -2, "two", "1.5"])
def test_a_bad_value_is_a_user_error(bad):
    with pytest.raises(UserError, match="trainer.concurrent"):
        concurrent_jobs(bad, "cpu")


def test_workers_share_the_cores(monkeypatch):
    monkeypatch.setenv(ENV, "2")
    assert workers() == 2
    assert worker_threads() == max(1, len(os.sched_getaffinity(0)) // 2)
    monkeypatch.delenv(ENV)
    assert workers() == 1
