"""The one options grammar, as data: each line of a case file is an input and its expected parse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runbook_exec.doc.options import cell_options, parse_attr_list, parse_info

from conftest import FIXTURES


def _cases(name: str) -> list[Any]:
    path = FIXTURES / "options" / name
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        given, expected = line.split("\t")
        out.append(pytest.param(given, json.loads(expected), id=f"{name}:{number}"))
    return out


@pytest.mark.parametrize(("info", "expected"), _cases("info-strings.txt"))
def test_parse_info(info: str, expected: dict[str, Any]) -> None:
    parsed = parse_info(info)
    assert parsed.lang == expected["lang"]
    if expected["error"]:
        assert parsed.error is not None and expected["error"] in parsed.error
        return
    assert parsed.error is None
    assert parsed.attrs.id == expected["id"]
    assert list(parsed.attrs.classes) == expected["classes"]
    assert [list(o) for o in parsed.attrs.options] == expected["options"]


@pytest.mark.parametrize(("body", "expected"), _cases("cell-options.txt"))
def test_cell_options(body: str, expected: list[str]) -> None:
    _, problems = cell_options(parse_attr_list(body))
    assert len(problems) == len(expected), problems
    for want, got in zip(expected, problems, strict=True):
        assert want in got


def test_options_values() -> None:
    options, problems = cell_options(parse_attr_list("#a .exec timeout=1.5 retries=6 interval=10 expect=3 when=always"))
    assert problems == []
    assert (options.timeout, options.retries, options.interval, options.expect, options.when) == (
        1.5,
        6,
        10.0,
        3,
        "always",
    )


def test_parse_info_never_raises_on_garbage() -> None:
    for text in ["{", "}", "{{}}", "bash {#", 'bash {"a": [1]}', "bash {=}", "bash {.}", "\x00{#\x00}"]:
        parse_info(text)


def test_fixture_files_exist() -> None:
    assert Path(FIXTURES / "options" / "info-strings.txt").is_file()
