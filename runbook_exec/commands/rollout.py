"""A rollout: one selection run against several targets, one after another (``--target``), one record each.

Per target, everything a single run has, of its own: the docker CLI pointed at the target's engine
(``DOCKER_CONTEXT`` or ``DOCKER_HOST``, and ``RUNBOOK_TARGET``) for every process the run starts, its env
file and vars, its plan (``TAG_PREV`` from its own records), run folder, report, JUnit suite, release record,
resume state, record of an earlier run whose runner died, and lock. Each target's run is
:func:`runbook_exec.commands.execution.run_one`, the step a single run takes too.

Before anything runs, every target's lock is taken, every target resolved, every plan validated and every
engine asked for its name; any problem is exit 2 with nothing run. Runme's prompts are asked once. Then the
targets run in the order given: the first that fails stops the rollout (the rest are "not run"), unless
``--keep-going``. A signal (INT, TERM, HUP) stops the current target exactly as it stops a single run and
starts no further one. ``--resume`` resumes the first target whose last run failed (or whose runner died)
and then goes on with the targets after it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from runbook_exec.commands.execution import run_one
from runbook_exec.commands.listing import honor_dry_run, honor_list_request
from runbook_exec.commands.planning import ask_prompts, build_plan, load_resume
from runbook_exec.commands.records import record_aborted_runs
from runbook_exec.commands.run import load_runbook
from runbook_exec.commands.signals import Signals
from runbook_exec.doc.document import Runbook
from runbook_exec.doc.targets import Target
from runbook_exec.errors import RunbookError, UsageError
from runbook_exec.records import report as artifacts_io
from runbook_exec.records.results import INTERRUPTED, PASSED
from runbook_exec.run import lock, resume
from runbook_exec.run.console import silence, tell
from runbook_exec.run.plan import Plan
from runbook_exec.run.prefix import prefixed
from runbook_exec.run.targets import Engine, check_engines, resolve, update
from runbook_exec.secrets.masking import Redactor

NOT_RUN, DONE_EARLIER, ERROR = "not run", "done earlier", "error"


@dataclass(frozen=True)
class Outcome:
    """What one target's part of the rollout came to."""

    target: Target
    status: str  # passed | failed | interrupted | error | not run | done earlier
    exit_code: int | None = None
    seconds: float | None = None
    engine_host: str | None = None
    run_dir: str | None = None
    record: str | None = None  # the release record's run id
    message: str | None = None  # why an "error" target did not run

    def to_json(self) -> dict[str, Any]:
        folder = Path(self.run_dir) if self.run_dir else None
        return {
            **self.target.to_json(),
            "engine": self.target.engine,
            "engine_host": self.engine_host,
            "status": self.status,
            "exit_code": self.exit_code,
            "duration_s": None if self.seconds is None else round(self.seconds, 3),
            "run_dir": self.run_dir,
            "report": str(folder / "report.json") if folder else None,
            "junit": str(folder / "junit.xml") if folder else None,
            "transcript": str(folder / "transcript.log") if folder else None,
            "record": self.record,
            "message": self.message,
        }


def main(args: argparse.Namespace) -> int:
    """``runbook-exec FILE --target A [--target B ...]``: list, dry-run or run the selection per target."""
    if args.transcript and not args.list:
        raise UsageError(
            "runbook-exec: --transcript names one file; with --target every target writes its own "
            "transcript.log in its run folder (--report/--junit name the rollout's summary files)"
        )
    if args.resume and args.start:
        raise UsageError("runbook-exec: --resume and --from cannot be combined (--resume starts at the failed cell)")
    book = load_runbook(args)
    targets = resolve(book, args.target)
    if args.list:
        return _list(book, targets, args.json)
    if args.dry_run:
        first, starts = _resume_point(args, targets) if args.resume else (0, {})
        plans = _plans(book, targets[first:], args, starts, tolerant=True)
        return _dry_run(book, targets[first:], plans, args.json)
    with contextlib.ExitStack() as locks:
        for t in targets:
            locks.enter_context(lock.hold(args.file, warn=tell, target=t.name))
        # Under the locks: no other runner against these targets is alive, so their states can be read.
        first, starts = _resume_point(args, targets) if args.resume else (0, {})
        running = targets[first:]
        plans = _plans(book, running, args, starts, tolerant=False)
        engines = check_engines(book, running)
        plans = ask_prompts(plans, args.allow_short_secrets)
        for target, plan in zip(running, plans, strict=True):
            # Every target named, not only those this rollout gets to: a failing first target must not
            # leave another target's aborted run unrecorded.
            record_aborted_runs(plan, Redactor(plan.secrets), target.name)
        outcomes = [Outcome(t, DONE_EARLIER) for t in targets[:first]]
        # From here on a signal stops the current target as it stops a single run, and starts no other.
        with Signals() as signals:
            ran = _roll(list(zip(running, plans, engines, strict=True)), args, starts, len(targets) > 1, signals)
            code = _finish(book, plans[0].selection, outcomes + ran, signals.late, args)
        return signals.late if signals.late is not None and code == 0 else code


# -- per-target inputs -----------------------------------------------------------------------------------


def _target_args(args: argparse.Namespace, target: Target, saved: resume.Saved | None) -> argparse.Namespace:
    """The command line as a single run against ``target`` would see it.

    The target's env file wins over ``--env-file`` (one command line must not hand one server's secrets to
    another); ``--var`` wins over the target's vars (what the operator typed is what runs).
    """
    ns = argparse.Namespace(**vars(args))
    ns.target_name = target.name
    ns.engine_host = None
    ns.env_file = target.env_file or args.env_file
    ns.var = [f"{k}={v}" for k, v in target.vars] + list(args.var)
    ns.start = saved.failed_cell if saved is not None else args.start
    ns.report = ns.junit = ns.transcript = None
    return ns


def _plans(
    book: Runbook,
    targets: Sequence[Target],
    args: argparse.Namespace,
    starts: dict[str, resume.Saved],
    tolerant: bool,
) -> list[Plan]:
    """One validated plan per target. Problems of every target are reported at once; a line that holds for
    some targets only names them."""
    plans: list[Plan] = []
    failing: dict[str, list[str]] = {}
    for target in targets:
        ns = _target_args(args, target, starts.get(target.name))
        used = book
        if tolerant and target.env_file and not Path(target.env_file).exists():
            # As for the front matter's env file: a dry run on a machine without it still shows the plan.
            print(
                f"note: {target.env_file} (target {target.name}) not found; dry run without its values", file=sys.stderr
            )
            ns.env_file = None
            used = replace(book, settings=replace(book.settings, env_file=None, env_sample=None))
        try:
            plans.append(build_plan(used, ns, tolerant=tolerant))
        except RunbookError as exc:
            for line in str(exc).split("\n"):
                failing.setdefault(line, []).append(target.name)
    if failing:
        lines = [
            line if len(names) == len(targets) else f"{line} (target {', '.join(names)})"
            for line, names in failing.items()
        ]
        raise RunbookError("\n".join(lines))
    return plans


def _resume_point(args: argparse.Namespace, targets: Sequence[Target]) -> tuple[int, dict[str, resume.Saved]]:
    """The first target (in the order given) whose last run of this selection failed or was aborted, and
    where it stopped (by target name)."""
    reasons: list[str] = []
    for index, target in enumerate(targets):
        try:
            return index, {target.name: load_resume(_target_args(args, target, None))}
        except resume.NothingToResume as exc:
            # This target is done (or never ran): look further. Any other reason (a failed cell without an
            # id) is this target's and stops the search.
            reasons.append(str(exc))
    raise RunbookError("\n".join(reasons))


# -- list and dry run ------------------------------------------------------------------------------------


def _captured(step: Callable[[], int]) -> tuple[int, str]:
    """Run a printing workflow step of the single-run CLI and keep what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = step()
    return code, out.getvalue()


def _list(book: Runbook, targets: Sequence[Target], as_json: bool) -> int:
    code, text = _captured(lambda: honor_list_request(book, as_json))
    if as_json:
        data = json.loads(text)
        data["targets"] = [t.to_json() for t in targets]
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return code
    print(text, end="")
    print("targets (rollout order):")
    for t in targets:
        print(f"  - {t.name}  {t.engine}{_inputs(t)}")
    return code


def _inputs(target: Target) -> str:
    parts = [f"env_file {target.env_file}"] if target.env_file else []
    parts += [f"{k}={v}" for k, v in target.vars]
    return f"  [{', '.join(parts)}]" if parts else ""


def _dry_run(book: Runbook, targets: Sequence[Target], plans: Sequence[Plan], as_json: bool) -> int:
    """The plan per target (its own variables, TAG_PREV included); engines are not contacted."""
    if as_json:
        shown = []
        for target, plan in zip(targets, plans, strict=True):
            _, text = _captured(functools.partial(honor_dry_run, plan, Redactor(plan.secrets), True))
            shown.append({"target": target.to_json(), "engine": target.engine, "plan": json.loads(text)})
        print(json.dumps({"runbook": book.path, "targets": shown}, ensure_ascii=False, indent=2))
        return 0
    for n, (target, plan) in enumerate(zip(targets, plans, strict=True), 1):
        print(f"== target {target.name} ({target.engine}) [{n}/{len(targets)}]{_inputs(target)}")
        shown_vars = ", ".join(f"{k}={v}" for k, v in plan.variables.items())
        if shown_vars:
            print(Redactor(plan.secrets).mask(f"   variables: {shown_vars}"))
        honor_dry_run(plan, Redactor(plan.secrets), False)
    return 0


# -- the rollout -----------------------------------------------------------------------------------------


def _say(text: str) -> None:
    """One line of the rollout's own on stdout; a terminal or reader that went away is not an error."""
    try:
        print(text, flush=True)
    except (OSError, ValueError):
        silence(sys.stdout)


def _roll(
    work: Sequence[tuple[Target, Plan, Engine]],
    args: argparse.Namespace,
    starts: dict[str, resume.Saved],
    label: bool,
    signals: Signals,
) -> list[Outcome]:
    """Run the targets in order; return their outcomes."""
    width = max(len(t.name) for t, _, _ in work)
    outcomes: list[Outcome] = []
    halted: str | None = None
    for n, (target, plan, engine) in enumerate(work, 1):
        if halted is None and signals.late is not None:
            halted = f"stopped by a signal (exit {signals.late})"
        if halted is not None:
            outcomes.append(Outcome(target, NOT_RUN, message=halted))
            continue
        _say(f"== target {target.name} ({target.engine}, engine host {engine.host}) [{n}/{len(work)}]")
        with _pointed_at(target), prefixed(f"{target.name:<{width}} | " if label else None):
            outcome = _run_target(target, engine, plan, args, starts.get(target.name), signals)
        outcomes.append(outcome)
        if outcome.status == INTERRUPTED:
            halted = f"target {target.name} was interrupted"
        elif outcome.status != PASSED and not args.keep_going:
            halted = f"target {target.name} {outcome.status}"
    return outcomes


@contextlib.contextmanager
def _pointed_at(target: Target) -> Iterator[None]:
    """Point every process started in the block at ``target``'s engine: the bash session, and the docker
    commands the runner itself starts (the rollback check of the failure record)."""
    changes = target.environ()
    before = {key: os.environ.get(key) for key in changes}
    update(os.environ, changes)
    try:
        yield
    finally:
        update(os.environ, before)


def _run_target(
    target: Target,
    engine: Engine,
    plan: Plan,
    args: argparse.Namespace,
    saved: resume.Saved | None,
    signals: Signals,
) -> Outcome:
    """One target: the single run's own step (outputs, aborted runs, cells, reports, release record,
    rescan) with this target's plan, resume state and run folder."""
    ns = _target_args(args, target, saved)
    ns.engine_host = engine.host
    t0 = time.monotonic()
    try:
        ran = run_one(plan, ns, saved, signals)
    except RunbookError as exc:
        tell(str(exc))
        return Outcome(target, ERROR, 2, time.monotonic() - t0, engine.host, message=str(exc))
    if ran.report.status == INTERRUPTED:
        status = INTERRUPTED
    elif ran.code == 0 or (ran.report.status == PASSED and ran.code == ran.signalled):
        status = PASSED  # a signal that came once the cells had passed stops the rollout, not this target
    else:
        status = "failed"
    return Outcome(target, status, ran.code, time.monotonic() - t0, engine.host, str(ran.run_dir), ran.record)


# -- the end ---------------------------------------------------------------------------------------------


def _finish(
    book: Runbook, selection: Sequence[str], outcomes: list[Outcome], late: int | None, args: argparse.Namespace
) -> int:
    """Exit status, the summary table, and the rollout's --report / --junit files."""
    signalled = [o.exit_code for o in outcomes if o.status == INTERRUPTED and o.exit_code]
    if late is not None and not signalled:
        # Stopped between two targets: the status a single run stopped by that signal would have.
        signalled = [late]
    if signalled:
        code = signalled[0]
    elif any(o.status == "failed" for o in outcomes):
        code = 1
    elif any(o.status == ERROR for o in outcomes):
        code = 2
    else:
        code = 0
    summary = {
        "runbook": book.path,
        "selection": list(selection),
        "status": "interrupted" if signalled else PASSED if code == 0 else "failed",
        "exit_code": code,
        "keep_going": bool(args.keep_going),
        "resume": bool(args.resume),
        "not_run": [o.target.name for o in outcomes if o.status == NOT_RUN],
        "targets": [o.to_json() for o in outcomes],
    }
    if args.report:
        _write(Path(args.report), (json.dumps(summary, ensure_ascii=False, indent=2) + "\n").encode(), "--report")
    if args.junit:
        _write(Path(args.junit), _junit(book, outcomes), "--junit")
    _say(_table(outcomes, summary))
    return code


def _write(path: Path, data: bytes, option: str) -> None:
    try:
        artifacts_io.atomic_write(path, data)
    except OSError as exc:
        tell(f"runbook-exec: {path}: cannot write {option}: {exc.strerror}")


def _table(outcomes: Sequence[Outcome], summary: dict[str, Any]) -> str:
    rows = [("target", "engine", "engine host", "result", "time", "record")]
    for o in outcomes:
        rows.append(
            (
                o.target.name,
                o.target.engine,
                o.engine_host or "-",
                o.status,
                "-" if o.seconds is None else f"{o.seconds:.1f} s",
                o.record or ("(none)" if o.status in (PASSED, "failed", INTERRUPTED) else "-"),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"rollout {summary['status']} (exit {summary['exit_code']}):"]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    if summary["not_run"]:
        lines.append(f"not run: {', '.join(summary['not_run'])}")
    return "\n".join(lines)


def _junit(book: Runbook, outcomes: Sequence[Outcome]) -> bytes:
    """One <testsuite> per target: the ones that ran as their own junit.xml has them, the others empty."""
    root = ET.Element("testsuites", name=book.path)
    for o in outcomes:
        own = Path(o.run_dir) / "junit.xml" if o.run_dir else None
        if own is not None and own.is_file():
            root.extend(ET.parse(own).getroot().findall("testsuite"))
            continue
        suite = ET.SubElement(root, "testsuite", name=f"{book.path} [{o.target.name}]", tests="1", skipped="1")
        case = ET.SubElement(suite, "testcase", classname=book.path, name=f"target {o.target.name}")
        ET.SubElement(case, "skipped", message=o.message or o.status)
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"
