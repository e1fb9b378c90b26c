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
  if (!symbol) return;
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
  }
}

function selectTab(name) {
  for (const button of document.querySelectorAll(".tab")) button.setAttribute("aria-selected", String(button.dataset.tab === name));
  for (const panel of document.querySelectorAll(".tab-panel")) panel.hidden = panel.id !== `tab-${name}`;
  clearInterval(pipelineTimer);
  if (name === "pipeline") {
    const refresh = () => loadPipeline().catch((error) => showError(error.message));
    refresh();
    pipelineTimer = setInterval(refresh, 3000);
  }
}

async function main() {
  const keyInput = document.getElementById("api-key");
  keyInput.value = apiKey();
  keyInput.addEventListener("change", () => { setApiKey(keyInput.value.trim()); loadSeries(); });
  for (const button of document.querySelectorAll(".tab")) button.addEventListener("click", () => selectTab(button.dataset.tab));
  symbolSelect.addEventListener("change", loadSeries);
  timeframeSelect.addEventListener("change", loadSeries);

  const params = new URLSearchParams(location.search);
  if (params.get("timeframe")) timeframeSelect.value = params.get("timeframe");
  let symbols = null;
  try {
    symbols = (await api("/api/symbols")).symbols.map((s) => s.symbol);
  } catch (error) {
    showError(error.status === 401 || error.status === 403 ? `This server needs an API key to read: ${error.message}` : error.message);
  }
  if (!symbols || !symbols.length) {
    replace(symbolSelect, el("option", { value: "" }, "no data"));
    if (symbols) showError("The store holds no candles yet: load some with `smartmarket ingest FILE`, then reload this page.");
  } else {
    replace(symbolSelect, symbols.map((s) => el("option", { selected: s === (params.get("symbol") || "BTCUSDT") }, s)));
  }
  await backtest.init([...timeframeSelect.options].map((o) => o.value)).catch((error) => showError(error.message));
  await loadSeries();
}

// For people poking at the page and for the browser tests: what the charts actually hold.
window.smartmarketDashboard = { state: () => ({ market: market.state(), backtest: backtest.state() }), selectTab };

main();
