"""Time of ``runbook-exec check`` against its floor, measured in one run.

    python bench/check.py [--cells 200] [--repeat 5] [FILE]

Floor: ShellCheck alone on the same shell cells, already extracted into one script (what any checker
that uses ShellCheck must at least pay). Measured: every check of ``check_books`` in-process (parse,
structure, variables, secrets, links, damaged text, ShellCheck with the mapping back to Markdown). Prints
medians and the ratio. Without FILE, a runbook of N executable cells is generated.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runbook_exec.lint.check import check_books, load_runbooks
from runbook_exec.lint.shellcheck import find_shellcheck, plan_scripts


def _runbook(path: Path, n: int) -> None:
    parts = ["---\nrunbook:\n  vars:\n    TAG: {required: true}\n---\n# Bench\n"]
    for i in range(n):
        if i % 4 == 0:
            parts.append(f"\n## Step {i} {{#s{i}}}\n\nBack to [the start](#s0).\n")
        parts.append(
            f'\n```bash {{#c{i} .exec timeout=60}}\nexport IMAGE="app:${{TAG}}"\n'
            'if docker compose ps --format json | grep -q running; then\n  echo "ok $IMAGE"\nfi\n```\n'
        )
    path.write_text("".join(parts), encoding="utf-8")


def _median(fn: object, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    """Run the benchmark; print medians and the ratio to the floor."""
    parser = argparse.ArgumentParser()
    parser.add_argument("file", nargs="?")
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    binary = find_shellcheck()
    if binary is None:
        print("shellcheck not found", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.file) if args.file else Path(tmp, "bench.md")
        if not args.file:
            _runbook(path, args.cells)
        books = load_runbooks([str(path)])
        scripts = plan_scripts(books)
        for script in scripts:
            Path(tmp, script.name).write_text(script.text, encoding="utf-8")
        names = [s.name for s in scripts]
        command = [binary, "--format=json1", "--shell=bash", "--norc", *names]

        def floor() -> None:
            subprocess.run(command, cwd=tmp, capture_output=True, check=False)

        def measured() -> None:
            check_books(load_runbooks([str(path)]), shellcheck=binary)

        floor_s = _median(floor, args.repeat)
        check_s = _median(measured, args.repeat)
    cells = sum(len([c for c in b.cells if c.executable]) for b in books)
    print(f"runbook: {path.name}  executable cells: {cells}  shellcheck files: {len(scripts)}")
    print(f"floor (shellcheck alone): {floor_s * 1000:.1f} ms")
    print(f"runbook-exec check:       {check_s * 1000:.1f} ms")
    print(f"ratio: {check_s / floor_s:.2f}x the floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
