"""The report's model: its runs grouped into sections of rows, and the names of the files it writes.

Runs are grouped into sections that differ in encoder, pooling, context or any
other config field that changes the result (``probe.crf``, ``trainer.lr``, …),
so numbers from different setups never share a mean; within a section a row is
one strategy (name, resolved layers, combine) and its runs are the seeds. A
fine-tuning run (``strategy: finetune``) joins every section of its encoder,
data, pooling and context: its own ``trainer.*``, ``probe.*`` and
``finetune.*`` never split it off. Which fields never start a section: the
seed, the strategy, bookkeeping, and the extraction settings the feature
cache's key leaves out (:class:`bert_ner_probe.features.cache.CacheKey`).

The probing variants of a setup never start a section either: a random-encoder
run (``encoder.weights=random``, Zhang & Bowman 2018) is a row of its own
(``layer_3 (random)``) beside the pretrained one; a control-task run
(``control=word_type``, Hewitt & Liang 2019) is kept apart in
:attr:`Section.controls` (its entity F1 is not a measure, so no strategy table
shows it: :mod:`.probing` reads it); ``mdl`` adds a measurement, not a change.

:mod:`.tables` and :mod:`.plots` read the sections; :mod:`.callback` builds them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bert_ner_probe.data.control import Control
from bert_ner_probe.features.cache import CacheKey
from bert_ner_probe.hidden_states import states_text as layers_text  # noqa: F401 - the report's name for it
from bert_ner_probe.report.collect import Job, cell_text, natural_key
from bert_ner_probe.results.run_result import flatten
from bert_ner_probe.strategy import FINETUNE
from bert_ner_probe.strategy.table7 import (PAPER_DEV_F1, PAPER_FINETUNE_DEV_F1, PAPER_FINETUNE_LARGE_DEV_F1,
                                            TABLE7_ORDER)

CSV_FILE = "results.csv"
SIGNIFICANCE_FILE = "significance.csv"
SIGNIFICANCE_PLOT = "significance.png"
TABLE_FILE = "table.md"
STRATEGIES_PLOT = "strategies.png"
LAYERS_PLOT = "layers.png"
MIX_WEIGHTS_PLOT = "mix_weights.png"
POOLING_PLOT = "pooling.png"
PROBING_FILE = "probing.md"
MDL_PLOT = "mdl.png"

_FINETUNE_ONLY_PREFIX = "finetune."
_FINETUNE_OWN_PREFIXES = ("trainer.", "probe.", "finetune.")
PAPER_LABEL = "paper dev F1 (BERT-base)"

#: The feature-cache key fields every section is keyed on (read from results.json, where they have these names).
SECTION_KEY = ("encoder", "pooling", "context")
#: Config fields that never start a new section: the seed is what a row averages over, the strategy is the
#: row itself, the section key's own config fields are in the key already, ``encoder.name`` labels
#: ``encoder.name_or_path``, and the rest change speed or bookkeeping, not the model (the extraction's
#: speed-only settings are the ones the feature cache's key leaves out).
_NOT_SECTION_FIELDS = frozenset({
    "seed", "device", "cache_dir", "threads", "progress", "write_predictions", "encoder.name",
    *(CacheKey.CONFIG_FIELDS[k] for k in SECTION_KEY), *CacheKey.SPEED_ONLY_FIELDS,
    "trainer.eval_batch_size", "trainer.eval_max_words", "trainer.hold_words_mb",
    "logger.name", "logger.tracking_uri", "logger.experiment", "logger.artifact_location", "logger.log_dir",
    *(CacheKey.CONFIG_FIELDS[k] for k in ("weights", "weights_seed")), "control", "mdl",  # probing variants
    *CacheKey.STORAGE_ONLY_FIELDS,
})
#: ``encoder_weights`` of a run (:class:`bert_ner_probe.features.encoder.Weights`'s values, spelled here so the
#: report does not import torch).
PRETRAINED = "pretrained"
RANDOM = "random"


# --------------------------------------------------------------------------- grouping


@dataclass
class Row:
    """One strategy in one section; its runs are the seeds."""

    strategy: str
    layers: Tuple[int, ...]
    combine: str
    weights: str = PRETRAINED  # the encoder's weights (``random``: the random-encoder baseline)
    label: str = ""
    runs: List[Job] = field(default_factory=list)

    @property
    def random(self) -> bool:
        """A random-encoder row (``encoder.weights=random``, Zhang & Bowman 2018)."""
        return self.weights == RANDOM

    @property
    def dev(self) -> List[float]:
        """Dev F1 of each run, in percent."""
        return [100.0 * j.result.dev.f1 for j in self.runs]

    @property
    def test(self) -> List[float]:
        """Test F1 of each run, in percent."""
        return [100.0 * j.result.test.f1 for j in self.runs]

    @property
    def finetune(self) -> bool:
        return self.strategy == FINETUNE

    @property
    def paper(self) -> Optional[float]:
        """The paper's dev F1 of this strategy (fine-tuning: BERT-large's for a large encoder, else BERT-base's;
        none for a random encoder)."""
        if self.random:
            return None
        if self.finetune:
            r = self.runs[0].result if self.runs else None
            large = r is not None and (r.encoder_name == "bert-large-cased" or "bert-large" in r.encoder)
            return PAPER_FINETUNE_LARGE_DEV_F1 if large else PAPER_FINETUNE_DEV_F1
        return PAPER_DEV_F1.get(self.strategy)


@dataclass
class Section:
    """Runs that share encoder, pooling, context and every other result-changing config field."""

    key: Tuple[Tuple[str, str], ...]
    encoder_name: str
    num_layers: Optional[int]
    extras: Dict[str, str]
    rows: List[Row] = field(default_factory=list)
    controls: List[Row] = field(default_factory=list)  # control-task rows (control != none), out of the tables
    causal: bool = False  # the encoder reads leftwards only (results.json's "causal")

    @property
    def pooling(self) -> str:
        return dict(self.key)["pooling"]

    @property
    def context(self) -> str:
        return dict(self.key)["context"]

    def title(self, without: Sequence[str] = ()) -> str:
        """``minilm-l6 (6 layers) · pooling first · context document · probe.crf=True``; a causal encoder's
        ``gpt2 (12 layers, causal) · …``."""
        about = ([f"{self.num_layers} layers"] if self.num_layers is not None else []) + (
            ["causal"] if self.causal else [])
        depth = f" ({', '.join(about)})" if about else ""
        parts = [f"{self.encoder_name}{depth}"]
        parts += [f"{name} {getattr(self, name)}" for name in ("pooling", "context") if name not in without]
        parts += [f"{k}={v}" for k, v in self.extras.items() if k not in without]
        return " · ".join(parts)


def is_finetune(job: Job) -> bool:
    """A fine-tuning run (``strategy == "finetune"``) rather than a frozen-feature probe."""
    return job.result is not None and job.result.strategy == FINETUNE


def control_of(job: Job) -> str:
    """The run's ``control`` (``none`` for the real task, and for results.json files older than the field)."""
    return job.result.control if job.result is not None else Control.none.value


def weights_of(job: Job) -> str:
    """The run's ``encoder_weights`` (``pretrained`` or ``random``; ``pretrained`` for older results.json files)."""
    return job.result.encoder_weights if job.result is not None else PRETRAINED


def probe_of(job: Job) -> str:
    """The run's probe (``probe``: ``bilstm``, ``linear``, …; from its config for older results.json files)."""
    return job.result.probe if job.result is not None else str(flatten(job.config).get("probe.name") or "")


def is_control(job: Job) -> bool:
    """A control-task run (``control != none``, Hewitt & Liang 2019): scored by token accuracy, not entity F1."""
    return control_of(job) != Control.none.value


def conditional_of(job: Job) -> Optional[Tuple[int, int]]:
    """``(baseline, L)`` of a conditional-probing run (``strategy=conditional``: [h_baseline; h_L], Hewitt et al.
    2021; its config names ``strategy.baseline`` and its record the two resolved hidden states), else None."""
    r = job.result
    if r is None or flatten(job.config).get("strategy.baseline") is None or len(r.layers or ()) != 2:
        return None
    return int(r.layers[0]), int(r.layers[1])


def runs_loader(runs: Sequence[Job]):
    """``split → {seed: counts}`` over the runs that wrote predictions (an unreadable file warns, the run left out of
    the sentence statistics): a :class:`~bert_ner_probe.report.significance.Sample`'s loader."""
    import warnings

    from bert_ner_probe.report.bootstrap import SentenceCounts, counts_of_run

    def load(split: str) -> Dict[int, SentenceCounts]:
        out: Dict[int, SentenceCounts] = {}
        for job in runs:
            mode = str((job.config.get("eval") or {}).get("mode", "conlleval"))
            try:
                counts = counts_of_run(job.path, split, mode) if job.path is not None else None
            except (OSError, ValueError) as e:
                warnings.warn(f"{job.path}/predictions/{split}.conll: {e}; left out of the sentence statistics")
                continue
            if counts is not None:
                out.setdefault(job.result.seed, counts)
        return out
    return load


def _counts_for_section(key: str, finetune: bool) -> bool:
    """Whether config field ``key`` of a run can start a section.

    ``finetune.*`` never does; ``trainer.*`` and ``probe.*`` of a fine-tuning
    run are its own training recipe, so they neither split it from the probe
    rows nor count as differences between the probe rows.
    """
    if key.startswith(_FINETUNE_ONLY_PREFIX):
        return False
    return not (finetune and key.startswith(_FINETUNE_OWN_PREFIXES))


def _section_fields(runs: Sequence[Job]) -> List[str]:
    """Config fields (other than seed, strategy and bookkeeping) whose value differs between runs."""
    flat = [(is_finetune(j), {k: cell_text(v) for k, v in flatten(j.config).items()}) for j in runs]
    keys = sorted({k for _, f in flat for k in f})
    return [k for k in keys
            if k not in _NOT_SECTION_FIELDS and not k.startswith("strategy.")
            and len({f.get(k) for ft, f in flat if _counts_for_section(k, ft)}) > 1]


def row_sort_key(row: Row) -> Tuple[Any, ...]:
    """Table 7 order; then other multi-layer strategies by name (``scalar_mix_all`` …);
    then single layers (``layer_3``, ``custom`` with one layer) by index; then multi-layer ``custom``."""
    if row.finetune:
        return -1, 0, (), row.layers, row.combine, row.random
    if row.strategy in TABLE7_ORDER:
        return 0, TABLE7_ORDER.index(row.strategy), (), row.layers, row.combine, row.random
    if len(row.layers) == 1:
        return 2, row.layers[0], natural_key(row.strategy), row.layers, row.combine, row.random
    if row.strategy != "custom":
        return 1, 0, natural_key(row.strategy), row.layers, row.combine, row.random
    return 3, 0, (), row.layers, row.combine, row.random


def _label_rows(rows: Sequence[Row]) -> None:
    """Name each row: the strategy, ``layer k`` for a one-layer custom run, layers appended when a name repeats,
    `` (random)`` appended for a random encoder's row."""
    counts: Dict[Tuple[str, str], int] = {}
    for row in rows:
        counts[row.strategy, row.weights] = counts.get((row.strategy, row.weights), 0) + 1
    for row in rows:
        if row.finetune and counts[row.strategy, row.weights] == 1:
            row.label = row.strategy
        elif row.strategy == "custom" and len(row.layers) == 1:
            row.label = f"layer {row.layers[0]}"
        elif row.strategy == "custom" or counts[row.strategy, row.weights] > 1:
            row.label = f"{row.strategy} [{layers_text(row.layers)}] {row.combine}"
        else:
            row.label = row.strategy
        if row.random:
            row.label += f" ({RANDOM})"


def group_runs(jobs: Sequence[Job]) -> List[Section]:
    """Sections (in order of first appearance) of Table-7-ordered rows of successful runs.

    A random encoder's runs form rows of their own; control-task runs go to :attr:`Section.controls`
    (a section may hold only those, and then has no :attr:`Section.rows`).
    """
    runs = [j for j in jobs if j.ok]
    varying = _section_fields(runs)
    sections: Dict[Tuple[Tuple[str, str], ...], Section] = {}

    def key_of(job: Job, finetune: bool) -> Tuple[Tuple[str, str], ...]:
        r, flat = job.result, flatten(job.config)
        # a key the run's config lacks (another probe's hyperparameter) does not describe it
        extras = [(k, cell_text(flat[k])) for k in varying if k in flat and _counts_for_section(k, finetune)]
        return (*((k, str(getattr(r, k))) for k in SECTION_KEY), *extras)

    def add(section: Section, job: Job) -> None:
        r = job.result
        layers, combine = tuple(r.layers or ()), cell_text(r.combine)
        ident = (r.strategy, layers, combine, weights_of(job))
        rows = section.controls if is_control(job) else section.rows
        row = next((x for x in rows if (x.strategy, x.layers, x.combine, x.weights) == ident), None)
        if row is None:
            row = Row(*ident)
            rows.append(row)
        row.runs.append(job)

    def new_section(job: Job, key: Tuple[Tuple[str, str], ...]) -> Section:
        r = job.result
        sections[key] = Section(key, r.encoder_name or r.encoder, r.num_layers, dict(key[len(SECTION_KEY):]),
                                causal=r.causal)
        return sections[key]

    for job in (j for j in runs if not is_finetune(j)):
        key = key_of(job, False)
        add(sections.get(key) or new_section(job, key), job)
    # A fine-tuning run joins every section of the same encoder, data, pooling and context
    # (whatever the probes' trainer or tagger), as the paper's Table 7 puts both approaches together.
    for job in (j for j in runs if is_finetune(j)):
        key = key_of(job, True)
        homes = [s for k, s in sections.items()
                 if tuple(kv for kv in k if _counts_for_section(kv[0], True)) == key]
        for section in homes or [sections.get(key) or new_section(job, key)]:
            add(section, job)
    for section in sections.values():
        for rows in (section.rows, section.controls):
            rows.sort(key=row_sort_key)
            _label_rows(rows)
    return list(sections.values())


def mean_std(values: Sequence[float]) -> Tuple[float, Optional[float]]:
    """Mean and sample standard deviation (``None`` for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def format_mean_std(values: Sequence[float], digits: int = 1) -> str:
    """``[80.0, 90.0]`` → ``85.0 ± 7.1``; one value → ``85.0 ± –`` (``digits`` decimals)."""
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {'–' if std is None else f'{std:.{digits}f}'}"


def one_line(text: str) -> str:
    """``text`` with every run of white space (newlines included) as one space: one table cell or log line."""
    return " ".join(str(text).split())
