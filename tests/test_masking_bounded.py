"""Shape patterns are bounded, and streaming them in any chunks gives exactly the one-shot result.

A PEM ``BEGIN`` line masks only what can be a key (its block up to ``END``, or without one the lines shaped
like a key body); the texts here mix labels, headers, base64 lines of every length, words and separators.
"""

from __future__ import annotations

import base64
import random
import secrets

import pytest

from runbook_exec.secrets.masking import Redactor, Secret

PIECES = [
    "-----BEGIN PRIVATE KEY-----",
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----END PRIVATE KEY-----",
    "-----END RSA PRIVATE KEY-----",
    "Proc-Type: 4,ENCRYPTED",
    "DEK-Info: AES-128-CBC,AB12",
    "",
    "done",
    "ok!",
    "AB==",
    "hello world",
    "-----BEGIN ",
    "-----END",
    "//u:pw@h",
    "sk-",
]


def _text(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randint(1, 12)):
        pick = rng.random()
        if pick < 0.4:
            parts.append(rng.choice(PIECES))
        elif pick < 0.8:
            n = rng.choice([4, 8, 16, 20, 39, 40, 44, 64, 76, 80])
            parts.append(base64.b64encode(secrets.token_bytes(n))[:n].decode())
        else:
            parts.append("".join(rng.choice("ab =/+\r\t-:,") for _ in range(rng.randint(1, 8))))
    return rng.choice(["\n", "\r\n", " ", "\n\n"]).join(parts).encode()


@pytest.mark.parametrize("seed", range(4))
def test_streamed_equals_one_shot_around_pem_blocks(seed: int) -> None:
    rng = random.Random(seed)
    value = "multi-line-" + secrets.token_urlsafe(10) + "\nsecond-line-" + secrets.token_urlsafe(8)
    redactor = Redactor([Secret("K", value)])
    for _ in range(400):
        data = _text(rng)
        one_shot = redactor.mask_bytes(data)
        stream = redactor.stream()
        out, pos = b"", 0
        while pos < len(data):
            size = rng.randint(1, 50)
            out += stream.feed(data[pos : pos + size])
            pos += size
        assert out + stream.flush() == one_shot, data


def test_a_begin_line_without_end_never_swallows_the_rest() -> None:
    body = base64.b64encode(secrets.token_bytes(300)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    after = "".join(f"step {n}: done\n" for n in range(2000))
    text = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(lines) + "\n" + after
    assert Redactor([]).mask(text) == "***\n" + after


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("sk-" + "a" * 400, "***" + "a" * (400 - 255)),  # longer than any real key: the rest is not one
        ("Authorization: Bearer " + "t" * 40, "Authorization: Bearer ***"),
    ],
)
def test_token_shapes_have_a_maximum_length(text: str, masked: str) -> None:
    assert Redactor([]).mask(text) == masked
