"""Runme's variable prompts: ``export NAME="placeholder"`` lines a person fills in before a cell runs.

A top-level ``export NAME=VALUE`` whose value is a plain word or a quoted string without expansions is a
placeholder (Runme's ``promptEnv``). Before anything runs, each one gets a value: ``--var NAME=...`` when
given; on a terminal (unless ``skipPrompts`` or ``promptEnv=false``) the operator's answer, the current
value of ``NAME`` or the written one being the default (a variable already set in the environment is not
asked for unless ``promptEnv=true``); otherwise the line runs as written. The chosen value replaces the
line as ``export NAME='value'``, so the cell text stays ordinary shell.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from runbook_exec.doc.runme import go_bool

_EXPORT = re.compile(
    r"""^export[ \t]+(?P<name>[A-Za-z_][A-Za-z0-9_]*)="""
    r"""(?P<value>"(?:[^"\\$`]|\\[\\"$`])*"|'[^']*'|[^\s"'`$;&|<>(){}\\#]*)[ \t]*$"""
)
_OPENERS = re.compile(r"^(if|for|while|until|case|select|function)\b|^[({]|\(\)\s*\{?\s*$|\{\s*$")
_CLOSERS = re.compile(r"^(fi|done|esac)\b|^[)}]")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")


@dataclass(frozen=True)
class Placeholder:
    """One ``export NAME=VALUE`` line of a cell (``line``: 0-based within the cell text)."""

    name: str
    value: str
    line: int


def _value(raw: str) -> str:
    if raw.startswith("'"):
        return raw[1:-1]
    if raw.startswith('"'):
        return re.sub(r'\\([\\"$`])', r"\1", raw[1:-1])
    return raw


def find(text: str) -> list[Placeholder]:
    """The placeholder exports at the top level of a shell cell's ``text`` (not inside blocks or heredocs)."""
    found: list[Placeholder] = []
    depth = 0
    heredoc: str | None = None
    continued = False
    for number, line in enumerate(text.split("\n")):
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        stripped = line.strip()
        was_continued, continued = continued, line.endswith("\\")
        marker = _HEREDOC.search(line)
        if marker:
            heredoc = marker.group(2)
        if was_continued or not stripped or stripped.startswith("#"):
            continue
        match = _EXPORT.match(line)
        if match and depth == 0:
            found.append(Placeholder(match.group("name"), _value(match.group("value")), number))
        if _CLOSERS.match(stripped):
            depth = max(0, depth - 1)
        if _OPENERS.search(stripped) and not re.search(r"\b(fi|done|esac)\s*;?\s*$|\}\s*;?\s*$|\)\s*;?\s*$", stripped):
            depth += 1
    return found


def mode(value: str | None) -> str:
    """A cell's ``promptEnv``: ``auto`` (the default), ``always`` or ``never``."""
    text = (value or "").strip().lower()
    if text in ("always", "yes") or go_bool(value) is True:
        return "always"
    if text in ("never", "no") or go_bool(value) is False:
        return "never"
    return "auto"


def rewrite(text: str, values: Mapping[int, tuple[str, str]]) -> str:
    """``text`` with the lines in ``values`` (line -> (name, value)) replaced by ``export NAME='value'``."""
    lines = text.split("\n")
    for number, (name, value) in values.items():
        lines[number] = f"export {name}={shlex.quote(value)}"
    return "\n".join(lines)
