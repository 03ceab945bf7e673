// OpenRooms dashboard: helpers shared by the pages' scripts. Room data is only ever
// written with textContent (never innerHTML), so nothing from a room becomes markup.

const banner = () => document.getElementById("live-status");

/** Show (or clear, with "") the live-connection banner. */
export function setLive(text) {
  const el = banner();
  if (el && el.textContent !== text) el.textContent = text;
}

export const DISCONNECTED = "disconnected - retrying";

/** An element with a class and text (text is set as text, never parsed). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

/** GET a JSON document of the API (the session cookie authenticates it). */
export async function getJSON(url) {
  const response = await fetch(url, {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
    cache: "no-store",
  });
  if (!response.ok) {
    const error = new Error(`${url}: ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

/** "2026-12-01 15:00:00" (UTC) for a time in ms. */
export function when(ms) {
  if (ms === null || ms === undefined) return "";
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19);
}
