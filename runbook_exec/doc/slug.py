"""The one slug function, shared by the runner and the site.

``mkdocs.yml`` points the ``toc`` extension at :func:`slugify`, and :mod:`runbook_exec.doc.document` uses it for
section ids, so a heading's site anchor always equals its ``--section`` id. Unicode is kept (Korean headings
get Korean slugs), case is lowered, punctuation dropped, spaces become the separator; this is the same
output as ``pymdownx.slugs.slugify(case="lower")``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import MutableSet

_TAGS = re.compile(r"</?[^>]*>")
_INVALID = re.compile(r"[^\w\- ]")
_COUNTED = re.compile(r"^(.*)_([0-9]+)$")


def slugify(value: str, separator: str = "-") -> str:
    """Return the anchor id of a heading text (signature of Python-Markdown's ``toc.slugify``)."""
    text = _TAGS.sub("", unicodedata.normalize("NFC", value)).strip().lower()
    return _INVALID.sub("", text).replace(" ", separator)


def unique(slug: str, taken: MutableSet[str]) -> str:
    """Make ``slug`` unique among ``taken`` the way Python-Markdown's toc does (``x``, ``x_1``, ``x_2``)."""
    if slug in taken or not slug:
        match = _COUNTED.match(slug)
        base, count = (match.group(1), int(match.group(2))) if match else (slug, 0)
        count += 1
        while f"{base}_{count}" in taken:
            count += 1
        slug = f"{base}_{count}"
    taken.add(slug)
    return slug
