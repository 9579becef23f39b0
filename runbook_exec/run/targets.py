"""Deployment targets: which Docker Engine a run talks to, resolved and checked before anything runs.

A target is a Docker context or a ``DOCKER_HOST`` URL (``ssh://user@host`` included). Docker itself carries
the same ``docker compose`` commands to the other engine, and the build happens there: no agent and no
inventory format of our own. Targets come from the front matter (``runbook.targets``) or, for a name the
front matter does not declare, from an existing Docker context of that name.

The model and the front matter parsing are :mod:`runbook_exec.doc.targets`; this module holds the resolution
of ``--target`` names and the up-front engine check (``docker info``, every target at once).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runbook_exec.doc.options import closest
from runbook_exec.doc.targets import TARGET_NAME, Target
from runbook_exec.errors import Problem, RunbookError

if TYPE_CHECKING:
    from runbook_exec.doc.document import Runbook

CHECK_TIMEOUT_S = 45.0  # ssh's own connect timeout (docker CLI: 30 s) plus the engine's answer


@dataclass(frozen=True)
class Engine:
    """A target whose engine answered the up-front check."""

    target: Target
    host: str  # ``docker info --format '{{.Name}}'``: the engine's host name


def update(environ: MutableMapping[str, str], changes: Mapping[str, str | None]) -> None:
    """Apply ``changes`` to ``environ`` in place (a None value removes the variable)."""
    for key, value in changes.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value


def apply(environ: Mapping[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    """``environ`` with ``changes`` applied (a None value removes the variable)."""
    out = dict(environ)
    update(out, changes)
    return out


# -- resolution ---------------------------------------------------------------------------------------


def resolve(book: Runbook, names: Sequence[str], docker: str | None = None) -> tuple[Target, ...]:
    """The targets named by ``--target``, in the order given; :class:`RunbookError` listing every problem.

    A name is looked up in the front matter first, then as a Docker context (``docker context inspect``).
    A runbook with problems (a bad ``runbook.targets`` among them) is refused as a whole, as a run would be.
    """
    if book.problems:
        raise RunbookError.from_problems(book.problems)
    declared = {t.name: t for t in book.settings.targets}
    problems: list[Problem] = []
    chosen: list[Target] = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(Problem("runbook-exec", 0, f"--target {name}: given twice"))
            continue
        seen.add(name)
        if name in declared:
            chosen.append(declared[name])
        elif _is_context(name, docker):
            chosen.append(Target(name=name, context=name, declared=False))
        else:
            problems.append(_unknown(book, name, list(declared)))
    if problems:
        raise RunbookError.from_problems(problems)
    return tuple(chosen)


def _is_context(name: str, docker: str | None) -> bool:
    import shutil  # noqa: PLC0415 - only --target pays for these
    import subprocess  # noqa: PLC0415

    exe = docker or shutil.which("docker")
    if exe is None or not TARGET_NAME.fullmatch(name):
        return False
    try:
        found = subprocess.run(
            [exe, "context", "inspect", name],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=CHECK_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return found.returncode == 0


def _unknown(book: Runbook, name: str, declared: list[str]) -> Problem:
    hint = closest(name, declared) if declared else None
    where = f"runbook.targets of {book.path}" if declared else f"{book.path} (it declares no runbook.targets)"
    message = f"--target {name}: unknown target: not in {where} and no Docker context of that name"
    if hint:
        message += f" (did you mean {hint!r}, line {book.key_line(hint)}?)"
    return Problem("runbook-exec", 0, message)


def location(book: Runbook, target: Target) -> str:
    """Where a target comes from, as the start of a one-line message."""
    if target.declared:
        return f"{book.path}:{book.key_line(target.name)}: target {target.name} ({target.engine})"
    return f"runbook-exec: --target {target.name} (Docker context)"


# -- up-front check -----------------------------------------------------------------------------------


def check_engines(
    book: Runbook,
    targets: Sequence[Target],
    docker: str | None = None,
    environ: Mapping[str, str] | None = None,
    timeout: float = CHECK_TIMEOUT_S,
) -> tuple[Engine, ...]:
    """Ask every target's engine for its name (``docker info``), all at once; raise listing each one that
    does not answer, so a rollout never deploys to the first servers and then finds the third unreachable."""
    import shutil  # noqa: PLC0415 - only --target pays for these
    import subprocess  # noqa: PLC0415
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    exe = docker or shutil.which("docker")
    if exe is None:
        raise RunbookError("runbook-exec: --target needs the docker CLI on PATH (not found)")
    base = os.environ if environ is None else environ

    def ask(target: Target) -> str | Problem:
        try:
            done = subprocess.run(
                [exe, "info", "--format", "{{.Name}}"],
                capture_output=True,
                text=True,
                errors="replace",
                stdin=subprocess.DEVNULL,
                env=apply(base, target.environ()),
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return Problem(
                location(book, target), 0, f"engine unreachable: no answer from docker info in {timeout:g} s"
            )
        except OSError as exc:
            return Problem(location(book, target), 0, f"engine unreachable: cannot run docker: {exc.strerror}")
        name = done.stdout.strip()
        if done.returncode != 0 or not name:
            return Problem(location(book, target), 0, f"engine unreachable: {_reason(done.stderr)}")
        return name

    with ThreadPoolExecutor(max_workers=min(8, max(1, len(targets)))) as pool:
        answers = list(pool.map(ask, targets))
    problems = [a for a in answers if isinstance(a, Problem)]
    if problems:
        raise RunbookError.from_problems(problems)
    return tuple(Engine(t, a) for t, a in zip(targets, answers, strict=True) if isinstance(a, str))


def _reason(stderr: str) -> str:
    """The docker CLI's own reason, on one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "cannot" in line.lower()]
    text = (errors or lines or ["docker info failed"])[0]
    return text[:300]
