"""Command line: ``runbook-exec FILE ...``, ``runbook-exec check``, ``preflight``, ``init-env``.

The workflow is a chain of small steps (load -> plan -> list / dry-run -> run -> reports -> release.log ->
rescan). Person-caused errors become one line each and exit 2 in exactly one place, :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from runbook_exec import __version__, document, lock, preflight, release_log, resume
from runbook_exec.console import Console, use_color
from runbook_exec.document import Cell, Runbook
from runbook_exec.errors import ArgumentParser, RunbookError, UsageError
from runbook_exec.executor import Executor
from runbook_exec.masking import Redactor
from runbook_exec.plan import Options, Plan, Prompt, Selection, answer, build
from runbook_exec.report import Transcript, run_dir, write_json, write_junit
from runbook_exec.results import CellResult, RunReport
from runbook_exec.shell import BashSession, ShellError

COMPOSE_FILE = "docker-compose.prod.yml"  # default for the failure record's "rollback possible?"
SUBCOMMANDS = {
    "check": "runbook_exec.check",
    "preflight": "runbook_exec.preflight",
    "init-env": "runbook_exec.initenv",
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
    for warning in plan.warnings:
        print(redactor.mask(f"warning: {warning}"), file=sys.stderr)
    if as_json:
        data = {
            "runbook": plan.runbook.path,
            "selection": list(plan.selection),
            "variables": dict(plan.variables),
            "cells": [
                {
                    "id": c.id,
                    "label": c.label,
                    "section": c.section,
                    "line": c.line,
                    "when": c.options.when,
                    "timeout": plan.timeout(c),
                    "retries": c.options.retries,
                    "danger": c.danger,
                    "source": c.source,
                }
                for c in plan.cells
            ],
        }
        print(redactor.mask(json.dumps(data, ensure_ascii=False, indent=2)))
        return 0
    out = [f"{plan.runbook.path}: {len(plan.cells)} cells ({', '.join(plan.selection)})"]
    for n, c in enumerate(plan.cells, 1):
        out.append(
            f"[{n}/{len(plan.cells)}] {c.section + ' › ' if c.section else ''}{c.label}  line {c.line}{_flags(c)}"
        )
        out.extend("    " + line for line in c.source.rstrip("\n").split("\n"))
    print(redactor.mask("\n".join(out)))
    return 0


def run_plan(
    plan: Plan, redactor: Redactor, args: argparse.Namespace, saved: resume.Saved | None
) -> tuple[RunReport, dict[str, Path]]:
    artifacts = _artifact_paths(args)
    artifacts["state"] = resume.state_path(plan.runbook.path, _selection_key(args))
    console = Console(sys.stdout.buffer, use_color(sys.stdout.buffer))
    header = {
        "runbook": plan.runbook.path,
        "sha256": plan.runbook.sha256,
        "cwd": saved.cwd if saved is not None else os.getcwd(),
        "run_dir": str(artifacts["dir"]),
    }
    try:
        transcript = Transcript(artifacts["transcript"])
        recorder = resume.Recorder(artifacts["state"], header, redactor.mask)
    except OSError as exc:
        raise RunbookError(f"{exc.filename}: cannot write: {exc.strerror}") from None
    shell: BashSession | None = None
    try:
        shell = BashSession(env=_session_env(plan))
        # What the session started with: only what the runbook changes is worth storing for --resume.
        shell.run(":", lambda _data: None, timeout=10, name="baseline", snapshot=True)
        initial = resume.parse_exports(shell.exports)
        if saved is not None:
            shell.restore(saved.cwd, saved.exports)
            note = f"resuming at {saved.failed_cell} in {saved.cwd}"
            console.write(redactor.mask(console.note(note, "cyan")).encode())
            missing = resume.dropped(saved.exports)
            if missing:
                note = f"not restored (their values held secrets; set them again): {', '.join(missing)}"
                console.write(redactor.mask(console.note(note)).encode())
    except ShellError as exc:
        if shell is not None:
            shell.close()
        transcript.close()
        recorder.close("not started")
        raise RunbookError(f"runbook-exec: {exc}") from None
    drop = set(plan.env) - set(plan.variables)
    filtered: dict[str, str] = {}

    def on_cell_done(cell: Cell, result: CellResult, _shell_result: object) -> None:
        raw = shell.exports
        if raw not in filtered:
            filtered.clear()
            filtered[raw] = resume.filter_exports(raw, drop, initial, redactor.mask)
        recorder.cell(cell.id, result.status, cell.options.when, shell.cwd, filtered[raw])

    executor = Executor(
        plan,
        shell,
        redactor,
        console,
        transcript,
        confirm=_confirm if _interactive() else None,
        step=args.step,
        on_cell_done=on_cell_done,
    )

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        executor.interrupt(128 + signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        report = executor.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shell.close()
        transcript.close()
    recorder.close(report.status)
    report = replace(report, run_dir=str(artifacts["dir"]), transcript=str(artifacts["transcript"]))
    return report, artifacts


def _selection_key(args: argparse.Namespace) -> tuple[str, ...]:
    return Selection(sections=tuple(args.section), cells=tuple(args.cell), tags=_tags(args.tag)).describe()


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
    """Where this run's artifacts go; checked before anything runs, so a bad path costs no deploy."""
    try:
        folder = Path(args.transcript).parent if args.transcript and args.report and args.junit else run_dir()
    except OSError as exc:
        raise RunbookError(f".runbook/runs: cannot create the run folder: {exc.strerror}") from None
    paths = {
        "dir": folder,
        "transcript": Path(args.transcript) if args.transcript else folder / "transcript.log",
        "report": Path(args.report) if args.report else folder / "report.json",
        "junit": Path(args.junit) if args.junit else folder / "junit.xml",
    }
    for name in ("transcript", "report", "junit"):
        path = paths[name]
        if path.is_dir():
            raise RunbookError(f"{path}: is a directory (--{name} needs a file path)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunbookError(f"{path}: cannot create its folder for --{name}: {exc.strerror}") from None
        if not os.access(path.parent, os.W_OK):
            raise RunbookError(f"{path}: folder is not writable (--{name})")
    return paths


def write_reports(report: RunReport, artifacts: dict[str, Path]) -> None:
    write_json(report, artifacts["report"])
    write_junit(report, artifacts["junit"])


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
    text = release_log.render(template, report, plan.runbook, extra, mask=redactor.mask)
    keys = redactor.leaks(text.encode())
    if keys:
        # release.log is append-only: a record that still holds a secret form is never written.
        raise RunbookError(f"{plan.release_log}: the record would contain a form of {', '.join(keys)}; not appended")
    release_log.append(plan.release_log, text)
    return text


def rescan(redactor: Redactor, artifacts: dict[str, Path]) -> list[str]:
    """Fail closed: look for any form of any secret in every artifact; redact and name it (never the value).

    The release record is checked before it is appended (the log is append-only).
    """
    found: list[str] = []
    for name in ("transcript", "report", "junit", "state"):
        path = artifacts.get(name)
        if path is not None and path.exists():
            keys = _scan_file(redactor, path)
            if keys:
                _redact_file(redactor, path)
                found.append(f"{path}: contained a form of {', '.join(keys)}; redacted")
    return found


_SCAN_CHUNK = 256 << 10  # a few transient copies of it (window, view) stay small next to the process
_SCAN_OVERLAP = 64 << 10  # longer than any encoded form of any secret


def _scan_file(redactor: Redactor, path: Path) -> list[str]:
    """Scan in overlapping chunks so a 1 GB transcript does not have to fit in memory."""
    keys: set[str] = set()
    tail = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(_SCAN_CHUNK):
            window = tail + chunk
            keys.update(redactor.leaks(window))
            tail = window[-_SCAN_OVERLAP:]
    return sorted(keys)


def _redact_file(redactor: Redactor, path: Path) -> None:
    stream = redactor.stream()
    tmp = path.with_name(f".{path.name}.redacting")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        while chunk := src.read(_SCAN_CHUNK):
            dst.write(stream.feed(chunk))
        dst.write(stream.flush())
    os.replace(tmp, path)


# -- interaction -----------------------------------------------------------------------------------------


def _interactive() -> bool:
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


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


def _confirm(cell: Cell, masked_source: str) -> str:
    """Ask on the terminal; default is No."""
    kind = "DANGER" if cell.danger else "step"
    print(f"\n[{kind}] {cell.label} (line {cell.line}):")
    for line in masked_source.rstrip("\n").split("\n"):
        print(f"    {line}")
    prompt = "Run it? [y/N] " if cell.danger else "Run it? [Y]es / [s]kip / [q]uit: "
    try:
        answer = input(prompt).strip().lower()
    except EOFError:
        return "quit"
    if cell.danger:
        return "run" if answer in ("y", "yes") else "skip"
    return {"": "run", "y": "run", "yes": "run", "s": "skip", "skip": "skip", "q": "quit", "quit": "quit"}.get(
        answer, "skip"
    )


# -- entry point ----------------------------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    if argv and argv[0] in SUBCOMMANDS:
        import importlib  # noqa: PLC0415

        module: Any = importlib.import_module(SUBCOMMANDS[argv[0]])
        return int(module.main(argv[1:]))
    args = _parser().parse_args(argv)
    book = load_runbook(args)
    if args.list:
        return honor_list_request(book, args.json)
    saved = None
    if args.resume:
        if args.start:
            raise UsageError(
                "runbook-exec: --resume and --from cannot be combined (--resume starts at the failed cell)"
            )
        saved = resume.load(args.file, _selection_key(args))
        args.start = saved.failed_cell
    plan = build_plan(book, args, tolerant=args.dry_run)
    if plan.prompts and not args.dry_run:
        plan = answer(plan, _ask_placeholders(plan.prompts), allow_short=args.allow_short_secrets)
    redactor = Redactor(plan.secrets)
    if args.dry_run:
        return honor_dry_run(plan, redactor, args.json)
    with lock.hold(args.file, warn=lambda text: print(text, file=sys.stderr)):
        report, artifacts = run_plan(plan, redactor, args, saved)
    write_reports(report, artifacts)
    try:
        append_release_log(plan, report, redactor)
    except RunbookError as exc:
        # The run happened: keep its reports, say why the record is missing, and do not report success.
        print(f"runbook-exec: release record not written: {exc}", file=sys.stderr)
        report = replace(report, exit_code=report.exit_code or 1)
    leaks = rescan(redactor, artifacts)
    for line in leaks:
        print(f"runbook-exec: secret leak caught by the final rescan: {line}", file=sys.stderr)
    print(f"report: {artifacts['report']}  transcript: {artifacts['transcript']}", file=sys.stderr)
    return 1 if leaks and report.exit_code == 0 else report.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point. Returns the exit status."""
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except RunbookError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("runbook-exec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
