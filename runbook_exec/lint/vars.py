"""Variables used by executable cells that nothing sets: a warning each (``RX301``).

A variable counts as known when it is declared in front matter (``runbook.vars``), is a key of the
``env_sample`` file (found as :func:`sample_path` says), is set by an earlier cell (or the same cell:
assignment, ``export``, ``read``, ``for``, ``mapfile``, ``printf -v``, ``${X:=…}``), or is a well-known shell /
environment variable. ``${X:-default}`` and ``${X+…}`` guard themselves and are not uses. Only executable
cells are read: documentation fences are examples, not part of the run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runbook_exec.doc.document import Runbook
from runbook_exec.errors import RunbookError
from runbook_exec.lint.findings import Finding, cell_position, finding
from runbook_exec.ops.envfile import sample_keys

WELL_KNOWN = frozenset(
    {
        "HOME",
        "PATH",
        "PWD",
        "OLDPWD",
        "USER",
        "LOGNAME",
        "SHELL",
        "TERM",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "HOSTNAME",
        "HOSTTYPE",
        "OSTYPE",
        "MACHTYPE",
        "UID",
        "EUID",
        "GROUPS",
        "PPID",
        "SHLVL",
        "RANDOM",
        "SRANDOM",
        "SECONDS",
        "LINENO",
        "IFS",
        "OPTARG",
        "OPTIND",
        "OPTERR",
        "REPLY",
        "PIPESTATUS",
        "FUNCNAME",
        "BASHPID",
        "BASHOPTS",
        "SHELLOPTS",
        "EPOCHSECONDS",
        "EPOCHREALTIME",
        "COLUMNS",
        "LINES",
        "PS1",
        "PS2",
        "PS4",
        "PROMPT_COMMAND",
        "HISTFILE",
        "EDITOR",
        "VISUAL",
        "PAGER",
        "DISPLAY",
        "MAIL",
        "CI",
        "DEBIAN_FRONTEND",
        "NO_COLOR",
        "FORCE_COLOR",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "VIRTUAL_ENV",
        "PYTHONPATH",
        "GOPATH",
        "JAVA_HOME",
        "KUBECONFIG",
        "SSH_AUTH_SOCK",
        "GPG_TTY",
    }
)
WELL_KNOWN_PREFIXES = (
    "BASH",
    "LC_",
    "XDG_",
    "RUNBOOK_",
    "DOCKER_",
    "COMPOSE_",
    "GITHUB_",
    "CI_",
    "RUNNER_",
    "SSH_",
    "GIT_",
)

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_ASSIGN = re.compile(rf"(?:^|(?<=[\s;&|(`{{]))({_NAME})(?:\[[^\]\n]*\])?\+?=(?!=)")
_DECLARE = re.compile(rf"\b(?:local|declare|typeset|readonly|export)((?:\s+-[A-Za-z]+)*)((?:\s+{_NAME}\b(?![=\[]))+)")
_FOR = re.compile(rf"\b(?:for|select)\s+({_NAME})\s+(?:in\b|do\b|;|$)", re.M)
_COMMAND = re.compile(r"\b(read|mapfile|readarray|getopts|printf)\b([^;&|<>\n]*)")
_HEREDOC = re.compile(r"<<-?\s*(?:(['\"])(\w+)\1|\\(\w+)|(\w+))")
_GUARDS = (":-", ":+", ":=", "-", "+", "=")


@dataclass(frozen=True)
class Use:
    """A ``$NAME`` / ``${NAME}`` expansion at ``(line, char)`` of a cell's source."""

    name: str
    line: int
    char: int


def check_variables(book: Runbook, cwd: Path | None = None) -> list[Finding]:
    """Warn about each variable an executable cell uses that nothing sets, at its first use.

    ``cwd`` is the directory ``runbook-exec`` would run in (default: the current one); see :func:`sample_path`.
    """
    known: set[str] = {v.name for v in book.settings.vars}
    out: list[Finding] = []
    sample = book.settings.env_sample
    if sample:
        found = sample_path(sample, book.path, cwd)
        if found is None:
            out.append(
                finding(
                    book.path,
                    book.key_line("env_sample"),
                    1,
                    "RX302",
                    f"env_sample {sample} not found in the current directory or the repository root of "
                    f"{book.path} (front-matter paths are relative to the directory runbook-exec runs in)",
                )
            )
        else:
            try:
                known.update(sample_keys(found))
            except RunbookError as exc:
                out.append(finding(book.path, book.key_line("env_sample"), 1, "RX302", f"env_sample: {exc}"))
    lines = book.text.split("\n")
    reported: set[str] = set()
    for cell in book.cells:
        if not cell.executable:
            continue
        known.update(assigned(cell.text))
        source = cell.text.split("\n")
        for use in uses(cell.text):
            if use.name in known or use.name in reported or is_well_known(use.name):
                continue
            reported.add(use.name)
            line, col = cell_position(lines, cell.line, source, use.line, use.char)
            out.append(
                finding(
                    book.path,
                    line,
                    col,
                    "RX301",
                    f"${use.name} is used but never set: declare it in runbook.vars, list it in the env_sample "
                    "file, or set it in an earlier cell",
                )
            )
    return out


def is_well_known(name: str) -> bool:
    """Shell and environment variables every session has (or a CI system sets)."""
    return name in WELL_KNOWN or name.startswith(WELL_KNOWN_PREFIXES)


def sample_path(sample: str, runbook: str, cwd: Path | None = None) -> Path | None:
    """The ``env_sample`` file as the runner finds it, or None.

    The runner reads front-matter paths relative to the directory it runs in, the repository root. ``check``
    looks there (``cwd``, default the current directory) and, so that it gives the same answer when started
    elsewhere, in the runbook's repository root: the nearest folder above the runbook that holds ``.git``.
    """
    path = Path(sample)
    if path.is_absolute():
        return path if path.is_file() else None
    bases = [cwd or Path.cwd()]
    repo = repository_root(Path(runbook).resolve().parent)
    if repo is not None:
        bases.append(repo)
    return next((base / path for base in bases if (base / path).is_file()), None)


def repository_root(folder: Path) -> Path | None:
    """The nearest of ``folder`` and its parents that holds ``.git`` (a directory, or a worktree's file)."""
    return next((base for base in (folder, *folder.parents) if (base / ".git").exists()), None)


def assigned(source: str) -> set[str]:
    """Names a cell sets (assignments, declarations, ``read``, loops, ``${X:=…}``)."""
    names: set[str] = set()
    code = _strip_comments(source)
    names.update(m.group(1) for m in _ASSIGN.finditer(code))
    for m in _DECLARE.finditer(code):
        names.update(re.findall(_NAME, m.group(2)))
    names.update(m.group(1) for m in _FOR.finditer(code))
    for m in _COMMAND.finditer(code):
        names.update(_command_targets(m.group(1), m.group(2)))
    names.update(re.findall(rf"\$\{{({_NAME}):?=", code))
    return names


def _command_targets(command: str, rest: str) -> set[str]:
    words = re.findall(r"'[^']*'|\"(?:\\.|[^\"\\])*\"|\S+", rest)
    names: set[str] = set()
    if command == "printf":
        if len(words) >= 2 and words[0] == "-v" and re.fullmatch(_NAME, words[1]):
            names.add(words[1])
        return names
    if command == "getopts":
        if len(words) >= 2 and re.fullmatch(_NAME, words[1]):
            names.add(words[1])
        return names
    takes_arg = "adinNptuCcsO" if command != "read" else "adinNptu"
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-") and len(word) > 1:
            if word[-1] in takes_arg:
                if word[-1] == "a" and i + 1 < len(words) and re.fullmatch(_NAME, words[i + 1]):
                    names.add(words[i + 1])
                i += 1
        elif re.fullmatch(_NAME, word):
            names.add(word)
        else:
            break
        i += 1
    if command == "read" and not names:
        names.add("REPLY")
    if command in ("mapfile", "readarray") and not names:
        names.add("MAPFILE")
    return names


def _strip_comments(source: str) -> str:
    return "\n".join(_code_part(line) for line in source.split("\n"))


def _code_part(line: str) -> str:
    """The line up to an unquoted ``#`` that starts a word (a rough cut, enough for assignment search)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t;&|("):
            return line[:i]
    return line


def uses(source: str) -> Iterator[Use]:
    """Every expansion of a named variable that is not guarded by a default, in order.

    A small lexer: single quotes and ``$'…'`` are literal, ``#`` comments are skipped, ``$(…)`` inside double
    quotes is shell again, and a here-document with a quoted delimiter is literal.
    """
    lines = source.split("\n")
    stack: list[str] = ["top"]  # "top" | "dq" | "cmd:<depth>" | "sq" | "ansi"
    heredocs: list[tuple[str, bool]] = []
    row = 0
    while row < len(lines):
        line = lines[row]
        i, n = 0, len(line)
        while i < n:
            ch, state = line[i], stack[-1]
            if state in ("sq", "ansi"):
                if state == "ansi" and ch == "\\":
                    i += 2
                    continue
                if ch == "'":
                    stack.pop()
                i += 1
                continue
            if ch == "\\":
                i += 2
                continue
            if state == "dq" and ch == '"':
                stack.pop()
                i += 1
                continue
            if state != "dq":
                if ch == "'":
                    stack.append("sq")
                    i += 1
                    continue
                if ch == '"':
                    stack.append("dq")
                    i += 1
                    continue
                if ch == "#" and (i == 0 or line[i - 1] in " \t;&|()"):
                    break
                if ch == "<" and line.startswith("<<", i) and not line.startswith("<<<", i):
                    m = _HEREDOC.match(line, i)
                    if m:
                        word = m.group(2) or m.group(3) or m.group(4)
                        heredocs.append((word, m.group(2) is None and m.group(3) is None))
                        i = m.end()
                        continue
                if state.startswith("cmd:"):
                    depth = int(state[4:])
                    if ch == "(":
                        stack[-1] = f"cmd:{depth + 1}"
                    elif ch == ")":
                        if depth <= 1:
                            stack.pop()
                        else:
                            stack[-1] = f"cmd:{depth - 1}"
            if ch == "$" and i + 1 < n:
                nxt = line[i + 1]
                if nxt == "'" and state != "dq":
                    stack.append("ansi")
                    i += 2
                    continue
                if nxt == "(":
                    stack.append("cmd:1")
                    i += 2
                    continue
                if nxt == "{":
                    use = _braced(line, i)
                    if use is not None:
                        yield Use(use, row, i)
                    i += 2
                    continue
                m = re.compile(_NAME).match(line, i + 1)
                if m:
                    yield Use(m.group(0), row, i)
                    i = m.end()
                    continue
            i += 1
        row += 1
        # Here-document bodies start on the next line and end at the delimiter line.
        for word, expands in heredocs:
            while row < len(lines) and lines[row].strip() != word:
                if expands:
                    for m in re.finditer(rf"(?<!\\)\$(?:\{{({_NAME})(?![:+=\-])|({_NAME}))", lines[row]):
                        if m.group(0).startswith("${") and _braced(lines[row], m.start()) is None:
                            continue
                        yield Use(m.group(1) or m.group(2), row, m.start())
                row += 1
            row += 1
        heredocs = []


def _braced(line: str, start: int) -> str | None:
    """The name a ``${…}`` at ``start`` uses, or None when it is guarded, indirect or special."""
    m = re.compile(rf"\$\{{(#?)({_NAME})(\[[^\]]*\])?(.{{0,2}})").match(line, start)
    if not m:
        return None
    rest = m.group(4)
    if m.group(1) == "" and any(rest.startswith(g) for g in _GUARDS):
        return None
    return m.group(2)
