"""Start-up of runbook-exec against the interpreter's own, measured in one run.

    python bench/startup.py [--repeat 10] [FILE]

Floor: ``python3 -c pass`` (interpreter start-up, site packages included). Measured, each as the
``runbook-exec`` console script starts it: ``--version``, ``--help``, ``--list FILE``,
``check --skip shellcheck FILE``, and the time from process start to the first byte a runbook's first cell
prints (on a pty, as an operator's terminal sees it). Prints medians and each one's ratio to the floor (wall
time, the target), and for the non-pty cases the ratio of CPU time too, which a busy machine disturbs less.
FILE defaults to ops/deploy.md. For reference, the import of markdown-it and PyYAML alone (``md+yaml``).
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What the ``runbook-exec`` console script runs.
ENTRY = "import sys; from runbook_exec.cli import main; sys.exit(main())"
MARKER = b"first-cell-output"
TARGETS: dict[str, float | None] = {
    "--version": 2.0,
    "--help": 2.0,
    "--list": 4.0,
    "check": 5.0,
    "first byte": 5.0,
    "md+yaml": None,
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # As an installed package runs: from its bytecode cache (written by the warm-up run), not recompiled.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


Sample = tuple[float, float | None]  # wall seconds, CPU seconds (user + system; None: not measured)


def _run(cmd: list[str], cwd: Path) -> Callable[[], Sample]:
    env = _env()

    def once() -> Sample:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        return wall, usage.ru_utime + usage.ru_stime

    return once


def _first_byte(work: Path) -> Callable[[], Sample]:
    """Process start to the first byte of the first cell's output, read on the pty the runner writes to."""
    book = work / "first.md"
    book.write_text(f"# First\n\n```bash {{#first .exec}}\nprintf '{MARKER.decode()}\\n'\n```\n", encoding="utf-8")
    cmd = [sys.executable, "-c", ENTRY, book.name, "--no-release-log"]
    env = _env()

    def once() -> Sample:
        main, sub = os.openpty()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=sub, stdout=sub, stderr=sub, close_fds=True)
        os.close(sub)
        seen, found = b"", None
        try:
            while found is None:
                ready, _, _ = select.select([main], [], [], 30)
                if not ready:
                    raise RuntimeError("no output from the first cell within 30 s")
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # EIO: the pty closed
                    chunk = b""
                if not chunk:
                    raise RuntimeError(f"runner ended without the cell's output: {seen[-300:]!r}")
                seen += chunk
                if MARKER in seen:
                    found = time.perf_counter() - start
            while True:  # let the run finish, so the next one does not race it
                try:
                    if not os.read(main, 65536):
                        break
                except OSError:
                    break
        finally:
            proc.wait()
            os.close(main)
        return found, None

    return once


def main() -> int:
    """Run the benchmark; print medians and the ratio of each to the floor."""
    parser = argparse.ArgumentParser()
    parser.add_argument("file", nargs="?", default=str(ROOT / "ops" / "deploy.md"))
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    book = str(Path(args.file).resolve())
    python = [sys.executable, "-c"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cases: dict[str, Callable[[], Sample]] = {
            "--version": _run([*python, ENTRY, "--version"], work),
            "--help": _run([*python, ENTRY, "--help"], work),
            "--list": _run([*python, ENTRY, book, "--list"], work),
            "check": _run([*python, ENTRY, "check", "--skip", "shellcheck", book], work),
            "first byte": _first_byte(work),
            # Not a target: what reading Markdown and YAML costs before any code of ours runs.
            "md+yaml": _run([*python, "import markdown_it, mdit_py_plugins.front_matter, yaml"], work),
        }
        floor_fn = _run([*python, "pass"], work)
        # Interleaved rounds: a load spike on a shared machine then touches every case, floor included.
        samples: dict[str, list[Sample]] = {name: [] for name in ["floor", *cases]}
        for fn in (floor_fn, *cases.values()):
            fn()  # warm the page cache and the bytecode cache
        for _ in range(args.repeat):
            samples["floor"].append(floor_fn())
            for name, fn in cases.items():
                samples[name].append(fn())
    floor = statistics.median(w for w, _ in samples["floor"])
    floor_cpu = statistics.median(c or 0.0 for _, c in samples["floor"])
    print(f"floor (python3 -c pass): {floor * 1000:.1f} ms, CPU {floor_cpu * 1000:.1f} ms (medians of {args.repeat})")
    failed = False
    for name in cases:
        value = statistics.median(w for w, _ in samples[name])
        ratio = value / floor
        target = TARGETS[name]
        ok = target is None or ratio <= target
        failed |= not ok
        missed = "" if ok else "  MISSED"
        goal = f"(target <= {target:g}x)" if target is not None else "(import alone)"
        cpus = [c for _, c in samples[name] if c is not None]
        # CPU time moves less than wall time when other processes share the cores.
        cpu = f"  CPU {statistics.median(cpus) / floor_cpu:5.2f}x" if cpus and floor_cpu else ""
        print(f"{name:<12} {value * 1000:7.1f} ms  {ratio:5.2f}x floor  {goal:<17}{missed}{cpu}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
