"""One run of a validated plan: outputs checked, the bash session, the cells, then the records."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from runbook_exec.commands.planning import is_interactive, selection_key
from runbook_exec.commands.records import finish, record_aborted_runs
from runbook_exec.commands.signals import Signals
from runbook_exec.doc.document import Cell
from runbook_exec.errors import RunbookError
from runbook_exec.records import release_log
from runbook_exec.records.report import INDENT_MAX, Transcript, check_writable, run_dir
from runbook_exec.records.results import CellResult, RunReport
from runbook_exec.run import resume
from runbook_exec.run.console import GONE, Console, ask, use_color
from runbook_exec.run.executor import Executor
from runbook_exec.run.plan import Plan
from runbook_exec.run.shell import BashSession, ShellError
from runbook_exec.secrets.masking import Redactor


def prepare_outputs(plan: Plan, args: argparse.Namespace) -> dict[str, Path]:
    """Where this run's artifacts go, every one checked writable before any cell runs (exit 2 if not)."""
    artifacts = _artifact_paths(args)
    for name in ("transcript", "report", "junit"):
        check_writable(artifacts[name], f"--{name}")
    if plan.release_log:
        release_log.check_writable(plan.release_log)
    artifacts["state"] = resume.state_path(plan.runbook.path, selection_key(args))
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
    compact = len(plan.cells) > INDENT_MAX  # the JSON report is joined from each cell's text

    def on_cell_start(cell: Cell) -> None:
        recorder.begin(cell.id, cell.label, cell.section, cell.line)

    def on_cell_done(_cell: Cell, result: CellResult, _shell_result: object) -> None:
        raw = shell.exports
        if raw not in filtered:
            filtered.clear()
            filtered[raw] = resume.filter_exports(raw, drop, initial)
        recorder.cell(result, shell.cwd, filtered[raw])
        if compact:
            result.json_text  # noqa: B018 - made now, while bash runs the next cell, not all at the run's end

    executor = Executor(
        plan,
        shell,
        redactor,
        console,
        transcript,
        confirm=_confirmer(console, redactor) if is_interactive() else None,
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
