// The rooms list: refreshed every few seconds by fetching this same page and swapping in
// its table, filters and pager (our own server-rendered, escaped HTML), so the page stays
// one rendering of the server's and works without this script.
import { DISCONNECTED, setLive } from "./live.js";

const REFRESH_MS = 4000;
const PARTS = ["#rooms tbody", "#status-filters", ".pager"];
let busy = false;

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
    for (const selector of PARTS) {
      const old = document.querySelector(selector);
      const updated = fresh.querySelector(selector);
      if (old && updated) old.replaceWith(document.adoptNode(updated));
    }
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
