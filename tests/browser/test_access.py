"""The dashboard's accessibility in headless Chromium: landmarks on every page, a name for
every control, text contrast of at least 4.5:1 against its background, headers with a
scope, and a visible focus ring. (The keyboard alone fills and sends a wait form:
tests/browser/test_forms.py.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.browser.kit import DashboardServer

if TYPE_CHECKING:
    from playwright.sync_api import Expect, Page


pytestmark = [pytest.mark.slow, pytest.mark.browser]


CONTROLS_WITHOUT_A_NAME = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button, a[href]')]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
               && !e.getAttribute('aria-labelledby') && !e.textContent.trim())
  .map(e => e.outerHTML.slice(0, 120))"""


LOW_CONTRAST = """() => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const low = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    const el = t.parentElement;
    if (!t.textContent.trim() || !el.getClientRects().length || el.closest('svg')) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.clip === 'rect(0px, 0px, 0px, 0px)') continue;
    const fg = rgb(style.color), bg = background(el);
    const [a, b] = [lum(fg.slice(0, 3)), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const where = `${el.tagName}.${el.className}: ${t.textContent.trim().slice(0, 40)}`;
    if (!(ratio >= 4.5)) low.push(`${ratio.toFixed(2)} ${where}`);
  }
  return low;
}"""


def test_every_page_has_landmarks_named_controls_and_readable_contrast(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    room = server.create_room("review", title="a11y")
    server.until(room, "waiting")
    for path in (
        "/",
        f"/rooms/{room}",
        "/workflows",
        "/workflows/review",
        "/tools",
        "/new?workflow=order_approval",
        "/rooms/no-such-room",
    ):
        page.goto(path)
        for role in ("banner", "navigation", "main"):
            expect(page.get_by_role(role).first).to_be_attached()
        assert page.evaluate(CONTROLS_WITHOUT_A_NAME) == [], path
        assert page.evaluate(LOW_CONTRAST) == [], path
        headers = page.locator("table th")
        scopes = headers.evaluate_all("els => els.map(e => e.getAttribute('scope'))")
        assert all(s in ("col", "row") for s in scopes), (path, scopes)


def test_focus_is_visible_on_links_and_controls(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    page.goto("/")
    for _ in range(6):
        page.keyboard.press("Tab")
        ring = page.evaluate(
            """() => { const s = getComputedStyle(document.activeElement);
                return {tag: document.activeElement.tagName, outline: s.outlineStyle,
                        width: parseFloat(s.outlineWidth), shadow: s.boxShadow}; }"""
        )
        assert ring["tag"] != "BODY"
        assert (ring["outline"] != "none" and ring["width"] > 0) or ring["shadow"] != "none", ring
