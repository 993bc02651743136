"""Every command in README.md, docs/*.md and bench.md works with today's code.

Each ``bert-ner-probe …`` and ``python -m bert_ner_probe …`` command (in a code block, its ``\\``
continuations joined, or in inline code) is composed in-process as the command composes it
(:func:`bert_ner_probe.api.compose_config`: the renames, the typed schema, the one-line errors); a
sweep (``-m``, or an experiment that is one) composes one job per value of every swept key, the
experiment's own sweep included, as Hydra's sweeper would. ``bert-ner-probe-report``,
``bert-ner-probe-cache`` and ``python scripts/bench.py`` commands parse with their real argument
parsers. A few single runs run at smoke size. A failure names the file and line of the command.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench.md"]
CLI, REPORT, CACHE, BENCH = "bert-ner-probe", "bert-ner-probe-report", "bert-ner-probe-cache", "scripts/bench.py"
PROGRAMS = (CLI, REPORT, CACHE, "bert_ner_probe", BENCH)


@dataclass(frozen=True)
class DocCommand:
    """One documented command: where it is, its text, which program and its arguments."""

    path: Path
    line: int
    text: str
    program: str  # CLI, REPORT, CACHE or BENCH
    args: Tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def _command(tokens: Sequence[str]) -> Optional[Tuple[str, List[str]]]:
    """The program and arguments of one shell command (environment settings and wrappers such as ``time`` or
    ``taskset`` before it are skipped), or None when it runs none of ours."""
    for i, token in enumerate(tokens):
        rest = list(tokens[i + 1:])
        if token in (CLI, REPORT, CACHE):
            return token, rest
        if re.fullmatch(r"python3?", token) and rest[:2] == ["-m", "bert_ner_probe"]:
            return CLI, rest[2:]
        if re.fullmatch(r"python3?", token) and rest[:1] == [BENCH]:
            return BENCH, rest[1:]
    return None


def _commands_of(path: Path, line: int, text: str, inline: bool) -> List[DocCommand]:
    if not any(p in text for p in PROGRAMS):
        return []
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError as e:  # an unbalanced quote in a line that names a command of ours
        pytest.fail(f"{path.relative_to(REPO)}:{line}: cannot read {text!r} as a shell command: {e}")
    out, segment = [], []
    for token in [*tokens, ";"]:
        if token not in ("&&", "||", ";", "|"):
            segment.append(token)
            continue
        found = _command(segment)
        segment = []
        if found is None:
            continue
        program, args = found
        args = [a for a in args if a not in ("…", "...")]  # an ellipsis stands for any arguments
        if program == CLI:  # a bare <placeholder> stands for overrides (`bert-ner-probe <overrides> --cfg job`)
            args = [a for a in args if not re.fullmatch(r"<[^<>]*>", a)]
        if inline and not args:  # inline code that only names a command mentions it
            continue
        out.append(DocCommand(path, line, " ".join(tokens), program, tuple(args)))
    return out


def doc_commands(path: Path) -> List[DocCommand]:
    """The commands of one Markdown file: code-block lines (continuations joined) and inline code spans."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: List[DocCommand] = []
    prose: List[str] = []  # the file with its code blocks blanked, for the inline spans (line numbers kept)
    fence: Optional[str] = None
    pending, start = "", 0
    for number, line in enumerate(lines, start=1):
        marker = re.match(r"^\s*(```+|~~~+)(\w*)", line)
        if fence is None and marker:
            fence = marker.group(1) if marker.group(2) not in ("python", "text", "yaml", "json") else "skip" + marker.group(1)
            prose.append("")
            continue
        if fence is not None:
            prose.append("")
            if line.strip().startswith(fence.replace("skip", "")):
                fence = None
                continue
            if fence.startswith("skip"):
                continue
            if not pending:
                start = number
            pending += line.rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            found += _commands_of(path, start, pending, inline=False)
            pending = ""
            continue
        prose.append(line)
    text = "\n".join(prose)
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text):
        span = " ".join(match.group(1).split())
        found += _commands_of(path, text.count("\n", 0, match.start()) + 1, span, inline=True)
    return found


COMMANDS = [c for path in DOCS for c in doc_commands(path)]


def test_the_docs_hold_commands_of_every_kind():
    """The extraction itself works: the README's set-up, one-minute run and main command are found, and so are
    commands of the report, the cache and the benchmark."""
    readme = {c.text for c in COMMANDS if c.path.name == "README.md"}
    assert {"bert-ner-probe debug=smoke", "bert-ner-probe experiment=table7_cpu"} <= readme
    assert {c.program for c in COMMANDS} == {CLI, REPORT, CACHE, BENCH}
    assert len(COMMANDS) > 80
    assert any(c.path.name == "bench.md" and c.program == CLI for c in COMMANDS)


# --------------------------------------------------------------------------- composing a command


def _sweep_values(override: str) -> List[str]:
    """The values a swept override takes (``a,b``, ``range(0,7)``); a plain override's one value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_override(override)
    return list(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else [parsed.get_value_element_as_str()]


def jobs_of(args: Sequence[str]) -> List[List[str]]:
    """The override lists the command's jobs are still to be composed with (none for a single run, composed here);
    for a sweep, one job per value of the longest swept key, every swept key cycling through its values (the
    experiment's own sweep parameters first, then the command line's, which win over them, as Hydra's basic
    sweeper orders them)."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from bert_ner_probe.api import compose_config

    known, unknown = get_args_parser().parse_known_args(list(args))
    overrides = [*known.overrides, *(u for u in unknown if not u.startswith("-"))]
    parsed = OverridesParser.create().parse_overrides(overrides)
    primary = [o.input_line for o in parsed if not o.is_sweep_override()]
    cfg = compose_config(primary, with_hydra=True)
    if not (known.multirun or str(cfg.hydra.mode) == "RunMode.MULTIRUN"):
        # a single run: the composition above was its own; a swept key in it fails, as in the command
        return [overrides] if len(primary) < len(overrides) else []
    sweeper = cfg.hydra.sweeper
    params: List[str] = []
    if str(sweeper._target_).endswith("GridsSweeper"):  # a union of grids: each grid's first job (test_config)
        from test_config import first_of_each_grid

        return first_of_each_grid(overrides, offline="0")  # a hub encoder's depth, offline: its embeddings
    if str(sweeper._target_).endswith("BasicSweeper"):
        try:
            params = [f"{k}={v}" for k, v in (sweeper.params or {}).items()]
        except Exception as e:  # a sweep over an encoder's depth that only the hub knows: the job configs alone
            if "could not load encoder" not in str(e):
                raise
    else:  # another sweeper (optuna) searches over distributions: its keys must be keys of the config
        job = compose_config(primary)
        for key in sweeper.params or {}:
            assert key in _flat_keys(job), f"the {sweeper._target_} sweeps {key}, which the config does not have"
    swept = [*params, *overrides]
    values = [_sweep_values(o) for o in swept]
    keys = [o.split("=", 1)[0] for o in swept]
    return [[f"{k}={v[i % len(v)]}" for k, v in zip(keys, values)] for i in range(max(map(len, values)))]


def _flat_keys(cfg) -> set:
    from omegaconf import OmegaConf

    from bert_ner_probe.results.run_result import flatten

    return set(flatten(OmegaConf.to_container(cfg)))


_COMPOSED: set = set()


def check(command: DocCommand) -> None:
    """Compose (or parse) one documented command; a failure names its file and line."""
    try:
        if command.program == CLI:
            if "--help" in command.args or "--hydra-help" in command.args:
                return  # the help is its own test (tests/e2e/test_cli_errors.py)
            from bert_ner_probe.api import compose_config

            for job in jobs_of(command.args):
                if tuple(job) not in _COMPOSED:  # the same job in several docs is composed once
                    compose_config(job)
                    _COMPOSED.add(tuple(job))
        elif command.program == REPORT:
            from bert_ner_probe.report.callback import build_parser

            build_parser().parse_args(list(command.args))
        elif command.program == CACHE:
            from bert_ner_probe.features.cache_cli import build_parser as cache_parser

            cache_parser().parse_args(list(command.args))
        else:
            from bert_ner_probe.bench.cli import parse_args

            parse_args(list(command.args))
    except SystemExit as e:
        pytest.fail(f"{command.where}: `{command.text}` does not parse (exit {e.code})")
    except Exception as e:  # noqa: BLE001 - any failure is the doc's, named by file and line
        pytest.fail(f"{command.where}: `{command.text}` does not compose: {type(e).__name__}: {e}")


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_every_documented_command_composes(command: DocCommand, monkeypatch, conll_dir):
    monkeypatch.setenv("CONLL2003_DIR", str(conll_dir))
    check(command)


def test_a_command_that_no_longer_composes_is_named_by_file_and_line(tmp_path):
    """The check fails on a stale key, an unknown option and a bad report flag, naming where they are."""
    doc = tmp_path / "doc.md"
    doc.write_text("Text.\n\n```bash\nbert-ner-probe strategy=last \\\n  probe.hiden_size=8   # a typo\n```\n\n"
                   "Inline: `bert-ner-probe tagger.hidden_size=256` and `bert-ner-probe-report DIR --alpha x`.\n"
                   "`bert-ner-probe -m strategy=last,nosuch`\n", encoding="utf-8")
    commands = [DocCommand(c.path, c.line, c.text, c.program, c.args) for c in doc_commands(doc)]
    assert [(c.line, c.program) for c in commands] == [(4, CLI), (8, CLI), (8, REPORT), (9, CLI)]
    messages = []
    for c in commands:
        object.__setattr__(c, "path", REPO / "docs" / "doc.md")  # named as a file of the repository would be
        with pytest.raises(pytest.fail.Exception) as failure:
            check(c)
        messages.append(str(failure.value))
    assert messages[0].startswith("docs/doc.md:4: `bert-ner-probe strategy=last probe.hiden_size=8` does not compose")
    assert "probe.hiden_size: probe=bilstm has no key 'hiden_size'" in messages[0]
    assert "tagger.hidden_size: renamed to probe.hidden_size" in messages[1]
    assert messages[2].startswith("docs/doc.md:8: `bert-ner-probe-report DIR --alpha x` does not parse")
    assert "Could not find 'strategy/nosuch'" in messages[3]


# --------------------------------------------------------------------------- a few runs at smoke size

#: Single runs of the docs that also run, at smoke size (their overrides, then debug=smoke), sharing one cache.
SMOKE_RUNS = [
    ("README.md", "bert-ner-probe debug=smoke"),
    ("docs/table7.md", "bert-ner-probe strategy=custom strategy.layers=[0,3,6] strategy.combine=mean"),
    ("docs/probing.md", "bert-ner-probe probe=linear strategy=layer strategy.index=3 control=word_type"),
]


@pytest.mark.e2e
@pytest.mark.slow
def test_some_documented_runs_run_at_smoke_size(tmp_path, conll_dir, one_thread):
    from bert_ner_probe.api import probe

    for name, text in SMOKE_RUNS:
        (command,) = [c for c in COMMANDS if c.path == REPO / name and c.text == text] or [None]
        assert command is not None, f"{name} no longer holds `{text}`"
        result = probe([*command.args, "debug=smoke", f"data.dir={conll_dir}", f"cache_dir={tmp_path / 'cache'}"],
                       out_dir=tmp_path / f"run{SMOKE_RUNS.index((name, text))}")
        assert result.sizes["train"]["sentences"] == 200 and len(result.history) == 1, command.where
