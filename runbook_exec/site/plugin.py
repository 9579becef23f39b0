"""MkDocs plugin ``runbook``: publish runbooks as pages, show their executable cells as cards with the
evidence of the last runs, and publish the release history.

``mkdocs.yml``::

    plugins:
      - runbook:
          runbooks: [ops/deploy.md]      # paths relative to mkdocs.yml; published at the same path
          reports: [.runbook/runs/*/report.json]   # run reports to read (globs; the default)
          history_page: release-history.md         # generated page ("" for none; the default)

- Each runbook is added with ``File.generated`` backed by the real file (no copy, stub or symlink) and
  watched by ``mkdocs serve``.
- ``.exec`` fences (``bash``/``sh``/``shell``) are rendered by a ``pymdownx.superfences`` custom fence: its
  validator says "not mine" for every other fence, so those keep normal highlighting; its formatter calls
  the normal highlighter and wraps the result in a card (:mod:`runbook_exec.site.cards`).
- Cells are read with the runner's own parser (:mod:`runbook_exec.doc.document`), so ids, options and sections
  are exactly what ``runbook-exec`` sees; cell ids are registered as page anchors so ``deploy.md#cell-id``
  links pass ``--strict``.
- Problems are logged on ``mkdocs.plugins.runbook`` as warnings, which ``mkdocs build --strict`` turns into a
  failure: the parser's problems (unparsable attributes, duplicate ids) and ``runbook-exec check``'s id
  rules (an executable cell without an id, a cell id that is also a section id) with check's messages.
- Links written relative to the repository (``../ops/deploy.md#compose-up`` in ``docs/``) are rewritten to
  the published page, so the same link works on the repository host, in ``runbook-exec check`` and on the site.
- Evidence (:mod:`runbook_exec.records.evidence`): each card shows the newest run report that covered the cell
  (``data-runbook-status``, ``data-runbook-changed`` when the cell's source hash differs from the one that
  ran); a page with cells starts with a summary of the last run of each section; the history page lists the
  release.log records of each runbook that exists at build time. Only these masked artifacts are read, every
  value from them is escaped as text, and nothing is executed.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit
from xml.etree.ElementTree import Element

from markdown import Markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor
from mkdocs.config import config_options
from mkdocs.config.base import Config
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import BasePlugin
from mkdocs.structure.files import File, Files, InclusionLevel
from mkdocs.structure.pages import Page

from runbook_exec.doc import document
from runbook_exec.doc.document import Cell, Runbook
from runbook_exec.doc.options import RUNNABLE_LANGUAGES, SITE_KEYS
from runbook_exec.lint import rules as check_rules
from runbook_exec.records import evidence
from runbook_exec.records.evidence import Evidence, Run
from runbook_exec.site import cards
from runbook_exec.site import pages as site_pages

if TYPE_CHECKING:
    from runbook_exec.records.release_log import Record

log = logging.getLogger("mkdocs.plugins.runbook")

CSS_URI = "assets/runbook/runbook.css"


class RunbookConfig(Config):  # type: ignore[no-untyped-call]  # mkdocs' __init_subclass__
    """Options of the ``runbook`` plugin."""

    runbooks = config_options.ListOfItems(config_options.Type(str), default=[])
    css = config_options.Type(bool, default=True)
    reports = config_options.ListOfItems(config_options.Type(str), default=list(evidence.DEFAULT_REPORTS))
    history_page = config_options.Type(str, default="release-history.md")


@dataclass
class _PageState:
    """What the fence formatter needs while one page is rendered."""

    path: str  # repository-relative source path, used in warnings and run commands
    book: Runbook
    rendered: set[int]
    found: dict[str, Evidence]  # evidence per executable cell id
    runs: list[Run]  # this page's run reports, oldest first


class RunbookPlugin(BasePlugin[RunbookConfig]):  # type: ignore[no-untyped-call]
    """Publishes runbooks and renders their executable cells as cards."""

    def __init__(self) -> None:
        self._root = Path(".")
        self._sources: dict[str, Path] = {}  # src_uri -> absolute path of each published runbook
        self._repo_paths: dict[str, File] = {}  # repository-relative path -> File
        self._by_uri: dict[str, str] = {}  # src_uri -> repository-relative path
        self._files: Files | None = None
        self._page: _PageState | None = None
        self._runs: list[Run] = []
        self._history: File | None = None

    # -- configuration ---------------------------------------------------------------------------------

    def on_config(self, config: MkDocsConfig) -> MkDocsConfig:
        """Resolve the runbooks and register the custom fence and the link rewriter."""
        self._root = Path(config.config_file_path or ".").resolve().parent
        self._sources = {}
        for entry in self.config.runbooks:
            rel = posixpath.normpath(entry.replace("\\", "/"))
            if rel.startswith("../") or posixpath.isabs(rel):
                raise PluginError(f"runbook: {entry}: must be a path inside the directory of mkdocs.yml")
            self._sources[rel] = self._root / rel

        if "pymdownx.superfences" not in config.markdown_extensions:
            config.markdown_extensions.append("pymdownx.superfences")
        fences = config.mdx_configs.setdefault("pymdownx.superfences", {}).setdefault("custom_fences", [])
        fences.extend(
            {"name": lang, "class": "runbook-cell", "validator": _validate, "format": self._format}
            for lang in sorted(RUNNABLE_LANGUAGES)
        )
        config.markdown_extensions.append(_RepoLinksExtension(self))
        history = self.config.history_page
        if history and (not history.endswith(".md") or history.startswith(("/", "../")) or "\\" in history):
            raise PluginError(f"runbook: history_page: {history}: must be a .md path inside docs_dir (or empty)")
        if self.config.css:
            config.extra_css.append(CSS_URI)
        return config

    def on_files(self, files: Files, *, config: MkDocsConfig) -> Files:
        """Add every runbook as a generated page backed by the file itself."""
        for src_uri, path in self._sources.items():
            if not path.is_file():
                raise PluginError(f"runbook: {src_uri}: no such file (listed in plugins.runbook.runbooks)")
            if files.get_file_from_path(src_uri) is not None:
                raise PluginError(f"runbook: {src_uri}: docs_dir already has a file at this path")
            files.append(File.generated(config, src_uri, abs_src_path=str(path)))
        if self.config.css:
            files.append(File.generated(config, CSS_URI, content=cards.css()))
        self._history = None
        if self.config.history_page:
            if files.get_file_from_path(self.config.history_page) is not None:
                raise PluginError(f"runbook: {self.config.history_page}: docs_dir already has a file at this path")
            # Not in the nav unless mkdocs.yml lists it: no "not included in nav" warning either way.
            self._history = File.generated(
                config,
                self.config.history_page,
                content=site_pages.history_markdown(list(self._sources)),
                inclusion=InclusionLevel.NOT_IN_NAV,
            )
            files.append(self._history)
        self._runs, problems = evidence.load(self._root, self.config.reports)
        for problem in problems:
            log.warning(problem)
        docs = Path(config.docs_dir).resolve()
        docs_rel = posixpath.relpath(docs.as_posix(), self._root.as_posix())
        self._repo_paths = {self._repo_path(file, docs_rel): file for file in files}
        self._by_uri = {file.src_uri: repo for repo, file in self._repo_paths.items()}
        self._files = files
        return files

    def _repo_path(self, file: File, docs_rel: str) -> str:
        if file.src_uri in self._sources and file.generated_by:
            return file.src_uri
        return posixpath.normpath(posixpath.join(docs_rel, file.src_uri))

    def on_serve(self, server: Any, /, *, config: MkDocsConfig, builder: Any) -> Any:
        """Rebuild when a runbook outside ``docs_dir`` changes."""
        for path in self._sources.values():
            server.watch(str(path))
            log_path = self._release_log(document.parse(str(path)))
            if log_path is not None and log_path.exists():
                server.watch(str(log_path))
        return server

    # -- pages -----------------------------------------------------------------------------------------

    def on_page_markdown(self, markdown: str, /, *, page: Page, config: MkDocsConfig, files: Files) -> str:
        """Parse the page with the runner's parser and report what would break a run or a link."""
        path = self._page_path(page.file)
        # The file's own text (front matter included) keeps line numbers equal to the editor's.
        source = page.file.content_string
        book = document.parse_text(source, path)
        runs = evidence.for_runbook(self._runs, path, self._root) if book.executable_cells() else []
        found = evidence.cell_evidence(book, runs)
        self._page = _PageState(path=path, book=book, rendered=set(), found=found, runs=runs)
        _lint(book)
        return markdown

    def on_page_content(self, html: str, /, *, page: Page, config: MkDocsConfig, files: Files) -> str:
        """Register cell ids as anchors of the page, so links to ``page.md#cell-id`` validate; add the summary
        of the last runs to a page with cells and the records to the history page."""
        state = self._page
        self._page = None
        if state is not None and page.present_anchor_ids is not None:
            page.present_anchor_ids.update(c.id for c in state.book.cells if c.executable and c.id)
        if state is not None and state.found:
            history = self._history.url_relative_to(page.file) if self._history is not None else None
            block = site_pages.summary(
                state.book,
                state.found,
                evidence.section_runs(state.book, state.runs),
                len(state.runs),
                self.config.reports,
                history,
            )
            html = _after_title(html, block)
        if self._history is not None and page.file.src_uri == self._history.src_uri:
            html += site_pages.history_html(self._histories(self._history))
        return html

    def _release_log(self, book: Runbook) -> Path | None:
        """The runbook's release log as the runner finds it when started from the repository root."""
        name = book.settings.release_log
        return None if not name else (Path(name) if Path(name).is_absolute() else self._root / name)

    def _histories(self, page_file: File) -> list[site_pages.History]:
        out = []
        for rel, path in self._sources.items():
            book = document.parse(str(path))
            target = self._repo_paths.get(rel)
            url = target.url_relative_to(page_file) if target is not None else ""
            log_path = self._release_log(book)
            records: tuple[Record, ...] | None = None
            problem = None
            if log_path is not None and log_path.exists():
                # Imported here: reading records needs the masking module, which pages without history don't.
                from runbook_exec.errors import RunbookError  # noqa: PLC0415
                from runbook_exec.records import release_log  # noqa: PLC0415

                try:
                    records = tuple(release_log.records(log_path))
                except RunbookError as exc:
                    problem = str(exc)
                    log.warning(f"runbook: {problem}")
            out.append(site_pages.History(rel, book, book.settings.release_log, records, url, problem))
        return out

    def _page_path(self, file: File) -> str:
        return self._by_uri.get(file.src_uri, file.src_uri)

    # -- the custom fence ------------------------------------------------------------------------------

    def _format(
        self, src: str, language: str, class_name: str, options: dict[str, Any], md: Markdown, **kwargs: Any
    ) -> str:
        """Highlight ``src`` as the normal fence would, then wrap it in the cell's card."""
        fenced = md.preprocessors["fenced_code_block"]
        classes = [c for c in kwargs.get("classes") or [] if c not in ("exec", "danger")]
        attrs = {k: v for k, v in (kwargs.get("attrs") or {}).items() if k.startswith("data-")}
        code_html: str = fenced.highlight(
            src=src, language=language, options=options, md=md, classes=classes, id_value="", attrs=attrs
        )
        state = self._page
        cell = _find_cell(state, kwargs.get("id_value") or "", src) if state else None
        if state is None:
            return code_html
        if cell is None:
            # Shown as ordinary code. When the runner's parser has no fence with this text at all (it reads
            # CommonMark, where a fence indented under an admonition or a tab is an indented code block), the
            # page would show a cell that never runs: say so.
            body = src.strip()
            if not any(c.source.strip() == body for c in state.book.cells):
                ident = kwargs.get("id_value") or ""
                log.warning(
                    f"{state.path}:{_line_of(state.book.text, src)}: .exec fence {('#' + ident + ' ') if ident else ''}"
                    "is not a cell to the runner (indented under an admonition, tab or similar block): "
                    "move it out to column 0"
                )
            return code_html
        state.rendered.add(cell.index)
        found = state.found.get(cell.id) if cell.id else None
        return cards.render_card(state.book, cell, code_html, state.path, found)

    # -- repository-relative links ---------------------------------------------------------------------

    def site_link(self, page_file: File, href: str) -> str | None:
        """The site-relative form of ``href`` when it is written relative to the repository, else ``None``."""
        files = self._files
        if files is None:
            return None
        scheme, netloc, path, query, fragment = urlsplit(href)
        if scheme or netloc or not path or path.startswith(("/", "\\")):
            return None
        path = unquote(path)
        base = posixpath.dirname(page_file.src_uri)
        if files.get_file_from_path(posixpath.normpath(posixpath.join(base, path))) is not None:
            return None
        repo = posixpath.normpath(posixpath.join(posixpath.dirname(self._page_path(page_file)), path))
        target = self._repo_paths.get(repo)
        if target is None:
            return None
        rel = posixpath.relpath(target.src_uri, base or ".")
        return urlunsplit(("", "", quote(rel), query, fragment))


def _validate(
    language: str, inputs: dict[str, str], options: dict[str, Any], attrs: dict[str, str], md: Markdown
) -> bool:
    """Claim ``.exec`` fences only; every other fence falls through to the normal highlighter."""
    # superfences keeps the fence's classes on its preprocessor while validators run; the validator API
    # passes key=value pairs only. This is why pymdown-extensions is pinned.
    fenced = md.preprocessors["fenced_code_block"]
    if "exec" not in getattr(fenced, "classes", ()):
        return False
    from pymdownx.superfences import highlight_validator  # noqa: PLC0415

    # Runner keys (timeout=, when=, ...) are read from the runner's parse; they must never reach the HTML.
    # The site keys are the grammar's own list (options.SITE_KEYS), so the runner and the site agree.
    ours = {k: v for k, v in inputs.items() if k in SITE_KEYS or k.startswith("data-")}
    return bool(highlight_validator(language, ours, options, attrs, md))


def _find_cell(state: _PageState, ident: str, src: str) -> Cell | None:
    """The parsed cell this fence is: by id, else the first unrendered executable cell with this source."""
    cells = state.book.cells
    if ident:
        found = next((c for c in cells if c.id == ident and c.executable and c.index not in state.rendered), None)
        if found:
            return found
    body = src.rstrip("\n")
    return next(
        (c for c in cells if c.executable and c.index not in state.rendered and c.source.rstrip("\n") == body),
        None,
    )


def _after_title(html: str, block: str) -> str:
    """``html`` with ``block`` right after its first ``<h1>`` (at the start when it has none)."""
    end = html.find("</h1>")
    if end < 0:
        return block + html
    end += len("</h1>")
    return html[:end] + block + html[end:]


def _line_of(text: str, src: str) -> int:
    """1-based line of the first line of ``src`` in ``text`` (0 when not found)."""
    first = next((line.strip() for line in src.split("\n") if line.strip()), "")
    for number, line in enumerate(text.split("\n"), start=1):
        if first and line.strip() == first:
            return number - 1  # the fence's opening line
    return 0


def _lint(book: Runbook) -> None:
    """Warn (``--strict`` fails) about what the runner would reject or a reader could not link to.

    The parser's problems, and ``runbook-exec check``'s own id rules with the same messages (the rules live
    in :mod:`runbook_exec.lint.rules`).
    """
    for problem in book.problems:
        log.warning(str(problem))
    for found in sorted(check_rules.cells_without_id(book) + check_rules.id_collisions(book)):
        log.warning(str(found))


class _RepoLinksTreeprocessor(Treeprocessor):  # type: ignore[misc]  # markdown ships no types
    def __init__(self, md: Markdown, plugin: RunbookPlugin, page_file: File | None) -> None:
        super().__init__(md)
        self.plugin = plugin
        self.page_file = page_file

    def run(self, root: Element) -> None:
        if self.page_file is None:
            return
        for el in root.iter("a"):
            href = el.get("href")
            if href:
                new = self.plugin.site_link(self.page_file, href)
                if new is not None:
                    el.set("href", new)


class _RepoLinksExtension(Extension):  # type: ignore[misc]
    """Runs before MkDocs' own link processing (priority 0), on the page being rendered."""

    def __init__(self, plugin: RunbookPlugin) -> None:
        super().__init__()
        self.plugin = plugin

    def extendMarkdown(self, md: Markdown) -> None:
        state = self.plugin._page
        page_file = None
        if state is not None:
            page_file = self.plugin._repo_paths.get(state.path)
        md.treeprocessors.register(_RepoLinksTreeprocessor(md, self.plugin, page_file), "runbook_repo_links", 1)
