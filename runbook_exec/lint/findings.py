"""What ``runbook-exec check`` reports: one :class:`Finding` per problem, and the code table.

Codes are stable (CI configurations and reviewers refer to them):

* ``RX1xx`` cells, sections and attributes (``RX101``–``RX105`` come from :mod:`runbook_exec.doc.document`);
* ``RX2xx`` front matter (``RX201``/``RX202`` from :mod:`runbook_exec.doc.document`);
* ``RX3xx`` variables; ``RX4xx`` secrets; ``RX5xx`` links; ``RX6xx`` damaged text; ``RX7xx`` the tools;
* ``SCnnnn`` ShellCheck's own codes, mapped back to the Markdown line and column.
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"
NOTICE = "notice"  # a key of the JSON summary (check_format); notices are messages, never findings

CODES: dict[str, tuple[str, str]] = {
    "RX101": (ERROR, "heading attribute list cannot be read"),
    "RX102": (ERROR, "duplicate section id"),
    "RX103": (ERROR, "duplicate cell id"),
    "RX104": (ERROR, "fence never closed"),
    "RX105": (ERROR, "cell attribute list cannot be read"),
    "RX106": (ERROR, "unknown cell attribute key"),
    "RX107": (ERROR, "bad cell attribute value"),
    "RX108": (ERROR, ".exec on a language that cannot run"),
    "RX109": (ERROR, "cell has two different ids"),
    "RX110": (WARNING, "executable cell without an id"),
    "RX111": (WARNING, "section holding executable cells has no explicit {#id}"),
    "RX112": (ERROR, "when=failure cell with no normal cell before it"),
    "RX113": (WARNING, "JSON-style attributes do not render on the site"),
    "RX114": (WARNING, "a cell id is also a section id"),
    "RX115": (WARNING, "Runme mode: an attribute read but not used, or a cell name used twice"),
    "RX116": (WARNING, "Runme mode: fence never closed (the cell runs to the end of the file)"),
    "RX201": (ERROR, "front matter is not valid YAML"),
    "RX202": (ERROR, "front matter does not match the schema"),
    "RX301": (WARNING, "variable used but never set or declared"),
    "RX302": (WARNING, "env_sample file not found"),
    "RX303": (WARNING, "a key defined twice in an env file"),
    "RX401": (ERROR, "text looks like a secret"),
    "RX402": (ERROR, "KEY=value with a high-entropy value"),
    "RX403": (ERROR, "private key block"),
    "RX501": (ERROR, "link to an anchor that does not exist"),
    "RX502": (ERROR, "link to a Markdown file that does not exist"),
    "RX601": (ERROR, "replacement character U+FFFD (text damaged by decoding)"),
    "RX602": (ERROR, "mojibake (UTF-8 read as Latin-1 / Windows-1252)"),
    "RX603": (ERROR, "ellipsis inside a word (text truncated by a copy)"),
    "RX604": (ERROR, "ellipsis placeholder inside an executable cell"),
    "RX701": (ERROR, "ShellCheck is required here but was not found"),
}


@dataclass(frozen=True, order=True)
class Finding:
    """One problem at ``path:line:col`` (1-based; line 0 means the file as a whole)."""

    path: str
    line: int
    col: int
    code: str
    message: str
    severity: str = ERROR

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.code} {self.message}"


def finding(path: str, line: int, col: int, code: str, message: str, severity: str | None = None) -> Finding:
    """A finding whose severity defaults to the one the code table gives."""
    return Finding(path, line, max(col, 1), code, message, severity or CODES.get(code, (ERROR, ""))[0])


def cell_position(lines: list[str], fence_line: int, source: list[str], offset: int, char: int) -> tuple[int, int]:
    """Markdown ``(line, col)`` of character ``char`` of line ``offset`` of a cell's ``source`` lines.

    ``fence_line`` is the 1-based line of the opening fence and ``lines`` the runbook's lines. A cell nested
    in a list item or a blockquote loses its container prefix in the parsed source: the column adds it back.
    """
    line = fence_line + 1 + offset
    raw = lines[line - 1] if 0 < line <= len(lines) else ""
    src = source[offset] if 0 <= offset < len(source) else ""
    prefix = len(raw) - len(src) if src and raw.endswith(src) else 0
    return line, prefix + char + 1
