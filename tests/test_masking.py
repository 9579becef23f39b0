"""Masking cases from tests/fixtures/masking/cases.txt, classification rules and the value helpers."""

from __future__ import annotations

import ast
import base64
import json
import os
import secrets
import string
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from runbook_exec.lint.secrets import check_secrets, secret_key
from runbook_exec.records import release_log, report
from runbook_exec.secrets.literals import ENGINES
from runbook_exec.secrets.masking import Redactor, Secret, classify, strip_controls
from runbook_exec.secrets.names import is_secret_name

CASES = Path(__file__).parent / "fixtures" / "masking" / "cases.txt"


@dataclass(frozen=True)
class Case:
    name: str
    line: int
    secrets: tuple[Secret, ...]
    input: str
    output: str


def read_cases(path: Path) -> list[Case]:
    """``### name`` starts a case; ``secret: KEY = literal``, ``input: literal``, ``output: literal``."""
    cases: list[Case] = []
    fields: dict[str, object] = {}

    def close() -> None:
        if fields:
            cases.append(Case(secrets=tuple(fields.pop("secrets", [])), **fields))  # type: ignore[arg-type]
            fields.clear()

    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("### "):
            close()
            fields.update(name=line[4:], line=number, secrets=[])
        elif line.startswith("secret: "):
            key, _, literal = line[8:].partition(" = ")
            fields["secrets"].append(Secret(key, ast.literal_eval(literal)))  # type: ignore[attr-defined]
        elif line.startswith(("input: ", "output: ")):
            head, _, literal = line.partition(": ")
            fields[head] = ast.literal_eval(literal)
    close()
    return cases


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", read_cases(CASES), ids=lambda c: f"{c.line}-{c.name}")
def test_case(case: Case, engine: str) -> None:
    redactor = Redactor(case.secrets, engine=engine)
    assert redactor.mask(case.input) == case.output
    data = case.input.encode()
    stream = redactor.stream()
    assert b"".join(stream.feed(data[i : i + 1]) for i in range(len(data))) + stream.flush() == case.output.encode()
    assert redactor.leaks(case.output.encode()) == []
    assert redactor.leaks(strip_controls(case.output.encode())) == []  # what every sink does afterwards


@pytest.mark.parametrize(
    "between", ["\x1b]0;t\x07", "\x1b]2;t\x1b\\", "\x1b(B", "\x1b[>4;1m", "\x1b[31m", "\x07", "\x08", "\x7f", "\x00"]
)
def test_sinks_never_join_a_masked_value(between: str) -> None:
    """The transcript, JUnit and release.log drop what the masker skips, never more."""
    value = secrets.token_urlsafe(18)
    redactor = Redactor([Secret("K", value)])
    masked = redactor.mask(f"v={value[:9]}{between}{value[9:]} end\n")
    sinks = {
        "transcript": report.plain(masked.encode()).decode(),
        "junit": report._xml_text(masked),
        "release.log": release_log.plain(masked),
    }
    assert sinks == {"transcript": "v=*** end\n", "junit": "v=*** end\n", "release.log": "v=*** end"}


@pytest.mark.parametrize(
    "script",
    [
        'printf "%q\\n" "$K"',
        "declare -p K",
        '{ set -x; : "$K"; } 2>&1',
        'echo "$K" | base64',
        'printf "user:%s" "$K" | base64',
        'printf "%s" "$K" | base64 -w 20',
        "python3 -c \"import os, json; print(json.dumps(os.environ['K']))\"",
        "python3 -c \"import os; print(repr(os.environ['K']))\"",
        "python3 -c \"import os, urllib.parse as u; print(u.quote(os.environ['K'], safe=''))\"",
        'echo "$K" | grep --color=always -o ".*"',
        "env",
    ],
)
def test_real_bash_forms(script: str) -> None:
    """Generated values with every awkward character, printed by the real tools."""
    value = secrets.token_urlsafe(12) + "'$\"\\ `!&é" + secrets.token_hex(6)
    out = subprocess.run(
        ["bash", "-c", script + " 2>&1"],
        env={"K": value, "PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
        check=False,
        capture_output=True,
    ).stdout
    redactor = Redactor([Secret("K", value)])
    masked = redactor.mask_bytes(out)
    assert value.encode() not in masked
    assert redactor.leaks(masked) == []
    assert b"***" in masked


def _alnum(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


# Token formats recognised by shape alone: (public prefix, generated token). Generated here so no
# real-looking token is ever committed.
TOKEN_FORMATS = [
    ("ghp_", lambda: "ghp_" + _alnum(36)),
    ("gho_", lambda: "gho_" + _alnum(36)),
    ("ghs_", lambda: "ghs_" + _alnum(36)),
    ("github_pat_", lambda: "github_pat_" + _alnum(22) + "_" + _alnum(59)),
    ("glpat-", lambda: "glpat-" + _alnum(20)),
    ("xoxb-", lambda: "xoxb-" + _alnum(11, string.digits) + "-" + _alnum(24)),
    ("xoxp-", lambda: "xoxp-" + _alnum(11, string.digits) + "-" + _alnum(24)),
    ("AKIA", lambda: "AKIA" + _alnum(16, string.ascii_uppercase + string.digits)),
    ("AIza", lambda: "AIza" + _alnum(35)),
    ("sk_live_", lambda: "sk_live_" + _alnum(24)),
    ("rk_live_", lambda: "rk_live_" + _alnum(24)),
    ("sk-proj-", lambda: "sk-proj-" + _alnum(40)),
]


@pytest.mark.parametrize(("prefix", "make"), TOKEN_FORMATS, ids=[p for p, _ in TOKEN_FORMATS])
def test_token_formats_masked_and_flagged(prefix: str, make: Callable[[], str]) -> None:
    """One list: what ``check`` flags in a runbook is masked in output, even when no env file names it."""
    token = make()
    text = f"export X={token}\ncurl -d 'key={token}' x\n"
    redactor = Redactor()
    assert redactor.mask(text) == "export X=***\ncurl -d 'key=***' x\n"
    data = text.encode()
    stream = redactor.stream()
    streamed = b"".join(stream.feed(data[i : i + 1]) for i in range(len(data))) + stream.flush()
    assert streamed == redactor.mask_bytes(data)
    findings = check_secrets("book.md", text)
    assert [(f.code, f.line) for f in findings] == [("RX401", 1), ("RX401", 2)]
    assert all(f"{prefix}***" in f.message and token not in f.message for f in findings)


def test_split_at_4k_and_64k_and_mid_character() -> None:
    value = "비밀-" + secrets.token_urlsafe(20)
    redactor = Redactor([Secret("K", value)])
    raw = value.encode()
    for boundary in (4096, 65536):
        for shift in range(1, 6):
            data = b"x" * (boundary - shift) + raw + b"\n"
            stream = redactor.stream()
            out = stream.feed(data[:boundary]) + stream.feed(data[boundary:]) + stream.flush()
            assert out == b"x" * (boundary - shift) + b"***\n"


def test_one_megabyte_line() -> None:
    value = secrets.token_hex(16)
    redactor = Redactor([Secret("K", value)])
    data = (b"y" * 500_000 + value.encode() + b"z" * 500_000) * 2 + b"\n"
    stream = redactor.stream()
    out = b"".join(stream.feed(data[i : i + 65536]) for i in range(0, len(data), 65536)) + stream.flush()
    assert out == (b"y" * 500_000 + b"***" + b"z" * 500_000) * 2 + b"\n"


def test_holds_back_only_a_possible_start() -> None:
    value = "abcdefgh-" + secrets.token_hex(8)
    stream = Redactor([Secret("K", value)]).stream()
    assert stream.feed(b"hello world\n") == b"hello world\n"
    assert stream.feed(b"x abcd") == b"x "
    assert stream.held == 4
    assert stream.feed(b"X") == b"abcdX"
    assert stream.feed(value[:5].encode()) == b""
    assert stream.feed(value[5:].encode() + b" done\n") == b"*** done\n"
    assert stream.flush() == b""


def test_base64_of_generated_values() -> None:
    for _ in range(50):
        value = secrets.token_urlsafe(secrets.randbelow(40) + 8)
        redactor = Redactor([Secret("K", value)])
        for prefix in (b"", b"u", b"us", b"user:"):
            for enc in (base64.b64encode, base64.urlsafe_b64encode):
                masked = redactor.mask_bytes(enc(prefix + value.encode()))
                assert redactor.leaks(masked) == [] and b"***" in masked


def test_mask_json_value_by_value() -> None:
    redactor = Redactor([Secret("YEAR", "2024"), Secret("TOKEN", "tok-" + secrets.token_hex(8))])
    token = redactor.secrets[1].value
    doc = {"year": 2024, "note": "released 2024", "out": [f"t={token}", {"k": token}], "n": None}
    assert redactor.mask_json(doc) == {"year": 2024, "note": "released ***", "out": ["t=***", {"k": "***"}], "n": None}
    assert json.loads(json.dumps(redactor.mask_json(doc)))


def test_leaks_names_keys_never_values() -> None:
    a, b = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    redactor = Redactor([Secret("A_TOKEN", a), Secret("B_SECRET", b)])
    assert redactor.leaks(json.dumps({"x": base64.b64encode(b.encode()).decode()}).encode()) == ["B_SECRET"]
    assert redactor.leaks(b"nothing here") == []


@pytest.mark.parametrize(
    ("values", "secrets_", "warned", "refused"),
    [
        ({"OPENAI_API_KEY": "x" * 20}, ["OPENAI_API_KEY"], [], []),
        ({"DB_PASSWORD": "abcd"}, ["DB_PASSWORD"], ["DB_PASSWORD"], []),
        ({"DB_PASSWORD": "abc"}, [], [], ["DB_PASSWORD"]),
        ({"JWT_SECRET_KEY": "true"}, [], [], ["JWT_SECRET_KEY"]),
        ({"HTTP_PORT": "80"}, [], ["HTTP_PORT"], []),
        ({"DEBUG": "false"}, [], ["DEBUG"], []),
        ({"EMPTY_TOKEN": ""}, [], [], []),
    ],
)
def test_classify(values: dict[str, str], secrets_: list[str], warned: list[str], refused: list[str]) -> None:
    result = classify(values)
    assert [s.key for s in result.secrets] == secrets_
    assert [w.split(":")[0] for w in result.warnings] == warned
    assert list(result.refused) == refused
    assert all(v not in w for w in result.warnings for v in values.values() if len(v) > 3)


def test_classify_allow_short_and_declared() -> None:
    assert classify({"DB_PASSWORD": "abc"}, allow_short=True).refused == ()
    assert classify({"PLAIN": "ab"}, declared_secret=["PLAIN"]).refused == ("PLAIN",)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("POSTGRES_PASSWORD", True),
        ("JWT_SECRET_KEY", True),
        ("LANGCHAIN_API_KEY", True),
        ("GH_TOKEN", True),
        ("SSH_PRIVATE_KEY", True),
        ("HTTP_PORT", False),
        ("TAG", False),
        ("TOKENIZER", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret
    if secret:  # check lowers its randomness bar for every name the runner treats as secret
        assert secret_key(name)


@pytest.mark.parametrize(("name", "hint"), [("KEY", True), ("apiKey", True), ("client-secret", True), ("TAG", False)])
def test_check_secret_key_hints(name: str, hint: bool) -> None:
    assert secret_key(name) is hint
