"""The built site in headless Chromium: served on 127.0.0.1, nothing fetched from any other host, the
Korean search works, the copy button copies only a cell's code, and a full-page screenshot is kept in
``.runbook/site/`` (git-ignored; CI keeps it as an artifact).

Needs Debian's ``chromium`` and ``fonts-noto-cjk`` (without the fonts Hangul renders as boxes). Skipped when
Chromium is missing, unless ``RUNBOOK_BROWSER=required``.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from runbook_exec import document

from site_browser import Browser, find_chromium
from site_support import FIXTURES, ROOT, RUNBOOK, build, site_tree

pytestmark = pytest.mark.browser
SHOTS = ROOT / ".runbook" / "site"
SEARCH_WORD = "리허설"  # in a heading of the fixture and of the real runbook


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        if os.environ.get("RUNBOOK_BROWSER") == "required":
            pytest.fail(
                "RUNBOOK_BROWSER=required but no chromium is installed (apt-get install chromium fonts-noto-cjk)"
            )
        pytest.skip("no chromium installed (apt-get install chromium fonts-noto-cjk)")
    return binary


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The real runbook's site when ops/deploy.md exists, else the fixture's, on 127.0.0.1."""
    runbook = ROOT / RUNBOOK if (ROOT / RUNBOOK).exists() else FIXTURES / "deploy.md"
    root = site_tree(tmp_path_factory.mktemp("browser-site"), runbook)
    built = build(root)
    assert built.returncode == 0, built.output
    handler = functools.partial(_Quiet, directory=str(built.site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root / RUNBOOK
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[Browser]:
    # Every name except 127.0.0.1 fails to resolve: a request to another host is recorded, never sent.
    b = Browser(chromium, tmp_path / "profile", host_rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    try:
        b.open_page()
        yield b
    finally:
        b.close()


def _foreign(requests: list[str], origin: str) -> list[str]:
    host = urlsplit(origin).netloc
    return [u for u in requests if urlsplit(u).scheme not in ("data", "blob", "about") and urlsplit(u).netloc != host]


def test_deploy_page_in_chromium(browser: Browser, served: tuple[str, Path]) -> None:
    origin, runbook = served
    book = document.parse(str(runbook))
    browser.navigate(f"{origin}/ops/deploy/")
    browser.wait_for("document.fonts.status === 'loaded'", 20)

    cards = browser.evaluate(
        "[...document.querySelectorAll('.runbook-cell')].map(c => c.querySelector('.runbook-cell__head').id)"
    )
    assert cards == [c.id for c in book.executable_cells()]

    # Material's copy buttons copy their target element: a cell's code button exactly the cell's code, its
    # run button exactly the command.
    copy = "button.md-clipboard, button.md-code__button[data-md-type=copy]"
    for cell in book.executable_cells():
        copied = browser.wait_for(
            f"[...document.querySelector('[data-runbook-cell=\"{cell.label}\"]').querySelectorAll('{copy}')]"
            ".map(b => document.querySelector(b.dataset.clipboardTarget).innerText)",
            10,
        )
        assert [c.rstrip("\n") for c in copied] == [
            cell.source.rstrip("\n"),
            f"runbook-exec {RUNBOOK} --cell {cell.id}",
        ], cell.label

    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.screenshot(SHOTS / "deploy.png")
    assert (SHOTS / "deploy.png").stat().st_size > 10_000

    # Search a Korean word with the search box, as a reader would.
    browser.evaluate("document.querySelector('label.md-search__icon, label[for=__search]').click()")
    browser.evaluate("document.querySelector('input.md-search__input').focus()")
    browser.type_text(SEARCH_WORD)
    hits = browser.wait_for(
        "[...document.querySelectorAll('.md-search-result__item a')].map(a => a.getAttribute('href'))"
        ".filter(h => h.includes('ops/deploy/'))",
        30,
    )
    assert hits, "no search result on the deploy page"
    meta = browser.evaluate("document.querySelector('.md-search-result__meta').textContent")
    assert "초기화" not in meta, meta  # "검색 초기화": the index never finished loading
    browser.screenshot(SHOTS / "search.png", full_page=False)

    assert any(u.startswith(f"{origin}/search/search_index.json") for u in browser.requests), browser.requests
    assert _foreign(browser.requests, origin) == []


def test_every_page_stays_on_the_server(browser: Browser, served: tuple[str, Path]) -> None:
    origin, _ = served
    for path in ("/", "/guide/", "/syntax/", "/release-log/", "/troubleshooting/", "/style/"):
        browser.navigate(origin + path)
    assert len(browser.requests) > 6
    assert _foreign(browser.requests, origin) == []
