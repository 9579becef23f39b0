"""Deployment targets as the front matter declares them (``runbook.targets``): the model and its parsing.

A target is a Docker context or a ``DOCKER_HOST`` URL (``ssh://user@host`` included). Parsing is pure, part of
reading a runbook (:mod:`runbook_exec.doc.document`); resolving ``--target`` names and checking the engines
is :mod:`runbook_exec.run.targets`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runbook_exec.doc.options import closest

TARGET_KEYS = frozenset({"context", "docker_host", "env_file", "vars"})
# What the docker CLI accepts in DOCKER_HOST / -H.
HOST_SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://", "fd://")
# Set by the target itself: a target's vars cannot override them.
RESERVED_VARS = frozenset({"DOCKER_CONTEXT", "DOCKER_HOST", "RUNBOOK_TARGET"})
# Names end up in run folder names, lock files, output prefixes and release records.
TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

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
    if not TARGET_NAME.fullmatch(name):
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
