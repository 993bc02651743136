"""``bench.md``: the bench's figures as Markdown (the ratios, the sweep, memory, then the settings)."""

from __future__ import annotations

import math
from typing import Any, Dict, List


def fmt(value: Any, digits: int = 1) -> str:
    """A figure for the table: thousands separated, 3 decimals below 1, a dash for None."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.{digits}f}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def row(*cells: Any) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def times(values: List[float]) -> str:
    """Raw timings, comma-separated, 2 decimals."""
    return ", ".join(fmt(x, 2) for x in values)


def _ratios(r: Dict[str, Any], s: Dict[str, Any]) -> List[str]:
    """The harness-vs-bare table: extraction and training."""
    extraction = (f"extraction, words/s ({fmt(r['extract_sentences'])} sentences, {fmt(r['extract_words'])} words, "
                  "context=sentence, pooling=first)")
    mix = f" mixing {r['train_mix_layers']} layers" if r.get("train_mix_layers") else ""
    training = (f"tagger training, words/s per epoch ({fmt(r['train_sentences'])} sentences, width "
                f"{r['train_width']}{mix}, hidden {s['hidden_size']}, batch {s['batch_size']}, "
                f"{r['train_precision']}; bare = faster of packed {fmt(r['train_bare_packed_words_per_s'])} and "
                f"padded {fmt(r['train_bare_padded_words_per_s'])})")
    return [
        row("measurement", "harness", "bare loop", "ratio (harness ÷ bare)"),
        "|---|---:|---:|---:|",
        row(extraction, fmt(r["extract_harness_words_per_s"]), fmt(r["extract_bare_words_per_s"]),
            fmt(r["extract_ratio"], 3)),
        row(training, fmt(r["train_harness_words_per_s"]), fmt(r["train_bare_words_per_s"]),
            fmt(r["train_ratio"], 3)),
        *_finetune_rows(r),
        "",
        *_finetune_note(r),
    ]


def _finetune_rows(r: Dict[str, Any]) -> List[str]:
    """The fine-tuning rows of the ratio table, one per context (none when the part was skipped)."""
    if r.get("finetune_document_ratio") is None:
        return []
    return [row(f"fine-tuning, tokens/s per epoch, {context} context ({fmt(r['finetune_sentences'])} sentences, "
                f"{fmt(r[f'finetune_{context}_windows'])} windows of at most {r['finetune_max_length']} positions"
                + (f", stride {r['finetune_stride']}" if context == "document" else "")
                + f", {r['finetune_attention']} attention, {r['finetune_precision']})",
                fmt(r[f"finetune_{context}_harness_tokens_per_s"]), fmt(r[f"finetune_{context}_bare_tokens_per_s"]),
                fmt(r[f"finetune_{context}_ratio"], 3))
            for context in ("sentence", "document")]


def _finetune_note(r: Dict[str, Any]) -> List[str]:
    """Document against sentence context: tokens/s and words/s of the harness's fine-tuning epoch."""
    if r.get("finetune_document_ratio") is None:
        return []
    words = r["finetune_document_harness_words_per_s"] / r["finetune_sentence_harness_words_per_s"]
    return [f"Fine-tuning in document context trains **{fmt(r['finetune_document_vs_sentence'], 3)}×** the tokens/s "
            f"of sentence context ({fmt(words, 3)}× the words/s: windows overlap and carry context; "
            f"{fmt(r['finetune_document_tokens'])} against {fmt(r['finetune_sentence_tokens'])} encoder positions "
            f"for the same {fmt(r['finetune_document_words'])} words).", ""]


def _sweep(r: Dict[str, Any], s: Dict[str, Any]) -> List[str]:
    """The cold and warm sweep, or a line saying it was skipped."""
    if r.get("cold_sweep_s") is None:
        return ["Sweep skipped (--skip-sweep).", ""]
    lines = [row(f"{len(s['sweep_strategies'])}-strategy sweep", "wall s", "encoder passes", "cache hits",
                 "extract s (sum)", "train s (sum)", "peak RSS MiB"),
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label in ("cold", "warm"):
        k = f"{label}_sweep"
        lines.append(row(label, fmt(r[f"{k}_s"]), fmt(r[f"{k}_encoder_passes"]),
                         f"{r[f'{k}_cache_hits']}/{r[f'{k}_jobs']}", fmt(r[f"{k}_extract_s"]),
                         fmt(r[f"{k}_train_s"]), fmt(r[f"{k}_peak_rss_mb"])))
    return lines + [""]


def _memory(r: Dict[str, Any], s: Dict[str, Any]) -> List[str]:
    """Peak RSS of one run, and of the full-data run when it was measured."""
    lines = [f"Peak RSS of one training run (`strategy={s['strategy']}`, cache hit: {fmt(r['rss_run_cache_hit'])}): "
             f"**{fmt(r['peak_rss_mb'])} MiB** (wall {fmt(r['rss_run_s'])} s; bench process itself "
             f"{fmt(r['bench_peak_rss_mb'])} MiB).", ""]
    if r.get("full_peak_rss_mb") is not None:
        command = f"strategy={s['strategy']} encoder.context=sentence trainer.epochs={r['full_epochs']}"
        lines += [f"Peak RSS of a full-data run (`{command}`, {fmt(r['full_train_words'])} train words, fresh "
                  f"cache: extraction {fmt(r['full_extract_s'])} s, training {fmt(r['full_train_s'])} s): "
                  f"**{fmt(r['full_peak_rss_mb'])} MiB**, dev F1 {fmt(100 * r['full_dev_f1'], 2)} "
                  f"(wall {fmt(r['full_run_s'])} s).", ""]
    return lines


def _scale(r: Dict[str, Any]) -> List[str]:
    """Encoders beyond MiniLM (``--scale``): base-size extraction, a deep entry's probe epoch, peak RSS per job."""
    if r.get("deep_vs_shallow_epoch") is None:
        return []
    return [
        row(f"scale (random weights, {r['base_extract_words']:,} words)", "harness", "bare loop", "ratio"),
        "|---|---:|---:|---:|",
        row(f"extraction, words/s, base size ({r['base_layers']} layers × {r['base_hidden']}, context=sentence)",
            fmt(r["base_extract_harness_words_per_s"]), fmt(r["base_extract_bare_words_per_s"]),
            fmt(r["base_extract_ratio"], 3)),
        "",
        row(f"linear probe on hidden state N, one epoch (width {r['deep_width']})", "deep entry", "shallow entry",
            "deep ÷ shallow"),
        "|---|---:|---:|---:|",
        row(f"seconds ({r['deep_states']} against {r['shallow_states']} hidden states; best of "
            f"{len(r['deep_epoch_s'])})", fmt(min(r["deep_epoch_s"]), 2), fmt(min(r["shallow_epoch_s"]), 2),
            fmt(r["deep_vs_shallow_epoch"], 3)),
        "",
        row(f"a whole `strategy={r['rss_strategy']}` job, fresh cache", "layers", "peak RSS MiB (wait4)",
            "peak_rss_mb (results.json)", "extract s", "train s"),
        "|---|---:|---:|---:|---:|---:|",
        *[row(label, r[f"rss_{k}_layers"], fmt(r[f"rss_{k}_child_mb"]), fmt(r[f"rss_{k}_results_mb"]),
              fmt(r[f"rss_{k}_extract_s"]), fmt(r[f"rss_{k}_train_s"]))
          for k, label in (("minilm", "MiniLM"), ("base", "base size, random"))],
        "",
    ]


def render_markdown(r: Dict[str, Any]) -> str:
    """bench.md: the ratios, the sweep, memory, the raw timings, then the settings."""
    s = r["settings"]
    parts = ", ".join(f"{k} {fmt(v)} s" for k, v in r.get("part_s", {}).items())
    lines = [
        "# bert_ner_probe benchmark",
        "",
        f"{r['device_name']} · torch {r['torch_version']} · encoder `{s['encoder']}` "
        f"({r['encoder_layers']} layers, {r['encoder_hidden']} hidden, {s['dtype']}) · "
        f"total {fmt(r['total_s'])} s ({parts})",
        "",
        *_ratios(r, s),
        *_sweep(r, s),
        *_memory(r, s),
        *_scale(r),
        f"Raw timings (s): extraction harness {times(r['extract_harness_s'])}; bare {times(r['extract_bare_s'])}. "
        f"Training epoch harness {times(r['train_harness_epoch_s'])}; bare packed "
        f"{times(r['train_bare_packed_epoch_s'])}; bare padded {times(r['train_bare_padded_epoch_s'])}. "
        "Best of each is used.",
        "",
        row("setting", "value"),
        "|---|---|",
    ]
    lines += [row(k, ", ".join(map(str, v)) if isinstance(v, list) else fmt(v)) for k, v in s.items()]
    return "\n".join(lines) + "\n"
