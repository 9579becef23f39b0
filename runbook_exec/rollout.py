"""A rollout: one selection run against several targets, one after another (``--target``), one record each.

Per target, everything a single run has, of its own: the docker CLI pointed at the target's engine
(``DOCKER_CONTEXT`` or ``DOCKER_HOST``, and ``RUNBOOK_TARGET``) for every process the run starts, its env
file and vars, its plan (``TAG_PREV`` from its own records), run folder, report, JUnit suite, release record,
resume state and lock. The workflow steps are :mod:`runbook_exec.cli`'s, called once per target.

Before anything runs, every target is resolved, every plan validated and every engine asked for its name;
any problem is exit 2 with nothing run. Then the targets run in the order given: the first that fails stops
the rollout (the rest are "not run"), unless ``--keep-going``. A signal stops the current target as in a
single run and starts no further one. ``--resume`` resumes the first target whose last run failed and then
goes on with the targets after it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any
from xml.etree import ElementTree as ET

from runbook_exec import cli, lock, resume
from runbook_exec import report as artifacts_io
from runbook_exec.document import Runbook
from runbook_exec.errors import RunbookError, UsageError
from runbook_exec.masking import Redactor
from runbook_exec.plan import Plan
from runbook_exec.prefix import prefixed
from runbook_exec.release_log import BEGIN
from runbook_exec.results import INTERRUPTED, PASSED
from runbook_exec.targets import Engine, Target, check_engines, resolve, update

NOT_RUN, DONE_EARLIER, ERROR = "not run", "done earlier", "error"
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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
    book = cli.load_runbook(args)
    targets = resolve(book, args.target)
    if args.list:
        return _list(book, targets, args.json)
    if args.dry_run:
        plans = _plans(book, targets, args, {}, tolerant=True)
        return _dry_run(book, targets, plans, args.json)
    first, saved = _resume_point(args, targets) if args.resume else (0, None)
    running = targets[first:]
    starts = {running[0].name: saved} if saved is not None else {}
    plans = _plans(book, running, args, starts, tolerant=False)
    engines = check_engines(book, running)
    outcomes = [Outcome(t, DONE_EARLIER) for t in targets[:first]]
    with contextlib.ExitStack() as locks:
        for t in running:
            locks.enter_context(lock.hold(args.file, warn=_warn, target=t.name))
        ran, signum = _roll(list(zip(running, plans, engines, strict=True)), args, starts, len(targets) > 1)
    return _finish(book, plans[0].selection, outcomes + ran, signum, args)


def _warn(text: str) -> None:
    print(text, file=sys.stderr)


# -- per-target inputs -----------------------------------------------------------------------------------


def _target_args(args: argparse.Namespace, target: Target, saved: resume.Saved | None) -> argparse.Namespace:
    """The command line as a single run against ``target`` would see it.

    The target's env file wins over ``--env-file`` (one command line must not hand one server's secrets to
    another); ``--var`` wins over the target's vars (what the operator typed is what runs).
    """
    ns = argparse.Namespace(**vars(args))
    ns.target_name = target.name
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
            plans.append(cli.build_plan(used, ns, tolerant=tolerant))
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


def _resume_point(args: argparse.Namespace, targets: Sequence[Target]) -> tuple[int, resume.Saved]:
    """The first target (in the order given) whose last run of this selection failed, and where it stopped."""
    reasons: list[str] = []
    for index, target in enumerate(targets):
        try:
            return index, resume.load(args.file, cli._selection_key(_target_args(args, target, None)))
        except RunbookError as exc:
            # "Nothing to resume" for this target means it is done (or never ran): look further. Any other
            # reason (a failed cell without an id) is this target's and stops the search.
            if "nothing to resume" not in str(exc):
                raise
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
    code, text = _captured(lambda: cli.honor_list_request(book, as_json))
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
            _, text = _captured(functools.partial(cli.honor_dry_run, plan, Redactor(plan.secrets), True))
            shown.append({"target": target.to_json(), "engine": target.engine, "plan": json.loads(text)})
        print(json.dumps({"runbook": book.path, "targets": shown}, ensure_ascii=False, indent=2))
        return 0
    for n, (target, plan) in enumerate(zip(targets, plans, strict=True), 1):
        print(f"== target {target.name} ({target.engine}) [{n}/{len(targets)}]{_inputs(target)}")
        shown_vars = ", ".join(f"{k}={v}" for k, v in plan.variables.items())
        if shown_vars:
            print(Redactor(plan.secrets).mask(f"   variables: {shown_vars}"))
        cli.honor_dry_run(plan, Redactor(plan.secrets), False)
    return 0


# -- the rollout -----------------------------------------------------------------------------------------


class _Stop:
    """A signal that arrived while no target was running: finish what is being written, start nothing."""

    signum = 0

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum


def _roll(
    work: Sequence[tuple[Target, Plan, Engine]],
    args: argparse.Namespace,
    starts: dict[str, resume.Saved],
    label: bool,
) -> tuple[list[Outcome], int]:
    """Run the targets in order; return their outcomes and the signal that stopped the rollout between two
    targets (0: none)."""
    stop = _Stop()
    # During a target the single-run handlers take over (and put these back when the target ends).
    previous = {sig: signal.signal(sig, stop) for sig in _SIGNALS}
    width = max(len(t.name) for t, _, _ in work)
    outcomes: list[Outcome] = []
    halted: str | None = None
    try:
        for n, (target, plan, engine) in enumerate(work, 1):
            if halted is None and stop.signum:
                halted = f"signal {signal.Signals(stop.signum).name}"
            if halted is not None:
                outcomes.append(Outcome(target, NOT_RUN, message=halted))
                continue
            print(f"== target {target.name} ({target.engine}, engine host {engine.host}) [{n}/{len(work)}]", flush=True)
            with _pointed_at(target), prefixed(f"{target.name:<{width}} | " if label else None):
                outcome = _run_target(target, engine, plan, args, starts.get(target.name))
            outcomes.append(outcome)
            if outcome.status == INTERRUPTED:
                halted = f"target {target.name} was interrupted"
            elif outcome.status != PASSED and not args.keep_going:
                halted = f"target {target.name} {outcome.status}"
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return outcomes, stop.signum


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
    target: Target, engine: Engine, plan: Plan, args: argparse.Namespace, saved: resume.Saved | None
) -> Outcome:
    """One target: run, reports, release record, rescan, exactly as a single run does them."""
    folder = artifacts_io.run_dir()
    folder = folder.rename(folder.with_name(f"{folder.name}-{target.name}"))
    ns = _target_args(args, target, saved)
    ns.transcript, ns.report, ns.junit = (str(folder / f) for f in ("transcript.log", "report.json", "junit.xml"))
    redactor = Redactor(plan.secrets)
    t0 = time.monotonic()
    try:
        report, artifacts = cli.run_plan(plan, redactor, ns, saved)
    except RunbookError as exc:
        print(str(exc), file=sys.stderr)
        return Outcome(target, ERROR, 2, time.monotonic() - t0, engine.host, str(folder), message=str(exc))
    report = replace(report, target=target.name, engine_host=engine.host)
    cli.write_reports(report, artifacts)
    record = None
    try:
        text = cli.append_release_log(plan, report, redactor)
        record = text.split("\n", 1)[0] if text else None
    except RunbookError as exc:
        print(f"runbook-exec: release record not written: {exc}", file=sys.stderr)
        report = replace(report, exit_code=report.exit_code or 1)
    leaks = cli.rescan(redactor, artifacts)
    for line in leaks:
        print(f"runbook-exec: secret leak caught by the final rescan: {line}", file=sys.stderr)
    print(f"report: {artifacts['report']}  transcript: {artifacts['transcript']}", file=sys.stderr)
    code = 1 if leaks and report.exit_code == 0 else report.exit_code
    status = INTERRUPTED if report.status == INTERRUPTED else PASSED if code == 0 else "failed"
    return Outcome(target, status, code, time.monotonic() - t0, engine.host, str(folder), _run_id(record))


def _run_id(begin_line: str | None) -> str | None:
    if not begin_line:
        return None
    head, _, tail = BEGIN.partition("{run_id}")
    return begin_line.removeprefix(head).removesuffix(tail) or None


# -- the end ---------------------------------------------------------------------------------------------


def _finish(
    book: Runbook, selection: Sequence[str], outcomes: list[Outcome], signum: int, args: argparse.Namespace
) -> int:
    """Exit status, the summary table, and the rollout's --report / --junit files."""
    signalled = [o.exit_code for o in outcomes if o.status == INTERRUPTED and o.exit_code]
    if signum and not signalled:
        # Stopped between two targets: the status a single run stopped by that signal would have.
        signalled = [128 + signum]
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
    print(_table(outcomes, summary))
    return code


def _write(path: Path, data: bytes, option: str) -> None:
    try:
        artifacts_io.atomic_write(path, data)
    except OSError as exc:
        print(f"runbook-exec: {path}: cannot write {option}: {exc.strerror}", file=sys.stderr)


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
