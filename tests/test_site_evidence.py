"""Run evidence on the site: cards, the page summary and the release history built from the reports and
release.log records the real runner wrote (tests/site_evidence.py: passed, failed, timed-out and skipped cells,
a cell edited after it ran, a report older than source hashes, another runbook's report).

Everything from a report or a record that a cell or an operator controls is markup-shaped on purpose; the
site must show it as characters.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from runbook_exec.doc import document
from runbook_exec.doc.document import Runbook
from runbook_exec.records import evidence, release_log
from runbook_exec.records.results import source_sha256
from runbook_exec.site import formatting as site_format
from runbook_exec.site import pages as site_pages

from site_evidence import EDITED, EVIDENCE_RUNBOOK, EXPECTED_STATUS, PAYLOAD_OPERATOR, PAYLOAD_TAG, Runs, make_runs
from site_support import FIXTURES, RUNBOOK, Built, Node, article, build, minimal_config, parse_html, site_tree


@pytest.fixture(scope="module")
def evidence_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Built, Runs, Runbook, Path]:
    root = site_tree(tmp_path_factory.mktemp("evidence-site"), EVIDENCE_RUNBOOK, docs=False)
    minimal_config(root)
    runs = make_runs(root)
    built = build(root)
    book = document.parse_text((root / RUNBOOK).read_text(encoding="utf-8"), RUNBOOK)
    return built, runs, book, root


def _cards(built: Built) -> dict[str, Node]:
    page = article(built.page("ops/deploy"))
    return {c.attrs["data-runbook-cell"]: c for c in page.find_all("div", "runbook-cell")}


def _report(runs: Runs, name: str) -> dict[str, dict[str, object]]:
    data = json.loads(runs.reports[name].read_text(encoding="utf-8"))
    return {c["id"]: c for c in data["cells"]}


def test_build_is_strict_clean(evidence_site: tuple[Built, Runs, Runbook, Path]) -> None:
    built, *_ = evidence_site
    assert built.returncode == 0 and built.warnings == [], built.output


def test_reports_record_each_cells_source_hash(evidence_site: tuple[Built, Runs, Runbook, Path]) -> None:
    _, runs, _, _ = evidence_site
    ran = document.parse(str(EVIDENCE_RUNBOOK))  # the source as it was when the runs happened
    by_id = {c.id: c for c in ran.executable_cells()}
    for name in ("prepare", "deploy", "slow"):
        for cid, cell in _report(runs, name).items():
            assert cell["source_sha256"] == source_sha256(by_id[cid].source), (name, cid)


def test_cards_carry_status_and_drift(evidence_site: tuple[Built, Runs, Runbook, Path]) -> None:
    built, *_ = evidence_site
    found = _cards(built)
    assert {k: c.attrs.get("data-runbook-status") for k, c in found.items()} == EXPECTED_STATUS
    assert {k for k, c in found.items() if "data-runbook-changed" in c.attrs} == set(EDITED)
    assert {c.attrs["data-runbook-changed"] for k, c in found.items() if k in EDITED} == {"true"}
    assert "마지막 실행 이후 변경됨" in found["edited-later"].text()
    # say-hello was edited too, but its newest report predates source hashes: "cannot tell", not "changed".
    assert "변경 여부 알 수 없음" in found["say-hello"].text()
    assert "마지막 실행 이후 변경됨" not in found["say-hello"].text()
    assert "아직 검증되지 않음" in found["never-run"].text()


def test_cards_show_the_newest_run_that_covered_each_cell(evidence_site: tuple[Built, Runs, Runbook, Path]) -> None:
    built, runs, _, _ = evidence_site
    found = _cards(built)
    newest = {
        "say-hello": "again",
        "edited-later": "prepare",
        "will-fail": "deploy",
        "after-failure": "deploy",
        "collect": "deploy",
        "too-slow": "slow",
    }
    tags = {"again": "2026.01.16", "prepare": "2026.01.14", "deploy": PAYLOAD_TAG, "slow": "2026.01.15"}
    for cid, name in newest.items():
        card = found[cid]
        assert [n.text() for n in card.find_all("span", "runbook-cell__runid")] == [f"실행 {runs.run_id(name)}"], cid
        tag = card.find_all("span", "runbook-cell__tag")[0].find_all("code")[0].text()
        assert tag == tags[name], cid
        when = card.find_all("time")[0]
        recorded = _report(runs, name)[cid]["started_at"]
        if recorded is not None:
            assert datetime.fromisoformat(when.attrs["datetime"]) == datetime.fromisoformat(str(recorded)), cid
        assert when.text().endswith(" KST") and " UTC · " in when.attrs["title"], cid
    labels = {cid: found[cid].find_all("span", "runbook-status")[0].text() for cid in EXPECTED_STATUS}
    assert {k: v.split(" ", 1)[1] for k, v in labels.items()} == {
        "say-hello": "통과",
        "edited-later": "통과",
        "will-fail": "실패",
        "after-failure": "건너뜀",
        "collect": "통과",
        "too-slow": "시간 초과",
        "never-run": "아직 검증되지 않음",
    }
    assert "앞 셀이 실패해 실행하지 않음" in found["after-failure"].text()
    # A failed cell shows its first error line and its last lines, as text.
    error = found["will-fail"].find_all("p", "runbook-cell__error")[0]
    assert "(종료 코드 3)" in error.text()
    assert error.find_all("code")[0].text() == _report(runs, "deploy")["will-fail"]["first_error"]
    tail = found["will-fail"].find_all("pre", "runbook-plain")[0].text().split("\n")
    assert tail == _report(runs, "deploy")["will-fail"]["tail"]
    assert '<script>alert("tail")</script>' in tail
    # A passed cell shows no output at all: the site never shows more than a release record holds.
    shown = found["collect"].find_all("div", "runbook-cell__evidence")[0].text()
    assert not found["collect"].find_all("pre", "runbook-plain") and "collected after" not in shown
    # The other runbook's report (newer, all failed) reached no card.
    assert "other-runbook" not in built.page("ops/deploy")


def test_summary_shows_the_last_run_of_each_section(evidence_site: tuple[Built, Runs, Runbook, Path]) -> None:
    built, runs, _, _ = evidence_site
    page = article(built.page("ops/deploy"))
    # Right under the title.
    blocks = [n for n in page.children if isinstance(n, Node)]
    heading = next(i for i, n in enumerate(blocks) if n.tag == "h1")
    summary = blocks[heading + 1]
    assert "runbook-summary" in summary.classes() and summary.attrs["data-runbook-summary"] == RUNBOOK
    rows = {li.attrs["data-runbook-section"]: li for li in summary.find_all("li")}
    assert {k: v.attrs["data-runbook-status"] for k, v in rows.items()} == {
        "prepare": "passed",
        "deploy": "failed",
        "slow": "timed_out",
    }
    assert "통과 2/2" in rows["prepare"].text() and "2026.01.14" in rows["prepare"].text()
    assert "통과 1/3" in rows["deploy"].text() and PAYLOAD_TAG in rows["deploy"].text()
    assert "통과 0/1" in rows["slow"].text()
    for name in ("prepare", "deploy", "slow"):
        assert runs.run_id(name) in rows[name].text()
    spans = [n for n in summary.find_all("span") if "data-runbook-count" in n.attrs]
    counts = {n.attrs["data-runbook-count"]: n.text() for n in spans}
    assert {k: int(v.rsplit(" ", 1)[1]) for k, v in counts.items()} == {
        "passed": 3,
        "failed": 1,
        "timed_out": 1,
        "skipped": 1,
        "unverified": 1,
        "changed": 1,
    }
    link = [a.attrs["href"] for a in summary.find_all("a") if "release-history" in a.attrs.get("href", "")]
    assert link == ["../../release-history/"]


def test_history_page_lists_the_records_newest_first(evidence_site: tuple[Built, Runs, Runbook, Path]) -> None:
    built, runs, _, root = evidence_site
    records = release_log.records(root / "ops" / "release.log")
    assert len(records) == 4
    page = article(built.page("release-history"))
    shown = page.find_all("article", "runbook-record")
    assert [r.attrs["data-runbook-record"] for r in shown] == [r.run_id for r in reversed(records)]
    assert [r.attrs["data-runbook-record-status"] for r in shown] == ["passed", "failed", "failed", "passed"]
    again, slow, deploy, prepare = shown

    def field(record: Node, name: str) -> Node:
        terms = [n for n in record.iter() if n.tag in ("dt", "dd")]
        at = next(i for i, n in enumerate(terms) if n.tag == "dt" and n.text() == name)
        return terms[at + 1]

    assert field(deploy, "작업자").text() == PAYLOAD_OPERATOR
    assert deploy.find_all("span", "runbook-record__tag")[0].text() == f"TAG {PAYLOAD_TAG}"
    assert "2026.01.14" in deploy.text()  # TAG_PREV: the last passed run's TAG
    assert [a.attrs["href"] for a in field(deploy, "실패한 셀").find_all("a")] == ["../ops/deploy/#will-fail"]
    assert [a.attrs["href"] for a in field(slow, "실패한 셀").find_all("a")] == ["../ops/deploy/#too-slow"]
    assert [a.attrs["href"] for a in field(deploy, "섹션").find_all("a")] == ["../ops/deploy/#deploy"]
    assert "셀" in field(again, "섹션").text() and "say-hello" in field(again, "섹션").text()
    start = field(prepare, "시작").find_all("time")[0]
    meta = records[0].meta
    assert start.attrs["title"].startswith(str(meta["started_utc"])), (start.attrs, meta)
    assert start.text().endswith(" KST")
    # Each failure's Minimum Failure Record, collapsible; the full record of every run.
    mfr = deploy.find_all("details", "runbook-record__mfr")[0]
    text = mfr.find_all("pre", "runbook-plain")[0].text()
    assert text.startswith("## Minimum Failure Record") and "## Preflight" not in text
    first_error = _report(runs, "deploy")["will-fail"]["first_error"]
    assert f"- 첫 에러: {first_error}" in text and "<" in str(first_error)
    assert '    | error: deploy failed <script>alert("first")</script> {#injected-error}' in text
    assert "    | <img src=x onerror=alert(2)>" in text
    assert text == site_pages.minimum_failure_record(records[1].body)
    assert not prepare.find_all("details", "runbook-record__mfr")
    assert all(r.find_all("details", "runbook-record__body") for r in shown)


def test_nothing_from_reports_or_records_becomes_markup(evidence_site: tuple[Built, Runs, Runbook, Path]) -> None:
    built, *_ = evidence_site
    for path in built.site.rglob("*.html"):
        root = parse_html(path.read_text(encoding="utf-8"))
        where = str(path.relative_to(built.site))
        for node in root.iter():
            handlers = [k for k in node.attrs if k.startswith("on")]
            assert not handlers, (where, node.tag, handlers)
            assert node.tag != "img" or node.attrs.get("src") != "x", where
            assert node.tag != "script" or "alert" not in node.text(), where
            assert "example.invalid" not in node.attrs.get("href", ""), where
            assert node.attrs.get("id") not in ("tag", "injected-tail", "injected-error", "operator"), where
            assert node.tag != "b" or node.text() != "op", where
    page = built.page("ops/deploy") + built.page("release-history")
    assert "&lt;script&gt;alert(" in page and "&lt;img src=x onerror=alert(" in page
    assert "[a link](https://example.invalid/x)" in page and "{#injected-error}" in page
    # Material's search index keeps the text escaped, so a search result cannot inject either.
    index = (built.site / "search" / "search_index.json").read_text(encoding="utf-8")
    assert "<script>alert" not in index and "<img src=x" not in index
    assert "&lt;script&gt;alert" in index


def test_site_without_reports_or_release_log(tmp_path: Path) -> None:
    """No report and no release.log at build time: every card "not yet verified", the history page says
    there is no log, and the build still passes --strict."""
    root = site_tree(tmp_path, FIXTURES / "deploy.md")
    built = build(root)
    assert built.returncode == 0 and built.warnings == [], built.output
    found = _cards(built)
    assert found and {c.attrs["data-runbook-status"] for c in found.values()} == {"unverified"}
    assert not any("data-runbook-changed" in c.attrs for c in found.values())
    summary = article(built.page("ops/deploy")).find_all("div", "runbook-summary")[0]
    assert not summary.find_all("li") and "실행 보고서 0개" in summary.text()
    history = article(built.page("release-history"))
    assert not history.find_all("article", "runbook-record")
    assert "ops/release.log 파일이 없어" in history.text()


def test_a_report_that_cannot_be_read_fails_the_strict_build(tmp_path: Path) -> None:
    root = site_tree(tmp_path, EVIDENCE_RUNBOOK, docs=False)
    minimal_config(root)
    folder = root / ".runbook" / "runs" / "20260114T010203.000000Z"
    folder.mkdir(parents=True)
    (folder / "report.json").write_text('{"runbook": "ops/deploy.md", "cells": [', encoding="utf-8")
    built = build(root)
    assert built.returncode != 0
    assert len(built.warnings) == 1, built.output
    assert f"{folder / 'report.json'}: not a run report (invalid JSON" in built.warnings[0], built.output


def test_history_page_can_be_switched_off_or_moved(tmp_path: Path) -> None:
    root = site_tree(tmp_path, EVIDENCE_RUNBOOK, docs=False)
    minimal_config(root)
    config = root / "mkdocs.yml"
    text = config.read_text(encoding="utf-8").replace(
        "      reports:\n", "      history_page: ops/history.md\n      reports:\n", 1
    )
    config.write_text(text, encoding="utf-8")
    built = build(root)
    assert built.returncode == 0, built.output
    assert (built.site / "ops" / "history" / "index.html").is_file()
    assert not (built.site / "release-history").exists()
    summary = article(built.page("ops/deploy")).find_all("div", "runbook-summary")[0]
    assert "../history/" in {a.attrs.get("href") for a in summary.find_all("a")}
    config.write_text(text.replace("history_page: ops/history.md", 'history_page: ""'), encoding="utf-8")
    built = build(root, tmp_path / "site2")
    assert built.returncode == 0, built.output
    assert not (built.site / "ops" / "history").exists()


def test_plugin_loads_cheaply_and_never_loads_the_runner(evidence_site: tuple[Built, Runs, Runbook, Path]) -> None:
    """Importing the plugin, and a whole build with reports and a release log, load neither the shell
    driver nor the executor: the site cannot run anything."""
    _, _, _, root = evidence_site
    script = (
        "import sys\n"
        "import runbook_exec.site.plugin\n"
        "light = sorted(m for m in sys.modules if m.startswith(('runbook_exec', 'pexpect')))\n"
        "from mkdocs.commands.build import build\n"
        "from mkdocs.config import load_config\n"
        f"build(load_config(config_file={str(root / 'mkdocs.yml')!r}, site_dir=sys.argv[1]))\n"
        "after = sorted(m for m in sys.modules if m.startswith(('runbook_exec', 'jinja2', 'pexpect')))\n"
        "print(' '.join(light)); print(' '.join(after))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(root / "site-inprocess")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    light, after = (set(line.split()) for line in done.stdout.strip().split("\n")[-2:])
    runner = {"runbook_exec.run.shell", "runbook_exec.run.executor", "runbook_exec.cli", "pexpect"}
    assert not runner & after, runner & after
    # Reading records needs the masking module; importing the plugin alone does not.
    assert "runbook_exec.secrets.masking" not in light and "runbook_exec.records.release_log" not in light


# -- the pieces ----------------------------------------------------------------------------------------


def test_text_escapes_markup_and_shows_control_characters() -> None:
    assert site_format.text('<a href="x">&</a>') == "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
    # Python-Markdown's placeholders are STX ... ETX: a report must never smuggle one into a page.
    assert site_format.text("\x02wzxhzdk:0\x03 \x1b[31m") == "\\x02wzxhzdk:0\\x03 \\x1b[31m"
    assert site_format.text("tab\tand\nnewline") == "tab\tand\nnewline"
    assert site_format.attr("two\nlines") == "two lines"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.04, "0.0초"), (3.25, "3.2초"), (12.4, "12초"), (96.4, "1분 36초"), (3600, "1시간 00분"), (3725, "1시간 02분")],
)
def test_duration(seconds: float, shown: str) -> None:
    assert site_format.duration(seconds) == shown


@pytest.mark.parametrize(
    ("reported", "matches"),
    [
        ("ops/deploy.md", True),
        ("./ops/deploy.md", True),
        ("ops/../ops/deploy.md", True),
        ("deploy.md", False),
        ("tests/fixtures/ops/deploy.md", False),
        ("/ci/workspace/ops/deploy.md", True),  # another checkout: matched by its ending
        ("/ci/workspace/ops/other.md", False),
    ],
)
def test_a_report_names_its_runbook(reported: str, matches: bool, tmp_path: Path) -> None:
    assert evidence.same_runbook(reported, "ops/deploy.md", tmp_path) is matches


def test_an_absolute_path_inside_the_site_root_must_be_the_same_file(tmp_path: Path) -> None:
    assert evidence.same_runbook(str(tmp_path / "ops" / "deploy.md"), "ops/deploy.md", tmp_path)
    assert not evidence.same_runbook(str(tmp_path / "x" / "ops" / "deploy.md"), "ops/deploy.md", tmp_path)


def test_minimum_failure_record_is_the_section_of_the_record() -> None:
    body = "# 기록\n결과: 실패\n\n## Minimum Failure Record\n- 첫 에러: x\n### detail\n- y\n\n## 체크리스트\n- [ ] z\n"
    assert site_pages.minimum_failure_record(body) == "## Minimum Failure Record\n- 첫 에러: x\n### detail\n- y"
    assert site_pages.minimum_failure_record("# 기록\n결과: 성공\n") is None
