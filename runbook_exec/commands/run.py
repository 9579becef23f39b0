"""``runbook-exec FILE ...``: the run command (no ``--target``), a chain of small steps.

load -> plan -> list / dry-run -> run -> reports -> release.log -> rescan, each step in its own module of
this package; :mod:`runbook_exec.commands.rollout` takes the same steps once per target.
"""

from __future__ import annotations

import argparse

from runbook_exec.doc import document
from runbook_exec.doc.document import Runbook
from runbook_exec.errors import UsageError


def load_runbook(args: argparse.Namespace) -> Runbook:
    return document.parse(args.file, runme_mode=True if args.runme else None)


def main(args: argparse.Namespace) -> int:
    """``runbook-exec FILE ...`` without ``--target``: list, dry-run or run the selection."""
    if args.keep_going:
        raise UsageError("runbook-exec: --keep-going needs --target (it decides whether a rollout goes on)")
    book = load_runbook(args)
    # Each path imports what it uses: --list never pays for plans, masking engines or the bash session.
    if args.list:
        from runbook_exec.commands.listing import honor_list_request

        return honor_list_request(book, args.json)
    if args.resume and args.start:
        raise UsageError("runbook-exec: --resume and --from cannot be combined (--resume starts at the failed cell)")
    from runbook_exec.commands.planning import ask_prompts, build_plan, load_resume

    if args.dry_run:
        from runbook_exec.commands.listing import honor_dry_run
        from runbook_exec.secrets.masking import Redactor

        if args.resume:
            load_resume(args)
        plan = build_plan(book, args, tolerant=True)
        return honor_dry_run(plan, Redactor(plan.secrets), args.json)
    from runbook_exec.commands.execution import run_one
    from runbook_exec.run import lock
    from runbook_exec.run.console import tell

    with lock.hold(args.file, warn=tell):
        # Under the lock: no other runner of this runbook here is alive, so its state can be read.
        saved = load_resume(args) if args.resume else None
        [plan] = ask_prompts([build_plan(book, args)], args.allow_short_secrets)
        return run_one(plan, args, saved).code
