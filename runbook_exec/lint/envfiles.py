"""Env files a runbook names that define a key twice (``RX303``), by name and line, never the value.

Compose and the runner use the last value; the earlier one is usually an old password left in while rotating
(the runner masks it too). The files are the front matter's ``env_sample`` and ``env_file`` and every target's
``env_file``, found where the runner finds them (:func:`runbook_exec.lint.vars.sample_path`); an env file
that is not there (it is never committed) is not checked.
"""

from __future__ import annotations

import os
from pathlib import Path

from runbook_exec.doc.document import Runbook
from runbook_exec.errors import RunbookError
from runbook_exec.lint.findings import Finding, finding
from runbook_exec.lint.vars import sample_path
from runbook_exec.ops.envfile import duplicates, env_file_entries


def check_env_files(book: Runbook, cwd: Path | None = None) -> list[Finding]:
    """One finding per repeated definition of a key, at the line that repeats it."""
    settings = book.settings
    named = [settings.env_sample, settings.env_file, *(t.env_file for t in settings.targets)]
    out: list[Finding] = []
    for name in dict.fromkeys(n for n in named if n):
        found = sample_path(name, book.path, cwd)
        if found is None:
            continue
        try:
            entries = env_file_entries(found, environ={})
        except RunbookError:
            continue  # unreadable: the runner and preflight say why (RX302 for env_sample)
        shown = _shown(found, cwd)
        for key, lines in duplicates(entries).items():
            for line in lines[1:]:
                message = (
                    f"{key} is defined again (first on line {lines[0]}); Compose and the runner use the last "
                    "value: remove the others"
                )
                out.append(finding(shown, line, 1, "RX303", message))
    return out


def _shown(path: Path, cwd: Path | None) -> str:
    """``path`` relative to the directory check runs in when it lies below it, so editors can open it."""
    base = (cwd or Path.cwd()).resolve()
    resolved = path.resolve()
    return os.path.relpath(resolved, base) if resolved.is_relative_to(base) else str(resolved)
