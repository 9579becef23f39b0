"""``runbook-exec init-env``: write an env file with random strong values for a rehearsal.

Follows the convention at the top of ``.env.sample``: a ``KEY=`` line is a required secret and gets a random
value; a ``KEY=value`` line is a fixed value and is copied; a ``# KEY=default`` line is an optional setting
and is copied as the same comment. The file is created with mode 600 in one step (written to a temporary
file, then linked into place), never overwrites without ``--force``, and no value is ever printed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import string
from pathlib import Path

from runbook_exec.errors import ArgumentParser, RunbookError
from runbook_exec.ops.envfile import parse_env_file

# Letters and digits only, starting with a letter: the values end up in shell commands (the db
# healthcheck) and database identifiers. Lower case keeps Postgres role and database names unquoted.
_FIRST = string.ascii_lowercase
_REST = string.ascii_lowercase + string.digits
VALUE_LENGTH = 40  # 1 + 39 characters of 36: about 206 bits
_OPTIONAL = re.compile(r"^#\s*([A-Za-z_][A-Za-z0-9_.\-]*)=(\S*)$")  # a default has no spaces; prose does


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="runbook-exec init-env", description="Write random strong values for a sample's keys.")
    p.add_argument("--sample", default=".env.sample", metavar="PATH", help="key list (default .env.sample)")
    p.add_argument("--out", required=True, metavar="PATH", help="env file to create (mode 600)")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    return p


def random_value(length: int = VALUE_LENGTH) -> str:
    """A random value of letters and digits that starts with a letter."""
    return secrets.choice(_FIRST) + "".join(secrets.choice(_REST) for _ in range(length - 1))


def generate(sample: str | Path) -> tuple[str, list[str]]:
    """The env file text for ``sample`` and the names of the keys that got random values."""
    fixed = parse_env_file(sample, environ={})
    generated = [k for k, v in fixed.items() if v == ""]
    lines = [
        f"# Rehearsal env file written by runbook-exec init-env from {Path(sample).name}.",
        "# Random values, for rehearsals only. Never commit this file.",
    ]
    lines += [f"{key}={random_value() if value == '' else value}" for key, value in fixed.items()]
    optional = []
    for raw in Path(sample).read_text(encoding="utf-8").splitlines():
        match = _OPTIONAL.match(raw.strip())
        if match and match.group(1) not in fixed:
            optional.append(f"# {match.group(1)}={match.group(2)}")
    if optional:
        lines += ["", "# Optional settings with their defaults (remove the '# ' to change one):", *optional]
    return "\n".join(lines) + "\n", generated


def write_private(out: Path, text: str, force: bool) -> None:
    """Create ``out`` with mode 600 atomically: readers see nothing or the whole file, never a wider mode.

    A file system that refuses the file (read-only, ``/proc``, full disk) is a :class:`RunbookError`.
    """
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise RunbookError(f"{out}: directory {folder} does not exist")
    try:
        _write_private(out, folder, text, force)
    except OSError as exc:
        raise RunbookError(f"{out}: cannot write the file in {folder}: {exc.strerror or exc}") from None


def _write_private(out: Path, folder: Path, text: str, force: bool) -> None:
    tmp = folder / f".{out.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        try:
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if force:
            os.replace(tmp, out)
        else:
            try:
                os.link(tmp, out)  # fails if ``out`` appeared meanwhile: never clobbers
            except FileExistsError:
                raise RunbookError(f"{out}: already exists; pass --force to replace it") from None
            except OSError:
                # A file system without hard links: the existence check in main() has to do.
                if out.exists():
                    raise RunbookError(f"{out}: already exists; pass --force to replace it") from None
                os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def main(argv: list[str]) -> int:
    """Entry point of ``runbook-exec init-env``."""
    args = _parser().parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.force:
        raise RunbookError(f"{out}: already exists; pass --force to replace it")
    if out.exists() and not out.is_file():
        raise RunbookError(f"{out}: is not a regular file")
    text, generated = generate(args.sample)
    write_private(out, text, args.force)
    print(f"init-env: wrote {out} (mode 600); random values for {len(generated)} keys: {', '.join(generated)}")
    return 0
