"""Find every occurrence (overlapping ones too) of many byte literals in a buffer.

Two engines behind one call, ``finder.find(data) -> [(literal index, start, end), ...]``:

* ``hyperscan`` (Intel Hyperscan's pure-literal compiler): it scanned the normalised view of
  ``bench/masking.py``'s log text at 2.5-2.9 GB/s for the forms of 50 and of 500 secrets (445-4,729
  literals) on this machine class, where the Aho-Corasick DFA, which has no prefilter past a few dozen
  literals, ran at about 650 MB/s. Installed on x86-64 Linux.
* ``aho-corasick`` (``ahocorasick_rs``, DFA, overlapping matches): everywhere else.

Both report exactly the same set of matches; the masking tests run against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, cast

import ahocorasick_rs

try:
    import hyperscan

    ENGINES: tuple[str, ...] = ("hyperscan", "aho-corasick")
except ImportError:  # pragma: no cover - where the wheel is not installed
    ENGINES = ("aho-corasick",)


class LiteralFinder(Protocol):
    def find(self, data: bytes) -> list[tuple[int, int, int]]:
        """``(index, start, end)`` of every occurrence of every literal in ``data``, overlapping included."""
        ...


class _AhoCorasick:
    def __init__(self, literals: Sequence[bytes]) -> None:
        # Standard match kind: overlapping matches are needed so that overlapping secrets all count. The
        # DFA is 1.7-2.5x faster than the default NFA from 50 secrets x all forms up.
        self._ac = ahocorasick_rs.BytesAhoCorasick(
            literals, matchkind=ahocorasick_rs.MATCHKIND_STANDARD, implementation=ahocorasick_rs.Implementation.DFA
        )

    def find(self, data: bytes) -> list[tuple[int, int, int]]:
        return self._ac.find_matches_as_indexes(data, overlapping=True)


def _collect(index: int, _start: int, end: int, _flags: int, hits: object) -> None:
    cast(list[tuple[int, int]], hits).append((index, end))


_HEAD = 8


class _Hyperscan:
    """Searches for the first :data:`_HEAD` bytes of every literal and confirms the whole literal where one
    is found. Compiling whole literals needed 6.2 MiB for one set of 50 secrets x all forms and 12.3 MiB for
    another (a database twice the size). With 16-byte heads, 3 of 40 random sets of 50 secrets still took
    60-100 ms and 34 MiB more peak memory to compile (unpredictably, by content); with 8-byte heads none of
    the 40 was slow (about 14 ms; for memory see :class:`_Groups`), and scanning log text ran at the same
    speed (bench/masking.py): hits are rare either way."""

    def __init__(self, literals: Sequence[bytes]) -> None:
        self._literals = list(literals)
        groups: dict[bytes, list[int]] = {}
        for i, lit in enumerate(self._literals):
            groups.setdefault(lit[:_HEAD], []).append(i)
        self._heads = list(groups)
        self._members = [tuple(groups[head]) for head in self._heads]
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        # Without flags every match of every head is reported, at its end offset.
        n = len(self._heads)
        self._db.compile(expressions=self._heads, ids=list(range(n)), elements=n, flags=0, literal=True)

    def find(self, data: bytes) -> list[tuple[int, int, int]]:
        hits: list[tuple[int, int]] = []
        self._db.scan(data, match_event_handler=_collect, context=hits)
        out: list[tuple[int, int, int]] = []
        for h, end in hits:
            start = end - len(self._heads[h])
            for i in self._members[h]:
                lit = self._literals[i]
                if data.startswith(lit, start):
                    out.append((i, start, start + len(lit)))
        return out


_HEX = frozenset(b"0123456789abcdefABCDEF")


class _Groups:
    """One Hyperscan database for the hex-only literals (a value's ``xxd -p`` form) and one for the rest,
    reporting indices into the whole list: mixed in one database, the hex heads made 12 of 40 random sets of
    50 secrets compile with 15-22 MiB more peak memory; split, none of the 40 needed more than 5 MiB."""

    def __init__(self, literals: Sequence[bytes]) -> None:
        hexes = [i for i, lit in enumerate(literals) if _HEX.issuperset(lit)]
        hex_set = set(hexes)
        others = [i for i in range(len(literals)) if i not in hex_set]
        self._parts = [(_Hyperscan([literals[i] for i in part]), part) for part in (hexes, others) if part]

    def find(self, data: bytes) -> list[tuple[int, int, int]]:
        found = [[(index[i], start, end) for i, start, end in finder.find(data)] for finder, index in self._parts]
        hits = [part for part in found if part]
        if len(hits) < 2:
            return hits[0] if hits else []
        # In the order one database reports them (by end), so mapping hits back walks the buffer once.
        return sorted(hits[0] + hits[1], key=lambda hit: (hit[2], hit[1]))


def literal_finder(literals: Sequence[bytes], engine: str | None = None) -> LiteralFinder:
    """A finder for ``literals`` (non-empty, distinct) on the fastest engine installed, or on ``engine``."""
    if engine is not None and engine not in ENGINES:
        raise ValueError(f"literal engine {engine!r} is not available here (available: {', '.join(ENGINES)})")
    # The Hyperscan binding passes each literal as a C string: one holding a NUL byte goes to Aho-Corasick.
    if (engine or ENGINES[0]) == "hyperscan" and not any(b"\0" in lit for lit in literals):
        try:
            return _Groups(literals)
        except hyperscan.error:
            if engine == "hyperscan":
                raise
            # e.g. ArchitectureError on a CPU without the instructions it needs: the portable engine does
            # the same search.
    return _AhoCorasick(literals)
