"""The Python API: :func:`probe`, :func:`load_results`, :func:`layers`.

Each takes the same configuration as the command line: ``conf/`` of the
package is composed with Hydra's compose API, on the same typed schema
(:mod:`bert_ner_probe.config`), with the same ``key=value`` overrides.

>>> import bert_ner_probe as bnp
>>> r = bnp.probe(["strategy=last", "data.limit.train=500", "trainer.epochs=1"])   # doctest: +SKIP
>>> r.dev.f1, r.history[-1].train_loss                                             # doctest: +SKIP
>>> bnp.load_results(r.run_dir).loc[0, "dev_f1"]                                   # doctest: +SKIP
>>> bnp.layers([["EU", "rejects", "German", "call"]])[0].shape   # (words, layers + 1, width)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any, Iterator, List, Sequence, Union

import numpy as np
from omegaconf import DictConfig, OmegaConf

from bert_ner_probe.errors import UserError
from bert_ner_probe.results.run_result import RunResult

Words = Union[str, Sequence[str]]


def compose_config(overrides: Sequence[str] = (), with_hydra: bool = False) -> DictConfig:
    """The config a ``bert-ner-probe <overrides>`` run gets (without the ``hydra`` node unless ``with_hydra``:
    its launcher, sweeper and sweep parameters).

    A bad override (unknown key, wrong type, sweep syntax, a renamed key) raises :class:`UserError`.
    """
    from hydra import compose, initialize_config_dir  # noqa: PLC0415
    from hydra.core.global_hydra import GlobalHydra  # noqa: PLC0415

    from bert_ner_probe.config import check_renamed, config_error, register  # noqa: PLC0415
    from bert_ner_probe.config import config_dir  # noqa: PLC0415

    register()
    check_renamed(overrides)  # an old key answers with its new name
    if GlobalHydra.instance().is_initialized():
        raise UserError("bert_ner_probe's API composes its own config: call it outside a running Hydra app")
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3", job_name="bert_ner_probe"):
            return compose(config_name="config", overrides=list(overrides), return_hydra_config=with_hydra)
    except Exception as e:  # hydra's override-parse, missing-config and validation errors
        error = config_error(e)
        if error is None:
            raise
        raise error from None


@contextlib.contextmanager
def _threads_restored() -> Iterator[None]:
    """Torch's CPU thread count as it was before the block.

    A run sets it from ``threads=`` (:func:`bert_ner_probe.run.run_probe`) for
    the rest of its process, which is right for the command, which ends with
    its run; a caller of the API goes on with its own setting.
    """
    import torch  # noqa: PLC0415

    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _default_out_dir() -> Path:
    """``outputs/<date>/<time with microseconds>``, like the command's ``hydra.run.dir``."""
    now = datetime.datetime.now()
    return Path("outputs") / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S-%f")


def probe(overrides: Sequence[str] = (), out_dir: Union[str, Path, None] = None) -> RunResult:
    """One run, as ``bert-ner-probe <overrides>``: ``results.json`` and predictions in ``out_dir``.

    ``out_dir`` defaults to ``outputs/<date>/<time>`` under the current
    folder; the composed config and the overrides go to ``out_dir/.hydra/`` as
    the command writes them, so the report reads API runs and command runs
    alike. The run is tracked when ``logger=`` asks for it. ``threads=`` holds
    for the run alone: torch's thread count is restored when it ends.
    """
    from bert_ner_probe.run import run_probe  # noqa: PLC0415
    from bert_ner_probe.tracking import check_logger, log_job  # noqa: PLC0415

    if isinstance(overrides, str):
        raise UserError(f"probe() takes a list of overrides, e.g. [{overrides!r}], not a string")
    cfg = compose_config(overrides)
    check_logger(cfg.logger)
    out = Path(out_dir) if out_dir is not None else _default_out_dir()
    (out / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
    (out / ".hydra" / "overrides.yaml").write_text(json.dumps(list(overrides)) + "\n")  # JSON is YAML
    with _threads_restored():
        result = run_probe(cfg, out)
    log_job(cfg, result.to_dict(), out)
    return RunResult.load(out)


def load_results(directory: Union[str, Path]):
    """The rows of ``results.csv`` for the runs under ``directory`` (a sweep folder or one run folder).

    A :class:`pandas.DataFrame`, one row per job, with ``results.csv``'s
    columns and cells: the report's own writer
    (:func:`bert_ner_probe.report.callback.write_csv`) builds them, pandas reads them back.
    """
    import pandas as pd  # noqa: PLC0415

    from bert_ner_probe.report.collect import load_jobs, write_csv  # noqa: PLC0415

    jobs = load_jobs(Path(directory))
    with tempfile.TemporaryDirectory(prefix="bert_ner_probe-") as tmp:
        path = write_csv(jobs, Path(tmp) / "results.csv")
        return pd.read_csv(path, dtype={"run_dir": str, "error": str, "overrides": str})


def _override(key: str, value: Any) -> str:
    """``("pooling", "mean")`` → ``pooling=mean``; values in Hydra's grammar (``true``, ``null``, ``[0,3]``)."""
    if isinstance(value, (list, tuple, dict, bool)) or value is None:
        return f"{key}={json.dumps(value)}"
    return f"{key}={value}"


def layers(sentences: Sequence[Words], **overrides: Any) -> List[np.ndarray]:
    """Every layer's vector of every word: one float32 array per sentence, Shape: (words, layers + 1, width).

    Row ``k`` of a sentence's array is its ``k``-th word; index 0 of the
    second axis is the embeddings, ``i`` the ``i``-th encoder layer (with
    ``encoder.layers``, the ``i``-th of the hidden states it keeps); ``width``
    is the hidden size (twice it for ``pooling=first_last``). A sentence is a
    list of words or a string split on whitespace; each sentence is its own
    document. ``overrides`` are the command's, as keywords
    (``encoder="bert-base-cased"``, ``pooling="mean"``,
    ``**{"encoder.context": "sentence"}``). The features come from the
    feature cache (``cache_dir``) when these sentences were extracted with
    this encoder and pooling before, else the encoder runs once and the cache
    keeps them. ``threads=`` holds for the extraction alone, as in :func:`probe`.
    """
    import torch  # noqa: PLC0415

    from bert_ner_probe.data.corpus import SPLITS, Corpus, Sentence, Split  # noqa: PLC0415
    from bert_ner_probe.features.store import get_features  # noqa: PLC0415

    words = [s.split() if isinstance(s, str) else [str(w) for w in s] for s in sentences]
    for i, w in enumerate(words):
        if not w:
            raise UserError(f"sentence {i} has no words")
        if any(not x.strip() for x in w):
            raise UserError(f"sentence {i} has an empty word: {w!r}")
    cfg = compose_config([_override(k, v) for k, v in overrides.items()])
    split = Split("train", [Sentence(w, ["O"] * len(w), i, 0) for i, w in enumerate(words)], "bert_ner_probe.layers",
                  hashlib.sha256(json.dumps(words).encode()).hexdigest())
    empty = {name: Split(name, [], "bert_ner_probe.layers", "") for name in SPLITS if name != "train"}
    corpus = Corpus({"train": split, **empty}, ["O"])
    with _threads_restored():
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        entry, _ = get_features(cfg.encoder, cfg.pooling.method, corpus, cfg.device, cfg.cache_dir, cfg.progress,
                                splits=("train",))
    feats = entry.split("train")
    every = feats.stack()  # Shape: (words, hidden states, width), float16: each hidden state's file read once
    return [every[int(a):int(b)].astype(np.float32) for a, b in zip(feats.offsets[:-1], feats.offsets[1:])]
