"""Every literal engine reports the same matches: every occurrence of every literal, overlapping ones too."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook_exec.literals import ENGINES, literal_finder

# A tiny alphabet makes literals overlap, nest and repeat their own start; \xc3\xa9 is a two-byte character.
ALPHABET = [b"a", b"b", b"\xc3", b"\xa9", b" ", b"\x1b"]
literal = st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=6).map(b"".join)


def _expected(literals: list[bytes], data: bytes) -> list[tuple[int, int, int]]:
    return sorted(
        (i, s, s + len(lit)) for i, lit in enumerate(literals) for s in range(len(data)) if data.startswith(lit, s)
    )


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(literal, min_size=1, max_size=8, unique=True), st.lists(st.sampled_from(ALPHABET), max_size=80))
def test_engines_find_every_occurrence(literals: list[bytes], pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    for engine in ENGINES:
        assert sorted(literal_finder(literals, engine).find(data)) == _expected(literals, data), engine


def test_a_literal_with_a_nul_byte_is_still_found() -> None:
    literals = [b"ab\x00cd", b"cd"]
    assert sorted(literal_finder(literals).find(b"xab\x00cd")) == [(0, 1, 6), (1, 4, 6)]


def test_unknown_engine() -> None:
    with pytest.raises(ValueError, match="not available"):
        literal_finder([b"abcd"], "re2")
