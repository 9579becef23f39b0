"""Differential property: streaming a text in any chunks gives exactly the one-shot result."""

from __future__ import annotations

import base64
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook_exec.secrets import masking
from runbook_exec.secrets.literals import ENGINES
from runbook_exec.secrets.masking import Redactor, Secret, whole_word_only

# A small alphabet makes values overlap, repeat their own start (``aab``) and nest inside each other.
VALUE_ALPHABET = "ab$'\"\\ é-_/"
NOISE = [
    "a",
    "b",
    "x",
    " ",
    "\n",
    "\r\n",
    "\t",
    "'",
    "\\",
    "é",
    "-",
    "=",
    "_",
    ":",
    "@",
    "/",
    "\x1b[01;31m",
    "\x1b[m",
    "\x1b[K",
    "\x1b",
    "\x1b[",
    "\x1b(B",
    "\x1b[1 q",
    "\x1b[>4;1m",
    "\x1b]0;title\x07",
    "\x1b]8;;http://u:pw@h/\x1b\\",
    "\x1b]0;",
    "\x1b]",
    "\x1b\\",
    "\x07",
    "\x08",
    "\x7f",
    "\x00",
    "sk-",
    "lsv2_pt_",
    "eyJ",
    ".",
    "Bearer ",
    "bearer\t",
    "://",
    "://u:",
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----END RSA PRIVATE KEY-----",
    "MIIEow+/",
    "0123456789abcdefghij",
    "ghp_",
    "glpat-",
    "xoxb-",
    "AKIA",
    "AIza",
    "sk_live_",
    "0123456789ABCDEFGHIJ",
]

values = st.text(VALUE_ALPHABET, min_size=4, max_size=14).filter(lambda v: v.strip() == v and v.strip())


def _forms_of(value: str) -> list[str]:
    raw = value.encode()
    return [
        value,
        json.dumps(value)[1:-1],
        value.replace("'", "'\\''"),
        base64.b64encode(raw).decode(),
        base64.b64encode(b"u:" + raw).decode(),
        value[: len(value) // 2] + "\x1b[01;31m" + value[len(value) // 2 :],
        value[: len(value) // 2] + "\r\n" + value[len(value) // 2 :],
        value[: len(value) // 2] + "\x1b]0;t\x07" + value[len(value) // 2 :],
        value[: len(value) // 2] + "\x1b]2;t\x1b\\" + value[len(value) // 2 :],
        value[: len(value) // 2] + "\x07\x08\x7f" + value[len(value) // 2 :],
        "\x1b]8;;http://h/?k=" + value + "\x1b\\",
        value[:-1],
    ]


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[str], bytes, list[int]]:
    secrets = draw(st.lists(values, min_size=1, max_size=3, unique=True))
    pieces = st.one_of(
        st.sampled_from(NOISE),
        st.sampled_from(secrets).flatmap(lambda v: st.sampled_from(_forms_of(v))),
    )
    text = "".join(draw(st.lists(pieces, max_size=40)))
    data = text.encode()
    chunks = draw(st.lists(st.integers(1, 24), min_size=1, max_size=len(data) + 1))
    return secrets, data, chunks


def _stream(redactor: Redactor, data: bytes, sizes: list[int]) -> bytes:
    stream = redactor.stream()
    out, pos, i = [], 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        out.append(stream.feed(data[pos : pos + size]))
        pos += size
        i += 1
    out.append(stream.flush())
    return b"".join(out)


@settings(
    max_examples=10_000,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(cases())
def test_streamed_equals_one_shot(case: tuple[list[str], bytes, list[int]]) -> None:
    values_, data, sizes = case
    secrets = [Secret(f"K{i}", v) for i, v in enumerate(values_)]
    redactor = Redactor(secrets)
    one_shot = redactor.mask_bytes(data)
    for engine in ENGINES[1:]:  # every literal engine finds the same matches
        assert Redactor(secrets, engine=engine).mask_bytes(data) == one_shot
    assert _stream(redactor, data, sizes) == one_shot
    assert _stream(redactor, data, [1]) == one_shot
    long_keys = {f"K{i}" for i, v in enumerate(values_) if not whole_word_only(v)}
    assert not long_keys & set(redactor.leaks(one_shot))


def _large_text(rng: random.Random, values_: list[str], size: int) -> bytes:
    pieces = NOISE + [f for v in values_ for f in _forms_of(v)]
    pieces += ["\x1b]0;" + "t" * 600 + "\x07", "\x1b]2;" + "w " * 200 + "\x1b\\", "word " * 30 + "\n"]
    out: list[str] = []
    total = 0
    while total < size:
        piece = rng.choice(pieces)
        out.append(piece)
        total += len(piece)
    return "".join(out).encode()


@pytest.mark.parametrize("seed", range(12))
def test_large_buffers_are_viewed_block_by_block_exactly(seed: int) -> None:
    """Buffers longer than two blocks are normalised and mapped back block by block: the same view and
    original positions as one whole view, and the same masked output as streaming it in 4 KiB chunks."""
    rng = random.Random(seed)
    values_ = ["".join(rng.choice(VALUE_ALPHABET.strip()) for _ in range(rng.randint(4, 14))) for _ in range(3)]
    data = _large_text(rng, values_, rng.randint(3, 9) * masking._BLOCK)
    blocks, whole = masking._Blocks(data), masking._View(data)
    assert blocks.norm == whole.norm
    for index in sorted(rng.sample(range(len(whole.norm)), 300)):
        assert blocks.orig(index) == whole.orig(index)
    redactor = Redactor([Secret(f"K{i}", v) for i, v in enumerate(values_)])
    assert redactor.mask_bytes(data) == _stream(redactor, data, [4096])
