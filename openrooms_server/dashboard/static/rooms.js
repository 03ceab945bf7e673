// The rooms list: refreshed every few seconds by fetching this same page and swapping in
// its table and pager (our own server-rendered, escaped HTML; the counts are updated in
// place), so the page stays one rendering of the server's and works without this script.
import { DISCONNECTED, setLive } from "./live.js";

const REFRESH_MS = 4000;
const PARTS = ["#rooms tbody", ".pager"];
let busy = false;

/** Put *fresh*'s *selector* in place of ours when it differs, keeping the focus on the same
 * link (keyboard users do not lose their place). */
function swap(selector, fresh) {
  const old = document.querySelector(selector);
  const updated = fresh.querySelector(selector);
  if (!old || !updated || old.innerHTML === updated.innerHTML) return;
  const focused = document.activeElement;
  const href = old.contains(focused) ? focused.getAttribute("href") : null;
  old.replaceWith(document.adoptNode(updated));
  if (href) document.querySelector(`${selector} a[href="${CSS.escape(href)}"]`)?.focus();
}

async function refresh() {
  if (busy || document.hidden) return;
  busy = true;
  try {
    const response = await fetch(location.href, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
      cache: "no-store",
    });
    if (response.redirected && new URL(response.url).pathname === "/login") {
      location.reload(); // the session ended: the server sends us to log in
      return;
    }
    if (!response.ok) throw new Error(String(response.status));
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    // the counts in place (a focused filter link keeps its focus)
    for (const link of fresh.querySelectorAll("a.status-filter")) {
      const status = CSS.escape(link.dataset.status || "");
      const mine = document.querySelector(`a.status-filter[data-status="${status}"] .count`);
      const count = link.querySelector(".count");
      if (mine && count && mine.textContent !== count.textContent) {
        mine.textContent = count.textContent;
      }
    }
    for (const selector of PARTS) swap(selector, fresh);
    setLive("");
  } catch {
    setLive(DISCONNECTED);
  } finally {
    busy = false;
  }
}

setInterval(refresh, REFRESH_MS);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
});
