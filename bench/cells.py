"""Per-cell overhead of runbook-exec against its floors, measured in one run.

    python bench/cells.py [--repeat 5]

Floors: one ``bash script.sh`` running N commands, and a fresh ``bash -c`` per cell (the process-per-cell
model of most Markdown runners). A third column, the round trip, is the least any runner that drives one
bash session cell by cell pays: a command line written to bash's pipe, ``read`` and ``eval``, a status frame
printed on a pty and read back, with nothing else around it. runbook-exec runs N trivial ``.exec`` cells in
one session through the real CLI (masking, transcript, JSON and JUnit reports included). Per-cell overhead
is (T(N) - T(1)) / (N - 1), so interpreter start-up and session start are not counted per cell; session start is
reported on its own.
"""

from __future__ import annotations

import argparse
import os
import pty
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _runbook(path: Path, n: int) -> None:
    cells = "".join(f"```bash {{#c{i} .exec}}\ntrue\n```\n\n" for i in range(n))
    path.write_text(f"# Bench\n\n{cells}" if n else "# Bench\n\n```bash\ntrue\n```\n")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # As an installed package runs: from its bytecode cache (written by the warm-up run), not recompiled on
    # every start, which would add tens of ms of noise to T(1) and T(N) alike.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _once(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def _time(cmd: list[str], cwd: Path, repeat: int) -> float:
    return statistics.median(_once(cmd, cwd) for _ in range(repeat))


def _runner_args(work: Path, n: int) -> list[str]:
    book = work / f"cells-{n}.md"
    _runbook(book, max(n, 1))
    return [
        sys.executable,
        "-m",
        "runbook_exec.cli",
        book.name,
        "--no-release-log",
        "--report",
        "r.json",
        "--junit",
        "j.xml",
        "--transcript",
        "t.log",
    ]


def _per_cell(work: Path, n: int, repeat: int) -> float:
    """(T(n) - T(1)) / (n - 1), the two runs interleaved so that a busy moment hits both alike."""
    one, many = _runner_args(work, 1), _runner_args(work, n)
    _once(one, work)  # warm-up: page cache, bytecode cache
    diffs = [_once(many, work) - _once(one, work) for _ in range(repeat)]
    return statistics.median(diffs) / (n - 1)


def _round_trip(n: int) -> float:
    """Seconds per cell of the bare session protocol: pipe -> bash ``read``/``eval`` -> frame on a pty -> read."""
    commands, feed = os.pipe()
    master, slave = pty.openpty()
    loop = 'while read -r n l; do read -r -N "$l" src; eval "$src"; printf \'\\036%s\\037\' "$n"; done'
    proc = subprocess.Popen(["bash", "--noprofile", "--norc", "-c", loop], stdin=commands, stdout=slave, stderr=slave)
    os.close(commands)
    os.close(slave)

    def one(i: int) -> None:
        os.write(feed, f"{i} 5\ntrue\n".encode())
        while b"\x1f" not in os.read(master, 65536):  # a blocking read: it waits for bash's output
            pass

    for i in range(50):
        one(i)
    t0 = time.perf_counter()
    for i in range(n):
        one(i)
    seconds = (time.perf_counter() - t0) / n
    os.close(feed)
    proc.wait()
    os.close(master)
    return seconds


def _session_start_ms(repeat: int) -> float:
    from runbook_exec.run.shell import BashSession

    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        session = BashSession()
        samples.append(time.perf_counter() - t0)
        session.close()
        time.sleep(0.1)  # a run starts one session: let the previous one finish ending first
    return statistics.median(samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", default="100,1000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _once(_runner_args(work, 1), work)  # warm-up
        base = _time(_runner_args(work, 1), work, args.repeat)  # one cell: start-up, session, reports
        print(f"session start: {_session_start_ms(args.repeat):.2f} ms")
        print(f"runbook-exec with 1 cell (process start + session + reports): {base * 1000:.1f} ms")
        print(
            f"{'N':>6} {'runbook-exec ms/cell':>21} {'bash script ms/cell':>20} {'bash -c ms/cell':>16}"
            f" {'vs bash -c':>11} {'round trip ms':>14}"
        )
        for n in sizes:
            script = work / f"script-{n}.sh"
            script.write_text("true\n" * n)
            floor = (_time(["bash", str(script)], work, args.repeat) - _time(["bash", "-c", ""], work, args.repeat)) / n
            percell = work / f"percell-{n}.sh"
            percell.write_text(f"for i in $(seq {n}); do bash -c true; done\n")
            loop = work / f"loop-{n}.sh"
            loop.write_text(f"for i in $(seq {n}); do :; done\n")
            fresh = (
                _time(["bash", str(percell)], work, args.repeat) - _time(["bash", str(loop)], work, args.repeat)
            ) / n
            ours = _per_cell(work, n, args.repeat)
            trip = statistics.median(_round_trip(n) for _ in range(args.repeat))
            print(
                f"{n:>6} {ours * 1000:>21.4f} {max(floor, 0) * 1000:>20.4f} {fresh * 1000:>16.3f}"
                f" {fresh / ours:>10.1f}x {trip * 1000:>14.4f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
