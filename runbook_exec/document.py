"""Parse a Markdown runbook into a frozen, printable model. Pure: no execution, no I/O beyond reading.

``parse_text`` never raises on any input: everything wrong is collected as a :class:`Problem`.
``parse`` (reading a path) raises :class:`RunbookError` only when the file cannot be read as text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.front_matter import front_matter_plugin

from runbook_exec import options as opts
from runbook_exec import targets as tgt
from runbook_exec.errors import Problem
from runbook_exec.slug import slugify, unique
from runbook_exec.textfile import read_utf8

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
    """A fenced code block. ``executable`` cells are run; the others are documentation."""

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

    @property
    def label(self) -> str:
        return self.id or f"line-{self.line}"

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

    @property
    def base_dir(self) -> Path:
        return Path(self.path).resolve().parent

    def section(self, section_id: str) -> Section | None:
        return next((s for s in self.sections if s.id == section_id), None)

    def executable_cells(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.executable)

    def key_line(self, key: str) -> int:
        """The line of the first ``key:`` in the front matter (1 when there is none)."""
        return _key_line(self.text.split("\n"), self.front_matter_lines, key)


_md = MarkdownIt("commonmark").use(front_matter_plugin)


def read_text(path: str) -> str:
    """Read a runbook as UTF-8 text, raising a one-line :class:`RunbookError` when that is impossible."""
    return read_utf8(path, "Markdown runbook")


def parse(path: str) -> Runbook:
    """Read and parse the runbook at ``path``."""
    return parse_text(read_text(path), path)


def normalize(text: str) -> str:
    """Drop a BOM and turn CRLF / CR line ends into LF (line numbers are kept)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_text(text: str, path: str = "<text>") -> Runbook:
    """Parse Markdown text into a :class:`Runbook`. Never raises."""
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
    settings = _settings(meta, path, lines, fm_lines, problems)

    sections: list[Section] = []
    raw_cells: list[tuple[Token, tuple[str, ...]]] = []
    stack: list[Section] = []
    explicit_ids = _explicit_heading_ids(tokens)
    taken: set[str] = set(explicit_ids)
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
        elif tok.type == "fence":
            raw_cells.append((tok, tuple(s.id for s in stack)))

    seen_sections: dict[str, int] = {}
    for s in sections:
        if s.explicit and s.id in seen_sections:
            problems.append(
                Problem(path, s.line, f"duplicate section id #{s.id} (also line {seen_sections[s.id]})", "RX102")
            )
        seen_sections.setdefault(s.id, s.line)

    infos = [opts.parse_info(t.info) for t, _ in raw_cells]
    has_exec = any(info.attrs.has_class("exec") for info in infos)
    runme = "runme" in meta or (
        not has_exec and any(info.attrs.style == "json" or _runme_keys(info.attrs) for info in infos)
    )
    cells: list[Cell] = []
    for index, ((tok, chain), info) in enumerate(zip(raw_cells, infos, strict=True)):
        cells.append(_cell(index, tok, info, chain, lines, runme, path, problems))

    seen_cells: dict[str, int] = {}
    for c in cells:
        if c.id is None:
            continue
        if c.id in seen_cells:
            problems.append(Problem(path, c.line, f"duplicate cell id #{c.id} (also line {seen_cells[c.id]})", "RX103"))
        else:
            seen_cells[c.id] = c.line

    return Runbook(
        path=path,
        text=text,
        sha256=hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest(),
        meta=meta,
        settings=settings,
        sections=tuple(sections),
        cells=tuple(cells),
        problems=tuple(problems),
        runme=runme,
        front_matter_lines=fm_lines,
    )


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
    runme: bool,
    path: str,
    problems: list[Problem],
) -> Cell:
    line = (tok.map[0] + 1) if tok.map else 0
    cell_problems: list[str] = []
    if info.error:
        cell_problems.append(f"attributes: {info.error}")
    executable = info.attrs.has_class("exec") or (runme and info.lang in opts.RUNNABLE_LANGUAGES and info.error is None)
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
    )


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


def _settings(meta: Mapping[str, Any], path: str, lines: list[str], fm_lines: int, problems: list[Problem]) -> Settings:
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
    if not isinstance(shell, str) or Path(shell).name not in ("bash", "sh"):
        bad("shell", f"shell: {shell!r} is not supported (cells run in bash)")
        shell = "bash"

    timeout: float | None = None
    if "timeout" in block:
        value = block["timeout"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
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
    return {
        "runbook": book.path,
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
            }
            for c in book.cells
        ],
    }
