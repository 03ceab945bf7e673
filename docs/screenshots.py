"""Take the dashboard's screenshots for the README into docs/img/.

Run ``nox -s screenshots`` (or ``PYTHONPATH=. python docs/screenshots.py [--out DIR]``). It
starts ``openrooms serve`` on a free loopback port over a temporary SQLite file, offline
(the example scripts answer for the models and the ``http`` tool), registers the examples,
runs a few rooms of each to where they stop, and photographs in Debian's headless Chromium:

- ``rooms.png``: the rooms list;
- ``room.png``: a waiting support-triage room with its graph and its live log;
- ``wait-form.png``: the form generated from the order-approval room's ``wait`` schema.

Needs ``playwright`` (the dev extra) and ``/usr/bin/chromium`` (``apt-get install
chromium``; ``OPENROOMS_TEST_CHROMIUM`` names another). Room ids and times differ from one
run to the next; nothing else does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

import yaml

if TYPE_CHECKING:
    from playwright.sync_api import FloatRect, Page, ViewportSize

from tests.browser.kit import DashboardServer, browser_problem, launch_chromium

ROOT: Final = Path(__file__).parents[1]
EXAMPLES: Final = ROOT / "examples"
OUT: Final = Path(__file__).with_name("img")
VIEWPORT: Final[ViewportSize] = {"width": 1280, "height": 860}


def merged_script(path: Path) -> Path:
    """The offline scripts of the examples as one file at *path* (their agents' names
    differ, so their replies do not mix)."""
    merged: dict[str, dict[str, list[object]]] = {"models": {}, "tools": {}}
    for name in ("research.yaml", "support_triage.yaml"):
        script = yaml.safe_load((EXAMPLES / "scripts" / name).read_text(encoding="utf-8"))
        for section in ("models", "tools"):
            for key, replies in (script.get(section) or {}).items():
                merged[section].setdefault(key, []).extend(replies)
    path.write_text(yaml.safe_dump(merged, sort_keys=False), encoding="utf-8")
    return path


def populate(server: DashboardServer) -> dict[str, str]:
    """Register the examples and run rooms of them to where they stop; the room ids the
    pictures show, by role."""
    for name in ("order_approval", "research", "support_triage", "savings_loop"):
        server.register((EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8"))
    rooms = {
        "small order": server.create_room("order_approval", amount=40),
        "research": server.create_room("research", topic="urban beekeeping"),
        "savings": server.create_room("savings_loop"),
        "rejected": server.create_room("order_approval", amount=900),
        "cancelled": server.create_room("order_approval", amount=120),
        "triage": server.create_room("support_triage"),
        "order": server.create_room("order_approval", amount=250),
    }
    for role in ("small order", "research", "savings"):
        server.until(rooms[role], "completed")
    for role in ("rejected", "cancelled", "triage", "order"):
        server.until(rooms[role], "waiting")
    answered = server.api.post(
        f"/api/rooms/{rooms['rejected']}/input", json={"data": {"approved": False, "by": "kim"}}
    )
    assert answered.status_code == 202, answered.text
    server.until(rooms["rejected"], "failed")
    cancelled = server.api.post(
        f"/api/rooms/{rooms['cancelled']}/cancel", json={"reason": "customer withdrew"}
    )
    assert cancelled.status_code == 200, cancelled.text
    server.until(rooms["cancelled"], "cancelled")
    return rooms


def photograph(server: DashboardServer, rooms: dict[str, str], out: Path) -> list[Path]:
    """The three PNGs, written into the folder *out*."""
    from playwright.sync_api import expect, sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            context = browser.new_context(base_url=server.url, viewport=VIEWPORT)
            page = context.new_page()
            page.goto("/")
            expect(page.locator(f'#rooms tr[data-room="{rooms["order"]}"]')).to_be_visible()
            page.set_viewport_size({"width": VIEWPORT["width"], "height": 400})
            taken.append(shot(page, out / "rooms.png", full_page=True))  # no blank below
            page.set_viewport_size(VIEWPORT)

            page.goto(f"/rooms/{rooms['triage']}")
            expect(page.locator('#log li.event[data-type="ROOM_WAITING"]')).to_be_visible()
            taken.append(shot(page, out / "room.png", full_page=True))

            page.goto(f"/rooms/{rooms['order']}")
            form = page.locator("form#wait-form")
            expect(form).to_be_visible()
            form.get_by_label("by").fill("sam")
            form.get_by_label("approved").focus()
            taken.append(shot(page, out / "wait-form.png", clip_to="#actions"))
            context.close()
        finally:
            browser.close()
    return taken


def shot(page: Page, path: Path, *, full_page: bool = False, clip_to: str = "") -> Path:
    """A PNG of what *page* shows now, as *path*: its viewport, the whole page
    (*full_page*), or the element *clip_to* selects with a margin around it."""
    clip: FloatRect | None = None
    if clip_to:
        box = page.locator(clip_to).bounding_box()
        assert box is not None, f"{clip_to} is not shown"
        clip = {
            "x": max(0, box["x"] - 16),
            "y": max(0, box["y"] - 16),
            "width": box["width"] + 32,
            "height": box["height"] + 32,
        }
    page.screenshot(
        path=str(path), full_page=full_page, clip=clip, animations="disabled", caret="hide"
    )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="the folder (docs/img/)")
    out: Path = parser.parse_args(argv).out
    problem = browser_problem()
    if problem is not None:
        print(f"screenshots: {problem}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="openrooms-screenshots-") as tmp:
        work = Path(tmp)
        script = merged_script(work / "script.yaml")
        server = DashboardServer(work, global_args=("--script", str(script)))
        try:
            rooms = populate(server)
            for path in photograph(server, rooms, out):
                print(f"wrote {path}")
        finally:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
