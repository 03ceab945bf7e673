"""``nox -s screenshots`` (docs/screenshots.py) still photographs the dashboard: run into a
temporary folder, it writes the three PNGs the README shows."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser.conftest import require_browser
from tests.browser.kit import ROOT
from tests.server.test_e2e_serve import server_env

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def png_size(path: Path) -> tuple[int, int]:
    """The width and height a PNG file's header gives."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_the_screenshots_script_writes_the_readmes_pictures(tmp_path: Path) -> None:
    require_browser()
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "screenshots.py"), "--out", str(tmp_path)],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("rooms.png", "room.png", "wait-form.png"):
        assert f"docs/img/{name}" in readme, f"the README does not show {name}"
        assert (ROOT / "docs" / "img" / name).is_file(), f"docs/img/{name} is not committed"
        width, height = png_size(tmp_path / name)
        assert width >= 600 and height >= 400, (name, width, height)
    rooms_width, rooms_height = png_size(tmp_path / "rooms.png")
    assert rooms_width == 1280 and rooms_height < 860  # as tall as the list, no taller
    assert png_size(tmp_path / "room.png")[1] > 860  # the whole page: graph and log too
