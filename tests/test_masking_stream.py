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


def _stream_with_releases(redactor: Redactor, data: bytes, sizes: list[int], quiet: list[bool]) -> bytes:
    """Stream in chunks, the output going quiet (an idle release) after the chunks ``quiet`` marks."""
    stream = redactor.stream()
    out, pos, i = [], 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        out.append(stream.feed(data[pos : pos + size]))
        if quiet[i % len(quiet)]:
            out.append(stream.release())
        pos += size
        i += 1
    out.append(stream.flush())
    return b"".join(out)


@settings(
    max_examples=3000,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(cases(), st.lists(st.booleans(), min_size=1, max_size=8))
def test_idle_releases_never_reveal_a_value(case: tuple[list[str], bytes, list[int]], quiet: list[bool]) -> None:
    """Released early, in any chunks with pauses anywhere: no value of 8+ characters ever appears in any of
    its forms, and a value cut by a pause shows no more than its first 3 characters."""
    values_, data, sizes = case
    secrets = [Secret(f"K{i}", v) for i, v in enumerate(values_)]
    redactor = Redactor(secrets)
    out = _stream_with_releases(redactor, data, sizes, quiet)
    long_keys = {f"K{i}" for i, v in enumerate(values_) if not whole_word_only(v)}
    assert not long_keys & set(redactor.leaks(out))
    # Without a pause it is the plain stream again.
    assert _stream_with_releases(redactor, data, sizes, [False]) == redactor.mask_bytes(data)


@pytest.mark.parametrize("cut", [1, 3, 4, 6, 10])
def test_a_value_cut_by_a_pause_never_shows(cut: int) -> None:
    value = "".join(random.Random(cut).choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(16))
    redactor = Redactor([Secret("K_TOKEN", value)])
    stream = redactor.stream()
    shown = [stream.feed(b"prompt> " + value[:cut].encode()), stream.release(), stream.release()]
    shown += [stream.feed(value[cut:].encode() + b" tail\n"), stream.flush()]
    out = b"".join(shown)
    head = value[:cut].encode() if cut < 4 else b"***"
    assert out == b"prompt> " + head + b"*** tail\n"[3 if cut >= 4 else 0 :], out
    assert shown[0] + shown[1] == b"prompt> " + head  # released at the pause, not at the end


def test_a_pause_inside_a_short_value_keeps_its_word_edge() -> None:
    redactor = Redactor([Secret("K_PASSWORD", "hunter2")])
    stream = redactor.stream()
    out = stream.feed(b"x hunt") + stream.release() + stream.feed(b"er2") + stream.release()
    out += stream.feed(b" y hunter22\n") + stream.flush()
    assert out == b"x *** y hunter22\n"


def test_a_shape_token_cut_by_a_pause_is_masked_after_it() -> None:
    redactor = Redactor([])
    stream = redactor.stream()
    token = "sk-" + "A1b2C3d4E5f6G7h8I9j0K"
    out = stream.feed(b"key: sk-") + stream.release() + stream.feed(token[3:].encode() + b"\n") + stream.flush()
    assert token[3:].encode() not in out and out.startswith(b"key: sk-***"), out


@pytest.mark.parametrize("start", [b"", b"sk-", b"eyJ", b"Bearer ", b"ghp_", b"-----BEGIN RSA PRIVATE KEY-----\n"])
def test_a_long_line_is_never_held_whole(start: bytes) -> None:
    """A line of megabytes that starts like a token is held back at most a bounded length (time linear in
    the line, memory bounded); a shape match that long is decided as it stands."""
    redactor = Redactor([Secret("K_TOKEN", "abcdefghijkl")])
    stream = redactor.stream()
    chunk = 64 << 10
    out = [stream.feed(start)]
    for _ in range(32):
        out.append(stream.feed(b"x" * chunk))
        assert stream.held <= masking._PATTERN_HOLD + chunk
    out.append(stream.flush())
    assert sum(map(len, out)) > 28 * chunk  # the match so far is one marker, the rest is shown


def test_a_shape_token_masked_at_a_pause_and_continued_after_it_is_one_marker() -> None:
    stream = Redactor([]).stream()
    out = stream.feed(b"Authorization: Bearer abcdefgh12") + stream.release()
    out += stream.feed(b"34567890\nnext\n") + stream.flush()
    assert out == b"Authorization: Bearer ***\nnext\n"
