"""Arbitrary Markdown (and mutated real runbooks) never crash the parser or the planner.

The only exception allowed out of ``document.parse_text`` + ``plan.build`` is ``RunbookError``.
"""

from __future__ import annotations

import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbook_exec.doc import document
from runbook_exec.errors import RunbookError
from runbook_exec.run import plan

from conftest import FIXTURES, ROOT

SEEDS = [p.read_text(encoding="utf-8-sig") for p in sorted((FIXTURES / "engine").glob("*.md"))]
if (ROOT / "ops" / "deploy.md").exists():
    SEEDS.append((ROOT / "ops" / "deploy.md").read_text(encoding="utf-8"))

PIECES = [
    "---\n",
    "runbook:\n",
    "  timeout: 5\n",
    "  vars:\n",
    "    TAG: {required: true, pattern: '^x'}\n",
    "# ",
    "## ",
    "{#id}",
    " {#a .exec}",
    "```",
    "~~~",
    "````",
    "bash",
    " {#c .exec timeout=1}",
    " {#c .exec when=failure retries=2}",
    ' {"name": "x"}',
    " { name=y }",
    "{",
    "}",
    "\n",
    "> ",
    "- ",
    "   ",
    "\t",
    "\r\n",
    "\ufeff",
    "echo hi\n",
    "운영 ",
    "=",
    '"',
    "'",
    "#",
    ".",
    "\x00",
    "\\",
]


def _check(text: str) -> None:
    t0 = time.monotonic()
    book = document.parse_text(text, "fuzz.md")
    try:
        plan.build(book, plan.Selection(), plan.Options(environ={}, assume_yes=True))
    except RunbookError as exc:
        assert str(exc)
    assert time.monotonic() - t0 < 5


FUZZ = settings(
    max_examples=1200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(st.text(max_size=400))
def test_arbitrary_text(text: str) -> None:
    _check(text)


@FUZZ
@given(st.lists(st.sampled_from(PIECES), max_size=60))
def test_markdown_shaped_text(pieces: list[str]) -> None:
    _check("".join(pieces))


@FUZZ
@given(st.sampled_from(SEEDS), st.data())
def test_mutated_runbooks(seed: str, data: st.DataObject) -> None:
    text = seed
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["insert", "delete", "dup"]))
        if op == "insert":
            text = text[:at] + data.draw(st.sampled_from(PIECES)) + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + data.draw(st.integers(0, 20)) :]
        else:
            text = text[:at] + text[max(0, at - 30) : at] + text[at:]
    _check(text)


def test_seeds_present() -> None:
    assert len(SEEDS) >= 10
    assert Path(FIXTURES).is_dir()
