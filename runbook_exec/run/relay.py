"""A helper process that drains the session's pty into a pipe while a cell prints a lot.

Why: a pty holds about 17 KiB. While the runner masks and writes what it read, a busy cell fills that in
microseconds and then waits, so reading and processing took turns: the runner moved 38-50 MB/s where a bare read
loop moved 65-110. With a relay on the other core, the cell writes on while the runner works through a pipe of up
to 1 MiB; the runner reads the pipe in large blocks. A cell that prints little never starts one (the relay would
add a hop to every frame).

Order is kept: only one reader at a time. The session stops reading the pty when it starts a relay, and the
relay, told to stop, exits between a read and the next one (never holding bytes it read), so what it did not pass
on is still in the pty. The relay ends by itself when the pty is gone (EIO), and when the runner is gone (its
control pipe reads end of file); it has a session of its own, so an operator's Ctrl-C for the runner does not
reach it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import subprocess
import sys
import time

# Runs in ``python -I -S`` (no site, no environment): start-up is the interpreter's alone.
_PROGRAM = r"""
import os, select, sys
master, out, control = map(int, sys.argv[1:4])
poller = select.poll()
poller.register(master, select.POLLIN)
poller.register(control, select.POLLIN)
while True:
    if any(fd == control for fd, _ in poller.poll()):
        break
    try:
        data = os.read(master, 65536)
    except BlockingIOError:
        continue
    except OSError:
        break
    if not data:
        break
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]
"""

_F_SETPIPE_SZ = 1031
_PIPE_SIZE = 1 << 20
_STOP_S = 2.0  # a relay that has not ended this long after being told to is killed


class Relay:
    """One relay process for one pty master; :attr:`fd` is the read end of the pipe it fills."""

    def __init__(self, master: int) -> None:
        read_end, write_end = os.pipe()
        control_read, self._control = os.pipe()
        try:
            with contextlib.suppress(OSError):  # a lower pipe-max-size: the default 64 KiB still pipelines
                fcntl.fcntl(write_end, _F_SETPIPE_SZ, _PIPE_SIZE)
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _PROGRAM, str(master), str(write_end), str(control_read)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(master, write_end, control_read),
                start_new_session=True,
            )
        except BaseException:
            for fd in (read_end, self._control):
                os.close(fd)
            raise
        finally:
            os.close(write_end)
            os.close(control_read)
        os.set_blocking(read_end, False)
        self.fd = read_end

    def stop(self) -> bytes:
        """Tell the relay to stop and return what it passed on and the runner has not read yet."""
        os.close(self._control)
        parts: list[bytes] = []
        deadline = time.monotonic() + _STOP_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._proc.kill()
                break
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, _PIPE_SIZE)
            except BlockingIOError:
                continue
            if not chunk:
                break
            parts.append(chunk)
        os.close(self.fd)
        self._proc.wait()
        return b"".join(parts)


def start(master: int) -> Relay | None:
    """A relay for ``master``, or None where one cannot be started (the session then reads the pty itself)."""
    if not sys.executable:
        return None
    try:
        return Relay(master)
    except OSError:
        return None
