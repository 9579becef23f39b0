"""The site: ``mkdocs build --strict`` offline, and the built HTML checked against the runner's own parse.

Two builds are checked the same way: the fixture runbook (tests/fixtures/site/deploy.md, known contents) and
the real ``ops/deploy.md`` with the real ``mkdocs.yml`` — whatever cells the real runbook has, each must have
its card, anchor and run command.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import markdown
import pytest

from runbook_exec.doc import document
from runbook_exec.doc.document import Runbook
from runbook_exec.lint.rules import check_structure
from runbook_exec.site import cards

from site_support import FIXTURES, ROOT, RUNBOOK, Built, Node, article, build, minimal_config, parse_html, site_tree

LINT = sorted((FIXTURES / "lint").glob("*.md"))
# Fence keys of the runner / Runme that must never become HTML attributes (HTMLParser lowercases names).
LEAK_ATTRS = frozenset(
    {"timeout", "retries", "interval", "expect", "when", "cwd", "excludefromrunall", "interactive", "tag", "exec"}
)
RAW_ATTRS = re.compile(r"\{\s*[#.][^{}\n]*\}")


@pytest.fixture(scope="module")
def fixture_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Built, Runbook]:
    root = site_tree(tmp_path_factory.mktemp("fixture-site"), FIXTURES / "deploy.md")
    return build(root), document.parse(str(root / RUNBOOK))


@pytest.fixture(scope="module")
def real_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Built, Runbook]:
    if not (ROOT / RUNBOOK).exists():
        pytest.skip("ops/deploy.md does not exist yet")
    # The real mkdocs.yml, in place; only the output goes elsewhere.
    built = build(ROOT, tmp_path_factory.mktemp("real-site") / "site")
    return built, document.parse(str(ROOT / RUNBOOK))


@pytest.fixture(params=["fixture", "real"])
def site(request: pytest.FixtureRequest) -> tuple[Built, Runbook]:
    result: tuple[Built, Runbook] = request.getfixturevalue(f"{request.param}_site")
    return result


def _page(built: Built) -> Node:
    return article(built.page("ops/deploy"))


# -- the build -----------------------------------------------------------------------------------------


def test_build_is_strict_clean_and_offline(site: tuple[Built, Runbook]) -> None:
    built, _ = site
    assert built.returncode == 0, built.output
    assert built.warnings == [], built.warnings
    assert (built.site / "ops" / "deploy" / "index.html").is_file()
    assert (built.site / "search" / "search_index.json").is_file()


def test_pages_load_nothing_from_another_host(site: tuple[Built, Runbook]) -> None:
    built, _ = site
    for page in built.site.rglob("*.html"):
        root = parse_html(page.read_text(encoding="utf-8"))
        for node in root.iter():
            if node.tag == "link" and node.attrs.get("rel") == "canonical":
                # The page's own address from site_url (for sitemap.xml and search engines); never fetched.
                assert node.attrs["href"].startswith("http://127.0.0.1:8000/"), node.attrs
                continue
            for attr in ("src", "href") if node.tag in ("script", "link", "img", "iframe") else ():
                url = node.attrs.get(attr, "")
                assert not re.match(r"^(https?:)?//", url), f"{page}: <{node.tag} {attr}={url}>"
        text = page.read_text(encoding="utf-8")
        assert "fonts.googleapis" not in text and "fonts.gstatic" not in text, page
        assert "squidfunk" not in text, f"{page}: generator link"


def test_sitemap_lists_every_page_under_the_site_url(site: tuple[Built, Runbook], tmp_path: Path) -> None:
    built, _ = site
    pages = sorted(str(p.parent.relative_to(built.site)) for p in built.site.rglob("index.html"))
    assert len(pages) > 2
    sitemap = (built.site / "sitemap.xml").read_text(encoding="utf-8")
    listed = re.findall(r"<loc>(.*?)</loc>", sitemap)
    # The default is where `mkdocs serve` answers; RUNBOOK_SITE_URL sets the published address.
    assert sorted(listed) == sorted("http://127.0.0.1:8000/" + ("" if p == "." else p + "/") for p in pages)
    assert "http://127.0.0.1:8000/release-history/" in listed


def test_site_url_comes_from_the_environment(tmp_path: Path) -> None:
    root = site_tree(tmp_path, FIXTURES / "deploy.md")
    built = build(root, env={"RUNBOOK_SITE_URL": "https://runbook.intranet.example/ops-site/"})
    assert built.returncode == 0, built.output
    sitemap = (built.site / "sitemap.xml").read_text(encoding="utf-8")
    assert "<loc>https://runbook.intranet.example/ops-site/ops/deploy/</loc>" in sitemap
    assert "127.0.0.1" not in sitemap


def test_deploy_runbook_is_first_in_nav(site: tuple[Built, Runbook]) -> None:
    built, _ = site
    root = parse_html((built.site / "index.html").read_text(encoding="utf-8"))
    primary = next(n for n in root.find_all("nav") if "md-nav--primary" in n.classes())
    links = [a.attrs.get("href", "") for a in primary.find_all("a", "md-nav__link") if a.attrs.get("href")]
    assert links[0].rstrip("/").endswith("ops/deploy"), links


# -- the deploy page against the runner's parse ------------------------------------------------------


def test_every_exec_cell_has_card_anchor_and_run_command(site: tuple[Built, Runbook]) -> None:
    built, book = site
    page = _page(built)
    found = page.find_all("div", "runbook-cell")
    cells = book.executable_cells()
    assert cells, "the runbook has no executable cells"
    assert [c.attrs.get("data-runbook-cell") for c in found] == [c.label for c in cells]
    # The anchor is the card's header; no element inside a card has another id than Pygments' line anchors.
    assert [c.find_all("div", "runbook-cell__head")[0].attrs.get("id") for c in found] == [c.id for c in cells]
    heading_ids = {n.attrs["id"] for n in page.iter() if re.fullmatch(r"h[1-6]", n.tag) and "id" in n.attrs}
    needs = cards.required_vars(book)
    assert "TAG" in {v.name for v in needs}
    for card, cell in zip(found, cells, strict=True):
        where = f"cell #{cell.id} (line {cell.line})"
        anchor = card.find_all("a", "runbook-cell__id")
        assert anchor and anchor[0].attrs["href"] == f"#{cell.id}", where
        # The command runs as shown once the placeholders of the required variables are filled in.
        assert cell.id
        run = next(iter(card.find_all("div", "runbook-cell__run"))).find_all("pre")
        command = f"runbook-exec {RUNBOOK} --cell {cell.id} " + " ".join(f"--var {v.name}=<{v.name}>" for v in needs)
        assert [c.text() for c in run] == [command] == [cards.run_command(RUNBOOK, cell.id, needs)], where
        # The code block holds exactly the cell's source: Material's copy button copies that element.
        code = card.find_all("div", "highlight")[0].find_all("code")[0].text()
        assert code.rstrip("\n") == cell.source.rstrip("\n"), where
        if cell.section:
            section = card.find_all("a", "runbook-cell__section")
            assert section and section[0].attrs["href"] == f"#{cell.section}", where
            assert cell.section in heading_ids, where
        assert ("runbook-cell--danger" in card.classes()) == cell.danger, where
        assert bool(card.find_all("span", "runbook-cell__badge--danger")) == cell.danger, where
        # Each chip shows a Korean label and, in its title, the option as written in the fence.
        opts = card.find_all("span", "runbook-cell__opt")
        titles = " | ".join(n.attrs.get("title", "") for n in opts)
        o = cell.options
        assert f"timeout={o.timeout:g} " in titles if o.timeout is not None else "timeout" not in titles, where
        assert (f"retries={o.retries}" in titles) == bool(o.retries), (where, titles)
        assert (f"when={o.when}" in titles) == (o.when != "success"), (where, titles)
        assert all(re.search(r"[가-힣]", n.text()) for n in opts), (where, [n.text() for n in opts])


def test_section_anchors_equal_the_runners_section_ids(site: tuple[Built, Runbook]) -> None:
    built, book = site
    page = _page(built)
    headings = [(n.tag, n.attrs.get("id")) for n in page.iter() if re.fullmatch(r"h[1-6]", n.tag)]
    assert headings == [(f"h{s.level}", s.id) for s in book.sections]


def test_non_exec_fences_render_as_plain_highlighting(site: tuple[Built, Runbook]) -> None:
    built, book = site
    html = built.page("ops/deploy")
    plain = [c for c in book.cells if not c.executable and c.lang]
    assert plain, "the runbook has no documentation fences to compare"
    for cell in plain:
        fence = "`" * 3 if "```" not in cell.source else "`" * 4
        alone = markdown.markdown(
            f"{fence}{cell.info}\n{cell.source}{fence}\n",
            extensions=["attr_list", "pymdownx.highlight", "pymdownx.superfences"],
            extension_configs={"pymdownx.highlight": {"anchor_linenums": True}},
        )
        # Only the per-page block counter in line-anchor ids differs between a page and a lone fence.
        assert alone.startswith("<div") and _uncounted(alone) in _uncounted(html), f"line {cell.line}: {cell.info!r}"


def _uncounted(html: str) -> str:
    return re.sub(r"__code(lineno)?-?_?\d+", "__code", html)


def test_no_attribute_list_reaches_the_html(site: tuple[Built, Runbook]) -> None:
    built, _ = site
    for page in built.site.rglob("*.html"):
        root = parse_html(page.read_text(encoding="utf-8"))
        # Text a reader sees outside code: examples of the syntax inside code blocks are fine.
        prose = root.inner_text_outside(frozenset({"code", "pre", "script", "style"}))
        assert not RAW_ATTRS.search(prose), f"{page}: {RAW_ATTRS.search(prose)}"
        for node in root.iter():
            leaked = LEAK_ATTRS & node.attrs.keys()
            assert not leaked, f"{page}: <{node.tag}> has {leaked}"


# -- fixture specifics ---------------------------------------------------------------------------------


def test_fixture_cards_show_options_and_korean_sections(fixture_site: tuple[Built, Runbook]) -> None:
    built, book = fixture_site
    page = _page(built)
    cards = {c.attrs["data-runbook-cell"]: c for c in page.find_all("div", "runbook-cell")}
    assert "⚠ 위험: 실행 전 확인" in cards["rollback-up"].text()
    assert "재시도 5회 · 2초 간격" in cards["wait-healthy"].text()
    assert "healthy 대기" in cards["wait-healthy"].text()  # title= still works on a card
    assert "실패했을 때만 실행" in cards["collect-logs"].text()
    assert "항상 실행" in cards["always-ps"].text()
    assert "smoke-front" in cards  # a cell inside a list item
    ids = [s.id for s in book.sections]
    assert "63-healthcheck-확인" in ids and "확인_1" in ids
    section = cards["wait-healthy"].find_all("a", "runbook-cell__section")[0]
    assert section.attrs["href"] == "#63-healthcheck-확인"


def test_repository_relative_links_reach_the_published_page(fixture_site: tuple[Built, Runbook]) -> None:
    built, _ = fixture_site
    guide = parse_html(built.page("guide"))
    hrefs = {a.attrs.get("href", "") for a in guide.find_all("a")}
    assert "../ops/deploy/#compose-up" in hrefs  # written as ../ops/deploy.md#compose-up in docs/guide.md
    deploy = parse_html(built.page("ops/deploy"))
    assert "../../guide/" in {a.attrs.get("href", "") for a in deploy.find_all("a")}  # ../docs/guide.md


# -- lint cases: each file says which warnings it must produce -----------------------------------------


def _expected(case: Path) -> list[str]:
    return re.findall(r"<!-- expect: (.*?) -->", case.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", LINT, ids=[p.stem for p in LINT])
def test_lint_case(case: Path, tmp_path: Path) -> None:
    root = site_tree(tmp_path, case, docs=False)
    minimal_config(root)
    built = build(root)
    expected = _expected(case)
    assert expected, f"{case.name}: no <!-- expect: ... --> line"
    if expected == ["clean"]:
        assert built.returncode == 0 and built.warnings == [], built.output
        return
    assert built.returncode != 0, built.output
    text = "\n".join(built.warnings)
    for want in expected:
        assert want in text, f"{case.name}: expected {want!r} in:\n{text}"


@pytest.mark.parametrize("name", ["missing-id", "cell-id-equals-section"])
def test_site_and_check_report_id_rules_alike(name: str, tmp_path: Path) -> None:
    """The site build logs check's own RX110 / RX114 findings, word for word."""
    case = FIXTURES / "lint" / f"{name}.md"
    root = site_tree(tmp_path, case, docs=False)
    minimal_config(root)
    built = build(root)
    book = document.parse_text(case.read_text(encoding="utf-8"), RUNBOOK)
    findings = [f for f in check_structure(book) if f.code in ("RX110", "RX114")]
    assert findings
    for found in findings:
        assert str(found) in "\n".join(built.warnings), built.output


def test_missing_runbook_is_a_clear_error(tmp_path: Path) -> None:
    root = site_tree(tmp_path, FIXTURES / "deploy.md", docs=False)
    minimal_config(root)
    (root / RUNBOOK).unlink()
    built = build(root)
    assert built.returncode != 0
    assert "runbook: ops/deploy.md: no such file" in built.output


# -- mkdocs serve --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode("utf-8"))
    except OSError:
        return None


def _wait_for(url: str, needle: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = _get(url)
        if body is not None and needle in body:
            return True
        time.sleep(0.3)
    return False


def test_serve_rebuilds_when_the_runbook_changes(tmp_path: Path) -> None:
    root = site_tree(tmp_path, FIXTURES / "deploy.md")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["NO_MKDOCS_2_WARNING"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mkdocs", "serve", "-a", f"127.0.0.1:{port}"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/ops/deploy/"
    try:
        assert _wait_for(url, 'id="compose-up"', 60), "mkdocs serve did not serve the runbook"
        with (root / RUNBOOK).open("a", encoding="utf-8") as f:
            f.write("\n## 9. 추가 {#added}\n\n```bash {#added-cell .exec}\necho added\n```\n")
        assert _wait_for(url, 'id="added-cell"', 60), "editing ops/deploy.md did not rebuild the page"
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_docs_pass_the_runbook_linter() -> None:
    """pre-commit runs ``runbook-exec check`` on docs/*.md too: the site's own pages must pass it."""
    from conftest import run_cli

    pages = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
    done = run_cli(["check", *pages], cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
