"""Read ``.env`` files with Docker Compose's rules, so the runner sees exactly what Compose sees.

Rules (Compose v2 ``dotenv``): ``KEY=VALUE`` per line, optional ``export`` prefix, blank lines and ``#``
comments ignored; unquoted values are trimmed and lose an inline `` #comment``; single quotes are literal;
double quotes allow ``\\n``, ``\\t``, ``\\\\``, ``\\"``, ``\\$`` escapes and may span lines; ``${VAR}`` / ``$VAR``
in unquoted and double-quoted values refer to earlier keys, then the ``environ`` given (the runner passes the
process environment, as Compose sees it; static checks pass none); ``$$`` is a literal ``$``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runbook_exec.doc.textfile import read_utf8
from runbook_exec.errors import RunbookError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
# ``\$`` is a literal dollar sign: kept as NUL through interpolation, then restored.
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "$": "\0"}


@dataclass(frozen=True)
class Entry:
    """One ``KEY=VALUE`` of an env file, at the line where it starts."""

    key: str
    value: str
    line: int


def parse_env_file(path: str | Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Parse the env file at ``path``; raise :class:`RunbookError` (``path:line: ...``) on bad input.

    A key defined twice has its last value, as Compose reads it (see :func:`env_file_entries` for all)."""
    text = read_utf8(path, "env file")
    return parse_env_text(text, str(path), environ)


def parse_env_text(text: str, path: str = "<env>", environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Parse env-file text. Error messages name keys and lines, never values."""
    return {e.key: e.value for e in env_text_entries(text, path, environ)}


def env_file_entries(path: str | Path, environ: Mapping[str, str] | None = None) -> list[Entry]:
    """Every entry of the env file at ``path`` in file order, a key defined twice included (an old password
    left in while rotating is still a secret)."""
    return env_text_entries(read_utf8(path, "env file"), str(path), environ)


def duplicates(entries: list[Entry]) -> dict[str, list[int]]:
    """Keys defined more than once, with the lines that define them."""
    lines: dict[str, list[int]] = {}
    for e in entries:
        lines.setdefault(e.key, []).append(e.line)
    return {key: found for key, found in lines.items() if len(found) > 1}


def env_text_entries(text: str, path: str = "<env>", environ: Mapping[str, str] | None = None) -> list[Entry]:
    """Every entry of env-file text in order (see :func:`env_file_entries`)."""
    env = os.environ if environ is None else environ
    entries: list[Entry] = []
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.replace("\r\n", "\n").split("\n")
    values: dict[str, str] = {}
    i = 0
    while i < len(lines):
        lineno, line = i + 1, lines[i]
        i += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export ") or stripped.startswith("export\t"):
            stripped = stripped[7:].lstrip()
        key, sep, rest = stripped.partition("=")
        key = key.strip()
        if not sep:
            # The line is not quoted back: it may be a value pasted without its key.
            raise RunbookError(f"{path}:{lineno}: expected KEY=VALUE, found no '='")
        if not _KEY.fullmatch(key):
            shown = repr(key[:40]) if len(key) <= 40 and re.fullmatch(r"[\w.\-]+", key) else "(not shown)"
            raise RunbookError(f"{path}:{lineno}: invalid key name {shown}")
        rest = rest.lstrip()
        if rest[:1] == "'":
            end = rest.find("'", 1)
            if end < 0:
                raise RunbookError(f"{path}:{lineno}: {key}: unterminated single quote")
            value = rest[1:end]
            _check_trailing(rest[end + 1 :], path, lineno, key)
        elif rest[:1] == '"':
            body, consumed, tail = _double_quoted(rest[1:], lines, i)
            if body is None:
                raise RunbookError(f"{path}:{lineno}: {key}: unterminated double quote")
            i += consumed
            _check_trailing(tail, path, lineno, key)
            value = _interpolate(body, values, env, path, lineno, key).replace("\0", "$")
        else:
            value = re.split(r"\s#", rest, maxsplit=1)[0].strip()
            value = _interpolate(value, values, env, path, lineno, key)
        values[key] = value
        entries.append(Entry(key, value, lineno))
    return entries


def _check_trailing(tail: str, path: str, lineno: int, key: str) -> None:
    tail = tail.strip()
    if tail and not tail.startswith("#"):
        raise RunbookError(f"{path}:{lineno}: {key}: unexpected text after the closing quote")


def _double_quoted(first: str, lines: list[str], nxt: int) -> tuple[str | None, int, str]:
    """Read a double-quoted value that may continue on following lines."""
    out: list[str] = []
    text, consumed = first, 0
    while True:
        j = 0
        while j < len(text):
            ch = text[j]
            if ch == "\\" and j + 1 < len(text):
                esc = text[j + 1]
                out.append(_ESCAPES.get(esc, "\\" + esc))
                j += 2
                continue
            if ch == '"':
                return "".join(out), consumed, text[j + 1 :]
            out.append(ch)
            j += 1
        if nxt + consumed >= len(lines):
            return None, consumed, ""
        out.append("\n")
        text = lines[nxt + consumed]
        consumed += 1


def _interpolate(value: str, known: Mapping[str, str], env: Mapping[str, str], path: str, lineno: int, key: str) -> str:
    def lookup(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3) or ""
        current = known.get(name, env.get(name))
        empty = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in ("-", ":-"):
            return arg if (current is None if op == "-" else empty) else (current or "")
        if op in ("?", ":?"):
            if current is None if op == "?" else empty:
                raise RunbookError(f"{path}:{lineno}: {key}: ${{{name}}} is required: {arg}".rstrip(": "))
            return current or ""
        if op in ("+", ":+"):
            return "" if (current is None if op == "+" else empty) else arg
        return current or ""

    # "$$" is a literal dollar sign.
    parts = value.split("$$")
    return "$".join(_VAR.sub(lookup, part) for part in parts)


def sample_keys(sample: str | Path) -> list[str]:
    """The keys a sample file (``.env.sample``) requires: its ``KEY=`` lines; ``# KEY=default`` comments are
    optional settings and not listed."""
    return list(parse_env_file(sample, environ={}))
