"""Prefix every line written to stdout and stderr with a label (the target's name in a rollout).

The runner writes through ``sys.stdout.buffer`` (already masked) and ``print``; swapping both streams for a
prefixing wrapper labels every line without the runner knowing about targets. Lines are labelled where they
start, so output split across writes (a pty read ends mid-line) gets one label per line, not per write.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO, TextIO

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class LinePrefixer(io.RawIOBase):
    """A writable raw stream that puts ``prefix`` at the start of every line it passes on to ``raw``."""

    def __init__(self, raw: BinaryIO, prefix: bytes) -> None:
        super().__init__()
        self._raw = raw
        self._prefix = prefix
        self._at_line_start = True

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        chunk = bytes(data)
        if not chunk:
            return 0
        ends = chunk.endswith(b"\n")
        body = chunk[:-1] if ends else chunk
        out = (self._prefix if self._at_line_start else b"") + body.replace(b"\n", b"\n" + self._prefix)
        self._raw.write(out + b"\n" if ends else out)
        self._raw.flush()
        self._at_line_start = ends
        return len(chunk)

    def fileno(self) -> int:
        return self._raw.fileno()

    def isatty(self) -> bool:
        try:
            return self._raw.isatty()
        except (AttributeError, ValueError):
            return False


def _wrap(stream: TextIO, prefix: bytes) -> TextIO | None:
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        return None
    raw = LinePrefixer(buffer, prefix)
    return io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding=getattr(stream, "encoding", None) or "utf-8",
        errors=getattr(stream, "errors", None) or "strict",
        line_buffering=True,
        write_through=True,
    )


@contextlib.contextmanager
def prefixed(label: str | None) -> Iterator[None]:
    """Within the block, every line on stdout and stderr starts with ``label``; None leaves both alone."""
    if label is None:
        yield
        return
    originals = sys.stdout, sys.stderr
    prefix = label.encode("utf-8", "replace")
    wrapped = [_wrap(s, prefix) for s in originals]
    if wrapped[0] is not None:
        sys.stdout = wrapped[0]
    if wrapped[1] is not None:
        sys.stderr = wrapped[1]
    try:
        yield
    finally:
        for w in wrapped:
            if w is not None:
                # A terminal or reader that went away (hang-up, closed pipe) is not an error here either.
                with contextlib.suppress(OSError, ValueError):
                    w.flush()
        sys.stdout, sys.stderr = originals
