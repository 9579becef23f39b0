"""ops/deploy.md: the runbook parses cleanly, has the sections the team targets, and runs in the right order."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from runbook_exec.doc.document import Runbook, parse
from runbook_exec.run.plan import Options, Selection, build

from conftest import ROOT, run_cli

DEPLOY = ROOT / "ops" / "deploy.md"
SECTIONS = [
    "package",
    "secrets",
    "tag",
    "preflight",
    "rehearsal",
    "healthcheck",
    "smoke",
    "release-record",
    "rollback",
    "incident",
    "checklists",
]
COMPOSE = 'docker compose --env-file "$RUNBOOK_ENV_FILE" -f docker-compose.prod.yml'


@pytest.fixture(scope="module")
def book() -> Runbook:
    return parse(str(DEPLOY))


def _plan_ids(book: Runbook, section: str) -> list[str]:
    # Planned without an env file (none exists here): the order does not depend on it.
    bare = replace(book, settings=replace(book.settings, env_file=None, env_sample=None))
    plan = build(
        bare,
        Selection(sections=(section,)),
        Options(env_file=None, variables={"TAG": "2026.01.14"}, no_release_log=True, assume_yes=True, environ={}),
    )
    return [c.label for c in plan.cells]


def test_parses_without_problems(book: Runbook) -> None:
    assert book.problems == ()


def test_front_matter(book: Runbook) -> None:
    s = book.settings
    assert (s.shell, s.env_file, s.env_sample) == ("bash", ".env.prod", ".env.sample")
    assert (s.release_log, s.release_template) == ("ops/release.log", "ops/release.log.template")
    assert (ROOT / s.release_template).is_file()
    tag, prev = {v.name: v for v in s.vars}["TAG"], {v.name: v for v in s.vars}["TAG_PREV"]
    assert tag.required and tag.pattern
    assert re.search(tag.pattern, "2026.01.14") and re.search(tag.pattern, "a1b2c3d")
    assert not re.search(tag.pattern, "2026.1.14") and not re.search(tag.pattern, "latest")
    assert prev.source == "release_log"


def test_targetable_sections_have_explicit_ascii_ids(book: Runbook) -> None:
    explicit = {s.id for s in book.sections if s.explicit}
    assert set(SECTIONS) <= explicit
    for section in book.sections:
        assert section.explicit, f"heading without an explicit id: {section.title}"
        assert re.fullmatch(r"[a-z0-9-]+", section.id)


def test_every_exec_cell_has_an_id_and_a_timeout(book: Runbook) -> None:
    for cell in book.executable_cells():
        assert cell.id, f"line {cell.line}"
        assert cell.options.timeout, cell.id


def test_powershell_and_yaml_fences_are_examples(book: Runbook) -> None:
    langs = {c.lang for c in book.cells if not c.executable}
    assert {"powershell", "yaml"} <= langs
    assert not [c for c in book.cells if c.lang in ("powershell", "yaml") and c.executable]
    assert sum(c.lang == "powershell" for c in book.cells) >= 5


def test_rehearsal_runs_in_order(book: Runbook) -> None:
    ids = _plan_ids(book, "rehearsal")
    order = ["rehearsal-preflight", "compose-up", "wait-healthy", "smoke-front", "smoke-openapi", "smoke-auth"]
    positions = [ids.index(i) for i in order]
    assert positions == sorted(positions)
    assert ids[0] == "rehearsal-preflight"
    cells = {c.id: c for c in book.cells if c.id}
    assert 'runbook-exec preflight --env-file "$RUNBOOK_ENV_FILE" --tag "$TAG"' in cells["rehearsal-preflight"].source
    assert "up -d --build" in cells["compose-up"].source
    assert "/api/v1/collections" in cells["smoke-auth"].source and "app.mint_token" in cells["smoke-auth"].source
    # Every success-path cell comes before the failure collectors, which come last.
    whens = [cells[i].options.when for i in ids]
    assert whens == sorted(whens, key=lambda w: w == "failure")
    tail = [i for i in ids if cells[i].options.when == "failure"]
    assert {"ps -a", "logs --tail=200"} <= {cells[i].source.split(COMPOSE)[-1].strip() for i in tail}


def test_waits_match_the_compose_healthcheck(book: Runbook) -> None:
    for cid in ("wait-healthy", "rollback-wait-healthy"):
        [cell] = [c for c in book.cells if c.id == cid]
        assert (cell.options.retries, cell.options.interval) == (6, 10)


def test_rollback_checks_tag_prev_first_and_marks_down_dangerous(book: Runbook) -> None:
    ids = _plan_ids(book, "rollback")
    cells = {c.id: c for c in book.cells if c.id}
    assert ids[0] == "rollback-check"
    assert "TAG_PREV" in cells["rollback-check"].source and "docker image inspect" in cells["rollback-check"].source
    downs = [c for c in book.executable_cells() if re.search(r"\bdown\b", c.source)]
    assert downs and all(c.danger for c in downs)
    assert 'TAG="$TAG_PREV"' in cells["rollback-up"].source
    assert "rollback" in cells["rollback-up"].options.tags and "deploy" in cells["compose-up"].options.tags


def test_compose_cells_use_the_env_file_in_use(book: Runbook) -> None:
    for cell in book.executable_cells():
        for line in cell.source.splitlines():
            if "docker compose" in line:
                assert COMPOSE in line, f"{cell.id}: {line}"


def test_cli_list_and_dry_run() -> None:
    listed = run_cli([str(DEPLOY), "--list"], cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    for sid in SECTIONS:
        assert f"#{sid} " in listed.stdout
    dry = run_cli([str(DEPLOY), "--dry-run", "--section", "rehearsal", "--var", "TAG=2026.01.14"], cwd=ROOT)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.index("rehearsal-preflight") < dry.stdout.index("compose-up") < dry.stdout.index("smoke-auth")
    missing = run_cli([str(DEPLOY), "--dry-run", "--section", "rehearsal"], cwd=ROOT, env={"TAG": ""})
    assert missing.returncode == 2 and "TAG" in missing.stderr


def test_check_is_clean() -> None:
    done = run_cli(["check", str(DEPLOY)], cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
