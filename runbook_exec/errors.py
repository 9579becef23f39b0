"""The one user-facing error family.

A ``RunbookError`` carries a message that is shown to the operator as is (one line per problem,
``path:line: what is wrong``) and maps to exit status 2 in the CLI. Tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located in a file."""

    path: str
    line: int  # 1-based; 0 when the problem is about the file as a whole
    message: str
    code: str = "RX000"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


class RunbookError(Exception):
    """Bad input caused by a person: exit status 2, message shown as is, nothing executed."""

    exit_code = 2

    def __init__(self, message: str, problems: Iterable[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)

    @classmethod
    def from_problems(cls, problems: Iterable[Problem]) -> RunbookError:
        found = tuple(problems)
        return cls("\n".join(str(p) for p in found), found)


class UsageError(RunbookError):
    """Wrong command-line usage."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and a :class:`UsageError` (exit 2), for every subcommand."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")
