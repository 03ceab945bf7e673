"""Files and text the CLI reads: a bad one exits 2 with one line naming it, and stores nothing.

Each hostile file here gave a traceback, minutes of parsing or a silently wrong value
before. The slow ones carry a timeout so a regression fails instead of hanging.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from openrooms.cli import cli

ROOT = Path(__file__).parents[2]
FLOW = str(ROOT / "examples" / "savings_loop.yaml")
EXIT_INVALID = 2

WORKFLOW = "id: w\ndescription: café\nnodes:\n  a: {type: end}\n"
BAD_WORKFLOWS: dict[str, tuple[bytes, str]] = {
    "latin1": (WORKFLOW.encode("latin-1"), "byte 22 (line 2): must be UTF-8 text; byte 0xe9"),
    "utf16": (WORKFLOW.encode("utf-16"), "byte 0 (line 1): must be UTF-8 text; it starts with"),
    "utf16le": (
        WORKFLOW.encode("utf-16-le"),
        "byte 1 (line 1): must be UTF-8 text; it holds a NUL",
    ),
    "duplicate": (
        b"id: w\nnodes:\n  price: {type: end}\n  price: {type: end}\n",
        "key 'price' at line 4 is already defined at line 3",
    ),
    "alias-bomb": (
        b"id: w\na: &a [lol, lol, lol]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n",
        "line 2, column 4: YAML anchors and aliases (&a) are not allowed",
    ),
    "deep": (b"id: w\nx: " + b"[" * 100_000, "nested deeper than 100 levels"),
    "huge-int": (b"id: w\nx: " + b"7" * 5000, "an integer of 5,000 digits"),
}


def huge_file(path: Path) -> Path:
    """A 50 MB file (sparse, so cheap to make); it must be refused from its size alone."""
    with path.open("wb") as f:
        f.truncate(50_000_000)
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "rooms.db"


@pytest.fixture
def invoke(db: Path) -> Callable[..., Result]:
    def call(*args: str, input: bytes | None = None) -> Result:
        result = CliRunner().invoke(
            cli, ["--db", f"sqlite:///{db}", *args], input=input, catch_exceptions=False
        )
        assert "Traceback" not in result.output
        return result

    return call


def refused(result: Result, *expected: str) -> None:
    assert result.exit_code == EXIT_INVALID, result.output
    for text in expected:
        assert text in result.output


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(BAD_WORKFLOWS))
def test_validate_and_run_refuse_a_bad_workflow_file(
    kind: str, tmp_path: Path, db: Path, invoke: Callable[..., Result]
) -> None:
    data, message = BAD_WORKFLOWS[kind]
    path = tmp_path / "flow.yaml"
    path.write_bytes(data)
    refused(invoke("validate", str(path)), f"{path}: workflow '{path}' has 1 problem", message)
    refused(invoke("run", str(path)), message)
    assert not db.exists()  # refused before the database was opened


@pytest.mark.timeout(30)
def test_validate_refuses_a_huge_file_and_goes_on_to_the_next(
    tmp_path: Path, invoke: Callable[..., Result]
) -> None:
    result = invoke("validate", str(huge_file(tmp_path / "huge.yaml")), FLOW)
    refused(result, "is 50,000,000 bytes; the limit is 2,000,000", f"{FLOW}: ok")


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("vars.yaml", b"rate: 0.1\nrate: 0.2\n", "key 'rate' at line 2 is already defined"),
        (
            "vars.json",
            b'{"rate": 0.1,\n "rate": 0.2}',
            "vars.json, $: key 'rate' at line 2 is already defined at line 1",
        ),
        ("vars.yaml", "label: café\n".encode("latin-1"), "must be UTF-8 text; byte 0xe9"),
        ("vars.json", '{"label": "x"}'.encode("utf-16"), "it starts with a UTF-16 byte order"),
        ("vars.json", b'{"n": ' + b"[" * 100_000, "nested deeper than 100 levels"),
        ("vars.json", b'{"n": ' + b"1" * 5000 + b"}", "an integer of 5,000 digits"),
        ("vars.yaml", b"a: &x 1\nb: *x\n", "anchors and aliases (&x) are not allowed"),
    ],
)
def test_run_refuses_a_bad_vars_file(
    name: str, data: bytes, message: str, tmp_path: Path, db: Path, invoke: Callable[..., Result]
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    refused(invoke("run", FLOW, "--vars-file", str(path)), message)
    assert not db.exists()


@pytest.mark.timeout(30)
def test_run_refuses_a_huge_vars_file(
    tmp_path: Path, db: Path, invoke: Callable[..., Result]
) -> None:
    path = huge_file(tmp_path / "vars.json")
    refused(invoke("run", FLOW, "--vars-file", str(path)), "the limit is 2,000,000")
    assert not db.exists()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[" * 100_000, "--var x: nested deeper than 100 levels"),
        ("1" * 5000, "--var x, line 1: an integer of 5,000 digits"),
        ("caf\udce9", "--var x, character 3 (line 1): must be UTF-8 text"),
    ],
)
def test_run_refuses_a_var_python_cannot_read(
    value: str, message: str, db: Path, invoke: Callable[..., Result]
) -> None:
    refused(invoke("run", FLOW, "--var", f"x={value}"), message)
    assert not db.exists()


@pytest.mark.parametrize("option", ["--script", "--config"])
def test_script_and_config_files_must_be_utf8(
    option: str, tmp_path: Path, db: Path, invoke: Callable[..., Result]
) -> None:
    path = tmp_path / "settings.yaml"
    path.write_bytes("tools: {}\n".encode("utf-16"))
    refused(invoke(option, str(path), "run", FLOW), f"{path}, byte 0 (line 1): must be UTF-8")
    assert not db.exists()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("data", "stdin", "message"),
    [
        ('{"ok": true, "ok": false}', None, "--data, $: key 'ok' at line 1 is already defined"),
        ("[" * 100_000, None, "--data: nested deeper than 100 levels"),
        ('{"n": ' + "1" * 5000 + "}", None, "--data, line 1: an integer of 5,000 digits"),
        ('{"n": NaN}', None, "--data, line 1: not valid JSON: NaN is not a JSON value"),
        ("-", b"[" * 100_000, "--data -: nested deeper than 100 levels"),
        ("-", b"1" * 2_000_001, "--data -: is more than the limit of 2,000,000 bytes"),
        ("-", '"café"'.encode("latin-1"), "--data -, byte 4 (line 1): must be UTF-8"),
    ],
)
def test_input_refuses_bad_data(
    data: str, stdin: bytes | None, message: str, db: Path, invoke: Callable[..., Result]
) -> None:
    refused(invoke("input", "some-room", "--data", data, input=stdin), message)
    assert not db.exists()


@pytest.mark.timeout(30)
def test_input_refuses_data_files_that_are_not_json_files(
    tmp_path: Path, invoke: Callable[..., Result]
) -> None:
    refused(invoke("input", "r", "--data", f"@{tmp_path}"), f"{tmp_path}: is a directory")
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"note": "café"}'.encode("latin-1"))
    refused(invoke("input", "r", "--data", f"@{latin}"), f"{latin}, byte 13 (line 1)")
    refused(invoke("input", "r", "--data", f"@{huge_file(tmp_path / 'h.json')}"), "50,000,000")


def test_var_text_that_is_not_json_stays_a_string_unless_it_starts_like_json(
    invoke: Callable[..., Result],
) -> None:
    result = invoke("run", FLOW, "--var", "label=NaN", "--json")
    assert result.exit_code == 0, result.output
    assert '"label": "NaN"' in result.output
    refused = invoke("run", FLOW, "--var", "note={nope", "--json")
    assert refused.exit_code == 2, refused.output
    assert "looks like JSON but is not" in refused.output and "note:=JSON" in refused.output


@pytest.mark.slow
def test_the_installed_command_refuses_hostile_files_quickly(tmp_path: Path) -> None:
    """A real process: the alias bomb, the 50 MB file and 100,000 '[' each end in a typed
    error (they took minutes, gigabytes or a traceback before); the timeout only catches a
    hang."""
    bomb, deep = tmp_path / "bomb.yaml", tmp_path / "deep.yaml"
    # "billion laughs": nine levels of ten aliases each expand to 10**9 strings when the
    # variables are copied or written out
    bomb.write_text(
        "id: w\nnodes: {a: {type: end}}\nvariables:\n  a0: &a0 [lol]\n"
        + "".join(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10))
    )
    deep.write_bytes(BAD_WORKFLOWS["deep"][0])
    files = [bomb, deep, huge_file(tmp_path / "huge.yaml")]
    proc = subprocess.run(
        [sys.executable, "-m", "openrooms.cli", "validate", *map(str, files)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == EXIT_INVALID, proc.stderr
    assert proc.stderr.count("has 1 problem") == 3 and "Traceback" not in proc.stderr
    assert not (tmp_path / ".openrooms").exists()


_BYTES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.text(alphabet='{}[]":,0123456789.eE-tfnrul \n', max_size=100).map(str.encode),
)


@given(data=_BYTES)
def test_any_bytes_as_a_workflow_or_data_file_give_a_clean_exit(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.json"
        path.write_bytes(data)
        runner = CliRunner()
        db = f"sqlite:///{tmp}/rooms.db"
        validated = runner.invoke(cli, ["validate", str(path)], catch_exceptions=False)
        assert validated.exit_code in (0, EXIT_INVALID), validated.output
        sent = runner.invoke(
            cli, ["--db", db, "input", "r", "--data", f"@{path}"], catch_exceptions=False
        )
        # 2: the data is refused; 1: it is fine, but there is no room 'r'
        assert sent.exit_code in (1, EXIT_INVALID), sent.output
        assert "Traceback" not in validated.output + sent.output
