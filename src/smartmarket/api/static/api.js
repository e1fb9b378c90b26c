// Shared helpers: API calls with the key, DOM building (text only, never HTML strings), number formatting.

const KEY_STORAGE = "smartmarket.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(value) {
  if (value) sessionStorage.setItem(KEY_STORAGE, value);
  else sessionStorage.removeItem(KEY_STORAGE);
}

/** fetch JSON from the API; throws an Error carrying the server's message on a non-2xx answer (unless in alsoOk). */
export async function api(path, { method = "GET", body, alsoOk = [] } = {}) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok && !alsoOk.includes(response.status)) {
    const detail = data && data.detail;
    const message = Array.isArray(detail) ? detail.map((d) => `${d.loc.slice(1).join(".")}: ${d.msg}`).join("; ") : detail;
    const error = new Error(`${message || response.statusText}${data && data.hint ? ` — ${data.hint}` : ""}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

/** el("td", {class: "num"}, "1.2") — builds an element; children are nodes or text. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "style") node.style.cssText = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function replace(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== undefined && c !== null));
}

export function pct(value, digits = 1) {
  return value === null || value === undefined ? "n/a" : `${(value * 100).toFixed(digits)}%`;
}

export function num(value, digits = 2) {
  return value === null || value === undefined ? "n/a" : Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
}

export function isoTime(ms) {
  return new Date(ms).toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

export function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}

/** Seconds for lightweight-charts' time axis (it reads UTC timestamps in seconds). */
export const chartTime = (ms) => Math.floor(ms / 1000);
