"""Whole-runner throughput: a large output cell through ``runbook-exec`` (masked) vs a raw pty read loop.

Floor measured in the same run: the same command under ``pty.fork`` read with ``os.read(fd, 65536)`` and
discarded. Both vary from run to run on a 2-core machine (the floor between about 70 and 200 MB/s), so
they run interleaved, three rounds by default, and the medians are compared. The runner run has an env
file with 50 secrets, so every byte passes the redactor, the terminal (stdout to /dev/null), the transcript
and the final rescan, and a release record is appended. Peak RSS of the runner comes from ``wait4``.

Long lines: the same runner with ``--long-mb`` of output in one line without newline against the same bytes in
80-byte lines (both through ``tr``, so the pipelines are alike), interleaved too; time must stay linear in the
length of a line.

    python bench/runner_throughput.py [--mb 200] [--rss-mb 1000] [--long-mb 50]

Goals: masked >= 75% of the raw pty rate; peak RSS <= 40 MiB for a 1 GB output cell; one long line takes at most
2x the time of the same bytes in 80-byte lines.
"""

from __future__ import annotations

import argparse
import os
import pty
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND = "yes " + "x" * 99 + " | head -c {n} || true"  # `yes` outruns the pty (`fold` did not); SIGPIPE is ignored
LINES = "yes " + "x" * 79 + " | tr -d '\\r' | head -c {n} || true"  # 80-byte lines
LONG_LINE = "yes " + "x" * 79 + " | tr -d '\\n' | head -c {n} || true"  # the same bytes, no newline at all


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def raw_pty(n: int) -> tuple[float, float]:
    """Rate (MB/s) and CPU seconds of the reader and the command's processes."""
    cpu0 = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("bash", ["bash", "-c", "stty -onlcr; " + COMMAND.format(n=n)])
    t0 = time.perf_counter()
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass
    os.waitpid(pid, 0)
    seconds = time.perf_counter() - t0
    os.close(fd)
    return n / seconds / 1e6, _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN) - cpu0


def runner(n: int, work: Path, command: str = COMMAND) -> tuple[float, float, float]:
    """Rate (MB/s), peak RSS (MiB) and CPU seconds of the runner and every process it waited for."""
    book = work / "big.md"
    book.write_text(f"# big\n\n```bash {{#big .exec timeout=3600}}\n{command.format(n=n)}\n```\n", encoding="utf-8")
    env = work / "bench.env"
    env.write_text("".join(f"K{i}_TOKEN='{secrets.token_urlsafe(24)}'\n" for i in range(50)), encoding="utf-8")
    args = [sys.executable, "-m", "runbook_exec.cli", str(book), "--env-file", str(env),
            "--release-log", str(work / "release.log"), "--transcript", str(work / "t.log"),
            "--report", str(work / "r.json"), "--junit", str(work / "j.xml")]  # fmt: skip
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        proc = subprocess.Popen(args, stdout=sink, stderr=sink, cwd=work)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"runner failed with {os.waitstatus_to_exitcode(status)}")
    return n / seconds / 1e6, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="floor and runner runs, interleaved")
    parser.add_argument("--rss-mb", type=int, default=1000, help="output size for the peak RSS run (0: skip)")
    parser.add_argument("--long-mb", type=int, default=50, help="size of the one-line output case (0: skip)")
    args = parser.parse_args()
    n = args.mb * 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        floors, rates, peaks, cpu_raw, cpu_runner = [], [], [], [], []
        for _ in range(args.rounds):
            rate, cpu = raw_pty(n)
            floors.append(rate)
            cpu_raw.append(cpu)
            rate, rss, cpu = runner(n, Path(tmp))
            rates.append(rate)
            peaks.append(rss)
            cpu_runner.append(cpu)
        floor, masked = statistics.median(floors), statistics.median(rates)
        print(
            f"{args.mb} MB output cell, {args.rounds} interleaved rounds (MB/s): "
            f"raw pty {' '.join(f'{f:.0f}' for f in floors)}, runner masked {' '.join(f'{r:.0f}' for r in rates)}"
        )
        print(f"median raw pty {floor:.0f} MB/s, runner masked {masked:.0f} MB/s, ratio {masked / floor:.2f} "
              f"(goal >= 0.75); peak RSS {max(peaks):.1f} MiB")  # fmt: skip
        # On a busy machine wall time is mostly waiting for a core; CPU time is steadier (the pty's own kernel
        # work, done by kernel threads, is in neither).
        cpu = statistics.median(cpu_raw), statistics.median(cpu_runner)
        print(f"median CPU seconds (all processes): raw pty {cpu[0]:.2f}, runner masked {cpu[1]:.2f}, "
              f"ratio {cpu[0] / cpu[1]:.2f}")  # fmt: skip
        if args.long_mb:
            m = args.long_mb * 1_000_000
            lines, long = [], []
            for _ in range(args.rounds):
                lines.append(m / runner(m, Path(tmp), LINES)[0] / 1e6)
                long.append(m / runner(m, Path(tmp), LONG_LINE)[0] / 1e6)
            ratio = statistics.median(b / a for a, b in zip(lines, long, strict=True))
            print(f"{args.long_mb} MB in one line vs in 80-byte lines (s): {' '.join(f'{b:.1f}' for b in long)} vs "
                  f"{' '.join(f'{a:.1f}' for a in lines)}; median ratio {ratio:.2f} (goal <= 2)")  # fmt: skip
        if args.rss_mb:
            rate, rss, _ = runner(args.rss_mb * 1_000_000, Path(tmp))
            print(f"{args.rss_mb} MB output cell: runner masked {rate:.0f} MB/s, peak RSS {rss:.1f} MiB (goal <= 40)")


if __name__ == "__main__":
    main()
