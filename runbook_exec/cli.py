"""Command line: ``runbook-exec FILE ...``, ``runbook-exec check``, ``preflight``, ``init-env``.

The workflow is a chain of small steps (load -> plan -> list / dry-run -> run -> reports -> release.log ->
rescan). Person-caused errors become one line each and exit 2 in exactly one place, :func:`main`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from runbook_exec import __version__
from runbook_exec.doc import document
from runbook_exec.doc.document import Cell, Runbook
from runbook_exec.errors import ArgumentParser, RunbookError, UsageError
from runbook_exec.ops import preflight
from runbook_exec.records import release_log
from runbook_exec.records.report import Transcript, check_writable, run_dir, transcript_tail, write_json, write_junit
from runbook_exec.records.results import CellResult, RunReport
from runbook_exec.run import lock, resume
from runbook_exec.run.console import GONE, Console, ask, silence, tell, use_color
from runbook_exec.run.executor import Executor
from runbook_exec.run.plan import Options, Plan, Prompt, Selection, answer, build
from runbook_exec.run.shell import BashSession, ShellError
from runbook_exec.secrets.masking import Redactor
from runbook_exec.secrets.rescan import rescan

COMPOSE_FILE = "docker-compose.prod.yml"  # default for the failure record's "rollback possible?"
SUBCOMMANDS = {
    "check": "runbook_exec.lint.check",
    "preflight": "runbook_exec.ops.preflight",
    "init-env": "runbook_exec.ops.initenv",
}


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="runbook-exec",
        description="Run the .exec cells of a Markdown runbook in one bash session, with secrets masked.",
        epilog="Other commands: runbook-exec check FILE... | preflight [...] | init-env [...]",
    )
    p.add_argument("file", metavar="FILE", help="the runbook (Markdown)")
    sel = p.add_argument_group("selection")
    sel.add_argument("--section", action="append", default=[], metavar="ID", help="run a section (repeatable)")
    sel.add_argument("--cell", action="append", default=[], metavar="ID", help="run one cell (repeatable)")
    sel.add_argument(
        "--tag", action="append", default=[], metavar="TAG[,TAG]", help="run cells with tag= or category= (repeatable)"
    )
    sel.add_argument("--from", dest="start", metavar="ID", help="start at this cell of the selection")
    sel.add_argument("--resume", action="store_true", help="restart the last failed run from its failed cell")
    show = p.add_argument_group("inspect")
    show.add_argument("--list", action="store_true", help="list sections and cells, run nothing")
    show.add_argument("--dry-run", action="store_true", help="show the planned cells in order, run nothing")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument(
        "--runme", action="store_true", help="read FILE with Runme's rules (also chosen by front matter runme:)"
    )
    inp = p.add_argument_group("inputs")
    inp.add_argument("--env-file", metavar="PATH", help="env file (overrides front matter env_file)")
    inp.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="set a variable")
    inp.add_argument("--allow-short-secrets", action="store_true", help="run even if a secret cannot be masked")
    fleet = p.add_argument_group("targets")
    fleet.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME",
        help="run against this target (runbook.targets or a Docker context); repeat in rollout order",
    )
    fleet.add_argument("--keep-going", action="store_true", help="with --target: run every target even after a failure")
    # The one target of a per-target run and its engine's host name (set by runbook_exec.commands.rollout).
    p.set_defaults(target_name=None, engine_host=None)
    safety = p.add_argument_group("safety")
    safety.add_argument("--yes", action="store_true", help="run .danger cells without asking")
    safety.add_argument("--step", action="store_true", help="ask before every cell (run / skip / quit)")
    out = p.add_argument_group("outputs")
    out.add_argument("--report", metavar="PATH", help="JSON report path")
    out.add_argument("--junit", metavar="PATH", help="JUnit XML path")
    out.add_argument("--transcript", metavar="PATH", help="masked, timestamped transcript path")
    rl = out.add_mutually_exclusive_group()
    rl.add_argument("--release-log", metavar="PATH", help="append the release record here")
    rl.add_argument("--no-release-log", action="store_true", help="do not write a release record")
    p.add_argument("--version", action="version", version=f"runbook-exec {__version__}")
    return p


def _variables(pairs: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            # Without "=" the argument may be a value pasted alone: only a name-like word is quoted back.
            shown = repr(name) if name.isidentifier() and len(name) <= 64 else "(not shown)"
            raise UsageError(f"runbook-exec: --var {shown}: expected NAME=VALUE")
        values[name] = value
    return values


# -- workflow steps --------------------------------------------------------------------------------------


def load_runbook(args: argparse.Namespace) -> Runbook:
    return document.parse(args.file, runme_mode=True if args.runme else None)


def _tags(values: Sequence[str]) -> tuple[str, ...]:
    """``--tag a,b`` and ``--tag a --tag b`` alike, as Runme's ``--tag``."""
    return tuple(t.strip() for value in values for t in value.split(",") if t.strip())


def build_plan(book: Runbook, args: argparse.Namespace, *, tolerant: bool = False) -> Plan:
    selection = Selection(sections=tuple(args.section), cells=tuple(args.cell), tags=_tags(args.tag), start=args.start)
    options = Options(
        env_file=args.env_file,
        variables=_variables(args.var),
        allow_short_secrets=args.allow_short_secrets,
        release_log=args.release_log,
        no_release_log=args.no_release_log or tolerant,
        assume_yes=args.yes or tolerant,
        interactive=_interactive(),
        target=args.target_name,
    )
    if tolerant and not args.env_file and book.settings.env_file and not Path(book.settings.env_file).exists():
        # A dry run on a machine without the env file (a reviewer's laptop) still shows the plan.
        print(f"note: {book.settings.env_file} not found; dry run without its values", file=sys.stderr)
        book = replace(book, settings=replace(book.settings, env_file=None, env_sample=None))
    return build(book, selection, options)


def honor_list_request(book: Runbook, as_json: bool) -> int:
    if as_json:
        print(json.dumps(document.listing(book), ensure_ascii=False, indent=2))
    else:
        print(_render_list(book))
    for problem in book.problems:
        print(problem, file=sys.stderr)
    for warning in book.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 2 if book.problems else 0


def _render_list(book: Runbook) -> str:
    lines = [book.path]
    for s in book.sections:
        cells = [c for c in book.cells if c.executable and c.section == s.id]
        mark = "" if s.explicit else "  (slug)"
        lines.append(f"{'  ' * (s.level - 1)}#{s.id}  {s.title}  line {s.line}{mark}")
        for c in cells:
            lines.append(f"{'  ' * s.level}  - {c.label}  line {c.line}{_flags(c, book)}")
    orphans = [c for c in book.cells if c.executable and c.section is None]
    for c in orphans:
        lines.append(f"  - {c.label}  line {c.line}{_flags(c, book)}")
    return "\n".join(lines)


def _flags(c: Cell, book: Runbook | None = None) -> str:
    o = c.options
    flags = []
    if c.name_generated:
        flags.append("generated name")
    if c.route.kind == "process":
        flags.append(f"runs {' '.join(c.route.candidates[0])}")
    if o.background:
        flags.append("background")
    tags = book.tags_of(c) if book is not None else o.tags
    if tags:
        flags.append(f"tags={','.join(tags)}")
    if c.danger:
        flags.append("danger")
    if o.when != "success":
        flags.append(f"when={o.when}")
    if o.timeout:
        flags.append(f"timeout={o.timeout:g}")
    if o.retries:
        flags.append(f"retries={o.retries} interval={o.interval:g}")
    if o.expect:
        flags.append(f"expect={o.expect}")
    if o.exclude_from_run_all:
        flags.append("excluded from run-all")
    return f"  [{', '.join(flags)}]" if flags else ""


def honor_dry_run(plan: Plan, redactor: Redactor, as_json: bool) -> int:
    """Show the planned cells. Only what came from the runbook and the environment is masked (one value
    at a time); the runner's own numbers and words (line, timeout, counts) stay as they are."""
    mask = redactor.mask
    for warning in plan.warnings:
        tell(mask(f"warning: {warning}"))
    if as_json:
        data = {
            "runbook": mask(plan.runbook.path),
            "selection": [mask(s) for s in plan.selection],
            "variables": redactor.mask_json(dict(plan.variables)),
            "cells": [
                {
                    "id": None if c.id is None else mask(c.id),
                    "label": mask(c.label),
                    "section": None if c.section is None else mask(c.section),
                    "line": c.line,
                    "when": c.options.when,
                    "timeout": plan.timeout(c),
                    "retries": c.options.retries,
                    "danger": c.danger,
                    "source": mask(c.source),
                }
                for c in plan.cells
            ],
        }
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    out = [f"{mask(plan.runbook.path)}: {len(plan.cells)} cells ({', '.join(mask(s) for s in plan.selection)})"]
    for n, c in enumerate(plan.cells, 1):
        where = f"{mask(c.section)} › " if c.section else ""
        out.append(f"[{n}/{len(plan.cells)}] {where}{mask(c.label)}  line {c.line}{_flags(c)}")
        out.extend("    " + line for line in mask(c.source).rstrip("\n").split("\n"))
    print("\n".join(out))
    return 0


class Signals:
    """SIGINT, SIGTERM and SIGHUP for the whole run and its records.

    While cells run, a signal stops the running cell and lets the failure/always cells, the reports and
    the release record follow (a hung-up terminal, SSH dropped, is handled like SIGTERM). Once the cells
    are done, a first signal is remembered (its exit status is used) and the records are still written;
    only a second one stops the runner at once.
    """

    def __init__(self) -> None:
        self.executor: Executor | None = None
        self.late: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        self._previous = {sig: signal.signal(sig, self._handle) for sig in signals}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def attach(self, executor: Executor | None) -> None:
        self.executor = executor
        if executor is not None and self.late is not None:
            executor.interrupt(self.late)  # a signal that came while the session was starting

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.executor is not None:
            self.executor.interrupt(128 + signum)
            return
        if self.late is not None:
            raise KeyboardInterrupt
        self.late = 128 + signum


def prepare_outputs(plan: Plan, args: argparse.Namespace) -> dict[str, Path]:
    """Where this run's artifacts go, every one checked writable before any cell runs (exit 2 if not)."""
    artifacts = _artifact_paths(args)
    for name in ("transcript", "report", "junit"):
        check_writable(artifacts[name], f"--{name}")
    if plan.release_log:
        release_log.check_writable(plan.release_log)
    artifacts["state"] = resume.state_path(plan.runbook.path, _selection_key(args))
    return artifacts


def run_plan(
    plan: Plan,
    redactor: Redactor,
    args: argparse.Namespace,
    saved: resume.Saved | None,
    artifacts: dict[str, Path],
    signals: Signals,
) -> tuple[RunReport, list[str]]:
    """Run the cells; return the report and one line per artifact that could not be written fully."""
    # Started with stdout closed (``>&-``): Python has no sys.stdout; the run still goes on, unseen.
    out = sys.stdout.buffer if sys.stdout is not None else open(os.devnull, "wb")  # noqa: SIM115
    console = Console(out, use_color(out))
    header = resume.header(
        runbook=plan.runbook.path,
        sha256=plan.runbook.sha256,
        selection=plan.selection,
        variables=plan.variables,
        cwd=saved.cwd if saved is not None else os.getcwd(),
        exports=saved.exports if saved is not None else "",
        artifacts=artifacts,
        release_log=plan.release_log,
        release_template=plan.release_template,
        target=args.target_name,
        engine_host=args.engine_host,
    )
    try:
        transcript = Transcript(artifacts["transcript"])
    except OSError as exc:
        raise RunbookError(f"{artifacts['transcript']}: cannot write (--transcript): {exc.strerror}") from None
    try:
        recorder = resume.Recorder(artifacts["state"], header)
    except OSError as exc:
        transcript.close()
        raise RunbookError(f"{artifacts['state']}: cannot write the resume state: {exc.strerror}") from None
    shell: BashSession | None = None
    try:
        shell = BashSession(env=_session_env(plan))
        # What the session started with: only what the runbook changes is worth storing for --resume.
        shell.run(":", lambda _data: None, timeout=10, name="baseline", snapshot=True)
        initial = resume.parse_exports(shell.exports)
        if saved is not None:
            shell.restore(saved.cwd, saved.exports)
            note = console.note(f"resuming at {saved.failed_cell} in {saved.cwd}", "cyan")
            console.write(redactor.mask(note).encode())  # the cwd may hold a secret-derived segment
    except ShellError as exc:
        if shell is not None:
            shell.close()
        transcript.close()
        recorder.close("not started")
        raise RunbookError(f"runbook-exec: {exc}") from None
    drop = set(plan.env) - set(plan.variables)
    filtered: dict[str, str] = {}

    def on_cell_start(cell: Cell) -> None:
        recorder.begin(cell.id, cell.label, cell.section, cell.line)

    def on_cell_done(_cell: Cell, result: CellResult, _shell_result: object) -> None:
        raw = shell.exports
        if raw not in filtered:
            filtered.clear()
            filtered[raw] = resume.filter_exports(raw, drop, initial)
        recorder.cell(result, shell.cwd, filtered[raw])

    executor = Executor(
        plan,
        shell,
        redactor,
        console,
        transcript,
        confirm=_confirmer(console, redactor) if _interactive() else None,
        step=args.step,
        on_cell_done=on_cell_done,
        on_cell_start=on_cell_start,
    )
    signals.attach(executor)
    try:
        report = executor.run()
    finally:
        signals.attach(None)
        shell.close()
        transcript.close()
    recorder.close(report.status)
    problems = []
    if transcript.error:
        problems.append(f"{artifacts['transcript']}: transcript incomplete: {transcript.error}")
    if recorder.error:
        problems.append(f"{artifacts['state']}: resume state incomplete (--resume may not work): {recorder.error}")
    report = replace(
        report,
        run_dir=str(artifacts["dir"]),
        transcript=str(artifacts["transcript"]),
        target=args.target_name,
        engine_host=args.engine_host,
    )
    return report, problems


def _selection_key(args: argparse.Namespace) -> tuple[str, ...]:
    key = Selection(sections=tuple(args.section), cells=tuple(args.cell), tags=_tags(args.tag)).describe()
    # Each target keeps its own resume state.
    return (*key, f"target:{args.target_name}") if args.target_name else key


def _session_env(plan: Plan) -> dict[str, str]:
    env = dict(os.environ)
    env.update(plan.env)
    env["RUNBOOK_FILE"] = str(Path(plan.runbook.path).resolve())
    # Cells run on a pty, so Compose would redraw a live progress display into the transcript and the
    # failure record's last lines; plain progress keeps the log readable (an operator's own value wins).
    env.setdefault("COMPOSE_PROGRESS", "plain")
    if plan.release_log:
        env["RUNBOOK_RELEASE_LOG"] = str(Path(plan.release_log).resolve())
    return env


def _artifact_paths(args: argparse.Namespace) -> dict[str, Path]:
    try:
        if args.transcript and args.report and args.junit:
            folder = Path(args.transcript).parent
        else:
            folder = run_dir(target=args.target_name)
    except OSError as exc:
        raise RunbookError(f".runbook/runs: cannot create the run folder: {exc.strerror}") from None
    return {
        "dir": folder,
        "transcript": Path(args.transcript) if args.transcript else folder / "transcript.log",
        "report": Path(args.report) if args.report else folder / "report.json",
        "junit": Path(args.junit) if args.junit else folder / "junit.xml",
    }


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


DEFAULT_TEMPLATE = Path(__file__).parent / "templates" / "release.log.j2"


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


@dataclass(frozen=True)
class Ran:
    """What one run came to, once its records are written."""

    report: RunReport
    code: int  # the exit status
    record: str | None  # the release record's run id (None: none appended)
    run_dir: Path
    signalled: int | None  # 128 + the signal that came while the records were written (None: none)


def run_one(plan: Plan, args: argparse.Namespace, saved: resume.Saved | None, signals: Signals | None = None) -> Ran:
    """One run of a validated plan, from its outputs to its exit status: the same steps for a single run
    and for each target of a rollout.

    Call it holding the run lock of the runbook (and ``args.target_name``). Outputs are checked before any
    cell runs, earlier runs whose runner died are recorded, then the cells run and the reports, release
    record and final rescan follow, whatever stops the cells. ``signals`` is the rollout's, taken over for
    all its targets at once; a single run takes signals over itself, once the run starts.
    """
    redactor = Redactor(plan.secrets)
    artifacts = prepare_outputs(plan, args)
    record_aborted_runs(plan, redactor, args.target_name)
    # From here on a signal no longer just stops the runner: the run must leave its record.
    with contextlib.nullcontext(signals) if signals is not None else Signals() as taken:
        report, problems = run_plan(plan, redactor, args, saved, artifacts, taken)
        code, record = finish(plan, report, redactor, artifacts, problems)
    late = taken.late
    return Ran(report, late if late is not None and code == 0 else code, record, artifacts["dir"], late)


def ask_prompts(plans: Sequence[Plan], allow_short: bool) -> list[Plan]:
    """The plans with Runme's placeholder prompts answered, asked before anything runs (once for a prompt
    that several plans share)."""
    prompts = list(dict.fromkeys(p for plan in plans for p in plan.prompts))
    if not prompts:
        return list(plans)
    answers = _ask_placeholders(prompts)
    return [answer(plan, answers, allow_short=allow_short) for plan in plans]


def load_resume(args: argparse.Namespace) -> resume.Saved:
    """Where ``--resume`` starts this run (``args.start`` is set to it); call it holding the run lock."""
    saved = resume.load(args.file, _selection_key(args))
    args.start = saved.failed_cell
    return saved


# -- interaction -----------------------------------------------------------------------------------------


def _interactive() -> bool:
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


_DANGER_ANSWERS = {"y": "run", "yes": "run"}
_STEP_ANSWERS = {"y": "run", "yes": "run", "s": "skip", "skip": "skip", "q": "quit", "quit": "quit"}


def _confirmer(console: Console, redactor: Redactor) -> Callable[[Cell, str], str]:
    """Questions on the terminal. A .danger cell runs only on an explicit ``y`` (default No); ``--step``
    needs ``y``, ``s`` or ``q`` (a bare Enter asks again). End of input means quit; a terminal that went
    away means "not this cell"."""

    def confirm(cell: Cell, masked_source: str) -> str:
        kind = "DANGER" if cell.danger else "step"
        lines = [f"\n[{kind}] {redactor.mask(cell.label)} (line {cell.line}):"]
        lines.extend(f"    {line}" for line in masked_source.rstrip("\n").split("\n"))
        console.write(("\n".join(lines) + "\n").encode())
        if cell.danger:
            answer = ask(console, "Run it? [y/N] ", lambda a: _DANGER_ANSWERS.get(a, "skip"))
        else:
            answer = ask(console, "Run it? [y]es / [s]kip / [q]uit: ", _STEP_ANSWERS.get)
        if answer == GONE:
            # A hang-up: this cell is not run; the signal that comes with it decides what runs next.
            return "skip"
        return answer or "quit"

    return confirm


def _ask_placeholders(prompts: Sequence[Prompt]) -> dict[Prompt, str]:
    """Runme's variable prompts, asked on the terminal before anything runs; Enter keeps the default."""
    import getpass  # noqa: PLC0415 - only a run that asks needs it

    answers: dict[Prompt, str] = {}
    for prompt in prompts:
        try:
            if prompt.secret:
                shown = " [keep the current value]" if prompt.default else ""
                value = getpass.getpass(f"Set environment variable {prompt.name}{shown}: ")
            else:
                value = input(f"Set environment variable {prompt.name} [{prompt.default}]: ")
        except EOFError:
            value = ""
        answers[prompt] = value if value else prompt.default
    return answers


# -- entry point ----------------------------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    if argv and argv[0] in SUBCOMMANDS:
        import importlib  # noqa: PLC0415

        module: Any = importlib.import_module(SUBCOMMANDS[argv[0]])
        return int(module.main(argv[1:]))
    args = _parser().parse_args(argv)
    if args.target:
        from runbook_exec.commands import rollout  # noqa: PLC0415 - only a run with --target pays for it

        return rollout.main(args)
    if args.keep_going:
        raise UsageError("runbook-exec: --keep-going needs --target (it decides whether a rollout goes on)")
    book = load_runbook(args)
    if args.list:
        return honor_list_request(book, args.json)
    if args.resume and args.start:
        raise UsageError("runbook-exec: --resume and --from cannot be combined (--resume starts at the failed cell)")
    if args.dry_run:
        if args.resume:
            load_resume(args)
        plan = build_plan(book, args, tolerant=True)
        return honor_dry_run(plan, Redactor(plan.secrets), args.json)
    with lock.hold(args.file, warn=tell):
        # Under the lock: no other runner of this runbook here is alive, so its state can be read.
        saved = load_resume(args) if args.resume else None
        [plan] = ask_prompts([build_plan(book, args)], args.allow_short_secrets)
        return run_one(plan, args, saved).code


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point. Returns the exit status."""
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except RunbookError as exc:
        tell(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        tell("runbook-exec: interrupted")
        return 130
    except BrokenPipeError:
        # --list or --dry-run into a reader that stopped early (| head): what it read is what it wanted.
        silence(sys.stdout)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
