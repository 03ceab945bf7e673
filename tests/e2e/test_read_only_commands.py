"""Read-only commands beside a writer stopped mid-transaction, and on a file nobody may write.

Both use real processes: the writer is a separate Python process stopped with SIGSTOP while it
holds SQLite's write lock, and every command runs as `python -m openrooms.cli`.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from openrooms import RoomStatus, open_runtime

ROOT = Path(__file__).parents[2]
SAVINGS = ROOT / "examples" / "savings_loop.yaml"
QUICK_S = 8  # a locked database made these wait 10 s (the busy timeout), then fail

pytestmark = pytest.mark.slow

# Opens the file, takes the write lock (BEGIN IMMEDIATE), writes enough for uncommitted pages
# to spill into the WAL, says "locked", and waits: the test then stops it with SIGSTOP.
HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size = 1")
db.execute("BEGIN IMMEDIATE")
db.execute("UPDATE rooms SET status = 'running', body = body || ' '")
db.executemany(
    "INSERT INTO workflows (id, version, digest, body, created_at) VALUES (?, 1, '', ?, 0)",
    [(f"filler{i}", "x" * 4000) for i in range(200)],
)
print("locked", flush=True)
sys.stdin.read()
"""


def openrooms(db: Path, *args: str, timeout: float = QUICK_S) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a new process on *db*; TimeoutExpired fails the test."""
    return subprocess.run(
        [sys.executable, "-m", "openrooms.cli", "--db", f"sqlite:///{db}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def completed_room(db: Path) -> str:
    from openrooms import load_workflow

    with open_runtime(f"sqlite:///{db}") as rt:
        room = rt.create_room(load_workflow(SAVINGS))
        assert rt.run(room.room_id).status is RoomStatus.COMPLETED
        return room.room_id


@pytest.fixture
def stopped_writer(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A database with one completed room, and a process stopped holding its write lock."""
    db = tmp_path / "rooms.db"
    room_id = completed_room(db)
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "locked"
            os.kill(holder.pid, signal.SIGSTOP)
            yield db, room_id
        finally:
            os.kill(holder.pid, signal.SIGCONT)
            holder.kill()
            holder.wait(timeout=30)


def test_inspecting_commands_do_not_wait_for_a_stopped_writer(
    stopped_writer: tuple[Path, str],
) -> None:
    db, room_id = stopped_writer
    show = openrooms(db, "show", room_id)
    assert show.returncode == 0, show.stderr
    assert "status:    completed" in show.stdout  # the last commit, not the stopped write
    rooms = openrooms(db, "rooms")
    assert rooms.returncode == 0, rooms.stderr
    assert room_id in rooms.stdout and "completed" in rooms.stdout
    logs = openrooms(db, "logs", room_id)
    assert logs.returncode == 0, logs.stderr
    assert "ROOM_COMPLETED" in logs.stdout
    follow = openrooms(db, "logs", room_id, "--follow")
    assert follow.returncode == 0, follow.stderr
    assert follow.stdout == logs.stdout
    rerun = openrooms(db, "rerun", room_id)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    check = openrooms(db, "db", "check")
    assert (check.returncode, check.stdout) == (0, "ok\n"), check.stderr


def test_a_writer_opens_beside_a_stopped_writer_without_taking_the_lock(
    stopped_writer: tuple[Path, str],
) -> None:
    """Opening to write needs no lock when the schema is current; only writing waits."""
    db, room_id = stopped_writer
    script = (
        "import sys\n"
        "from openrooms.backends import SQLiteStore\n"
        "store = SQLiteStore(sys.argv[1], busy_timeout_ms=200)\n"
        "print(store.get(sys.argv[2]).status.value)\n"
    )
    opened = subprocess.run(
        [sys.executable, "-c", script, str(db), room_id],
        capture_output=True,
        text=True,
        timeout=QUICK_S,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert (opened.returncode, opened.stdout) == (0, "completed\n"), opened.stderr


def _as_unprivileged() -> list[str]:
    """A command prefix that drops root, so file modes apply; [] when not root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file modes would not apply")
    return [setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups"]


@pytest.mark.parametrize("folder_mode", [0o555, 0o777], ids=["read-only-folder", "file-only"])
def test_a_read_only_database_can_be_listed_and_shown(folder_mode: int) -> None:
    """A file with mode 444 (and a folder with 555) is read by a user who cannot write it.

    Tests run as root, whom modes do not stop, so the commands run as `nobody` via setpriv
    (as the current user when that is not root). pytest's tmp_path is private to root,
    hence a folder of our own that `nobody` may enter.
    """
    prefix = _as_unprivileged()
    base = Path(tempfile.mkdtemp(prefix="openrooms-ro-"))
    try:
        base.chmod(0o755)
        folder = base / "data"
        folder.mkdir()
        db = folder / "rooms.db"
        room_id = completed_room(db)
        assert not Path(f"{db}-wal").exists()  # the last writer checkpointed and left
        before = db.read_bytes()
        db.chmod(0o444)
        folder.chmod(folder_mode)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(base)}

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*prefix, sys.executable, *args],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                cwd=base,
            )

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return run("-m", "openrooms.cli", "--db", f"sqlite:///{db}", *args)

        probe = run("-c", "import openrooms.cli")
        if prefix and probe.returncode != 0:
            pytest.skip(
                "user 'nobody' cannot import openrooms from this Python environment (a venv "
                "in a private folder?): make the venv and the checkout readable to others; "
                f"{probe.stderr.strip().splitlines()[-1]}"
            )
        denied = run("-c", f"open({str(db)!r}, 'r+b')")  # the user really cannot write it
        assert denied.returncode != 0 and "PermissionError" in denied.stderr
        rooms = cli("rooms")
        assert rooms.returncode == 0, rooms.stderr
        assert room_id in rooms.stdout
        show = cli("show", room_id)
        assert show.returncode == 0, show.stderr
        assert "status:    completed" in show.stdout
        logs = cli("logs", room_id)
        assert logs.returncode == 0 and "ROOM_COMPLETED" in logs.stdout, logs.stderr
        check = cli("db", "check")
        assert (check.returncode, check.stdout) == (0, "ok\n"), check.stderr
        assert db.read_bytes() == before
    finally:
        for path in (base, base / "data"):
            if path.exists():
                path.chmod(stat.S_IRWXU)
        shutil.rmtree(base)
