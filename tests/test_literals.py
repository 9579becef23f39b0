"""Every literal engine reports the same matches: every occurrence of every literal, overlapping ones too."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbook_exec.secrets import literals as literals_module
from runbook_exec.secrets.literals import ENGINES, literal_finder

# A tiny alphabet makes literals overlap, nest and repeat their own start; \xc3\xa9 is a two-byte character.
ALPHABET = [b"a", b"b", b"\xc3", b"\xa9", b" ", b"\x1b"]
# Up to 24 bytes: longer than the 16-byte heads some engines search by, sharing heads with one another.
literal = st.lists(st.sampled_from(ALPHABET), min_size=1, max_size=24).map(b"".join)


def _expected(literals: list[bytes], data: bytes) -> list[tuple[int, int, int]]:
    return sorted(
        (i, s, s + len(lit)) for i, lit in enumerate(literals) for s in range(len(data)) if data.startswith(lit, s)
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
    literals = draw(st.lists(literal, min_size=1, max_size=8, unique=True))
    # Text made of the literals themselves, cut pieces of them and single bytes: full and near matches.
    piece = st.one_of(
        st.sampled_from(ALPHABET), st.sampled_from(literals), st.sampled_from(literals).map(lambda b: b[1:])
    )
    return literals, b"".join(draw(st.lists(piece, max_size=30)))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(cases())
def test_engines_find_every_occurrence(case: tuple[list[bytes], bytes]) -> None:
    literals, data = case
    for engine in ENGINES:
        assert sorted(literal_finder(literals, engine).find(data)) == _expected(literals, data), engine


def test_a_literal_with_a_nul_byte_is_still_found() -> None:
    literals = [b"ab\x00cd", b"cd"]
    assert sorted(literal_finder(literals).find(b"xab\x00cd")) == [(0, 1, 6), (1, 4, 6)]


def test_unknown_engine() -> None:
    with pytest.raises(ValueError, match="not available"):
        literal_finder([b"abcd"], "re2")


@pytest.mark.skipif("hyperscan" not in ENGINES, reason="Hyperscan is not installed here")
def test_hyperscan_that_cannot_run_here_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import hyperscan

    def refuse(_literals: object) -> None:
        raise hyperscan.ArchitectureError("this CPU lacks SSSE3")

    monkeypatch.setattr(literals_module, "_Hyperscan", refuse)
    assert literal_finder([b"abcd"]).find(b"xabcd") == [(0, 1, 5)]
    with pytest.raises(hyperscan.error):
        literal_finder([b"abcd"], "hyperscan")
