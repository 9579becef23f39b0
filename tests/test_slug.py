"""One slug function: it matches the site's (pymdownx) slugs and Python-Markdown's de-duplication."""

from __future__ import annotations

import pytest

from runbook_exec.doc.document import parse_text
from runbook_exec.doc.slug import slugify, unique

HEADINGS = [
    "6. 운영 1회 리허설 런북",
    "4.1 Preflight (실패를 먼저 만들기)",
    "Build → Up",
    "docker-compose.prod.yml 운영 원칙",
    "Smoke Test (5분 컷)",
    "  Mixed CASE and   spaces ",
    "Ünïcödé — dash",
    "기록(release.log)",
]


@pytest.mark.parametrize("text", HEADINGS)
def test_slug_matches_pymdownx(text: str) -> None:
    pymdownx_slugs = pytest.importorskip("pymdownx.slugs")
    expected = pymdownx_slugs.slugify(case="lower")(text, "-")
    assert slugify(text) == expected


def test_korean_slug_keeps_hangul() -> None:
    assert slugify("6. 운영 1회 리허설 런북") == "6-운영-1회-리허설-런북"


def test_unique_like_toc() -> None:
    taken: set[str] = set()
    assert [unique("a", taken) for _ in range(3)] == ["a", "a_1", "a_2"]


def test_document_sections_use_slug_and_explicit_ids() -> None:
    book = parse_text("# 운영 배포\n\n## 롤백 {#rollback}\n\n## 운영 배포\n\n## Same\n\n## Same\n")
    assert [s.id for s in book.sections] == ["운영-배포", "rollback", "운영-배포_1", "same", "same_1"]
