"""Read a person's text file (runbook, env file) as UTF-8, or say in one line why not."""

from __future__ import annotations

from pathlib import Path

from runbook_exec.errors import RunbookError


def read_utf8(path: str | Path, what: str) -> str:
    """The file's text; :class:`RunbookError` (``path[:line]: ...``, naming ``what`` it should be) otherwise.

    NUL bytes mean a binary file. Error messages never quote the file's content.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise RunbookError(f"{path}: no such file ({what})") from None
    except IsADirectoryError:
        raise RunbookError(f"{path}: is a directory, not a {what}") from None
    except PermissionError:
        raise RunbookError(f"{path}: permission denied") from None
    except OSError as exc:
        raise RunbookError(f"{path}: cannot read: {exc.strerror}") from None
    if b"\0" in data:
        line = data[: data.index(b"\0")].count(b"\n") + 1
        raise RunbookError(f"{path}:{line}: binary file (NUL byte), not a {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RunbookError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None
