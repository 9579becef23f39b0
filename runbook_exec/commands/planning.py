"""From the command line to a validated plan: selection, variables, Runme's prompts, ``--resume``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from runbook_exec.doc.document import Runbook
from runbook_exec.errors import UsageError
from runbook_exec.run import resume
from runbook_exec.run.plan import Options, Plan, Prompt, Selection, answer, build


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
        interactive=is_interactive(),
        target=args.target_name,
    )
    if tolerant and not args.env_file and book.settings.env_file and not Path(book.settings.env_file).exists():
        # A dry run on a machine without the env file (a reviewer's laptop) still shows the plan.
        print(f"note: {book.settings.env_file} not found; dry run without its values", file=sys.stderr)
        book = replace(book, settings=replace(book.settings, env_file=None, env_sample=None))
    return build(book, selection, options)


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
    saved = resume.load(args.file, selection_key(args))
    args.start = saved.failed_cell
    return saved


def selection_key(args: argparse.Namespace) -> tuple[str, ...]:
    """What names this run's resume state: the selection, and the target of a per-target run."""
    key = Selection(sections=tuple(args.section), cells=tuple(args.cell), tags=_tags(args.tag)).describe()
    # Each target keeps its own resume state.
    return (*key, f"target:{args.target_name}") if args.target_name else key


def is_interactive() -> bool:
    """Both ends on a terminal: questions can be asked and answered."""
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _ask_placeholders(prompts: Sequence[Prompt]) -> dict[Prompt, str]:
    """Runme's variable prompts, asked on the terminal before anything runs; Enter keeps the default."""
    import getpass  # only a run that asks needs it

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
