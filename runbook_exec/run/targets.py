"""Deployment targets: which Docker Engine a run talks to, resolved and checked before anything runs.

A target is a Docker context or a ``DOCKER_HOST`` URL (``ssh://user@host`` included). Docker itself carries
the same ``docker compose`` commands to the other engine, and the build happens there: no agent and no
inventory format of our own. Targets come from the front matter (``runbook.targets``) or, for a name the
front matter does not declare, from an existing Docker context of that name.

This module holds the model, the front matter parsing (pure, used by :mod:`runbook_exec.doc.document`), the
resolution of ``--target`` names and the up-front engine check (``docker info``, every target at once).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runbook_exec.doc.options import closest
from runbook_exec.errors import Problem, RunbookError

if TYPE_CHECKING:
    from runbook_exec.doc.document import Runbook

TARGET_KEYS = frozenset({"context", "docker_host", "env_file", "vars"})
# What the docker CLI accepts in DOCKER_HOST / -H.
HOST_SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://", "fd://")
# Set by the target itself: a target's vars cannot override them.
RESERVED_VARS = frozenset({"DOCKER_CONTEXT", "DOCKER_HOST", "RUNBOOK_TARGET"})
# Names end up in run folder names, lock files, output prefixes and release records.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CHECK_TIMEOUT_S = 45.0  # ssh's own connect timeout (docker CLI: 30 s) plus the engine's answer

Bad = Callable[[str, str], None]  # (front matter key to point at, message)


@dataclass(frozen=True)
class Target:
    """One engine to run a selection against."""

    name: str
    context: str | None = None
    docker_host: str | None = None
    env_file: str | None = None
    vars: tuple[tuple[str, str], ...] = ()
    declared: bool = True  # False: a Docker context named on the command line, not in the front matter

    @property
    def engine(self) -> str:
        """How the engine is reached, for messages and records (never holds a secret: no passwords in URLs)."""
        return f"context {self.context}" if self.context else str(self.docker_host)

    def environ(self) -> dict[str, str | None]:
        """Environment changes that point the docker CLI at this target (None: unset the variable).

        DOCKER_HOST outranks DOCKER_CONTEXT in the docker CLI, so a context target unsets an inherited
        DOCKER_HOST, and a host target unsets DOCKER_CONTEXT to leave no doubt about which engine is meant.
        """
        if self.context:
            return {"DOCKER_CONTEXT": self.context, "DOCKER_HOST": None, "RUNBOOK_TARGET": self.name}
        return {"DOCKER_HOST": self.docker_host, "DOCKER_CONTEXT": None, "RUNBOOK_TARGET": self.name}

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "context": self.context,
            "docker_host": self.docker_host,
            "env_file": self.env_file,
            "vars": dict(self.vars),
            "declared": self.declared,
        }


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


# -- front matter --------------------------------------------------------------------------------------


def parse_block(raw: Any, bad: Bad) -> tuple[Target, ...]:
    """Read ``runbook.targets`` (``{NAME: {context: CTX} | {docker_host: URL}, env_file?, vars?}``).

    Every problem is reported through ``bad``; a target with a problem is left out.
    """
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        bad("targets", "runbook.targets: must be a mapping of NAME: {context: CTX} or {docker_host: URL}")
        return ()
    found: list[Target] = []
    for key, spec in raw.items():
        name = str(key)

        def problem(message: str, name: str = name) -> None:
            bad(name, f"runbook.targets.{name}: {message}")

        target = _target(name, spec, problem)
        if target is not None:
            found.append(target)
    return tuple(found)


def _target(name: str, spec: Any, bad: Callable[[str], None]) -> Target | None:
    ok = True
    if not _NAME.fullmatch(name):
        bad("a target name is letters, digits, '.', '_' or '-' (up to 63, starting with a letter or digit)")
        ok = False
    if not isinstance(spec, dict):
        bad("must be a mapping with context: or docker_host:")
        return None
    for key in spec:
        if key not in TARGET_KEYS:
            hint = closest(str(key), set(TARGET_KEYS))
            bad(f"unknown key {key!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
            ok = False
    context, host = spec.get("context"), spec.get("docker_host")
    if (context is None) == (host is None):
        bad("needs exactly one of context: (a Docker context) or docker_host: (a DOCKER_HOST URL)")
        ok = False
    for key, value in (("context", context), ("docker_host", host), ("env_file", spec.get("env_file"))):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            bad(f"{key}: must be a non-empty string")
            ok = False
    if isinstance(host, str) and host.strip() and not host.startswith(HOST_SCHEMES):
        bad(f"docker_host: {host!r} must start with one of {', '.join(HOST_SCHEMES)}")
        ok = False
    variables = _vars(spec.get("vars"), bad)
    if variables is None or not ok:
        return None
    return Target(
        name=name,
        context=context,
        docker_host=host,
        env_file=spec.get("env_file"),
        vars=variables,
    )


def _vars(raw: Any, bad: Callable[[str], None]) -> tuple[tuple[str, str], ...] | None:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        bad("vars: must be a mapping of NAME: value")
        return None
    out: list[tuple[str, str]] = []
    ok = True
    for name, value in raw.items():
        key = str(name)
        if not _VAR_NAME.fullmatch(key):
            bad(f"vars.{key}: not a valid shell variable name")
            ok = False
        elif key in RESERVED_VARS:
            bad(f"vars.{key}: set by the target itself (context / docker_host and its name)")
            ok = False
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            bad(f'vars.{key}: must be a string or a number (quote it: "...")')
            ok = False
        else:
            out.append((key, str(value)))
    return tuple(out) if ok else None


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
    import shutil  # noqa: PLC0415 - document imports this module: parsing front matter must not pay for these
    import subprocess  # noqa: PLC0415

    exe = docker or shutil.which("docker")
    if exe is None or not _NAME.fullmatch(name):
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
    import shutil  # noqa: PLC0415 - document imports this module: parsing front matter must not pay for these
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
