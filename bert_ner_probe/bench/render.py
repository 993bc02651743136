"""``bench.md``: the bench's figures as Markdown (the ratios, the sweep, memory, then the settings)."""

from __future__ import annotations

import math
from typing import Any, Dict


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


def render_markdown(r: Dict[str, Any]) -> str:
    """bench.md: the ratios, the sweep, memory, then the settings."""
    s = r["settings"]
    lines = [
        "# bert_ner_probe benchmark",
        "",
        f"{r['device_name']} · torch {r['torch_version']} · encoder `{s['encoder']}` "
        f"({r['encoder_layers']} layers, {r['encoder_hidden']} hidden, {s['dtype']}) · "
        f"total {fmt(r['total_s'])} s ("
        + ", ".join(f"{k} {fmt(v)} s" for k, v in r.get("part_s", {}).items()) + ")",
        "",
        "| measurement | harness | bare loop | ratio (harness ÷ bare) |",
        "|---|---:|---:|---:|",
        f"| extraction, words/s ({fmt(r['extract_sentences'])} sentences, {fmt(r['extract_words'])} words, "
        f"context=sentence, pooling=first) | {fmt(r['extract_harness_words_per_s'])} | "
        f"{fmt(r['extract_bare_words_per_s'])} | {fmt(r['extract_ratio'], 3)} |",
        f"| tagger training, words/s per epoch ({fmt(r['train_sentences'])} sentences, width "
        f"{r['train_width']}, hidden {s['hidden_size']}, batch {s['batch_size']}, {r['train_precision']}; "
        f"bare = faster of packed {fmt(r['train_bare_packed_words_per_s'])} and padded "
        f"{fmt(r['train_bare_padded_words_per_s'])}) | "
        f"{fmt(r['train_harness_words_per_s'])} | {fmt(r['train_bare_words_per_s'])} | "
        f"{fmt(r['train_ratio'], 3)} |",
        "",
    ]
    if r.get("cold_sweep_s") is not None:
        lines += [
            f"| {len(s['sweep_strategies'])}-strategy sweep | wall s | encoder passes | cache hits | "
            "extract s (sum) | train s (sum) | peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for label in ("cold", "warm"):
            lines.append(
                f"| {label} | {fmt(r[f'{label}_sweep_s'])} | {fmt(r[f'{label}_sweep_encoder_passes'])} | "
                f"{r[f'{label}_sweep_cache_hits']}/{r[f'{label}_sweep_jobs']} | "
                f"{fmt(r[f'{label}_sweep_extract_s'])} | {fmt(r[f'{label}_sweep_train_s'])} | "
                f"{fmt(r[f'{label}_sweep_peak_rss_mb'])} |")
        lines.append("")
    else:
        lines += ["Sweep skipped (--skip-sweep).", ""]
    lines += [
        f"Peak RSS of one training run (`strategy={s['strategy']}`, cache hit: "
        f"{fmt(r['rss_run_cache_hit'])}): **{fmt(r['peak_rss_mb'])} MiB** "
        f"(wall {fmt(r['rss_run_s'])} s; bench process itself {fmt(r['bench_peak_rss_mb'])} MiB).",
        "",
    ]
    if r.get("full_peak_rss_mb") is not None:
        lines += [
            f"Peak RSS of a full-data run (`strategy={s['strategy']} encoder.context=sentence "
            f"trainer.epochs={r['full_epochs']}`, {fmt(r['full_train_words'])} train words, fresh cache: "
            f"extraction {fmt(r['full_extract_s'])} s, training {fmt(r['full_train_s'])} s): "
            f"**{fmt(r['full_peak_rss_mb'])} MiB**, dev F1 {fmt(100 * r['full_dev_f1'], 2)} "
            f"(wall {fmt(r['full_run_s'])} s).",
            "",
        ]
    lines += [
        "Raw timings (s): extraction harness "
        + ", ".join(fmt(x, 2) for x in r["extract_harness_s"]) + "; bare "
        + ", ".join(fmt(x, 2) for x in r["extract_bare_s"]) + ". Training epoch harness "
        + ", ".join(fmt(x, 2) for x in r["train_harness_epoch_s"]) + "; bare packed "
        + ", ".join(fmt(x, 2) for x in r["train_bare_packed_epoch_s"]) + "; bare padded "
        + ", ".join(fmt(x, 2) for x in r["train_bare_padded_epoch_s"]) + ". Best of each is used.",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {fmt(v) if not isinstance(v, list) else ', '.join(map(str, v))} |" for k, v in s.items()]
    return "\n".join(lines) + "\n"

