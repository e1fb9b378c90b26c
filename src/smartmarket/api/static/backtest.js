// The backtest tab: start a job (needs the API key), follow its progress, show equity, drawdown, months, trades.

import { api, chartTime, el, isoTime, num, pct, replace, showError } from "./api.js";

const LC = window.LightweightCharts;
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const POLL_MS = 300;

/** "fast=10, slow=30" → {fast: 10, slow: 30} (numbers, true/false, none, else text). */
export function parseParams(text) {
  const params = {};
  for (const item of text.split(",")) {
    if (!item.trim()) continue;
    const [key, ...rest] = item.split("=");
    const raw = rest.join("=").trim();
    if (!key.trim() || !rest.length) throw new Error(`cannot read parameter "${item.trim()}": write name=value`);
    const lowered = raw.toLowerCase();
    params[key.trim()] = lowered === "true" ? true : lowered === "false" ? false : lowered === "none" ? null
      : raw !== "" && !Number.isNaN(Number(raw)) ? Number(raw) : raw;
  }
  return params;
}

export class BacktestView {
  constructor() {
    this.form = document.getElementById("bt-form");
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.start(); });
    document.getElementById("bt-strategy").addEventListener("change", () => this.fillDefaults());
    this.job = null;
    this.charts = [];
    window.addEventListener("resize", () => {
      for (const [chart, id] of this.charts.map((c, i) => [c, ["bt-equity", "bt-drawdown"][i]])) {
        const box = document.getElementById(id);
        chart.resize(box.clientWidth, box.clientHeight);
      }
    });
  }

  async init(timeframes) {
    const tf = document.getElementById("bt-timeframe");
    replace(tf, timeframes.map((t) => el("option", { selected: t === "4h" }, t)));
    const { strategies } = await api("/api/strategies");
    this.strategies = Object.fromEntries(strategies.map((s) => [s.name, s]));
    replace(document.getElementById("bt-strategy"),
      strategies.map((s) => el("option", { value: s.name, selected: s.name === "sma_cross", title: s.summary }, s.name)));
    this.fillDefaults();
  }

  fillDefaults() {
    const strategy = this.strategies[document.getElementById("bt-strategy").value];
    document.getElementById("bt-params").value =
      Object.entries(strategy ? strategy.params : {}).map(([k, v]) => `${k}=${v === null ? "none" : v}`).join(", ");
  }

  setSymbol(symbol) {
    const input = document.getElementById("bt-symbols");
    if (!input.value) input.value = symbol;
  }

  async start() {
    showError("");
    const data = new FormData(this.form);
    let body;
    try {
      body = {
        symbols: String(data.get("symbols")).split(",").map((s) => s.trim()).filter(Boolean),
        timeframe: data.get("timeframe"),
        strategy: data.get("strategy"),
        params: parseParams(String(data.get("params") || "")),
        start: data.get("start") || null,
        end: data.get("end") || null,
        fees: Number(data.get("fees")),
        cash: Number(data.get("cash")),
        long_only: data.get("long_only") === "on",
      };
    } catch (error) { showError(error.message); return; }
    const button = document.getElementById("bt-run");
    button.disabled = true;
    try {
      this.job = await api("/api/backtests", { method: "POST", body });
      document.getElementById("bt-results").hidden = true;
      this.showProgress(this.job);
      await this.follow(this.job.job_id);
    } catch (error) {
      showError(error.status === 401 || error.status === 403
        ? `Backtests need the server's API key (field at the top right): ${error.message}` : error.message);
    } finally {
      button.disabled = false;
    }
  }

  showProgress(job) {
    document.getElementById("bt-status").hidden = false;
    document.getElementById("bt-progress").value = job.progress;
    document.getElementById("bt-stage").textContent = `${job.state}: ${job.stage} (${Math.round(job.progress * 100)}%)`;
    document.getElementById("bt-status").dataset.state = job.state;
  }

  async follow(jobId) {
    for (;;) {
      const job = await api(`/api/backtests/${jobId}`);
      this.job = job;
      this.showProgress(job);
      if (job.state === "failed") throw new Error(`backtest failed: ${job.error}`);
      if (job.state === "succeeded") break;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    const result = await api(`/api/backtests/${jobId}/result`);
    this.render(jobId, result);
  }

  render(jobId, result) {
    document.getElementById("bt-results").hidden = false;
    const shown = Object.entries(result.params).map(([k, v]) => `${k}=${v}`).join(", ");
    document.getElementById("bt-title").textContent =
      `${result.strategy}(${shown}) on ${result.symbols.join(", ")} ${result.timeframe} — ${num(result.candles, 0)} candles`;
    document.getElementById("bt-report").href = `/api/backtests/${jobId}/report`;
    const m = result.metrics;
    const cards = [
      ["Total return", pct(m.total_return)], ["CAGR", pct(m.annual_return)], ["Sharpe", num(m.sharpe)],
      ["Sortino", num(m.sortino)], ["Max drawdown", pct(m.max_drawdown)], ["Win rate", pct(m.win_rate)],
      ["Profit factor", num(m.profit_factor)], ["Trades", num(m.num_trades, 0)], ["Exposure", pct(m.exposure)],
      ["Final equity", num(result.final_equity)], ["Buy and hold", pct(result.benchmark.buy_hold_return)],
    ];
    replace(document.getElementById("bt-metrics"),
      cards.map(([label, value]) => el("div", { class: "metric" }, el("div", { class: "label" }, label), el("div", { class: "value" }, value))));
    this.renderCurves(result.equity);
    this.renderMonthly(result.monthly_returns);
    this.renderTrades(result.trades);
  }

  renderCurves(equity) {
    for (const chart of this.charts) chart.remove();
    const options = { layout: { background: { color: "#fff" }, textColor: "#334155" },
      grid: { vertLines: { color: "#f1f5f9" }, horzLines: { color: "#f1f5f9" } },
      timeScale: { timeVisible: true, minBarSpacing: 0.001 } };  // thousands of bars must fit the width
    // Sized from their containers now (visible), so fitContent sees the real width.
    const make = (id) => {
      const box = document.getElementById(id);
      return LC.createChart(box, { ...options, width: box.clientWidth, height: box.clientHeight });
    };
    const equityChart = make("bt-equity");
    const drawdownChart = make("bt-drawdown");
    this.charts = [equityChart, drawdownChart];
    this.equitySeries = equityChart.addSeries(LC.AreaSeries, {
      lineColor: "#2563eb", topColor: "rgba(37,99,235,0.25)", bottomColor: "rgba(37,99,235,0.02)", lineWidth: 2,
    });
    this.drawdownSeries = drawdownChart.addSeries(LC.BaselineSeries, {
      baseValue: { type: "price", price: 0 }, lineWidth: 1, priceFormat: { type: "percent" },
      bottomLineColor: "#dc2626", bottomFillColor1: "rgba(220,38,38,0.05)", bottomFillColor2: "rgba(220,38,38,0.35)",
      topLineColor: "#dc2626", topFillColor1: "rgba(0,0,0,0)", topFillColor2: "rgba(0,0,0,0)",
    });
    let peak = -Infinity;
    const points = [], drawdown = [];
    for (const [ts, value] of equity) {
      peak = Math.max(peak, value);
      points.push({ time: chartTime(ts), value });
      drawdown.push({ time: chartTime(ts), value: peak > 0 ? (value / peak - 1) * 100 : 0 });
    }
    this.equitySeries.setData(points);
    this.drawdownSeries.setData(drawdown);
    for (const chart of this.charts) chart.timeScale().fitContent();
  }

  renderMonthly(monthly) {
    const years = {};
    for (const { month, return: r } of monthly) (years[month.slice(0, 4)] ||= {})[Number(month.slice(5, 7)) - 1] = r;
    const cell = (r) => r === undefined ? el("td", {}) : el("td", {
      class: `num ${r >= 0 ? "pos" : "neg"}`, style: `background: ${r >= 0 ? "rgba(22,163,74," : "rgba(220,38,38,"}${Math.min(Math.abs(r) * 2, 0.45)})`,
    }, pct(r, 1));
    replace(document.getElementById("bt-monthly"), el("table", { id: "monthly-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "Year"), MONTHS.map((m) => el("th", { class: "num" }, m)))),
      el("tbody", {}, Object.keys(years).sort().map((year) =>
        el("tr", {}, el("td", {}, year), MONTHS.map((_, i) => cell(years[year][i])))))));
  }

  renderTrades(trades) {
    const shown = trades.slice(-200).reverse();
    replace(document.getElementById("bt-trades"),
      el("p", { class: "muted" }, `${trades.length} closed trades${trades.length > shown.length ? `, newest ${shown.length} shown` : ""}`),
      el("table", { id: "trades-table" },
        el("thead", {}, el("tr", {}, ["symbol", "side", "entry", "exit", "entry price", "exit price", "P&L", "return"]
          .map((h, i) => el("th", { class: i > 3 ? "num" : undefined }, h)))),
        el("tbody", {}, shown.map((t) => el("tr", {},
          el("td", {}, t.symbol), el("td", {}, t.side), el("td", {}, isoTime(t.entry_ts)), el("td", {}, isoTime(t.exit_ts)),
          el("td", { class: "num" }, num(t.entry_price)), el("td", { class: "num" }, num(t.exit_price)),
          el("td", { class: `num ${t.pnl >= 0 ? "pos" : "neg"}` }, num(t.pnl)),
          el("td", { class: `num ${t.return >= 0 ? "pos" : "neg"}` }, pct(t.return, 2)))))));
  }

  state() {
    return {
      job: this.job ? { id: this.job.job_id, state: this.job.state, progress: this.job.progress } : null,
      equityPoints: this.equitySeries ? this.equitySeries.data().length : 0,
      drawdownPoints: this.drawdownSeries ? this.drawdownSeries.data().length : 0,
    };
  }
}
