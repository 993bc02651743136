"""What the probe's trainer reads: a split's combined features and tags, and their reuse across jobs.

* :class:`TaggingData` — one split's features (a tensor or a
  :class:`~bert_ner_probe.strategy.read.CachedSelection`), sentence offsets
  and label indices, with the batch gathers training and prediction use.
* :class:`FeatureReuse` — the combined features of the last job, kept for
  the next job of the same process: the seeds of one strategy in a sweep run
  one after another and read the same layers, so the cache is read and
  combined (and copied to the GPU) once per strategy, not once per seed. A
  run gets the object it should share (the CLI keeps one per process; a
  caller of :func:`bert_ner_probe.run.run_probe` may pass its own or none).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.nn.utils.rnn import PackedSequence

from bert_ner_probe.data.corpus import IGNORE_INDEX, SPLITS, Corpus
from bert_ner_probe.device import to_device_nowait
from bert_ner_probe.features.batching import batches_by_length, bucketed_batches
from bert_ner_probe.features.cache import CacheDamaged, CacheEntry, check_entry
from bert_ner_probe.probes.batch import Batch, Layout, PackedBatch, PaddedBatch, WordsBatch
from bert_ner_probe.strategy.combiner import Combiner
from bert_ner_probe.strategy.read import CachedSelection, NonFiniteFeatures, check_finite, select_features
from bert_ner_probe.training.concurrency import workers


@dataclass
class TaggingData:
    """Combined word features of one split, ready for batching.

    ``x`` and ``tags`` live together: on the GPU when the features fit there
    (then a batch is gathered on the GPU and no step waits for the host), else
    on the CPU (pinned when training runs on a GPU). On the CPU ``x`` may be a
    :class:`~bert_ner_probe.strategy.read.CachedSelection`, which reads each
    batch's rows from the cache when it is indexed.
    """

    x: torch.Tensor | CachedSelection  # Shape: (words, width) or (words, K, width), float16
    offsets: np.ndarray  # Shape: (sentences + 1,)
    tags: torch.Tensor  # Shape: (words,), label indices, on x's device

    @classmethod
    def build(cls, features: torch.Tensor, offsets: np.ndarray, tags: Sequence[int],
              device: torch.device) -> "TaggingData":
        if features.shape[0] != offsets[-1] or len(tags) != offsets[-1]:
            raise ValueError(f"{features.shape[0]} feature rows, {len(tags)} tags, {offsets[-1]} words: they must agree")
        x = _to_device(features, device) if device.type == "cuda" else features
        tags_t = torch.as_tensor(np.asarray(tags), dtype=torch.long)
        return cls(x, np.asarray(offsets, dtype=np.int64), tags_t.to(x.device) if x.is_cuda else tags_t)

    @property
    def num_sentences(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def num_words(self) -> int:
        return int(self.offsets[-1])

    @property
    def home(self) -> torch.device:
        """The features' device: where a batch is gathered and predictions collected."""
        return self.x.device

    # ---------------------------------------------------------------- what the trainer reads (BatchSource)

    def plan_epoch(self, batch_size: int, rng: np.random.Generator, bucket_pool: int) -> List[np.ndarray]:
        """Shuffled batches of ``batch_size`` sentences of similar length (:func:`bucketed_batches`).

        Sentences are shuffled, cut into pools of ``bucket_pool × batch_size``,
        sorted by length inside each pool and batched (little padding, short
        packed sequences); batch order is shuffled. The pools are small on
        purpose: large pools make batches so uniform (all headlines, all long
        sentences) that dev F1 drops, while a few batches per pool keep the
        speed of bucketing (bench.md has the figures).
        """
        return bucketed_batches(self.lengths, batch_size, rng, bucket_pool)

    def eval_batches(self, batch_size: int, max_words: int) -> List[np.ndarray]:
        """Sentences by length, at most ``batch_size`` and ``max_words`` padded words a batch (:func:`batches_by_length`).

        :meth:`batch` puts each batch's sentences longest first.
        """
        return batches_by_length(self.lengths, batch_size, max_words)

    def words_in(self, sentence_ids: np.ndarray) -> int:
        return int(self.lengths[sentence_ids].sum())

    def sentence_words(self, sentence_ids: np.ndarray) -> int:
        """Words of these sentences (the same as :meth:`words_in`: here the units are sentences)."""
        return self.words_in(sentence_ids)

    def batch(self, sentence_ids: np.ndarray, layout: Layout, device: torch.device) -> Batch:
        """The sentences as one batch in ``layout`` on ``device`` (packed and padded: longest first)."""
        if layout == Layout.packed:
            return PackedBatch(*self.packed(sentence_ids, device))
        if layout == Layout.padded:
            rows, valid, lens = self.positions(longest_first(sentence_ids, self.lengths))
            x, lengths, tags = self.gather(rows, valid, lens, device)
            return PaddedBatch(x, lengths, tags, rows, valid)
        if layout == Layout.words:
            return self.words_at(self.sentence_rows(sentence_ids), device)
        raise ValueError(f"cached features cannot make a {layout} batch")

    def held(self, max_bytes: int) -> "TaggingData":
        """The same split with its features read from the cache once and held in memory, when they are read batch
        by batch (:class:`~bert_ner_probe.strategy.read.CachedSelection`) and take at most ``max_bytes``; else
        itself. The values are the same float16 ones either way."""
        if not isinstance(self.x, CachedSelection) or self.x.nbytes > max_bytes:
            return self
        return TaggingData(self.x.read_all(), self.offsets, self.tags)

    def subset(self, sentence_ids: np.ndarray) -> "TaggingData":
        """These sentences alone, in this order, as their own split (features shared, not copied when on a device)."""
        rows_t = torch.from_numpy(self.sentence_rows(np.asarray(sentence_ids, dtype=np.int64)))
        x = self.x[rows_t.to(self.x.device)]  # Shape: (subset words, ...); a CachedSelection reads them here
        offsets = np.concatenate([[0], np.cumsum(self.lengths[sentence_ids])]).astype(np.int64)
        return TaggingData(x, offsets, self.tags[rows_t.to(self.tags.device)])

    def sentence_rows(self, sentence_ids: np.ndarray) -> np.ndarray:
        """Every word row of these sentences, sentence after sentence. Shape: (words,), int64."""
        starts = self.offsets[sentence_ids]
        lens = self.offsets[sentence_ids + 1] - starts
        return (np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))).astype(np.int64)

    def words_at(self, rows: np.ndarray, device: torch.device) -> WordsBatch:
        """These word rows without sentence structure: features float32 on ``device``, tags, rows."""
        rows_t = to_device_nowait(torch.from_numpy(np.asarray(rows, dtype=np.int64)), self.x.device)  # Shape: (words,)
        x = self.x[rows_t].to(device, non_blocking=True).float()  # Shape: (words, ...)
        return WordsBatch(x, self.tags[rows_t].to(device, non_blocking=True), rows_t)

    def positions(self, sentence_ids: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Word rows and validity of each padded position, on the features' device; lengths.

        Returns ``(rows, valid, lengths)``: rows Shape: (batch, time) (0 at
        padding), valid Shape: (batch, time) bool, lengths Shape: (batch,) numpy.
        """
        starts = self.offsets[sentence_ids]
        lens = self.offsets[sentence_ids + 1] - starts
        span = to_device_nowait(torch.from_numpy(np.stack([starts, lens])), self.x.device)  # Shape: (2, batch)
        pos = torch.arange(int(lens.max()), device=self.x.device)  # Shape: (time,)
        valid = pos[None, :] < span[1][:, None]  # Shape: (batch, time)
        rows = torch.where(valid, span[0][:, None] + pos[None, :], 0)  # padding reads row 0 ...
        return rows, valid, lens

    def packed(self, sentence_ids: np.ndarray, device: torch.device
               ) -> Tuple[PackedSequence, torch.Tensor, torch.Tensor]:
        """The sentences as one packed batch, gathered straight into packed order (no padding).

        Returns ``(seq, tags, rows)``: ``seq.data`` Shape: (words, ...) float32
        on ``device``, time-major with the sentences longest first (their order
        is changed here); ``tags`` Shape: (words,) and each word's row in this
        split, ``rows`` Shape: (words,) on the features' device, both in the same order.
        """
        ids = longest_first(sentence_ids, self.lengths)
        starts = self.offsets[ids]
        lens = self.offsets[ids + 1] - starts
        t, b = np.nonzero(np.arange(int(lens[0]))[:, None] < lens[None, :])  # time-major: step t, then sentence b
        batch_sizes = torch.from_numpy(np.bincount(t))  # Shape: (time,), sentences still running at each step
        rows = to_device_nowait(torch.from_numpy(starts[b] + t), self.x.device)  # Shape: (words,)
        data = self.x[rows].to(device, non_blocking=True).float()  # Shape: (words, ...)
        tags = self.tags[rows].to(device, non_blocking=True)
        return PackedSequence(data, batch_sizes), tags, rows

    def padded(self, sentence_ids: np.ndarray, device: torch.device):
        """Padded features (float32), lengths (CPU) and tags (``IGNORE_INDEX`` at padding) for some sentences, in that order."""
        return self.gather(*self.positions(sentence_ids), device)

    def gather(self, rows: torch.Tensor, valid: torch.Tensor, lens: np.ndarray, device: torch.device):
        """:meth:`padded` from :meth:`positions`' output."""
        x = self.x[rows].to(device, non_blocking=True).float()  # Shape: (batch, time, ...)
        keep = valid.to(device, non_blocking=True).view(valid.shape + (1,) * (x.dim() - 2))
        x = x * keep  # ... and is zeroed here
        tags = torch.where(valid, self.tags[rows], IGNORE_INDEX).to(device, non_blocking=True)
        return x, torch.from_numpy(lens), tags


@dataclass
class WordData:
    """A split's words as the units a word-wise probe trains on: i.i.d. batches of ``words_per_batch`` words.

    A probe that reads the ``words`` layout (linear, MLP: each word scored from its own features)
    needs no sentence structure, so its training batches are shuffled words, as in the probing
    literature's linear probes, and ``trainer.words_per_batch`` replaces ``trainer.batch_size``
    (sentences). Evaluation reads contiguous runs of ``max_words`` words. The features and tags are
    the sentence view's (:class:`TaggingData`), not copied.
    """

    data: TaggingData
    words_per_batch: int

    @property
    def num_words(self) -> int:
        return self.data.num_words

    @property
    def num_sentences(self) -> int:
        return self.data.num_sentences

    @property
    def home(self) -> torch.device:
        return self.data.home

    def plan_epoch(self, batch_size: int, rng: np.random.Generator, bucket_pool: int) -> List[np.ndarray]:
        """Shuffled words, ``words_per_batch`` a batch (``batch_size`` and ``bucket_pool`` are for sentences)."""
        order = rng.permutation(self.num_words)
        return [order[i:i + self.words_per_batch] for i in range(0, len(order), self.words_per_batch)]

    def eval_batches(self, batch_size: int, max_words: int) -> List[np.ndarray]:
        """Runs of at most ``min(max_words, EVAL_RUN)`` consecutive words."""
        step = min(max_words, EVAL_RUN)
        return [np.arange(i, min(i + step, self.num_words)) for i in range(0, self.num_words, step)]

    def words_in(self, word_ids: np.ndarray) -> int:
        return len(word_ids)

    def batch(self, word_ids: np.ndarray, layout: Layout, device: torch.device) -> Batch:
        """These words as one batch; a run of consecutive words of features held in memory is sliced, not gathered
        (the same values, one copy fewer)."""
        if layout != Layout.words:
            raise ValueError(f"word batches cannot make a {layout} batch")
        x = self.data.x
        n = len(word_ids)
        if isinstance(x, torch.Tensor) and n and int(word_ids[-1]) - int(word_ids[0]) == n - 1 and (
                n == 1 or bool((np.diff(word_ids) == 1).all())):
            a = int(word_ids[0])
            rows = torch.arange(a, a + n, device=x.device)  # Shape: (words,)
            return WordsBatch(x[a:a + n].to(device, non_blocking=True).float(),
                              self.data.tags[a:a + n].to(device, non_blocking=True), rows)
        return self.data.words_at(word_ids, device)

    def subset(self, sentence_ids: np.ndarray) -> "WordData":
        """The words of these sentences (:meth:`TaggingData.subset`)."""
        return WordData(self.data.subset(sentence_ids), self.words_per_batch)

    def sentence_words(self, sentence_ids: np.ndarray) -> int:
        """Words of these sentences."""
        return self.data.words_in(sentence_ids)


#: Words of one evaluation batch of a word-wise probe, at most: 2,048 rows of a few hundred values stay in the CPU's
#: caches through the gather, the cast and the probe (larger runs evaluate slower there; bench.md).
EVAL_RUN = 2048


def for_layout(data: TaggingData, layout: Layout, words_per_batch: int, hold_bytes: int = 0) -> "TaggingData | WordData":
    """The units a model of ``layout`` trains on: words for the ``words`` layout, else sentences.

    Word batches are shuffled words, so a batch read from the cache is one read per word; a split whose
    combined features take at most ``hold_bytes`` is therefore read once and held for them
    (:meth:`TaggingData.held`). Sentence batches read runs of words and stay batch by batch.
    """
    return WordData(data.held(hold_bytes), words_per_batch) if layout == Layout.words else data


def longest_first(sentence_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The same sentences, longest first (stable): packed sequences then need no re-sorting on the GPU."""
    return sentence_ids[np.argsort(-lengths[sentence_ids], kind="stable")]


def feature_home(nbytes: int, device: torch.device) -> torch.device:
    """Where a split's features stay during training: the GPU when they take under half its free memory.

    With several jobs at once on the device (``trainer.concurrent``), under half
    of this job's share of it (free ÷ workers): jobs that start together all
    see the same free memory.
    """
    if device.type != "cuda":
        return torch.device("cpu")
    free, _ = torch.cuda.mem_get_info(device)
    return device if nbytes < 0.5 * free / workers() else torch.device("cpu")


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Keep the features on the GPU when they fit; otherwise in pinned host memory."""
    if x.is_cuda:  # placed already (combined on the GPU, or reused from the previous job)
        return x.to(device)
    if x.is_pinned():  # kept in host memory by an earlier job, where it did not fit
        return x
    if feature_home(x.numel() * x.element_size(), device).type == "cuda":
        return x.to(device)
    return x.pin_memory()


class FeatureReuse:
    """The last job's combined features (one entry at most), for the next job of this process.

    An entry is keyed by :meth:`wanted` (what the features are made of, known
    before the cache is looked up) and the cache entry's folder; tags are
    never kept.
    """

    def __init__(self) -> None:
        self.key: Optional[Tuple[str, str]] = None
        self.x: Dict[str, Any] = {}

    @staticmethod
    def wanted(cache_key: Dict[str, Any], cache_dir: Optional[str], layers: Sequence[int], combine: str,
               device: torch.device) -> str:
        """What a job's combined features are made of: the feature cache's key and folder, the layers and rule,
        the device; known before the cache is looked up."""
        return json.dumps([cache_key, cache_dir, list(layers), str(combine), str(device)], sort_keys=True, default=str)

    def forget(self, unless: Optional[str] = None) -> None:
        """Drop the kept features unless they are the ``unless`` ones (then they stay for reuse)."""
        if self.key is None or self.key[0] == unless:
            return
        on_gpu = any(x.is_cuda for x in self.x.values())
        self.key, self.x = None, {}
        if on_gpu:
            torch.cuda.empty_cache()  # so that the next job's free-memory check sees the room

    def tagging_data(self, entry: CacheEntry, corpus: Corpus, combiner: Combiner, device: torch.device,
                     wanted: str) -> Tuple[Dict[str, TaggingData], bool]:
        """Each split's combined features and tags; ``(data, reused)``.

        On the CPU the features are a :class:`~bert_ner_probe.strategy.read.CachedSelection`
        (each batch read from the cache file and combined when it is gathered); on
        a GPU they are combined once, on the GPU when they fit there. They are
        reused from the previous call when ``wanted`` and the cache entry match;
        new features are checked for NaN/Inf before training reads them. Only the
        files of the combiner's hidden states are read. Features that hold NaN or
        Inf send the files they came from through a whole-file check: a damaged
        file (which the sampled checksums at open missed) is :class:`CacheDamaged`,
        else the features are what the encoder gave (:class:`NonFiniteFeatures`).
        """
        key = (wanted, str(entry.path))
        reused = self.key == key
        if not reused:
            self.forget()
        kept = self.x if reused else {}
        data: Dict[str, TaggingData] = {}
        for split in SPLITS:
            feats = entry.split(split)
            x = kept.get(split)
            if x is None:
                states = [feats.state(h) for h in combiner.layers]  # Shape: (words, width) each
            if x is None and device.type == "cpu":  # read from the cache batch by batch: no copy of the split
                x = CachedSelection(states, combiner)
            elif x is None:  # combined where training reads it: on the GPU when it fits there
                nbytes = 2 * feats.num_words * math.prod(combiner.row_shape)  # float16
                x = select_features(states, combiner, device=feature_home(nbytes, device))
            if split not in kept:
                try:
                    check_finite(x, feats.offsets, corpus, split, entry.path, entry.key.dtype)
                except NonFiniteFeatures:
                    why = check_entry(entry.path, full=True, only=[feats.file(h).name for h in combiner.layers])
                    if why is not None:
                        raise CacheDamaged(entry.path, why, f"found by a whole-file check after its {split} features "
                                                            "held NaN or Inf") from None
                    raise
            data[split] = TaggingData.build(x, feats.offsets, corpus.label_ids(split), device)
        self.key, self.x = key, {split: d.x for split, d in data.items()}
        return data, reused
