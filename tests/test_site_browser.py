"""The built site in headless Chromium, as a reader sees it: served on 127.0.0.1, nothing fetched from any
other host, the copy buttons copy exactly a cell's code and never cover code text (desktop and phone), Korean
prose breaks between words, the Korean search finds words after punctuation, the dark toggle works, and
screenshots of the deploy page (light, dark, phone) are kept in ``.runbook/site/`` (git-ignored; CI keeps
them as artifacts).

The site is the real runbook's, with run reports and release records written by the runner's own
serializers (``site_support.write_real_evidence``), so every card state is on the page.

Needs Debian's ``chromium`` and ``fonts-noto-cjk`` (without the fonts Hangul renders as boxes). Skipped when
Chromium is missing, unless ``RUNBOOK_BROWSER=required``.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from runbook_exec.doc import document
from runbook_exec.doc.document import Runbook
from runbook_exec.site import cards

from site_browser import Browser, find_chromium
from site_support import ROOT, RUNBOOK, build, site_tree, write_real_evidence

pytestmark = pytest.mark.browser
SHOTS = ROOT / ".runbook" / "site"
DESKTOP, PHONE = (1280, 900), (390, 844)
# Korean words a reader searches for, and the section each must find: 민감값 follows "(" in the 5.4 heading,
# 최소 and 필수 follow "(" in 7 and 1 (the search used to split on whitespace and "-" only).
SEARCHES = {
    "리허설": "rehearsal",
    "민감값": "compose-config-output",
    "최소": "rollback",
    "필수": "package",
}

# For every code block with a copy button: the last character of each line, scrolled to the left and to the
# right end, must not intersect the button's rectangle while it is shown.
COVERED_JS = """
(() => {
  const hits = []; let lines = 0, blocks = 0;
  for (const pre of document.querySelectorAll('article.md-content__inner pre')) {
    const code = pre.querySelector(':scope > code');
    const button = pre.querySelector('.md-code__nav, .md-clipboard');
    if (!code || !button) continue;
    blocks++;
    const ends = []; let last = null;
    const walker = document.createTreeWalker(code, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      for (let i = 0; i < n.data.length; i++) {
        if (n.data[i] === '\\n') { if (last) ends.push(last); last = null; }
        else if (!/\\s/.test(n.data[i])) last = [n, i];
      }
    }
    if (last) ends.push(last);
    lines += ends.length;
    for (const where of ['start', 'end']) {
      code.scrollLeft = where === 'start' ? 0 : code.scrollWidth;
      const b = button.getBoundingClientRect(), v = code.getBoundingClientRect();
      for (const [n, i] of ends) {
        const range = document.createRange();
        range.setStart(n, i); range.setEnd(n, i + 1);
        for (const c of range.getClientRects()) {
          // Shown at all: its middle is inside the code's scrolling box (else it is clipped away).
          const x = (c.left + c.right) / 2, y = (c.top + c.bottom) / 2;
          const visible = x > v.left && x < v.right && y > v.top && y < v.bottom;
          const under = c.left < b.right && c.right > b.left && c.top < b.bottom && c.bottom > b.top;
          if (visible && under) hits.push(`${where}: ...${n.data.slice(Math.max(0, i - 30), i + 1)}`);
        }
      }
    }
    code.scrollLeft = 0;
  }
  return {blocks, lines, hits};
})()
"""


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
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Runbook]]:
    """The real runbook's site with evidence for every card state, on 127.0.0.1."""
    root = site_tree(tmp_path_factory.mktemp("browser-site"))
    write_real_evidence(root)
    built = build(root)
    assert built.returncode == 0 and built.warnings == [], built.output
    handler = functools.partial(_Quiet, directory=str(built.site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (
            f"http://127.0.0.1:{server.server_address[1]}",
            document.parse_text((root / RUNBOOK).read_text(encoding="utf-8"), RUNBOOK),
        )
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[Browser]:
    # Every name except 127.0.0.1 fails to resolve: a request to another host is recorded, never sent.
    b = Browser(chromium, tmp_path / "profile", host_rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    try:
        b.open_page(*DESKTOP)
        yield b
    finally:
        b.close()


def _foreign(requests: list[str], origin: str) -> list[str]:
    host = urlsplit(origin).netloc
    return [u for u in requests if urlsplit(u).scheme not in ("data", "blob", "about") and urlsplit(u).netloc != host]


def _open(browser: Browser, url: str) -> None:
    browser.navigate(url)
    browser.wait_for("document.fonts.status === 'loaded'", 20)
    # Material adds the copy buttons after load.
    browser.wait_for("document.querySelectorAll('.md-code__nav, .md-clipboard').length > 0", 20)


def _scroll_to(browser: Browser, selector: str) -> None:
    browser.evaluate(
        f"(() => {{ document.querySelector({json.dumps(selector)}).scrollIntoView(); window.scrollBy(0, -70); }})()"
    )
    time.sleep(0.5)  # Material's header fades its title in after a scroll: let it settle before a screenshot


def test_cards_and_copy_buttons(browser: Browser, served: tuple[str, Runbook]) -> None:
    origin, book = served
    _open(browser, f"{origin}/ops/deploy/")
    cells = book.executable_cells()
    found = browser.evaluate(
        "[...document.querySelectorAll('.runbook-cell')].map(c => [c.querySelector('.runbook-cell__head').id,"
        " c.dataset.runbookStatus, c.dataset.runbookChanged || ''])"
    )
    assert [f[0] for f in found] == [c.id for c in cells]
    states = {f[1] for f in found}
    assert states == {"passed", "failed", "timed_out", "skipped", "unverified"}, found
    assert [f[0] for f in found if f[2]] == ["env-chmod"]

    # Material's copy buttons copy their target element: a cell's code button exactly the cell's code, its
    # run button exactly the command (with the placeholders of the required variables).
    copy = "button.md-clipboard, button.md-code__button[data-md-type=copy]"
    needs = cards.required_vars(book)
    assert [v.name for v in needs] == ["TAG"]
    for cell in cells:
        assert cell.id
        copied = browser.wait_for(
            f"[...document.querySelector('[data-runbook-cell=\"{cell.label}\"]').querySelectorAll('{copy}')]"
            ".map(b => document.querySelector(b.dataset.clipboardTarget).innerText)",
            10,
        )
        command = cards.run_command(RUNBOOK, cell.id, needs)
        assert command.endswith(" --var TAG=<TAG>")
        assert [c.rstrip("\n") for c in copied] == [cell.source.rstrip("\n"), command], cell.label

    # The run command is set in the size of the cell's code.
    sizes = browser.evaluate(
        "[...document.querySelectorAll('.runbook-cell')].map(c => ["
        "getComputedStyle(c.querySelector('.highlight pre > code')).fontSize,"
        "getComputedStyle(c.querySelector('.runbook-cell__run pre > code')).fontSize])"
    )
    assert all(a == b for a, b in sizes), sizes

    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.screenshot(SHOTS / "deploy.png")
    assert (SHOTS / "deploy.png").stat().st_size > 10_000
    _scroll_to(browser, "[data-runbook-cell=preflight-check]")
    browser.screenshot(SHOTS / "deploy-card.png", full_page=False)
    assert _foreign(browser.requests, origin) == []


@pytest.mark.parametrize("screen", ["desktop", "phone"])
def test_copy_button_never_covers_code(browser: Browser, served: tuple[str, Runbook], screen: str) -> None:
    origin, _ = served
    width, height = DESKTOP if screen == "desktop" else PHONE
    browser.viewport(width, height, mobile=screen == "phone")
    for path in ("/ops/deploy/", "/cli/", "/publishing/"):
        _open(browser, origin + path)
        result: dict[str, Any] = browser.evaluate(COVERED_JS)
        assert result["blocks"] >= 3 and result["lines"] > result["blocks"], (path, result)
        assert result["hits"] == [], (screen, path, result["hits"][:10])
    if screen == "phone":
        _open(browser, f"{origin}/ops/deploy/")
        browser.screenshot(SHOTS / "deploy-mobile.png", full_page=False)
        _scroll_to(browser, "[data-runbook-cell=preflight-check]")
        browser.screenshot(SHOTS / "deploy-mobile-card.png", full_page=False)
        # Nothing wider than the phone's screen but what scrolls inside its own box (code, tables).
        assert browser.evaluate("document.documentElement.scrollWidth") <= width
    assert _foreign(browser.requests, origin) == []


def test_korean_typography(browser: Browser, served: tuple[str, Runbook]) -> None:
    origin, _ = served
    _open(browser, f"{origin}/ops/deploy/")
    styles = browser.evaluate(
        "[...document.querySelectorAll('article.md-content__inner p, article.md-content__inner li')]"
        ".map(p => getComputedStyle(p).wordBreak + ' ' + getComputedStyle(p).overflowWrap)"
    )
    assert len(styles) > 50 and set(styles) == {"keep-all break-word"}, set(styles)
    links = browser.evaluate(
        "[...document.querySelectorAll('article.md-content__inner a')].map(a => getComputedStyle(a).wordBreak)"
    )
    assert set(links) == {"keep-all"}, set(links)
    # Inline code in tables (paths, flags) never breaks inside the token.
    table_code = browser.evaluate(
        "[...document.querySelectorAll('article table code')].map(c => getComputedStyle(c).whiteSpace)"
    )
    assert table_code and set(table_code) == {"nowrap"}
    # ... and none of them is broken over two lines, on a phone either.
    browser.viewport(*PHONE, mobile=True)
    _open(browser, f"{origin}/cli/")
    broken = browser.evaluate(
        "[...document.querySelectorAll('article table code')].filter(c => c.getClientRects().length > 1)"
        ".map(c => c.textContent)"
    )
    assert broken == []


def test_search_finds_korean_words_after_punctuation(browser: Browser, served: tuple[str, Runbook]) -> None:
    origin, _ = served
    _open(browser, f"{origin}/ops/deploy/")
    browser.evaluate("document.querySelector('label.md-search__icon, label[for=__search]').click()")
    for word, section in SEARCHES.items():
        browser.evaluate("(i => { i.focus(); i.select(); })(document.querySelector('input.md-search__input'))")
        browser.type_text(word)
        hits = browser.wait_for(
            "[...document.querySelectorAll('.md-search-result__item a')].map(a => new URL(a.href))"
            f".filter(u => u.pathname.endsWith('/ops/deploy/') && u.hash === '#{section}')",
            30,
        )
        assert hits, word
        # A highlight is the word (with the particle that follows it, 리허설은), never the punctuation before.
        marks = browser.evaluate("[...document.querySelectorAll('.md-search-result mark')].map(m => m.textContent)")
        assert marks and all(m.startswith(word) and m.isalnum() for m in marks), (word, marks)
        if word == "민감값":
            browser.screenshot(SHOTS / "search.png", full_page=False)
    meta = browser.evaluate("document.querySelector('.md-search-result__meta').textContent")
    assert "초기화" not in meta, meta  # "검색 초기화": the index never finished loading
    assert any(u.startswith(f"{origin}/search/search_index.json") for u in browser.requests), browser.requests
    assert _foreign(browser.requests, origin) == []


def test_dark_scheme_follows_the_system_and_the_toggle(browser: Browser, served: tuple[str, Runbook]) -> None:
    origin, _ = served
    scheme = "document.body.getAttribute('data-md-color-scheme')"
    toggle = "document.querySelector('form[data-md-component=palette] label:not([hidden])').click()"
    _open(browser, f"{origin}/ops/deploy/")  # the system (headless Chromium) prefers light
    assert browser.evaluate(scheme) == "default"
    browser.evaluate(toggle)
    assert browser.wait_for(f"{scheme} === 'slate'", 5)
    background = browser.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(255, 255, 255)", background
    browser.screenshot(SHOTS / "deploy-dark.png", full_page=False)
    _scroll_to(browser, "[data-runbook-cell=preflight-check]")
    browser.screenshot(SHOTS / "deploy-dark-card.png", full_page=False)
    _open(browser, f"{origin}/guide/")  # the choice is kept from page to page
    assert browser.evaluate(scheme) == "slate"
    browser.evaluate(toggle)
    assert browser.wait_for(f"{scheme} === 'default'", 5)

    # A first visit from a system set to dark starts dark.
    browser.navigate("about:blank")
    browser.send("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "local_storage"})
    browser.prefer_color_scheme("dark")
    _open(browser, f"{origin}/ops/deploy/")
    assert browser.evaluate(scheme) == "slate"
    assert _foreign(browser.requests, origin) == []


def test_every_page_stays_on_the_server(browser: Browser, served: tuple[str, Runbook]) -> None:
    origin, _ = served
    paths = ("/", "/guide/", "/syntax/", "/release-log/", "/troubleshooting/", "/style/", "/publishing/")
    for path in (*paths, "/release-history/"):
        browser.navigate(origin + path)
    browser.screenshot(SHOTS / "release-history.png", full_page=False)
    # The footer links to the previous and the next page.
    footer = browser.evaluate("[...document.querySelectorAll('a.md-footer__link')].map(a => a.className)")
    assert [c.split("--")[-1] for c in footer] == ["prev", "next"], footer
    assert len(browser.requests) > 8
    assert _foreign(browser.requests, origin) == []
