"""init-env: random strong values for the sample's required keys, mode 600, never overwrites, never prints."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from runbook_exec.ops.envfile import parse_env_file
from runbook_exec.secrets.masking import classify

from conftest import ROOT, run_cli

SAMPLE = ROOT / ".env.sample"


def _init(tmp_path: Path, *extra: str, sample: Path = SAMPLE) -> tuple[int, str]:
    done = run_cli(["init-env", "--sample", str(sample), "--out", ".env.rehearsal", *extra], cwd=tmp_path)
    return done.returncode, done.stdout + done.stderr


def test_writes_every_required_key_with_a_strong_value(tmp_path: Path) -> None:
    code, output = _init(tmp_path)
    assert code == 0, output
    values = parse_env_file(tmp_path / ".env.rehearsal", environ={})
    required = list(parse_env_file(SAMPLE, environ={}))
    assert list(values) == required
    for key, value in values.items():
        assert re.fullmatch(r"[a-z][a-z0-9]{39}", value), key
        assert value not in output
    assert len(set(values.values())) == len(values)
    # Every value is long enough to be masked as a whole, with no warning.
    assert not classify(values).warnings and not classify(values).refused
    for key in required:
        assert key in output  # names are shown


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_mode_600_from_the_start(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        code, _ = _init(tmp_path)
    finally:
        os.umask(old)
    assert code == 0
    assert stat.S_IMODE((tmp_path / ".env.rehearsal").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [".env.rehearsal"]  # no temporary file left


def test_two_runs_differ(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    assert _init(first)[0] == 0 and _init(second)[0] == 0
    assert (first / ".env.rehearsal").read_text() != (second / ".env.rehearsal").read_text()


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / ".env.rehearsal"
    target.write_text("KEEP=me\n", encoding="utf-8")
    code, output = _init(tmp_path)
    assert code == 2 and "--force" in output
    assert target.read_text(encoding="utf-8") == "KEEP=me\n"
    code, _ = _init(tmp_path, "--force")
    assert code == 0 and "KEEP" not in target.read_text(encoding="utf-8")


def test_optional_and_fixed_keys_follow_the_sample_convention(tmp_path: Path) -> None:
    sample = tmp_path / "sample.env"
    sample.write_text(
        "# Convention:\n#   KEY=              required secret\n"
        "API_TOKEN=\nREGION=eu-1\n\n# HTTP_PORT=80\n# HTTP_BIND=\n",
        encoding="utf-8",
    )
    code, _ = _init(tmp_path, sample=sample)
    assert code == 0
    text = (tmp_path / ".env.rehearsal").read_text(encoding="utf-8")
    values = parse_env_file(tmp_path / ".env.rehearsal", environ={})
    assert set(values) == {"API_TOKEN", "REGION"} and values["REGION"] == "eu-1"
    assert "# HTTP_PORT=80\n" in text and "# HTTP_BIND=\n" in text
    assert "# KEY=" not in text


def test_missing_sample_is_exit_2(tmp_path: Path) -> None:
    code, output = _init(tmp_path, sample=tmp_path / "nope.env")
    assert code == 2 and "nope.env" in output
    assert not (tmp_path / ".env.rehearsal").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_unwritable_place_is_bad_input_not_a_traceback(tmp_path: Path) -> None:
    done = run_cli(["init-env", "--sample", str(SAMPLE), "--out", "/proc/o"], cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("/proc/o: cannot write the file in /proc: ")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
