// Dashboard entry point: symbol/timeframe selection, tabs, the API key field and the live WebSocket.

import { api, apiKey, el, replace, setApiKey, showError } from "./api.js";
import { BacktestView } from "./backtest.js";
import { MarketView } from "./market.js";
import { loadPipeline } from "./pipeline.js";

const symbolSelect = document.getElementById("symbol");
const timeframeSelect = document.getElementById("timeframe");
const liveStatus = document.getElementById("live-status");
const market = new MarketView();
const backtest = new BacktestView();
let socket = null;
let pipelineTimer = null;
let stored = {}; // symbol -> its stored timeframes (GET /api/symbols)

const TIMEFRAME_MS = {
  "1m": 6e4, "3m": 18e4, "5m": 3e5, "15m": 9e5, "30m": 18e5, "1h": 36e5, "2h": 72e5, "4h": 144e5, "6h": 216e5,
  "8h": 288e5, "12h": 432e5, "1d": 864e5, "3d": 2592e5, "1w": 6048e5,
};

/** Whether the API serves `timeframe` for `symbol`: stored, or resampled from a finer stored timeframe. */
function servable(symbol, timeframe) {
  const target = TIMEFRAME_MS[timeframe];
  return (stored[symbol] || []).some((tf) => tf === timeframe || (target && TIMEFRAME_MS[tf] && target % TIMEFRAME_MS[tf] === 0));
}

/** Open `symbol` on `wanted` when the store can serve it, else on the first timeframe it can (a stored one is
 * added to the list when none of the listed ones can be served). */
function chooseTimeframe(symbol, wanted) {
  if (servable(symbol, wanted)) { timeframeSelect.value = wanted; return; }
  const listed = [...timeframeSelect.options].map((o) => o.value).find((tf) => servable(symbol, tf));
  const choice = listed || (stored[symbol] || [])[0];
  if (!choice) return;
  if (!listed) timeframeSelect.append(el("option", {}, choice));
  timeframeSelect.value = choice;
}

function connectLive(symbol, timeframe) {
  if (socket) { socket.onclose = null; socket.close(); }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws/${encodeURIComponent(symbol)}?timeframe=${timeframe}`);
  socket = ws;
  ws.onopen = () => { if (apiKey()) ws.send(JSON.stringify({ key: apiKey() })); };
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "hello") { liveStatus.textContent = "live"; liveStatus.className = "badge on"; return; }
    market.onLive(message);
  };
  ws.onclose = () => {
    liveStatus.textContent = "offline"; liveStatus.className = "badge off";
    if (socket === ws) setTimeout(() => socket === ws && connectLive(symbol, timeframe), 2000);
  };
}

async function loadSeries() {
  showError("");
  const symbol = symbolSelect.value, timeframe = timeframeSelect.value;
  if (!symbol) { market.showEmpty("no stored series to show"); return; }
  const params = new URLSearchParams(location.search);
  params.set("symbol", symbol); params.set("timeframe", timeframe);
  history.replaceState(null, "", `?${params}`);
  backtest.setSymbol(symbol);
  connectLive(symbol, timeframe);
  try {
    await market.load(symbol, timeframe);
    document.body.dataset.loaded = `${symbol}/${timeframe}`;
  } catch (error) {
    showError(`${symbol} ${timeframe}: ${error.message}`);
    market.showEmpty(`${symbol} ${timeframe} could not be loaded`);
  }
}

function selectTab(name) {
  for (const button of document.querySelectorAll(".tab")) button.setAttribute("aria-selected", String(button.dataset.tab === name));
  for (const panel of document.querySelectorAll(".tab-panel")) panel.hidden = panel.id !== `tab-${name}`;
  clearInterval(pipelineTimer);
  if (name === "pipeline") {
    const refresh = () => loadPipeline().catch((error) => {
      showError(error.message);
      for (const id of ["health-body", "pipeline-body"]) {
        const body = document.getElementById(id);
        if (body.dataset.loaded !== "yes") replace(body, `Unavailable: ${error.message}`);
      }
    });
    refresh();
    pipelineTimer = setInterval(refresh, 3000);
  }
}

async function main() {
  const keyInput = document.getElementById("api-key");
  keyInput.value = apiKey();
  keyInput.addEventListener("change", () => { setApiKey(keyInput.value.trim()); loadSeries(); });
  for (const button of document.querySelectorAll(".tab")) button.addEventListener("click", () => selectTab(button.dataset.tab));
  symbolSelect.addEventListener("change", () => { chooseTimeframe(symbolSelect.value, timeframeSelect.value); loadSeries(); });
  timeframeSelect.addEventListener("change", loadSeries);

  const params = new URLSearchParams(location.search);
  let symbols = null;
  try {
    const listed = (await api("/api/symbols")).symbols;
    stored = Object.fromEntries(listed.map((s) => [s.symbol, s.series.map((series) => series.timeframe)]));
    symbols = listed.map((s) => s.symbol);
  } catch (error) {
    showError(error.status === 401 || error.status === 403 ? `This server needs an API key to read: ${error.message}` : error.message);
  }
  if (!symbols || !symbols.length) {
    replace(symbolSelect, el("option", { value: "" }, "no data"));
    if (symbols) showError("The store holds no candles yet: load some with `smartmarket ingest FILE`, then reload this page.");
  } else {
    // Open on a stored series: the one asked for in the URL, else BTCUSDT, else the first stored.
    const wanted = [params.get("symbol"), "BTCUSDT"].find((s) => s && symbols.includes(s)) || symbols[0];
    replace(symbolSelect, symbols.map((s) => el("option", { selected: s === wanted }, s)));
    chooseTimeframe(wanted, params.get("timeframe") || timeframeSelect.value);
  }
  await backtest.init([...timeframeSelect.options].map((o) => o.value)).catch((error) => showError(error.message));
  await loadSeries();
}

// For people poking at the page and for the browser tests: what the charts actually hold.
window.smartmarketDashboard = { state: () => ({ market: market.state(), backtest: backtest.state() }), selectTab };

main();
