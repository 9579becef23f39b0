"""Redactor throughput: 5, 50 and 500 secrets x all printed forms, 4 KiB and 64 KiB chunks.

Floor measured in the same run: a pass-through stream (the same chunking loop, bytes copied unmasked). The
``view`` column is the part no masker can skip: building the normalised view alone (escape sequences,
controls and whitespace removed) in the same chunking.
The text is log-like output with every secret's raw, JSON, URL and base64 forms sprinkled in, so the
masking path (hits, mapping back, merging) is exercised, not only the no-hit scan.

    python bench/masking.py [--mb 64] [--engine hyperscan|aho-corasick]

Goals (issue 3): >= 300 MB/s at 50 secrets x all forms, >= 150 MB/s at 500.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import secrets
import string
import time
from collections.abc import Callable
from urllib.parse import quote

from runbook_exec.secrets.literals import ENGINES
from runbook_exec.secrets.masking import Redactor, Secret, normalise

WORDS = [
    "deploy",
    "backend",
    "nginx",
    "healthy",
    "started",
    "container",
    "image",
    "pulled",
    "layer",
    "exists",
    "db",
    "ready",
    "listening",
]


def make_text(size: int, values: list[str], rng: random.Random, colour: bool = True) -> bytes:
    """Log lines; one line in 1000 (about one per 100 KB) carries some form of some secret; with ``colour``
    one line in 7 carries two SGR escape sequences (as coloured tool output does)."""
    lines: list[bytes] = []
    total = 0
    n = 0
    while total < size:
        n += 1
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
        line = f"2026-01-01T00:00:{n % 60:02d}Z {words} id={rng.getrandbits(32):08x}"
        if n % 1000 == 0:
            v = rng.choice(values)
            form = rng.choice([v, json.dumps(v)[1:-1], quote(v, safe=""), base64.b64encode(v.encode()).decode()])
            line += f" value={form}"
        if colour and n % 7 == 0:
            line = f"\x1b[32m{line}\x1b[0m"
        data = (line + "\r\n").encode()
        lines.append(data)
        total += len(data)
    return b"".join(lines)[:size]


def run(feed: Callable[[bytes], bytes], flush: Callable[[], bytes], data: bytes, chunk: int) -> float:
    view = memoryview(data)
    t0 = time.perf_counter()
    for pos in range(0, len(data), chunk):
        feed(bytes(view[pos : pos + chunk]))
    flush()
    return len(data) / (time.perf_counter() - t0) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64, help="megabytes of output per measurement")
    parser.add_argument("--engine", choices=ENGINES, default=ENGINES[0], help="literal search engine")
    args = parser.parse_args()
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "-_$'\"@/"
    size = args.mb * 1_000_000
    print(f"{args.mb} MB per run, literal engine {args.engine}; MB/s (ratio to pass-through in the same chunking)")
    print(f"{'text':>7} {'secrets':>8} {'forms':>7} {'chunk':>7} {'masked':>9} {'view':>9} {'floor':>9} {'ratio':>7}")
    for count in (5, 50, 500):
        values = [secrets.token_urlsafe(rng.randint(12, 40)) for _ in range(count // 2)]
        values += [
            "".join(rng.choice(alphabet) for _ in range(rng.randint(10, 48))) for _ in range(count - len(values))
        ]
        redactor = Redactor([Secret(f"K{i}", v) for i, v in enumerate(values)], engine=args.engine)
        for colour in (False, True):
            data = make_text(size, values, rng, colour)
            kind = "colour" if colour else "plain"
            for chunk in (4096, 65536):
                floor = run(lambda b: b, lambda: b"", data, chunk)
                view = run(normalise, lambda: b"", data, chunk)
                stream = redactor.stream()
                masked = run(stream.feed, stream.flush, data, chunk)
                print(
                    f"{kind:>7} {count:>8} {redactor.needle_count:>7} {chunk:>7} {masked:>9.0f} {view:>9.0f}"
                    f" {floor:>9.0f} {masked / floor:>7.3f}"
                )


if __name__ == "__main__":
    main()
