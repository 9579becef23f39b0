"""``runbook-exec check``: faulty runbooks under tests/fixtures/check/ with their exact expected findings.

Each ``NN-name.md`` has a sidecar ``NN-name.expected``: one ``CODE LINE[:COL]`` per expected finding, and
nothing else may be found. ``{{SECRET:kind}}`` in a fixture is replaced by a value generated at test time
(so no real-looking secret is committed), and the value must then never appear in the output.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
from pathlib import Path

import pytest

from runbook_exec.errors import RunbookError
from runbook_exec.lint import check
from runbook_exec.lint.check import check_books, load_runbooks
from runbook_exec.lint.shellcheck import find_shellcheck

FIXTURES = Path(__file__).parent / "fixtures" / "check"
ROOT = Path(__file__).parent.parent
_PLACEHOLDER = re.compile(r"\{\{SECRET:([^}]*)\}\}")


def _secret(kind: str) -> str:
    if kind == "base64":
        return base64.b64encode(secrets.token_bytes(48)).decode()
    if kind == "hex":
        return secrets.token_hex(12)
    if kind == "urlsafe":
        return secrets.token_urlsafe(24).replace("-", "A").replace("_", "b")
    return kind + secrets.token_urlsafe(40)


def _materialise(fixture: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """The fixture itself, or a copy with its secret placeholders filled in, and the secrets used."""
    text = fixture.read_text(encoding="utf-8")
    if "{{SECRET:" not in text:
        return fixture, []
    made: list[str] = []

    def fill(match: re.Match[str]) -> str:
        made.append(_secret(match.group(1)))
        return made[-1]

    copy = tmp_path / fixture.name
    copy.write_text(_PLACEHOLDER.sub(fill, text), encoding="utf-8")
    return copy, made


def _expected(fixture: Path) -> list[tuple[str, int, int | None]]:
    out = []
    for raw in fixture.with_suffix(".expected").read_text(encoding="utf-8").splitlines():
        if raw.strip() and not raw.startswith("#"):
            code, where = raw.split()
            line, _, col = where.partition(":")
            out.append((code, int(line), int(col) if col else None))
    return out


CASES = sorted(FIXTURES.glob("*.md"))


def test_enough_faulty_runbooks() -> None:
    assert len(CASES) >= 25
    assert all(c.with_suffix(".expected").is_file() for c in CASES)


@pytest.mark.parametrize("fixture", CASES, ids=[c.stem for c in CASES])
def test_fixture_findings(fixture: Path, tmp_path: Path) -> None:
    expected = _expected(fixture)
    if any(code.startswith("SC") for code, _, _ in expected) and find_shellcheck() is None and not os.environ.get("CI"):
        pytest.skip("shellcheck not installed")
    path, made = _materialise(fixture, tmp_path)
    findings, _ = check_books(load_runbooks([str(path)]))
    got = sorted((f.code, f.line, f.col) for f in findings)
    want_pairs = sorted((code, line) for code, line, _ in expected)
    assert sorted((c, ln) for c, ln, _ in got) == want_pairs, "\n".join(str(f) for f in findings)
    for code, line, col in expected:
        if col is not None:
            assert (code, line, col) in got, f"{code} expected at {line}:{col}; got {got}"
    for value in made:
        assert all(value not in f.message for f in findings)


@pytest.mark.parametrize("fmt", ["text", "json", "github", "gitlab"])
def test_secret_masked_in_every_format(fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = "sk-proj-" + secrets.token_urlsafe(48)
    body = base64.b64encode(secrets.token_bytes(64)).decode()
    runbook = tmp_path / "leak.md"
    runbook.write_text(
        f"# Leak\n\nOPENAI_API_KEY={key}\n\n```text\n-----BEGIN RSA PRIVATE KEY-----\n{body}\n"
        "-----END RSA PRIVATE KEY-----\n```\n",
        encoding="utf-8",
    )
    assert check.main([str(runbook), "--format", fmt]) == 1
    out = capsys.readouterr()
    assert key not in out.out + out.err and key[12:30] not in out.out + out.err
    assert body[:20] not in out.out + out.err
    assert "sk-proj-***" in out.out and "RX403" in out.out


def test_clean_runbook_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runbook = tmp_path / "clean.md"
    runbook.write_text(
        '# Clean\n\n## Steps {#steps}\n\n```bash {#hello .exec}\necho "hello $HOME"\n```\n', encoding="utf-8"
    )
    assert check.main([str(runbook)]) == 0
    assert capsys.readouterr().out == ""


def test_missing_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(RunbookError) as caught:
        check.main([str(tmp_path / "nope.md"), str(FIXTURES / "01-unknown-key.md")])
    assert caught.value.exit_code == 2
    assert "nope.md: no such file" in str(caught.value)


def test_read_error_keeps_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.md"
    bad.write_bytes(b"# Title\n\nok\n\xff\xfe\n")
    with pytest.raises(RunbookError) as caught:
        check.main([str(bad)])
    assert caught.value.exit_code == 2
    assert str(caught.value) == f"runbook-exec check: {bad}:4:1: not UTF-8 text (byte 0xff)"
    [problem] = caught.value.problems
    assert (problem.path, problem.line) == (str(bad), 4)


def test_cli_dispatch_exit_codes(tmp_path: Path) -> None:
    from runbook_exec import cli

    assert cli.main(["check", str(FIXTURES / "01-unknown-key.md")]) == 1
    assert cli.main(["check", str(tmp_path / "missing.md")]) == 2
    assert cli.main(["check", "--format", "yaml", str(FIXTURES / "01-unknown-key.md")]) == 2


def test_fail_on_error_lets_warnings_pass(capsys: pytest.CaptureFixture[str]) -> None:
    warning_only = str(FIXTURES / "07-exec-without-id.md")
    assert check.main([warning_only]) == 1
    assert check.main([warning_only, "--fail-on", "error"]) == 0
    assert check.main([warning_only, "--disable", "RX110"]) == 0
    capsys.readouterr()


def test_json_and_github_formats(capsys: pytest.CaptureFixture[str]) -> None:
    fixture = str(FIXTURES / "19-broken-anchor.md")
    check.main([fixture, "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert data["findings"][0] == {
        "path": fixture,
        "line": 9,
        "col": 39,
        "code": "RX501",
        "severity": "error",
        "message": "link to #rolout: no such anchor (did you mean #rollout?)",
    }
    check.main([fixture, "--format", "github"])
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"::error file={fixture},line=9,col=39,title=RX501::RX501 link to #rolout")
    check.main([fixture, "--format", "gitlab"])
    report = json.loads(capsys.readouterr().out)
    assert report[0]["location"] == {"path": fixture, "lines": {"begin": 9}}


def test_shellcheck_absent_is_a_notice_outside_ci(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(check, "find_shellcheck", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("RUNBOOK_CHECK_REQUIRE_SHELLCHECK", raising=False)
    fixture = str(FIXTURES / "25-shellcheck-quote.md")
    assert check.main([fixture]) == 0
    assert "shellcheck not found" in capsys.readouterr().err
    monkeypatch.setenv("CI", "true")
    assert check.main([fixture]) == 1
    assert "RX701" in capsys.readouterr().out
    monkeypatch.delenv("CI")
    monkeypatch.setenv("RUNBOOK_CHECK_REQUIRE_SHELLCHECK", "1")
    assert check.main([fixture]) == 1
    capsys.readouterr()


def test_one_shellcheck_process_for_many_runbooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if find_shellcheck() is None:
        pytest.skip("shellcheck not installed")
    import subprocess

    calls: list[list[str]] = []
    real = subprocess.run

    def counting(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        return real(command, **kwargs)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(subprocess, "run", counting)
    paths = [str(p) for p in sorted(FIXTURES.glob("2[457]-*.md"))]
    check_books(load_runbooks(paths))
    assert len(calls) == 1


def test_env_sample_keys_are_known(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env.sample").write_text("POSTGRES_PASSWORD=\nHTTP_PORT=\n", encoding="utf-8")
    runbook = tmp_path / "r.md"
    runbook.write_text(
        "---\nrunbook:\n  env_sample: .env.sample\n---\n# R\n\n## S {#s}\n\n```bash {#c .exec}\n"
        'echo "$HTTP_PORT $POSTGRES_PASSWORD $MISSING"\n```\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    findings, _ = check_books(load_runbooks(["r.md"]), skip=["shellcheck"])
    assert [(f.code, f.message.split()[0]) for f in findings] == [("RX301", "$MISSING")]


def _repo_with_runbook(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "ops").mkdir()
    runbook = repo / "ops" / "r.md"
    runbook.write_text(
        "---\nrunbook:\n  env_sample: .env.sample\n---\n# R\n\n## S {#s}\n\n```bash {#c .exec}\n"
        'echo "$HTTP_PORT"\n```\n',
        encoding="utf-8",
    )
    return runbook


def test_env_sample_is_found_as_the_runner_finds_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative to the directory runbook-exec runs in, the repository root, also when check runs elsewhere."""
    runbook = _repo_with_runbook(tmp_path)
    (runbook.parents[1] / ".env.sample").write_text("HTTP_PORT=\n", encoding="utf-8")
    for cwd in (runbook.parents[1], runbook.parent, tmp_path):
        monkeypatch.chdir(cwd)
        findings, _ = check_books(load_runbooks([str(runbook)]), skip=["shellcheck"])
        assert findings == [], cwd


def test_env_sample_next_to_the_runbook_is_not_the_runners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runbook = _repo_with_runbook(tmp_path)
    (runbook.parent / ".env.sample").write_text("HTTP_PORT=\n", encoding="utf-8")
    monkeypatch.chdir(runbook.parents[1])
    findings, _ = check_books(load_runbooks(["ops/r.md"]), skip=["shellcheck"])
    assert [(f.code, f.line) for f in findings] == [("RX302", 3), ("RX301", 10)]
    assert "relative to the directory runbook-exec runs in" in findings[0].message


def _project_docs() -> list[str]:
    found = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "ops").glob("*.md"))
    found += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))
    return found


@pytest.mark.skipif(not _project_docs(), reason="no runbooks or docs yet")
def test_project_runbooks_and_docs_are_clean(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """CI gate: the project's own runbooks and docs have no finding at all (ShellCheck required)."""
    if find_shellcheck() is None and shutil.which("shellcheck") is None and not os.environ.get("CI"):
        pytest.skip("shellcheck not installed")
    monkeypatch.chdir(ROOT)
    status = check.main([*_project_docs(), "--require-shellcheck"])
    out = capsys.readouterr()
    assert status == 0, out.out + out.err


def test_html_comment_switches_codes_off(tmp_path: Path) -> None:
    runbook = tmp_path / "s.md"
    runbook.write_text(
        "# S\n\n<!-- runbook-exec check: disable-next-line RX602 -->\ncafÃ© here\n\ncafÃ© there\n\n"
        "<!-- runbook-exec check: disable RX11 -->\n## Steps\n\n```bash {.exec}\necho hi\n```\n",
        encoding="utf-8",
    )
    findings, _ = check_books(load_runbooks([str(runbook)]), skip=["shellcheck"])
    assert [(f.code, f.line) for f in findings] == [("RX602", 6)]


def test_a_key_defined_twice_in_an_env_file_is_reported_by_name_and_line_never_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runbook = _repo_with_runbook(tmp_path)
    root = runbook.parents[1]
    (root / ".env.sample").write_text("HTTP_PORT=\nDB_PASSWORD=\n", encoding="utf-8")
    old, new = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    (root / ".env.prod").write_text(f"DB_PASSWORD={old}\nHTTP_PORT=80\n# rotated\nDB_PASSWORD={new}\n")
    runbook.write_text(
        runbook.read_text().replace("env_sample: .env.sample\n", "env_sample: .env.sample\n  env_file: .env.prod\n")
    )
    monkeypatch.chdir(root)
    findings, _ = check_books(load_runbooks(["ops/r.md"]), skip=["shellcheck"])
    assert [(f.path, f.line, f.code, f.severity) for f in findings] == [(".env.prod", 4, "RX303", "warning")]
    assert "DB_PASSWORD" in findings[0].message and "line 1" in findings[0].message
    assert old not in str(findings[0]) and new not in str(findings[0])
    (root / ".env.prod").unlink()  # never committed: nothing to check where it is absent
    assert check_books(load_runbooks(["ops/r.md"]), skip=["shellcheck"])[0] == []
