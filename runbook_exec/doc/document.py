"""Parse a Markdown runbook into a frozen, printable model. Pure: no execution, no I/O beyond reading.

``parse_text`` never raises on any input: everything wrong is collected as a :class:`Problem`.
``parse`` (reading a path) raises :class:`RunbookError` only when the file cannot be read as text.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from mdit_py_plugins.front_matter import front_matter_plugin

from runbook_exec.doc import languages
from runbook_exec.doc import options as opts
from runbook_exec.doc import runme as rm
from runbook_exec.doc.slug import slugify, unique
from runbook_exec.doc.textfile import read_utf8
from runbook_exec.errors import Problem

if TYPE_CHECKING:
    from runbook_exec.doc import targets as tgt

SETTINGS_KEYS = frozenset(
    {"shell", "timeout", "env_file", "env_sample", "release_log", "release_template", "vars", "targets"}
)
VAR_KEYS = frozenset({"required", "pattern", "help", "default", "from", "secret"})
VAR_SOURCES = ("release_log",)


@dataclass(frozen=True)
class VarSpec:
    """A variable declared in front matter (``runbook.vars``)."""

    name: str
    required: bool = False
    pattern: str | None = None
    help: str = ""
    default: str | None = None
    source: str | None = None  # "release_log": filled from the last successful record
    secret: bool = False


@dataclass(frozen=True)
class Settings:
    """The ``runbook:`` block of the front matter."""

    shell: str = "bash"
    timeout: float | None = None
    env_file: str | None = None
    env_sample: str | None = None
    release_log: str | None = None
    release_template: str | None = None
    vars: tuple[VarSpec, ...] = ()
    targets: tuple[tgt.Target, ...] = ()  # runbook.targets, in the order written


@dataclass(frozen=True)
class Section:
    """A heading: every cell below it until the next heading of the same or higher level."""

    id: str
    title: str
    level: int
    line: int
    explicit: bool
    parent: str | None


@dataclass(frozen=True)
class Cell:
    """A code block. ``executable`` cells are run; the others are documentation (``why_not`` says why)."""

    index: int
    id: str | None
    lang: str
    source: str
    line: int
    info: str
    attrs: opts.Attrs
    options: opts.CellOptions
    executable: bool
    sections: tuple[str, ...]
    problems: tuple[str, ...] = ()
    name_generated: bool = False  # Runme mode: the id is the name generated from the first command
    body: str | None = None  # the text that runs, when it differs from ``source`` ($ prompts dropped)
    route: languages.Route = languages.SESSION
    why_not: str | None = None  # a cell that does not run: why, and what would make it run
    warnings: tuple[str, ...] = ()  # Runme mode: what is read but ignored (unknown keys, bad values)
    fenced: bool = True  # False for an indented code block (a cell in Runme mode)
    runme: bool = False  # read with Runme's rules

    @property
    def label(self) -> str:
        return self.id or f"line-{self.line}"

    @property
    def text(self) -> str:
        """What runs: ``source`` without a reader's ``$`` prompts (Runme mode), else ``source`` itself."""
        return self.source if self.body is None else self.body

    @property
    def interactive(self) -> bool:
        """Whether the cell gets the terminal: ``interactive=true``; in Runme mode also when not set (its default)."""
        return self.options.interactive if self.options.interactive is not None else self.runme

    @property
    def section(self) -> str | None:
        return self.sections[-1] if self.sections else None

    @property
    def danger(self) -> bool:
        return self.attrs.has_class("danger")


@dataclass(frozen=True)
class Runbook:
    """A parsed runbook."""

    path: str
    text: str
    sha256: str
    meta: Mapping[str, Any]
    settings: Settings
    sections: tuple[Section, ...]
    cells: tuple[Cell, ...]
    problems: tuple[Problem, ...] = ()
    runme: bool = False
    front_matter_lines: int = 0
    warnings: tuple[Problem, ...] = ()  # read but doubtful (Runme mode): check reports them, runs go on
    runme_settings: rm.DocumentSettings = field(default_factory=rm.DocumentSettings)

    @property
    def base_dir(self) -> Path:
        return Path(self.path).resolve().parent

    def section(self, section_id: str) -> Section | None:
        return next((s for s in self.sections if s.id == section_id), None)

    def executable_cells(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.executable)

    def tags_of(self, cell: Cell) -> tuple[str, ...]:
        """A cell's tags (``tag``/``category``); in Runme mode a cell without any has the document's."""
        if cell.options.tags or not self.runme:
            return cell.options.tags
        return self.runme_settings.tags

    def key_line(self, key: str) -> int:
        """The line of the first ``key:`` in the front matter (1 when there is none)."""
        return _key_line(self.text.split("\n"), self.front_matter_lines, key)


def _heading_inlines(state: StateCore) -> None:
    """markdown-it's ``inline`` core rule, for headings only: the model reads the text of headings and never a
    paragraph's, whose inline parsing was most of the time a parse took."""
    tokens = state.tokens
    for i, token in enumerate(tokens):
        if token.type == "inline" and i and tokens[i - 1].type == "heading_open":
            if token.children is None:
                token.children = []
            state.md.inline.parse(token.content, state.md, state.env, token.children)


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark")
    md.core.ruler.at("inline", _heading_inlines)
    return md


_md = _markdown().use(front_matter_plugin)
_md_body = _markdown()


def read_text(path: str) -> str:
    """Read a runbook as UTF-8 text, raising a one-line :class:`RunbookError` when that is impossible."""
    return read_utf8(path, "Markdown runbook")


def parse(path: str, runme_mode: bool | None = None) -> Runbook:
    """Read and parse the runbook at ``path`` (``runme_mode``: see :func:`parse_text`)."""
    return parse_text(read_text(path), path, runme_mode)


def normalize(text: str) -> str:
    """Drop a BOM and turn CRLF / CR line ends into LF (line numbers are kept)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_text(text: str, path: str = "<text>", runme_mode: bool | None = None) -> Runbook:
    """Parse Markdown text into a :class:`Runbook`. Never raises.

    ``runme_mode``: True reads the file with Runme's rules, False with the strict ``.exec`` rules, None
    decides (front matter ``runme:``, or Runme attributes and no ``.exec`` fence).
    """
    raw = text
    text = normalize(text)
    lines = text.split("\n")
    problems: list[Problem] = []
    tokens = _md.parse(text)

    meta: dict[str, Any] = {}
    fm_lines = 0
    if tokens and tokens[0].type == "front_matter":
        fm = tokens[0]
        fm_lines = fm.map[1] if fm.map else 0
        meta = _load_front_matter(fm.content, path, problems)

    fences = [t for t in tokens if t.type == "fence"]
    infos = [opts.parse_info(t.info) for t in fences]
    if runme_mode is None:
        runme_mode = _is_runme(text, meta, fences, infos)
    if runme_mode:
        return _parse_runme(raw, text, path)
    settings = _settings(meta, path, lines, fm_lines, problems)

    sections, raw_cells = _structure(tokens, path, problems, indented=False)
    cells: list[Cell] = []
    for index, ((tok, chain), info) in enumerate(zip(raw_cells, infos, strict=True)):
        cells.append(_cell(index, tok, info, chain, lines, path, problems))
    _duplicate_ids(cells, path, problems)

    return Runbook(
        path=path,
        text=text,
        sha256=_sha256(raw),
        meta=meta,
        settings=settings,
        sections=tuple(sections),
        cells=tuple(cells),
        problems=tuple(problems),
        runme=False,
        front_matter_lines=fm_lines,
    )


def _sha256(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _is_runme(text: str, meta: Mapping[str, Any], fences: list[Token], infos: list[opts.Info]) -> bool:
    """A file written for Runme: ``runme:`` front matter (any format), or Runme attributes and no ``.exec``."""
    if "runme" in meta:
        return True
    found = rm.split_front_matter(text)
    if found is not None and found.data is not None and "runme" in found.data:
        return True
    if any(info.attrs.has_class("exec") for info in infos):
        return False
    for tok, info in zip(fences, infos, strict=True):
        if info.attrs.style == "json" or _runme_keys(info.attrs):
            return True
        attrs = rm.parse_attributes(tok.info)
        if attrs.format == "json" or any(key in _RUNME_ONLY_KEYS for key, _ in attrs.items):
            return True
    return False


def _structure(
    tokens: list[Token], path: str, problems: list[Problem], *, indented: bool
) -> tuple[list[Section], list[tuple[Token, tuple[str, ...]]]]:
    """Sections from headings, and the code blocks (fences; also indented blocks when asked) with their chain."""
    sections: list[Section] = []
    raw_cells: list[tuple[Token, tuple[str, ...]]] = []
    stack: list[Section] = []
    taken: set[str] = set(_explicit_heading_ids(tokens))
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            level = int(tok.tag[1:])
            inline = tokens[i + 1] if i + 1 < len(tokens) else None
            plain = _plain_text(inline)
            title, attrs, err = opts.split_heading(plain)
            line = (tok.map[0] + 1) if tok.map else 0
            if err:
                problems.append(Problem(path, line, f"heading attributes: {err}", "RX101"))
            if attrs is not None and attrs.id:
                sid, explicit = attrs.id, True
            else:
                sid, explicit = unique(slugify(title.strip()), taken), False
            while stack and stack[-1].level >= level:
                stack.pop()
            section = Section(
                id=sid,
                title=title.strip(),
                level=level,
                line=line,
                explicit=explicit,
                parent=stack[-1].id if stack else None,
            )
            sections.append(section)
            stack.append(section)
        elif tok.type == "fence" or (indented and tok.type == "code_block"):
            raw_cells.append((tok, tuple(s.id for s in stack)))

    seen_sections: dict[str, int] = {}
    for s in sections:
        if s.explicit and s.id in seen_sections:
            problems.append(
                Problem(path, s.line, f"duplicate section id #{s.id} (also line {seen_sections[s.id]})", "RX102")
            )
        seen_sections.setdefault(s.id, s.line)
    return sections, raw_cells


def _duplicate_ids(cells: list[Cell], path: str, problems: list[Problem], code: str = "RX103") -> None:
    seen_cells: dict[str, int] = {}
    for c in cells:
        if c.id is None:
            continue
        if c.id in seen_cells:
            problems.append(Problem(path, c.line, f"duplicate cell id #{c.id} (also line {seen_cells[c.id]})", code))
        else:
            seen_cells[c.id] = c.line


_RUNME_ONLY_KEYS = opts.RUNME_KEYS - opts.RUNNER_KEYS


def _runme_keys(attrs: opts.Attrs) -> bool:
    """True when a fence uses a key only Runme gives a meaning (``name``, ``excludeFromRunAll``, ``tag``, ...)."""
    return any(key in _RUNME_ONLY_KEYS for key, _ in attrs.options)


def _explicit_heading_ids(tokens: list[Token]) -> list[str]:
    ids = []
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and i + 1 < len(tokens):
            _, attrs, _ = opts.split_heading(_plain_text(tokens[i + 1]))
            if attrs is not None and attrs.id:
                ids.append(attrs.id)
    return ids


def _plain_text(inline: Token | None) -> str:
    if inline is None:
        return ""
    if not inline.children:
        return inline.content
    parts = []
    for child in inline.children:
        if child.type in ("text", "code_inline", "html_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return "".join(parts)


_CLOSING = re.compile(r"^\s{0,3}(`{3,}|~{3,})\s*$")


def _cell(
    index: int,
    tok: Token,
    info: opts.Info,
    chain: tuple[str, ...],
    lines: list[str],
    path: str,
    problems: list[Problem],
) -> Cell:
    line = (tok.map[0] + 1) if tok.map else 0
    cell_problems: list[str] = []
    if info.error:
        cell_problems.append(f"attributes: {info.error}")
    executable = info.attrs.has_class("exec")
    options, option_problems = opts.cell_options(info.attrs)
    if executable or info.attrs.style != "none":
        cell_problems.extend(option_problems)
    if info.attrs.has_class("exec") and info.lang not in opts.RUNNABLE_LANGUAGES:
        lang = info.lang or "(no language)"
        cell_problems.append(
            f".exec on a {lang} fence: only {', '.join(sorted(opts.RUNNABLE_LANGUAGES))} cells can run"
        )
    ident = opts.cell_id(info.attrs)
    name = info.attrs.get("name")
    if info.attrs.id and name and name != info.attrs.id:
        cell_problems.append(f"two ids: #{info.attrs.id} and name={name}")
    if tok.map and not _closed(tok, lines):
        problems.append(Problem(path, line, f"fence opened here ({tok.markup}) is never closed", "RX104"))
    for message in cell_problems:
        problems.append(Problem(path, line, message, "RX105"))
    return Cell(
        index=index,
        id=ident,
        lang=info.lang,
        source=tok.content,
        line=line,
        info=tok.info,
        attrs=info.attrs,
        options=options,
        executable=executable,
        sections=chain,
        problems=tuple(cell_problems),
        why_not=None if executable else "add .exec to run it",
    )


# -- Runme mode -------------------------------------------------------------------------------------------


def _parse_runme(raw: str, text: str, path: str) -> Runbook:
    """Read ``text`` with Runme's rules: lenient attributes, generated names, indented blocks, ``$`` prompts."""
    lines = text.split("\n")
    problems: list[Problem] = []
    warnings: list[Problem] = []
    meta: dict[str, Any] = {}
    fm_lines = 0
    body_lines = lines
    found = rm.split_front_matter(text)
    if found is not None:
        fm_lines = found.last_line
        if found.error is not None:
            problems.append(
                Problem(path, found.error_line or found.first_line, f"front matter: {found.error}", "RX201")
            )
        else:
            meta = found.data or {}
        # Blank lines in its place keep every line number of the Markdown below it.
        body_lines = [""] * found.last_line + lines[found.last_line :]
    settings = _settings(meta, path, lines, fm_lines, problems, runme_mode=True)
    doc = rm.document_settings(meta)
    tokens = _md_body.parse("\n".join(body_lines))
    sections, raw_cells = _structure(tokens, path, problems, indented=True)

    names = rm.NameResolver()
    cells: list[Cell] = []
    for index, (tok, chain) in enumerate(raw_cells):
        cells.append(_runme_cell(index, tok, chain, lines, doc, names, path, warnings))
    _duplicate_ids(cells, path, warnings, "RX115")
    return Runbook(
        path=path,
        text=text,
        sha256=_sha256(raw),
        meta=meta,
        settings=settings,
        sections=tuple(sections),
        cells=tuple(cells),
        problems=tuple(problems),
        runme=True,
        front_matter_lines=fm_lines,
        warnings=tuple(warnings),
        runme_settings=doc,
    )


def _runme_attrs(info: str) -> tuple[rm.Attributes, opts.Attrs, str | None]:
    """Runme's attributes, the same as an :class:`~runbook_exec.doc.options.Attrs`, and a ``#id`` if one is given."""
    found = rm.parse_attributes(info)
    ident: str | None = None
    classes: list[str] = []
    items: list[tuple[str, str]] = []
    for key, value in found.items:
        # Our attr_list words inside an HTML-style list: #id names the cell, .class is a class.
        if found.format == "html" and not value and len(key) > 1 and key[0] in "#.":
            if key[0] == "#":
                ident = ident or key[1:]
            else:
                classes.append(key[1:])
            continue
        items.append((key, value))
    style = {"json": "json", "html": "attr_list"}.get(found.format, "none")
    return found, opts.Attrs(id=None, classes=tuple(classes), options=tuple(items), style=style), ident


def _runme_cell(
    index: int,
    tok: Token,
    chain: tuple[str, ...],
    lines: list[str],
    doc: rm.DocumentSettings,
    names: rm.NameResolver,
    path: str,
    warnings: list[Problem],
) -> Cell:
    line = (tok.map[0] + 1) if tok.map else 0
    fenced = tok.type == "fence"
    info = tok.info if fenced else ""
    lang = rm.language(info)
    found, attrs, ident = _runme_attrs(info)
    explicit = found.get("name") or ident or None
    # Every code block takes part in the numbering, runnable or not, as in Runme.
    name = names.get(explicit if explicit else rm.generated_name(tok.content))
    options, notes = opts.cell_options(attrs, lenient=True)
    cell_warnings = list(notes)
    if fenced and tok.map and not _closed(tok, lines):
        warnings.append(
            Problem(path, line, f"fence opened here ({tok.markup}) is never closed: the cell runs to the end", "RX116")
        )
    body = rm.strip_prompts(tok.content) if lang in rm.SHELL_LANGUAGES else None
    route = languages.route(lang, tok.content if body is None else body, found.get("interpreter"), doc.shell)
    why_not = _ignored_reason(found, lang) if rm.ignored(found, lang) else route.why_not
    for note in cell_warnings:
        warnings.append(Problem(path, line, note, "RX115"))
    return Cell(
        index=index,
        id=name or None,
        lang=lang,
        source=tok.content,
        line=line,
        info=info,
        attrs=attrs,
        options=options,
        executable=why_not is None,
        sections=chain,
        name_generated=explicit is None,
        body=body if body != tok.content else None,
        route=route,
        why_not=why_not,
        warnings=tuple(cell_warnings),
        fenced=fenced,
        runme=True,
    )


def _ignored_reason(attrs: rm.Attributes, lang: str) -> str:
    if attrs.get("transform") is not None and rm.go_bool(attrs.get("transform")) is False:
        return "transform=false makes it text: remove transform=false to run it"
    if rm.go_bool(attrs.get("ignore")):
        return "ignore=true: remove it (or write ignore=false) to run it"
    return f"a {lang} cell is not run unless it has ignore=false (or transform=true)"


def _closed(tok: Token, lines: list[str]) -> bool:
    assert tok.map is not None
    end = tok.map[1]
    if end - tok.map[0] < 2 or end > len(lines):
        return False
    last = lines[end - 1]
    # Inside blockquotes / list items the closing fence carries the container's prefix.
    last = re.sub(r"^(\s{0,3}>\s?|\s*([-*+]|\d+[.)])?\s+)*", "", last) if _CLOSING.match(last) is None else last
    match = _CLOSING.match(last)
    return bool(match and match.group(1)[0] == tok.markup[0] and len(match.group(1)) >= len(tok.markup))


def _load_front_matter(content: str, path: str, problems: list[Problem]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(content) if content.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = (mark.line + 2) if mark is not None else 1
        reason = getattr(exc, "problem", None) or "invalid YAML"
        problems.append(Problem(path, line, f"front matter: {reason}", "RX201"))
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(Problem(path, 1, "front matter must be a YAML mapping", "RX201"))
        return {}
    return data


def _key_line(lines: list[str], fm_lines: int, key: str) -> int:
    pattern = re.compile(rf"^\s*['\"]?{re.escape(key)}['\"]?\s*:")
    for i in range(min(fm_lines, len(lines))):
        if pattern.match(lines[i]):
            return i + 1
    return 1


def _settings(
    meta: Mapping[str, Any],
    path: str,
    lines: list[str],
    fm_lines: int,
    problems: list[Problem],
    *,
    runme_mode: bool = False,
) -> Settings:
    block = meta.get("runbook", {})
    if block is None:
        block = {}
    if not isinstance(block, dict):
        problems.append(
            Problem(path, _key_line(lines, fm_lines, "runbook"), "front matter: runbook: must be a mapping", "RX202")
        )
        return Settings()

    def bad(key: str, message: str) -> None:
        problems.append(Problem(path, _key_line(lines, fm_lines, key), f"front matter: {message}", "RX202"))

    for key in block:
        if key not in SETTINGS_KEYS:
            hint = opts.closest(str(key), set(SETTINGS_KEYS))
            bad(str(key), f"unknown key runbook.{key}" + (f" (did you mean {hint!r}?)" if hint else ""))

    shell = block.get("shell", meta.get("shell", "bash"))
    if runme_mode:
        # Runme's shell is a program: whether it is installed matters only when a cell would run.
        shell = str(shell) if isinstance(shell, (str, int, float)) and str(shell).strip() else "bash"
    elif not isinstance(shell, str) or Path(shell).name not in ("bash", "sh"):
        bad("shell", f"shell: {shell!r} is not supported (cells run in bash; in Runme mode other shells run too)")
        shell = "bash"

    timeout: float | None = None
    if "timeout" in block:
        value = block["timeout"]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value <= 0:
            bad("timeout", f"runbook.timeout: {value!r} must be a positive number of seconds")
        else:
            timeout = float(value)

    strings: dict[str, str | None] = {}
    for key in ("env_file", "env_sample", "release_log", "release_template"):
        value = block.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            bad(key, f"runbook.{key}: must be a path")
            value = None
        strings[key] = value

    specs: list[VarSpec] = []
    raw_vars = block.get("vars", {}) or {}
    if not isinstance(raw_vars, dict):
        bad("vars", "runbook.vars: must be a mapping of NAME: {required, pattern, help, default, from, secret}")
        raw_vars = {}
    for name, spec in raw_vars.items():
        specs.append(_var_spec(str(name), spec, lambda m, n=str(name): bad(n, m)))
    targets: tuple[tgt.Target, ...] = ()
    if block.get("targets") is not None:  # the target model is read only by a runbook that declares targets
        from runbook_exec.doc import targets as tgt  # noqa: PLC0415

        targets = tgt.parse_block(block.get("targets"), bad)
    return Settings(
        shell=shell,
        timeout=timeout,
        env_file=strings["env_file"],
        env_sample=strings["env_sample"],
        release_log=strings["release_log"],
        release_template=strings["release_template"],
        vars=tuple(specs),
        targets=targets,
    )


def _var_spec(name: str, spec: Any, bad: Any) -> VarSpec:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        bad(f"vars.{name}: not a valid shell variable name")
    if spec is None:
        spec = {}
    if isinstance(spec, (str, int, float)) and not isinstance(spec, bool):
        return VarSpec(name=name, default=str(spec))
    if not isinstance(spec, dict):
        bad(f"vars.{name}: must be a mapping or a default value")
        return VarSpec(name=name)
    for key in spec:
        if key not in VAR_KEYS:
            hint = opts.closest(str(key), set(VAR_KEYS))
            bad(f"vars.{name}: unknown key {key!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
    pattern = spec.get("pattern")
    if pattern is not None:
        try:
            re.compile(str(pattern))
        except re.error as exc:
            bad(f"vars.{name}.pattern: invalid regular expression: {exc}")
            pattern = None
    source = spec.get("from")
    if source is not None and source not in VAR_SOURCES:
        bad(f"vars.{name}.from: {source!r} must be one of {', '.join(VAR_SOURCES)}")
        source = None
    for key in ("required", "secret"):
        if key in spec and not isinstance(spec[key], bool):
            bad(f"vars.{name}.{key}: must be true or false")
    default = spec.get("default")
    return VarSpec(
        name=name,
        required=spec.get("required") is True,
        pattern=str(pattern) if pattern is not None else None,
        help=str(spec.get("help", "")),
        default=None if default is None else str(default),
        source=source,
        secret=spec.get("secret") is True,
    )


def listing(book: Runbook) -> dict[str, Any]:
    """A JSON-ready summary of sections and cells."""
    doc = book.runme_settings
    return {
        "runbook": book.path,
        "runme": (
            {
                "shell": doc.shell,
                "cwd": doc.cwd,
                "tags": list(doc.tags),
                "skip_prompts": doc.skip_prompts,
                "id": doc.runme_id,
                "version": doc.runme_version,
            }
            if book.runme
            else None
        ),
        "sections": [
            {
                "id": s.id,
                "title": s.title,
                "level": s.level,
                "line": s.line,
                "explicit": s.explicit,
                "cells": [c.label for c in book.cells if c.executable and s.id in c.sections],
            }
            for s in book.sections
        ],
        "cells": [
            {
                "id": c.id,
                "line": c.line,
                "lang": c.lang,
                "section": c.section,
                "executable": c.executable,
                "danger": c.danger,
                "when": c.options.when,
                "timeout": c.options.timeout,
                "retries": c.options.retries,
                "excluded": c.options.exclude_from_run_all,
                "name_generated": c.name_generated,
                "tags": list(book.tags_of(c)),
                "runs": c.route.describe() if c.executable else None,
                "why_not": c.why_not,
                "interactive": c.interactive,
                "background": c.options.background,
            }
            for c in book.cells
        ],
        "warnings": [str(w) for w in book.warnings],
    }
