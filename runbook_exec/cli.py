"""Command line: ``runbook-exec FILE ...``, ``runbook-exec check``, ``preflight``, ``init-env``.

Parses the arguments and dispatches to the command (:mod:`runbook_exec.commands.run`, ``rollout`` with
``--target``, and each subcommand's own ``main``). Person-caused errors become one line each and exit 2 in
exactly one place, :func:`main`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from runbook_exec import __version__
from runbook_exec.errors import ArgumentParser, RunbookError

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


# -- entry point ----------------------------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    # Each command imports what it uses when it is chosen: --version and --help import none of them.
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        module: Any = importlib.import_module(SUBCOMMANDS[argv[0]])
        return int(module.main(argv[1:]))
    args = _parser().parse_args(argv)
    if args.target:
        from runbook_exec.commands import rollout  # only a run with --target pays for it

        return rollout.main(args)
    from runbook_exec.commands import run

    return run.main(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point. Returns the exit status."""
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except RunbookError as exc:
        from runbook_exec.run.console import tell

        tell(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        from runbook_exec.run.console import tell

        tell("runbook-exec: interrupted")
        return 130
    except BrokenPipeError:
        from runbook_exec.run.console import silence

        # --list or --dry-run into a reader that stopped early (| head): what it read is what it wanted.
        silence(sys.stdout)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
