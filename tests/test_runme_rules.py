"""Runme's reading rules as data: generated names, attributes, front matter, placeholders (case files in
``tests/fixtures/runme-rules/``, written from Runme's documented behaviour and its public fixtures)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runbook_exec.doc import prompt_env, runme
from runbook_exec.doc.document import parse_text

from conftest import FIXTURES


def _cases(name: str) -> list[Any]:
    path = FIXTURES / "runme-rules" / name
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("#") or not line:
            continue
        given, expected = line.split("\t")
        out.append(pytest.param(given.replace("\\n", "\n"), expected, id=f"{name}:{number}"))
    return out


@pytest.mark.parametrize(("source", "name"), _cases("names.txt"))
def test_generated_name(source: str, name: str) -> None:
    assert runme.generated_name(source + "\n" if source else "") == name


def test_names_are_numbered_across_every_code_block_explicit_ones_included() -> None:
    text = "```sh\necho hi\n```\n\n```yaml\necho hi\n```\n\n```sh {name=echo-hi}\necho x\n```\n\n    echo hi\n"
    book = parse_text(text, "t.md", runme_mode=True)
    assert [c.id for c in book.cells] == ["echo-hi", "echo-hi-2", "echo-hi-3", "echo-hi-4"]
    assert [c.name_generated for c in book.cells] == [True, True, False, True]
    assert [c.executable for c in book.cells] == [True, False, True, True]


@pytest.mark.parametrize(("info", "expected"), _cases("attributes.txt"))
def test_attributes(info: str, expected: str) -> None:
    want = json.loads(expected)
    found = runme.parse_attributes(info)
    assert runme.language(info) == want["lang"]
    assert found.format == want["format"]
    assert [list(item) for item in found.items] == want["items"]


@pytest.mark.parametrize(("start", "expected"), _cases("front-matter.txt"))
def test_front_matter(start: str, expected: str) -> None:
    want = json.loads(expected)
    found = runme.split_front_matter(start)
    if want is None:
        assert found is None
        return
    assert found is not None
    if "error" in want:
        assert found.error is not None and want["error"] in found.error
        return
    assert (found.format, found.data, found.last_line) == (want["format"], want["data"], want["last"])


def test_prompts_are_stripped_only_as_prompts() -> None:
    assert runme.strip_prompts("$ echo a\n$\techo b\n$HOME/bin/tool\n  $ indented\n$\n") == (
        "echo a\necho b\n$HOME/bin/tool\n  $ indented\n\n"
    )


def test_placeholders_are_top_level_plain_exports() -> None:
    text = "\n".join(
        [
            'export A="a placeholder"',
            "export B=message",
            "export C='single quoted'",
            'export D="$HOME/x"',
            "export E=$(date)",
            "if true; then",
            '  export F="inside a block"',
            "fi",
            "cat <<EOF",
            'export G="in a heredoc"',
            "EOF",
            'export H=""',
        ]
    )
    found = prompt_env.find(text)
    assert [(p.name, p.value, p.line) for p in found] == [
        ("A", "a placeholder", 0),
        ("B", "message", 1),
        ("C", "single quoted", 2),
        ("H", "", 11),
    ]
    assert prompt_env.rewrite(text, {0: ("A", "it's set")}).split("\n")[0] == "export A='it'\"'\"'s set'"


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        (None, "auto"),
        ("", "auto"),
        ("auto", "auto"),
        ("yes", "always"),
        ("1", "always"),
        ("no", "never"),
        ("0", "never"),
    ],
)
def test_prompt_env_modes(value: str | None, mode: str) -> None:
    assert prompt_env.mode(value) == mode
