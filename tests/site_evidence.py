"""Evidence for the site tests: run reports and release records made by the real runner.

``make_runs`` runs the fixture runbook ``tests/fixtures/site/evidence/runbook.md`` (published as
``ops/deploy.md``) four times with the real CLI, from the site's root, so the reports land where the plugin
looks by default (``.runbook/runs/*/report.json``) and the records in ``ops/release.log``:

1. ``--section prepare`` (TAG 2026.01.14): both cells pass.
2. ``--section deploy`` with a TAG and an operator name made of markup: ``will-fail`` fails after printing
   markup, ``after-failure`` is skipped, ``collect`` (``when=failure``) passes.
3. ``--section slow``: ``too-slow`` times out.
4. ``--cell say-hello``: passes again; its report is then rewritten without ``source_sha256``, as reports
   written before the hash existed.

Then two cells are edited (``edited-later``: its card must say "changed"; ``say-hello``: its newest report
cannot tell) and a report of another runbook is added (it must change nothing).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runbook_exec.doc import document
from runbook_exec.records import release_log
from runbook_exec.secrets.masking import Redactor, Secret

from conftest import run_cli
from site_support import FIXTURES, RUNBOOK, article, build, set_reports, site_tree

EVIDENCE_RUNBOOK = FIXTURES / "evidence" / "runbook.md"
PAYLOAD_TAG = "<img src=x onerror=alert(9)>{#tag}"
PAYLOAD_OPERATOR = "<b>op</b>[op](https://example.invalid/op){#operator}"
# What each cell's card must show after make_runs.
EXPECTED_STATUS = {
    "say-hello": "passed",
    "edited-later": "passed",
    "will-fail": "failed",
    "after-failure": "skipped",
    "collect": "passed",
    "too-slow": "timed_out",
    "never-run": "unverified",
}
EDITED = ("edited-later",)


@dataclass(frozen=True)
class Runs:
    """The report of each run, by name (prepare, deploy, slow, again)."""

    reports: dict[str, Path]

    def run_id(self, name: str) -> str:
        return self.reports[name].parent.name


def make_runs(root: Path) -> Runs:
    """Run the fixture runbook in ``root`` (a site tree holding it as ops/deploy.md); see the module doc."""
    reports: dict[str, Path] = {}

    def run(name: str, args: list[str], expect: int, operator: str | None = None) -> None:
        before = set((root / ".runbook" / "runs").glob("*/report.json"))
        env = {"LOGNAME": operator, "USER": operator} if operator else None
        done = run_cli([RUNBOOK, *args], cwd=root, env=env)
        assert done.returncode == expect, f"{name}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        new = set((root / ".runbook" / "runs").glob("*/report.json")) - before
        assert len(new) == 1, (name, new)
        reports[name] = new.pop()

    run("prepare", ["--section", "prepare", "--var", "TAG=2026.01.14"], 0)
    run("deploy", ["--section", "deploy", "--var", f"TAG={PAYLOAD_TAG}"], 1, operator=PAYLOAD_OPERATOR)
    run("slow", ["--section", "slow", "--var", "TAG=2026.01.15"], 1)
    run("again", ["--cell", "say-hello", "--var", "TAG=2026.01.16"], 0)

    # A report from before source hashes were recorded.
    again = json.loads(reports["again"].read_text(encoding="utf-8"))
    for cell in again["cells"]:
        cell.pop("source_sha256", None)
    reports["again"].write_text(json.dumps(again), encoding="utf-8")

    # Another runbook's report, newer than all: it must not reach any card.
    other = json.loads(reports["prepare"].read_text(encoding="utf-8"))
    other["runbook"] = "ops/other.md"
    other["started_at"] = other["finished_at"] = "2999-01-01T00:00:00+00:00"
    for cell in other["cells"]:
        cell["status"] = "failed"
    folder = root / ".runbook" / "runs" / "other-runbook"
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(other), encoding="utf-8")

    page = root / RUNBOOK
    text = page.read_text(encoding="utf-8")
    for old, new in (
        ('echo "this cell is edited after it ran"', 'echo "this cell was edited after it ran"'),
        ('echo "hello from $TAG"', 'echo "hello again from $TAG"'),
    ):
        assert old in text, old
        text = text.replace(old, new)
    page.write_text(text, encoding="utf-8")
    return Runs(reports)


def check_rehearsal_site(dest: Path, reports: Sequence[Path], log: Path, secrets: Mapping[str, str]) -> None:
    """Build the real site from a real rehearsal's ``reports`` and release ``log`` (copied to where the
    runbook names it) and check what a reader sees: every cell of the rehearsal ``passed`` (its
    ``when=failure`` cells ``skipped``), every other exec cell ``unverified``, nothing "changed since", the
    rehearsal's summary row, every record on the history page, and no form of any secret anywhere."""
    root = site_tree(dest)
    set_reports(root, [str(p) for p in reports])
    shutil.copy(log, root / "ops" / "release.log")
    built = build(root)
    assert built.returncode == 0 and built.warnings == [], built.output
    book = document.parse_text((root / RUNBOOK).read_text(encoding="utf-8"), RUNBOOK)
    expected = {
        c.id: ("skipped" if c.options.when == "failure" else "passed") if "rehearsal" in c.sections else "unverified"
        for c in book.executable_cells()
    }
    assert "passed" in expected.values() and "unverified" in expected.values()
    page = article(built.page("ops/deploy"))
    cards = {c.attrs["data-runbook-cell"]: c for c in page.find_all("div", "runbook-cell")}
    assert {k: c.attrs.get("data-runbook-status") for k, c in cards.items()} == expected
    assert not [k for k, c in cards.items() if "data-runbook-changed" in c.attrs]
    rows = {li.attrs["data-runbook-section"]: li for li in page.find_all("div", "runbook-summary")[0].find_all("li")}
    assert list(rows) == ["rehearsal"] and rows["rehearsal"].attrs["data-runbook-status"] == "passed"
    planned = [v for k, v in expected.items() if v != "unverified"]
    assert f"통과 {planned.count('passed')}/{len(planned)}" in rows["rehearsal"].text()
    records = release_log.records(log)
    history = article(built.page("release-history")).find_all("article", "runbook-record")
    assert [r.attrs["data-runbook-record"] for r in history] == [r.run_id for r in reversed(records)]
    redactor = Redactor([Secret(k, v) for k, v in secrets.items()])
    files = [p for p in built.site.rglob("*") if p.is_file()]
    leaks = {str(p): found for p in files if (found := redactor.leaks(p.read_bytes()))}
    assert not leaks, leaks
