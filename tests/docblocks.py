"""The fenced code blocks of README.md and docs/*.md, and the shell commands in
them, for the tests that hold the documentation to the code (tests/test_readme.py,
tests/test_docs_commands.py).

A shell block is split into commands the way bash reads them (a command goes on
while a quote, a ``$(...)`` or a trailing backslash is open), so each command's
exit status and output can be checked on its own; the splitter knows only the shell
syntax the docs use and refuses the rest (here-documents) rather than guess.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHELL_LANGS = frozenset({"sh", "bash", "console", "shell"})

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def doc_files() -> list[Path]:
    """README.md and every Markdown file in docs/, in a stable order."""
    return [README, *sorted((REPO / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    path: Path      # the Markdown file
    line: int       # 1-based line number of the opening fence
    lang: str       # first word of the info string; "" for a bare fence
    text: str       # the content, with the fence's indentation removed
    section: str    # text of the nearest heading above it ("" before the first)
    index: int      # position among the blocks of its section, from 0
    end: int        # 1-based line number of the closing fence

    @property
    def rel(self) -> str:
        return self.path.relative_to(REPO).as_posix()

    @property
    def where(self) -> str:
        """file:line, for messages."""
        return f"{self.rel}:{self.line}"

    @property
    def key(self) -> tuple[str, str, int]:
        """(file, section, index): names a block without its line number, which
        moves whenever the text above it changes."""
        return (self.rel, self.section, self.index)


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of one Markdown file, in order. An unclosed fence is
    an error: everything after it would silently stop being prose."""
    out: list[Block] = []
    section, per_section = "", 0
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            h = _HEADING.match(lines[i])
            if h:
                section, per_section = h.group(2), 0
            i += 1
            continue
        indent, fence = len(m.group("indent")), m.group("fence")
        info = m.group("info").strip()
        start, body = i, []
        i += 1
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                break
            line = lines[i]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            i += 1
        else:
            raise ValueError(f"{path}:{start + 1}: unclosed code fence")
        out.append(Block(path, start + 1, info.split()[0] if info else "", "\n".join(body) + "\n",
                         section, per_section, i + 1))
        per_section += 1
        i += 1
    return out


def prose(path: Path) -> str:
    """The file's text outside its fenced blocks (fences blanked, lines kept)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for b in blocks(path):
        for k in range(b.line - 1, b.end):
            lines[k] = ""
    return "\n".join(lines)


def all_blocks() -> list[Block]:
    return [b for p in doc_files() for b in blocks(p)]


def section_blocks(path: Path, heading_prefix: str, lang: str | None = None) -> list[Block]:
    """The blocks (of one language, if given) under the first heading that starts
    with ``heading_prefix``."""
    found = [b for b in blocks(path) if b.section.startswith(heading_prefix)]
    sections = {b.section for b in found}
    assert len(sections) <= 1, f"{path.name}: several sections start with {heading_prefix!r}: {sorted(sections)}"
    return [b for b in found if lang is None or b.lang == lang]


# ---------------------------------------------------------------------- shell


@dataclass(frozen=True)
class Command:
    """One command of a shell block: as written (its trailing comment included),
    the line it starts on within the block (from 1), the comment on its last line,
    if any (without the '#'), and the text without that comment."""

    text: str
    line: int
    comment: str | None
    code: str


def split_commands(script: str) -> list[Command]:
    """Split shell text into top-level commands, one per logical line.

    A logical line ends at a newline outside quotes and ``$(...)`` that no
    backslash escapes. Blank and comment-only lines are dropped. ``a && b`` or
    ``a; b`` on one line stays one command: its status is the list's. Here-documents
    are refused: their body lines would be taken for commands.
    """
    ends: list[int] = []                 # offsets of the newlines that end a logical line
    comments: dict[int, tuple[int, str]] = {}   # end of a logical line -> (offset, text) of its comment
    stack: list[str] = []                # open contexts: '"' or '$('
    pending: tuple[int, str] | None = None      # the top-level comment seen on the current line
    i, n = 0, len(script)
    while i < n:
        c = script[i]
        top = stack[-1] if stack else ""
        if c == "\\":
            i += 2                       # an escaped character, or a line continuation
            continue
        if top == '"':
            if c == '"':
                stack.pop()
            elif script.startswith("$(", i):
                stack.append("$(")
                i += 1
            i += 1
            continue
        if c == "'":                     # single quotes: nothing inside is special
            j = script.find("'", i + 1)
            if j < 0:
                raise ValueError(f"line {script.count(chr(10), 0, i) + 1}: unclosed single quote")
            i = j + 1
            continue
        if c == '"':
            stack.append('"')
        elif script.startswith("$(", i):
            stack.append("$(")
            i += 1
        elif c == ")" and top == "$(":
            stack.pop()
        elif script.startswith("<<", i) and not script.startswith("<<<", i):
            raise ValueError(f"line {script.count(chr(10), 0, i) + 1}: here-documents are not supported")
        elif c == "#" and (i == 0 or script[i - 1] in " \t\n;&|("):
            j = script.find("\n", i)
            j = n if j < 0 else j
            if not stack:
                pending = (i, script[i + 1:j].strip())
            i = j
            continue
        elif c == "\n" and not stack:
            ends.append(i)
            if pending is not None:
                comments[i] = pending
            pending = None
        i += 1
    if stack:
        raise ValueError(f"unterminated {stack[-1]!r} at the end of the block")
    if not ends or ends[-1] != n:
        ends.append(n)
        if pending is not None:
            comments[n] = pending
    commands: list[Command] = []
    begin = 0
    for end in ends:
        text = script[begin:end]
        body = text.lstrip()
        if body and not body.startswith("#"):
            first = begin + len(text) - len(body)
            at, comment = comments.get(end, (end, None))
            commands.append(Command(text, script.count("\n", 0, first) + 1, comment, script[begin:at].rstrip()))
        begin = end + 1
    return commands


_EXIT = re.compile(r"^exit (\d+)\b")
_CLAIM = re.compile(r"`([^`]+)`")


def expected_status(comment: str | None) -> int:
    """``# exit N...``: the command exits N; any other comment, or none: 0."""
    m = _EXIT.match(comment or "")
    return int(m.group(1)) if m else 0


def output_claims(comment: str | None) -> list[str]:
    """The backquoted fragments of a comment: text the command prints."""
    return _CLAIM.findall(comment or "")


def logical_lines(text: str) -> list[str]:
    """The lines of a shell script with backslash continuations joined, comment
    lines and blank lines dropped, and runs of blanks collapsed: for comparing a
    command in a document with the same command in a script."""
    out: list[str] = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = " ".join(line.split())
        if line and not line.startswith("#"):
            out.append(line)
    return out


def readme_serve_command() -> tuple[str, list[str]]:
    """The README's install-and-serve command ("## Two commands", first block),
    ``python3 -m venv V && ... && V/bin/scangate ARGS``: (V, ARGS). Its last part is
    what tests/test_readme.py runs, with the console script of the venv the tests
    run in; tests/test_docs_commands.py checks the shape."""
    block = section_blocks(README, "Two commands")[0]
    lines = logical_lines(block.text)
    assert len(lines) == 1, f"{block.where}: expected one command, got {lines}"
    parts = [p.strip() for p in lines[0].split("&&")]
    first, last = shlex.split(parts[0]), shlex.split(parts[-1])
    assert first[:3] == ["python3", "-m", "venv"] and len(first) == 4, \
        f"{block.where}: the command should start by creating a venv, got {parts[0]!r}"
    venv = first[3]
    assert last[0] == f"{venv}/bin/scangate", \
        f"{block.where}: the command should end by running {venv}/bin/scangate, got {parts[-1]!r}"
    return venv, last[1:]
