"""What a run leaves once its cells are done: reports, the release record, the final rescan, and the
records of earlier runs whose runner died."""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from pathlib import Path

from runbook_exec.doc.document import Runbook
from runbook_exec.errors import RunbookError
from runbook_exec.records import release_log
from runbook_exec.records.report import transcript_tail, write_json, write_junit
from runbook_exec.records.rescan import rescan
from runbook_exec.records.results import RunReport
from runbook_exec.run import resume
from runbook_exec.run.console import tell
from runbook_exec.run.plan import Plan
from runbook_exec.secrets.masking import Redactor


def write_reports(report: RunReport, artifacts: dict[str, Path]) -> list[str]:
    """Write the JSON report and JUnit file; one line for each that could not be written."""
    problems = []
    writers = (("report", write_json, "JSON report"), ("junit", write_junit, "JUnit file"))
    for name, writer, what in writers:
        try:
            writer(report, artifacts[name])
        except OSError as exc:
            problems.append(f"{artifacts[name]}: {what} not written: {exc.strerror or exc}")
    return problems


COMPOSE_FILE = "docker-compose.prod.yml"  # default for the failure record's "rollback possible?"


DEFAULT_TEMPLATE = Path(__file__).parent.parent / "templates" / "release.log.j2"


def append_release_log(plan: Plan, report: RunReport, redactor: Redactor) -> str | None:
    """Render and append the release record (masked); return the text appended, None when there is no log."""
    if not plan.release_log:
        return None
    extra: dict[str, object] = {}
    tag_prev = report.variables.get("TAG_PREV")
    # Compose's own COMPOSE_FILE names the project's file when it is not the default one.
    compose = plan.env.get("COMPOSE_FILE") or os.environ.get("COMPOSE_FILE") or COMPOSE_FILE
    if report.status != "passed" and tag_prev and plan.env_file and Path(compose).is_file():
        # "Is rollback possible?" for the Minimum Failure Record: are TAG_PREV's images still here?
        from runbook_exec.ops import preflight  # only a failed run's record asks

        extra["rollback_possible"] = preflight.images_present(tag_prev, compose, plan.env_file)
    template = plan.release_template or DEFAULT_TEMPLATE
    return _append_record(plan.release_log, template, report, plan.runbook, extra, redactor)


def _append_record(
    log: str, template: str | Path, report: RunReport, book: Runbook, extra: dict[str, object], redactor: Redactor
) -> str:
    """Render with every value from cells, the runbook or the environment masked; append unless one of
    those values still holds a secret form (release.log is append-only: it could never be removed)."""
    rendered = release_log.render_record(template, report, book, extra, mask=redactor.mask)
    keys = sorted({key for text in rendered.content for key in redactor.leaks(text.encode("utf-8", "surrogatepass"))})
    if keys:
        raise RunbookError(f"{log}: the record would contain a form of {', '.join(keys)}; not appended")
    release_log.append(log, rendered.text)
    return rendered.text


def record_aborted_runs(plan: Plan, redactor: Redactor, target: str | None = None) -> None:
    """Record every earlier run of this runbook here (against ``target``; None: runs without one) whose
    runner died (``kill -9``, power loss).

    Called under the run lock of the runbook and ``target``, so no runner of these runs is alive. Each gets
    its reports (where none was written) and its release record, status aborted, naming the cell that was
    running; its resume state stays, so ``--resume`` continues from that cell.
    """
    for item in resume.unfinished(plan.runbook.path, target):
        report = _masked(item.report, redactor)
        running = redactor.mask(item.running) if item.running is not None else None
        if running is not None and report.transcript:
            # The running cell's last lines, as far as the transcript got them to disk.
            tail = tuple(map(redactor.mask, transcript_tail(Path(report.transcript), running)))
            report = replace(
                report, cells=tuple(replace(c, tail=tail) if c.label == running else c for c in report.cells)
            )
        for name, writer in (("report", write_json), ("junit", write_junit)):
            path = Path(str(item.header.get(name) or ""))
            if item.header.get(name) and not path.exists() and path.parent.is_dir():
                with contextlib.suppress(OSError):
                    writer(report, path)
        against = f" against target {target}" if target else ""
        what = f"an earlier run{against} (started {report.started_at:%Y-%m-%d %H:%M:%S} UTC by {report.operator})"
        where = f" while cell {running} was running" if running else ""
        log = item.header.get("release_log")
        if log:
            template = item.header.get("release_template") or DEFAULT_TEMPLATE
            try:
                _append_record(str(log), template, report, plan.runbook, {}, redactor)
            except RunbookError as exc:
                tell(f"runbook-exec: {what} stopped{where}; its record is not written yet: {exc}")
                continue
            tell(f"runbook-exec: {what} stopped{where}; recorded as aborted in {log}")
        else:
            tell(f"runbook-exec: {what} stopped{where}; recorded as aborted")
        resume.mark_recorded(item)


def _masked(report: RunReport, redactor: Redactor) -> RunReport:
    """A report built from the resume state (values in clear) with everything that came from cells, the
    runbook or the environment masked."""
    mask = redactor.mask
    cells = tuple(
        replace(
            c,
            label=mask(c.label),
            section=None if c.section is None else mask(c.section),
            first_error=None if c.first_error is None else mask(c.first_error),
            tail=tuple(map(mask, c.tail)),
        )
        for c in report.cells
    )
    return replace(
        report,
        cells=cells,
        runbook=mask(report.runbook),
        selection=tuple(map(mask, report.selection)),
        variables=redactor.mask_json(dict(report.variables)),
    )


def finish(
    plan: Plan, report: RunReport, redactor: Redactor, artifacts: dict[str, Path], problems: list[str]
) -> tuple[int, str | None]:
    """Write the reports and the release record, rescan every artifact; return the exit status and the
    release record's run id (None: no record was appended).

    Each artifact is written even when another one failed; a failure is one line, never a traceback.
    """
    problems = [*problems, *write_reports(report, artifacts)]
    record = None
    try:
        record = _record_id(append_release_log(plan, report, redactor))
    except RunbookError as exc:
        problems.append(f"release record not written: {exc}")
    try:
        leaks = rescan(redactor, artifacts)
    except OSError as exc:
        leaks = [f"{exc.filename}: could not be rescanned: {exc.strerror}"]
    for line in problems:
        tell(f"runbook-exec: {line}")
    for line in leaks:
        tell(f"runbook-exec: secret leak caught by the final rescan: {line}")
    tell(f"report: {artifacts['report']}  transcript: {artifacts['transcript']}")
    code = report.exit_code if report.exit_code is not None else 1
    # The run happened: keep what was written, and do not report success when a record is missing.
    return (1 if (leaks or problems) and code == 0 else code), record


def _record_id(text: str | None) -> str | None:
    """The run id in the first line of an appended record."""
    if not text:
        return None
    head, _, tail = release_log.BEGIN.partition("{run_id}")
    return text.split("\n", 1)[0].removeprefix(head).removesuffix(tail) or None
