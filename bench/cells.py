"""Per-cell overhead of runbook-exec against its floors, measured in one run.

    python bench/cells.py [--repeat 5]

Floors: one ``bash script.sh`` running N commands, and a fresh ``bash -c`` per cell (the process-per-cell
model of most Markdown runners). runbook-exec runs N trivial ``.exec`` cells in one session through the
real CLI (masking, transcript, JSON and JUnit reports included). Per-cell overhead is
(T(N) - T(0)) / N, so interpreter start-up and session start are not counted per cell; session start is
reported on its own.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _runbook(path: Path, n: int) -> None:
    cells = "".join(f"```bash {{#c{i} .exec}}\ntrue\n```\n\n" for i in range(n))
    path.write_text(f"# Bench\n\n{cells}" if n else "# Bench\n\n```bash\ntrue\n```\n")


def _time(cmd: list[str], cwd: Path, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _runner(work: Path, n: int, repeat: int) -> float:
    book = work / f"cells-{n}.md"
    _runbook(book, max(n, 1))
    args = [
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
    return _time(args, work, repeat)


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
        base = _runner(work, 1, args.repeat)  # one cell: start-up, session, reports
        print(f"session start: {_session_start_ms(args.repeat):.2f} ms")
        print(f"runbook-exec with 1 cell (process start + session + reports): {base * 1000:.1f} ms")
        print(
            f"{'N':>6} {'runbook-exec ms/cell':>21} {'bash script ms/cell':>20} {'bash -c ms/cell':>16}"
            f" {'vs bash -c':>11}"
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
            ours = (_runner(work, n, args.repeat) - base) / (n - 1)
            print(
                f"{n:>6} {ours * 1000:>21.4f} {max(floor, 0) * 1000:>20.4f} {fresh * 1000:>16.3f}"
                f" {fresh / ours:>10.1f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
