"""Every command block in README.md and docs/*.md runs as written.

Each fenced shell block (```sh, ```bash, ```console, ```shell) is run with bash,
as written, in a fresh directory holding only a copy of docs/examples/ (the files
the docs load by their path from the repository's root), with the venv's bin
directory first on PATH, so `scangate` and `python3` are the project's.

The convention in a block, for readers and for this test alike:

- a command exits 0, unless its trailing comment starts with ``exit N``
  (``scangate scan ... # exit 1: `diverted```): then it must exit N;
- every fragment in backquotes in a command's trailing comment is text the
  command prints (stdout or stderr): ``# `genuine (SG-G1)```;
- the rest of a comment is prose for people.

The test runs the commands one after the other in one bash process (variables and
files carry over, as in a terminal) and stops at the first command whose status
differs from its comment, as `set -e` would; then it checks the printed claims.
A block that starts `scangate serve` must do it in the background on ports the
kernel picks (--port 0 --metrics-port 0) and stop it (kill %1; wait %1); whatever
it leaves running is killed and fails it. ```console blocks with `$ ` prompts
(transcripts) are refused with a message: this test runs scripts.

A shell block that cannot run here is listed in NOT_RUN with the reason and the
test that holds it to the code instead; an entry that no longer matches its block
fails. Blocks that are not commands use other fences: synopses with placeholders
are ```text and listed in SYNOPSES, whose every subcommand and option must exist
in the real CLI (and every CLI command must be in one); benchmark transcripts are
```text, and the benchmark they name must exist. A bare ``` fence is an error, so
a shell block cannot hide from this test by leaving out its language.
"""
from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from docblocks import (
    README, REPO, SHELL_LANGS, Block, Command, all_blocks, doc_files, expected_status, logical_lines,
    output_claims, prose, readme_serve_command, section_blocks, split_commands,
)
from serverproc import SCANGATE_BIN
from scangate.campaigns import load_campaign
from scangate.cli import cli as CLI

VENV_BIN = SCANGATE_BIN.parent
EXAMPLES = REPO / "docs" / "examples"
BLOCK_TIMEOUT_S = 120
UNEXPECTED_STATUS = 97          # the harness's own exit status: a command's status differed


@dataclass(frozen=True)
class NotRun:
    """A shell block this test does not run, and why."""

    key: tuple[str, str, int]   # (file, section heading, index in the section): see Block.key
    looks_like: str             # a regex the block must match, so the entry cannot outlive its block
    reason: str
    covered_by: str             # the test that holds the block to the code instead


NOT_RUN = [
    NotRun(("README.md", "Two commands", 0), r"python3 -m venv .*pip install .*&& *\S*/scangate serve",
           "installs the package into a new venv (a build, the network) and then serves until Ctrl-C",
           "test_readme_serve_command_is_what_test_readme_runs, and tests/test_readme.py's serve test runs it"),
    NotRun(("README.md", "Two commands", 1), r"python3 -m venv .*pip install .*pytest",
           "installs the package and runs the whole test suite, this test included (minutes, recursive)",
           "test_readme_test_command_is_what_ci_runs"),
    NotRun(("README.md", "Two commands", 2), r"python3 -m venv .*postgresql.*scangate init .*--store .*scangate serve "
                                             r"--store",
           "installs the package and serves until Ctrl-C, against a PostgreSQL server at a fixed address",
           "tests/test_pg_server.py runs its init and serve commands against a real cluster"),
]

# ```text blocks that are command synopses: (file, section heading, index in the section)
SYNOPSES = [
    ("README.md", "Using it", 0),
    ("README.md", "Serving: gRPC, the Python client", 1),
    ("docs/scale-out.md", "Naming the store", 0),
]


def _shell_blocks() -> list[Block]:
    return [b for b in all_blocks() if b.lang in SHELL_LANGS]


def _not_run_keys() -> set[tuple[str, str, int]]:
    return {n.key for n in NOT_RUN}


def _block_id(b: Block) -> str:
    """README.md:trace-linkage-shipments-verdicts (":1" for a second block there)."""
    slug = re.sub(r"[^a-z0-9]+", "-", b.section.lower()).strip("-")
    return f"{b.rel}:{slug}" + (f":{b.index}" if b.index else "")


RUNNABLE = [b for b in _shell_blocks() if b.key not in _not_run_keys()]


# ---------------------------------------------------------------------- the inventory


def test_every_fence_names_its_language() -> None:
    bare = [b.where for b in all_blocks() if not b.lang]
    assert not bare, f"fenced blocks without a language (```sh to run it, ```text if it is not a command): {bare}"


def test_not_run_entries_match_their_blocks() -> None:
    shell = {b.key: b for b in _shell_blocks()}
    for entry in NOT_RUN:
        block = shell.get(entry.key)
        assert block is not None, f"NOT_RUN names {entry.key}, which is no longer a shell block: update the list"
        assert re.search(entry.looks_like, " ".join(logical_lines(block.text))), \
            f"{block.where} no longer looks like {entry.looks_like!r}: update NOT_RUN\n{block.text}"


def test_shell_blocks_are_run_or_listed() -> None:
    # What the parametrised test below runs plus NOT_RUN is every shell block: a
    # new block is run by default, never skipped without a listed reason.
    keys = [b.key for b in _shell_blocks()]
    assert len(keys) == len(set(keys)), "two shell blocks with one key: the parser is wrong"
    stale = sorted(_not_run_keys() - set(keys))
    assert not stale, f"NOT_RUN names blocks that are no longer shell blocks: {stale}"
    assert RUNNABLE, "no shell block left to run: are the docs' walkthroughs gone?"


# ---------------------------------------------------------------------- running blocks


@dataclass
class Ran:
    command: Command
    expected: int
    status: int | None          # None: not reached
    out: str
    err: str


def _script(commands: list[Command], capture: Path) -> str:
    """The block's commands as written, each in a brace group (the current shell:
    assignments and `cd` carry over) with its output captured, then its status
    recorded and checked."""
    cap = shlex.quote(str(capture))
    parts = []
    for i, cmd in enumerate(commands):
        expected = expected_status(cmd.comment)
        parts.append(
            f"{{ {cmd.text}\n}} >{cap}/{i}.out 2>{cap}/{i}.err </dev/null\n"
            f"__docblock_status=$?; echo $__docblock_status >{cap}/{i}.status\n"
            f"[ $__docblock_status -eq {expected} ] || exit {UNEXPECTED_STATUS}\n")
    return "".join(parts)


def _env() -> dict[str, str]:
    # SCANGATE_* settings of whoever runs the tests would change what the commands
    # do (a data directory, a key file, verdict thresholds): the docs assume none.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANGATE_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _group_lingers(pgid: int, grace_s: float) -> bool:
    """Whether a process of group ``pgid`` is still alive after ``grace_s``: a
    stopped server's helper processes take a moment to exit."""
    deadline = time.monotonic() + grace_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)


def run_block(block: Block, tmp_path: Path) -> list[Ran]:
    commands = split_commands(block.text)
    work, capture = tmp_path / "work", tmp_path / "capture"
    capture.mkdir()
    work.mkdir()
    shutil.copytree(EXAMPLES, work / "docs" / "examples")
    background = any(c.code.endswith("&") for c in commands)
    proc = subprocess.Popen(["bash", "-c", _script(commands, capture)], cwd=work, env=_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    left_running = False
    try:
        out, err = proc.communicate(timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # bash and whatever it started: its own session
        out, err = proc.communicate()
        pytest.fail(f"{block.where}: still running after {BLOCK_TIMEOUT_S} s\n{out}{err}")
    finally:
        if background:      # a server the block left running must not outlive it
            left_running = _group_lingers(proc.pid, grace_s=10)
            if left_running:
                os.killpg(proc.pid, signal.SIGTERM)
    assert not left_running, f"{block.where}: the block left a background process running: stop it " \
        "(kill %1; wait %1) before the block ends"
    assert proc.returncode in (0, UNEXPECTED_STATUS), \
        f"{block.where}: the harness failed (status {proc.returncode})\n{out}{err}"

    def read(p: Path) -> str:
        return p.read_text(encoding="utf-8", errors="backslashreplace") if p.exists() else ""

    ran = []
    for i, cmd in enumerate(commands):
        status_file = capture / f"{i}.status"
        status = int(status_file.read_text()) if status_file.exists() else None
        ran.append(Ran(cmd, expected_status(cmd.comment), status,
                       read(capture / f"{i}.out"), read(capture / f"{i}.err")))
    return ran


def _transcript(block: Block, ran: list[Ran]) -> str:
    lines = []
    for r in ran:
        if r.status is None:
            lines.append(f"(not reached) {r.command.text.strip()}")
            continue
        lines.append(f"$ {r.command.text.strip()}\n[exit {r.status}, expected {r.expected}]")
        lines += [f"  | {x}" for x in (r.out + r.err).splitlines()[-15:]]
    return f"{block.where}:\n" + "\n".join(lines)


def _check_serve_usage(block: Block) -> None:
    # A block may start `scangate serve` in the background only on ports the
    # kernel picks: 50051 and 9464 belong to tests/test_readme.py, and another
    # test's server may be on any fixed port.
    for cmd in split_commands(block.text):
        words = shlex.split(cmd.code)
        if any(w.endswith("scangate") and words[k + 1:k + 2] == ["serve"] for k, w in enumerate(words)):
            assert cmd.code.endswith("&") and "--port" in words and "--metrics-port" in words \
                and words[words.index("--port") + 1] == "0" and words[words.index("--metrics-port") + 1] == "0", \
                f"{block.where}: a block that runs `scangate serve` must start it in the background with " \
                f"--port 0 --metrics-port 0 and stop it (kill %1; wait %1): {cmd.text.strip()}"


@pytest.mark.parametrize("block", RUNNABLE, ids=_block_id)
def test_shell_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    # A transcript ("$ command", then output) is not a script: refuse it by name
    # rather than run "$" as a command.
    prompts = [x for x in block.text.splitlines() if x.startswith("$ ")]
    assert not prompts, f"{block.where}: `$ ` prompts in a ```{block.lang} block: write the commands as a " \
        "script with `# exit N` and `# `output`` comments, or fence a transcript of a run as ```text"
    _check_serve_usage(block)
    ran = run_block(block, tmp_path)
    for r in ran:
        if r.status is None:
            break
        assert r.status == r.expected, \
            f"line {block.line + r.command.line}: exit {r.status}, the comment says {r.expected}\n" \
            + _transcript(block, ran)
        for claim in output_claims(r.command.comment):
            assert claim in r.out + r.err, \
                f"line {block.line + r.command.line}: the comment says it prints {claim!r}\n" \
                + _transcript(block, ran)
    assert all(r.status is not None for r in ran), _transcript(block, ran)


# ---------------------------------------------------------------------- blocks not run


def test_readme_test_command_is_what_ci_runs() -> None:
    block = section_blocks(README, "Two commands")[1]
    readme = logical_lines(block.text)
    assert len(readme) == 1, f"{block.where}: expected one command, got {readme}"
    ci = logical_lines((REPO / ".ci" / "run").read_text(encoding="utf-8"))
    assert readme[0] in ci, f"{block.where}: the README's test command is not a line of .ci/run:\n" \
        f"README: {readme[0]}\n.ci/run:\n" + "\n".join(ci)


def test_readme_serve_command_is_what_test_readme_runs() -> None:
    # readme_serve_command checks the shape (a venv made, then its console script
    # run); tests/test_readme.py runs the same arguments with this venv's script.
    _venv, args = readme_serve_command()
    assert args[:1] == ["serve"], args
    assert "readme_serve_command()" in (REPO / "tests" / "test_readme.py").read_text(encoding="utf-8"), \
        "tests/test_readme.py no longer takes the serve command from the README"


# ---------------------------------------------------------------------- synopses

_SYNOPSIS_TOKEN = re.compile(r"\[|\]|[^\s\[\]]+")
_COMMENT = re.compile(r"(^|\s)#.*$")


def _synopsis_commands(text: str) -> list[str]:
    """The `scangate ...` lines of a synopsis, continuations joined, comments cut."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line for line in (_COMMENT.sub("", x).strip() for x in joined.splitlines())
            if line.startswith("scangate ")]


def _resolve(words: list[str]) -> Iterator[tuple[list[str], click.Command, list[str]]]:
    """(path, command, the words after it) for each command a synopsis line names;
    `load|list` names two. Options of a group (`scangate --verbose`) are skipped."""
    todo: list[tuple[list[str], click.Command, list[str]]] = [([], CLI, words)]
    while todo:
        path, cmd, rest = todo.pop(0)
        if isinstance(cmd, click.Group):
            rest = [w for w in rest if w not in ("[", "]")]
            while rest and rest[0].startswith("-"):
                rest = rest[1:]
            if rest and re.fullmatch(r"[a-z][a-z-]*(\|[a-z][a-z-]*)*", rest[0]):
                for name in rest[0].split("|"):
                    sub = cmd.commands.get(name)
                    if sub is None:
                        raise AssertionError(f"`scangate {' '.join(path + [name])}`: no such command")
                    todo.append((path + [name], sub, rest[1:]))
                continue
        yield path, cmd, rest


def check_synopsis(line: str, positionals: bool = True) -> list[list[str]]:
    """Check one `scangate ...` synopsis line against the CLI: every command in it
    exists and its `--help` exits 0; every option is one of that command's and is
    listed by `--help`; choices written `a|b|c` are its choices; with
    ``positionals``, the number of positional placeholders fits its arguments.
    Returns the command paths it names; raises AssertionError on the first problem."""
    words = _SYNOPSIS_TOKEN.findall(line)[1:]
    paths = []
    for path, cmd, rest in _resolve(words):
        name = "scangate " + " ".join(path)
        result = CliRunner().invoke(CLI, [*path, "--help"])
        assert result.exit_code == 0, f"`{name} --help` exited {result.exit_code}: {result.output}"
        help_text = result.output
        options = {o: p for p in cmd.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
        required = optional = 0
        depth, i = 0, 0
        while i < len(rest):
            w = rest[i]
            i += 1
            if w == "[":
                depth += 1
            elif w == "]":
                depth -= 1
            elif w == "|" or w == "...":
                pass
            elif w in ("-h", "--help"):      # every command has it; click keeps it out of params
                pass
            elif w.startswith("-") and len(w) > 1:
                opt = w.split("=", 1)[0]
                assert opt in options, f"`{line}`: {name} has no option {opt}"
                assert re.search(rf"(^|[\s,]){re.escape(opt)}\b", help_text, re.M), \
                    f"`{line}`: `{name} --help` does not list {opt}"
                param = options[opt]
                if not param.is_flag and not param.count and "=" not in w and i < len(rest) \
                        and rest[i] not in ("[", "]"):
                    value = rest[i]
                    i += 1
                    # an option of several values (`--range FIRST LAST`) takes them all
                    for _ in range(param.nargs - 1):
                        if i < len(rest) and rest[i] not in ("[", "]", "|") and not rest[i].startswith("-"):
                            i += 1
                    # item|case|pallet, or a literal value (not a PLACEHOLDER): the choices
                    if isinstance(param.type, click.Choice) and ("|" in value or not value.isupper()):
                        for choice in value.split("|"):
                            assert choice in param.type.choices, \
                                f"`{line}`: {choice!r} is not a choice of {name} {opt} {param.type.choices}"
            elif depth > 0:
                optional += 1
            else:
                required += 1
        if positionals:
            args = [p for p in cmd.params if isinstance(p, click.Argument)]
            least = sum(max(p.nargs, 1) for p in args if p.required)
            most = math.inf if any(p.nargs == -1 for p in args) else sum(p.nargs for p in args)
            assert required <= most and required + optional >= least, \
                f"`{line}`: {required} required and {optional} optional placeholders for {name}, which takes " \
                f"{least} to {most} arguments"
        paths.append(path)
    return paths


def _synopsis_blocks() -> list[Block]:
    by_key = {b.key: b for b in all_blocks()}
    found = []
    for key in SYNOPSES:
        block = by_key.get(key)
        assert block is not None, f"SYNOPSES names {key}, which is no longer a block: update the list"
        assert block.lang == "text" and _synopsis_commands(block.text), \
            f"{block.where} is no longer a ```text synopsis of scangate commands: update SYNOPSES"
        found.append(block)
    return found


def test_synopses_name_real_commands_and_options() -> None:
    for block in _synopsis_blocks():
        for line in _synopsis_commands(block.text):
            check_synopsis(line)


def test_every_synopsis_is_listed() -> None:
    # A text block made of `scangate ...` lines is a synopsis, and is checked.
    listed = set(SYNOPSES)
    for b in all_blocks():
        lines = [x for x in logical_lines(b.text)]
        if b.lang == "text" and lines and all(x.startswith("scangate ") for x in lines):
            assert b.key in listed, f"{b.where} looks like a synopsis: add {b.key} to SYNOPSES"


def _leaf_commands(group: click.Group, path: list[str]) -> Iterator[list[str]]:
    for name, cmd in group.commands.items():
        if cmd.hidden:
            continue
        if isinstance(cmd, click.Group):
            yield from _leaf_commands(cmd, path + [name])
        else:
            yield path + [name]


def test_every_cli_command_is_in_a_synopsis() -> None:
    documented = {tuple(p) for b in _synopsis_blocks() for line in _synopsis_commands(b.text)
                  for p in check_synopsis(line)}
    missing = [" ".join(p) for p in _leaf_commands(CLI, []) if tuple(p) not in documented]
    assert not missing, f"commands in no README synopsis: {missing}"


def test_inline_scangate_commands_exist() -> None:
    # `scangate <command> --option` in running text names a real command and real
    # options: a removed command (`scangate recall`) cannot stay in the prose.
    seen = 0
    for path in doc_files():
        for span in re.findall(r"`(scangate [^`]+)`", prose(path)):
            try:
                check_synopsis(span, positionals=False)
            except AssertionError as exc:
                raise AssertionError(f"{path.relative_to(REPO)}: `{span}`: {exc}") from None
            seen += 1
    assert seen > 0


# ---------------------------------------------------------------------- transcripts, examples

_BENCH = re.compile(r"^(?:\.venv/bin/)?python3? -m (bench(?:\.\w+)?)((?: [a-z]\w*)?)(.*)$")


def test_transcripts_name_real_benchmarks() -> None:
    # ```text blocks whose lines start with "$ " are transcripts of benchmark runs
    # (minutes each; the README's figures come from them). The command must still
    # exist and take the options shown: `--help` is run instead.
    commands = [(b, line[2:]) for b in all_blocks() if b.lang == "text"
                for line in b.text.splitlines() if line.startswith("$ ")]
    assert commands, "no transcript found: were they removed? then drop this test"
    for block, command in commands:
        m = _BENCH.match(command)
        assert m, f"{block.where}: a transcript of `{command}`, which this test does not know how to check"
        module, sub, rest = m.group(1), m.group(2).split(), m.group(3)
        r = subprocess.run([sys.executable, "-m", module, *sub, "--help"], cwd=REPO, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, f"{block.where}: `{command}`: {r.stderr}"
        for opt in re.findall(r"(?:^|\s)(--?[a-z][\w-]*)", rest):
            assert opt in r.stdout, f"{block.where}: `{command}`: no option {opt}"


def test_examples_load_and_are_named_in_the_docs() -> None:
    docs = "".join(p.read_text(encoding="utf-8") for p in doc_files())
    examples = sorted(EXAMPLES.iterdir())
    assert examples
    for path in examples:
        rel = path.relative_to(REPO).as_posix()
        assert rel in docs, f"{rel} is named nowhere in README.md or docs/: remove it or show it"
        if path.suffix in (".toml", ".json"):
            campaign = load_campaign(path.read_text(encoding="utf-8"), path.name)
            # The README's Rewards walkthrough scans against it now and says a
            # first scan wins: that needs the window open today.
            assert campaign.window_contains(datetime.now(timezone.utc)), \
                f"{rel}: its window {campaign.start}..{campaign.end} does not hold today: move it"
