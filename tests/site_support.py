"""Helpers for the site tests: lay out a site tree, build it offline with the real mkdocs, read its HTML."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

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


def build(root: Path, site: Path | None = None, strict: bool = True) -> Built:
    """``mkdocs build [--strict]`` in ``root`` (the directory of mkdocs.yml), offline."""
    site = site or root / "site"
    cmd = [*offline_prefix(), sys.executable, "-m", "mkdocs", "build", "-d", str(site)]
    if strict:
        cmd.append("--strict")
    proc = subprocess.run(cmd, cwd=root, env=offline_env(), capture_output=True, text=True, timeout=300, check=False)
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
