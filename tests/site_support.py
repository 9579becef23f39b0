"""Helpers for the site tests: lay out a site tree, build it offline with the real mkdocs, read its HTML."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

from runbook_exec.doc import document
from runbook_exec.doc.document import Cell, Runbook
from runbook_exec.records import release_log
from runbook_exec.records.report import write_json
from runbook_exec.records.results import FAILED, PASSED, SKIPPED, TIMED_OUT, CellResult, RunReport, source_sha256

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "site"
RUNBOOK = "ops/deploy.md"


def site_tree(dest: Path, runbook: Path | None = None, docs: bool = True) -> Path:
    """Copy ``mkdocs.yml`` (and ``docs/``) to ``dest`` with ``runbook`` (default: the real one) as ops/deploy.md.

    The tree mirrors the repository, so the real ``mkdocs.yml`` is used unchanged and repository-relative
    links (``../ops/deploy.md#x`` from ``docs/``) resolve as they do in the repository.
    """
    source = runbook if runbook is not None else ROOT / RUNBOOK
    (dest / "ops").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "mkdocs.yml", dest / "mkdocs.yml")
    if docs:
        shutil.copytree(ROOT / "docs", dest / "docs")
        if not (dest / "docs" / "ci.md").exists():
            (dest / "docs" / "ci.md").write_text("# CI gate\n", encoding="utf-8")
    else:
        (dest / "docs").mkdir()
        (dest / "docs" / "index.md").write_text("# Home\n", encoding="utf-8")
    template = ROOT / "ops" / "release.log.template"
    if template.exists():
        shutil.copy(template, dest / "ops" / "release.log.template")
    shutil.copy(source, dest / RUNBOOK)
    return dest


def set_reports(dest: Path, patterns: Sequence[str]) -> None:
    """Point the ``runbook`` plugin of ``dest/mkdocs.yml`` at ``patterns`` (its ``reports`` option)."""
    config = dest / "mkdocs.yml"
    text = config.read_text(encoding="utf-8")
    block = "      reports:\n" + "".join(f"        - {json.dumps(p)}\n" for p in patterns)
    new, n = re.subn(r"      reports:\n(?:        - .*\n)+", lambda _: block, text)
    assert n == 1, "mkdocs.yml: no reports: block under the runbook plugin"
    config.write_text(new, encoding="utf-8")


def minimal_config(dest: Path, extra_nav: str = "") -> None:
    """A small mkdocs.yml with the project's theme/extension choices, for lint cases (no docs to check)."""
    real = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    head, _, rest = real.partition("\nnav:\n")
    _, _, after_nav = rest.partition("\ntheme:\n")
    nav = f"\nnav:\n  - {RUNBOOK}\n  - index.md\n{extra_nav}"
    (dest / "mkdocs.yml").write_text(head + nav + "\ntheme:\n" + after_nav, encoding="utf-8")


@dataclass(frozen=True)
class Built:
    returncode: int
    output: str
    site: Path

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith(("WARNING", "ERROR"))]

    def page(self, uri: str) -> str:
        return (self.site / uri / "index.html").read_text(encoding="utf-8")


def offline_prefix() -> list[str]:
    """Run in a network namespace with no interfaces when the machine allows it (root in CI)."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True, check=False).returncode == 0:
        return [unshare, "-n"]
    return []


def offline_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_MKDOCS_2_WARNING"] = "1"
    # Without a network namespace, any download attempt still fails: every proxy points at a closed port.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        env[name] = "http://127.0.0.1:9"
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    return env


def build(root: Path, site: Path | None = None, strict: bool = True, env: dict[str, str] | None = None) -> Built:
    """``mkdocs build [--strict]`` in ``root`` (the directory of mkdocs.yml), offline, with ``env`` added."""
    site = site or root / "site"
    cmd = [*offline_prefix(), sys.executable, "-m", "mkdocs", "build", "-d", str(site)]
    if strict:
        cmd.append("--strict")
    environ = {**offline_env(), **(env or {})}
    proc = subprocess.run(cmd, cwd=root, env=environ, capture_output=True, text=True, timeout=300, check=False)
    return Built(proc.returncode, proc.stdout + proc.stderr, site)


# -- a tiny HTML tree ----------------------------------------------------------------------------------

_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self) -> list[Node]:
        out = [self]
        for c in self.children:
            if isinstance(c, Node):
                out.extend(c.iter())
        return out

    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        return [n for n in self.iter() if (tag is None or n.tag == tag) and (cls is None or cls in n.classes())]

    def inner_text_outside(self, skip: frozenset[str]) -> str:
        return "".join(
            c if isinstance(c, str) else ("" if c.tag in skip else c.inner_text_outside(skip)) for c in self.children
        )


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(html: str) -> Node:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


def article(html: str) -> Node:
    """The page's content (Material's ``article.md-content__inner``)."""
    root = parse_html(html)
    found = [n for n in root.find_all("article") if "md-content__inner" in n.classes()]
    assert found, "no <article class=md-content__inner> in the page"
    return found[0]


# -- evidence for the real runbook, for the browser test and its screenshots ---------------------------


def write_real_evidence(root: Path) -> None:
    """Run reports and release records for ``root/ops/deploy.md`` written by the runner's own serializers
    (``report.write_json``, ``release_log.render`` / ``append``), so the browser sees every card state without
    a Docker rehearsal: the rehearsal passed (failure cells skipped), a preflight failed printing markup,
    ``env-chmod`` ran an older source (changed since), an incident cell timed out; the rest is unverified."""
    # Parsed under its repository path, as the runner names it when started from the repository root.
    book = document.parse_text((root / RUNBOOK).read_text(encoding="utf-8"), RUNBOOK)
    start = datetime(2026, 1, 14, 1, 2, 3, tzinfo=UTC)
    later = start + timedelta(hours=5)
    markup = ('<script>alert("x")</script>', "<img src=x onerror=alert(1)>", "[link](https://example.invalid/)")
    missing = "error: .env.prod is missing keys listed in .env.sample: JWT_SECRET_KEY"

    def section(sid: str) -> list[Cell]:
        return [c for c in book.executable_cells() if sid in c.sections]

    rehearsal = [_result(c, SKIPPED if c.options.when == "failure" else PASSED, start) for c in section("rehearsal")]
    preflight = [
        _result(c, FAILED, later, first_error=f"{missing} {markup[0]}", tail=(*markup, missing))
        if c.id == "preflight-check"
        else _result(c, SKIPPED, later)
        for c in section("preflight")
    ]
    chmod = [
        _result(c, PASSED, later, source="chmod 644 .env.prod\n")
        for c in book.executable_cells()
        if c.id == "env-chmod"
    ]
    incident = [_result(c, TIMED_OUT if c.id == "incident-proxy" else PASSED, later) for c in section("incident")]
    runs = [
        ("rehearsal", _run(book, start, "section:rehearsal", rehearsal, "2026.01.14")),
        ("preflight", _run(book, later, "section:preflight", preflight, "2026.01.15")),
        ("env-chmod", _run(book, later + timedelta(minutes=3), "cell:env-chmod", chmod, "2026.01.15")),
        ("incident", _run(book, later + timedelta(minutes=9), "section:incident", incident, "2026.01.15")),
    ]
    template = root / "ops" / "release.log.template"
    for name, run in runs:
        folder = root / ".runbook" / "runs" / f"{run.started_at:%Y%m%dT%H%M%S}.000000Z-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        write_json(replace(run, run_dir=str(folder.relative_to(root))), folder / "report.json")
        if name in ("rehearsal", "preflight"):
            release_log.append(root / "ops" / "release.log", release_log.render(template, run, book))


_SECONDS = {"compose-up": 96.4, "wait-healthy": 31.0, "rehearsal-preflight": 4.2, "incident-proxy": 60.0}


def _result(
    cell: Cell,
    status: str,
    at: datetime,
    *,
    first_error: str | None = None,
    tail: tuple[str, ...] = (),
    source: str | None = None,
) -> CellResult:
    ran = status != SKIPPED
    return CellResult(
        id=cell.id,
        label=cell.label,
        section=cell.section,
        line=cell.line,
        when=cell.options.when,
        status=status,
        exit_code=(0 if status == PASSED else 1) if ran and status != TIMED_OUT else None,
        attempts=1 if ran else 0,
        duration_s=_SECONDS.get(cell.label, 0.8) if ran else 0.0,
        started_at=at if ran else None,
        first_error=first_error,
        tail=tail,
        source_sha256=source_sha256(cell.source if source is None else source),
    )


def _run(book: Runbook, start: datetime, selection: str, cells: list[CellResult], tag: str) -> RunReport:
    bad = any(c.status in (FAILED, TIMED_OUT) for c in cells)
    return RunReport(
        runbook=RUNBOOK,
        runbook_sha256=book.sha256,
        status=FAILED if bad else PASSED,
        started_at=start,
        finished_at=start + timedelta(seconds=sum(c.duration_s for c in cells) + 2.0),
        selection=(selection,),
        cells=tuple(cells),
        variables={"TAG": tag, "TAG_PREV": "2026.01.10"},
        operator="deploy",
        host="app-01",
        exit_code=1 if bad else 0,
    )
