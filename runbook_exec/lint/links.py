"""Links to ``#anchors`` that do not exist (``RX501``) and to Markdown files that do not exist (``RX502``).

Anchors of a runbook are its section ids (explicit ``{#id}`` or the shared slug), its cell ids (the site
publishes them) and ``id=`` / ``name=`` attributes of raw HTML. ``other.md#x`` is resolved relative to the
linking file and parsed with the same :mod:`runbook_exec.doc.document`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from mdit_py_plugins.front_matter import front_matter_plugin

from runbook_exec.doc.document import Runbook
from runbook_exec.lint.findings import Finding, finding


def _inlines_with_links(state: StateCore) -> None:
    """markdown-it's ``inline`` core rule, for the inline text that can hold a link: CommonMark links start
    with ``[`` and autolinks with ``<``, so text with neither (most of a runbook) is not parsed further."""
    for token in state.tokens:
        if token.type == "inline" and ("[" in token.content or "<" in token.content):
            if token.children is None:
                token.children = []
            state.md.inline.parse(token.content, state.md, state.env, token.children)


_md = MarkdownIt("commonmark").use(front_matter_plugin)
_md.core.ruler.at("inline", _inlines_with_links)
_HTML_ID = re.compile(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")

Loader = Callable[[Path], "Runbook | None"]


def anchors(book: Runbook) -> set[str]:
    """Every anchor a link into ``book`` may name."""
    found = {s.id for s in book.sections}
    found.update(c.id for c in book.cells if c.id)
    found.update(_HTML_ID.findall(_without_code(book)))
    return found


def _without_code(book: Runbook) -> str:
    lines = book.text.split("\n")
    for cell in book.cells:
        end = cell.line + cell.source.count("\n")
        for i in range(cell.line - 1, min(end + 1, len(lines))):
            lines[i] = ""
    return "\n".join(lines)


def links(book: Runbook) -> Iterator[tuple[str, int, int]]:
    """``(href, line, col)`` of every link in ``book``'s Markdown (code spans and fences excluded)."""
    lines = book.text.split("\n")
    tokens = _md.parse(book.text)
    for tok in tokens:
        if tok.type != "inline" or not tok.children or not tok.map:
            continue
        first, last = tok.map
        searched_from: dict[str, tuple[int, int]] = {}
        for child in _link_children(tok.children):
            href = str(child.attrs.get("href", ""))
            line, col = _locate(lines, first, last, href, searched_from)
            yield href, line, col


def _link_children(children: list[Token]) -> Iterator[Token]:
    for child in children:
        if child.type == "link_open":
            yield child


def _locate(
    lines: list[str], first: int, last: int, href: str, searched_from: dict[str, tuple[int, int]]
) -> tuple[int, int]:
    """Where ``href`` is written in the block spanning lines ``first``..``last`` (0-based, end exclusive)."""
    row, col = searched_from.get(href, (first, 0))
    for i in range(row, min(last, len(lines))):
        index = lines[i].find(href, col if i == row else 0)
        if index >= 0:
            searched_from[href] = (i, index + 1)
            return i + 1, index + 1
    return first + 1, 1


def check_links(book: Runbook, load: Loader) -> list[Finding]:
    """Findings for links whose target anchor or Markdown file does not exist."""
    own = anchors(book)
    out: list[Finding] = []
    base = Path(book.path).parent
    known: dict[str, set[str]] = {}  # anchors of each linked runbook, computed once however many links

    def anchors_of(other: Runbook) -> set[str]:
        if other.path not in known:
            known[other.path] = anchors(other)
        return known[other.path]

    for href, line, col in links(book):
        if not href or _SCHEME.match(href) or href.startswith("//"):
            continue
        target, _, fragment = href.partition("#")
        target = unquote(target.split("?", 1)[0])
        fragment = unquote(fragment)
        if not target:
            if fragment and fragment not in own:
                out.append(
                    finding(book.path, line, col, "RX501", f"link to #{fragment}: no such anchor{_hint(fragment, own)}")
                )
            continue
        if not target.endswith(".md"):
            continue
        path = (base / target) if not target.startswith("/") else Path(target)
        other = load(path)
        if other is None:
            out.append(finding(book.path, line, col, "RX502", f"link to {target}: no such Markdown file"))
        elif fragment and fragment not in anchors_of(other):
            out.append(
                finding(
                    book.path,
                    line,
                    col,
                    "RX501",
                    f"link to {target}#{fragment}: no such anchor in {target}{_hint(fragment, anchors_of(other))}",
                )
            )
    return out


def _hint(wanted: str, known: set[str]) -> str:
    from runbook_exec.doc.options import closest  # noqa: PLC0415

    near = closest(wanted, sorted(known))
    return f" (did you mean #{near}?)" if near else ""
