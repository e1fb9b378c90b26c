// The market tab: candles with regime bands and signal markers, the latest signal, signal quality.

import { api, chartTime, el, isoTime, num, pct, replace } from "./api.js";

const LC = window.LightweightCharts;
export const REGIME_COLORS = {
  trending_up: "rgba(22, 163, 74, 0.13)",
  trending_down: "rgba(220, 38, 38, 0.13)",
  ranging: "rgba(100, 116, 139, 0.10)",
  volatile: "rgba(234, 179, 8, 0.20)",
  unknown: "rgba(0, 0, 0, 0)",
};
const DIRECTION_STYLE = {
  long: { color: "#16a34a", shape: "arrowUp", position: "belowBar" },
  short: { color: "#dc2626", shape: "arrowDown", position: "aboveBar" },
  flat: { color: "#64748b", shape: "circle", position: "aboveBar" },
};
const STRENGTH_SIZE = { strong: 2, moderate: 1.4, medium: 1.4, weak: 1 };
const CANDLE_LIMIT = 500;

export class MarketView {
  constructor() {
    const container = document.getElementById("chart");
    this.chart = LC.createChart(container, {
      autoSize: true,
      layout: { background: { color: "#ffffff" }, textColor: "#334155" },
      grid: { vertLines: { color: "#f1f5f9" }, horzLines: { color: "#f1f5f9" } },
      timeScale: { timeVisible: true, secondsVisible: false },
      rightPriceScale: { scaleMargins: { top: 0.08, bottom: 0.08 } },
    });
    // Regime bands: a full-height area (value 1, coloured per bar) on its own hidden scale, behind the candles.
    this.regimes = this.chart.addSeries(LC.AreaSeries, {
      priceScaleId: "regime", lastValueVisible: false, priceLineVisible: false, lineVisible: false,
      crosshairMarkerVisible: false, autoscaleInfoProvider: () => ({ priceRange: { minValue: 0, maxValue: 1 } }),
    });
    this.chart.priceScale("regime").applyOptions({ visible: false, scaleMargins: { top: 0, bottom: 0 } });
    this.candles = this.chart.addSeries(LC.CandlestickSeries, {
      upColor: "#16a34a", downColor: "#dc2626", wickUpColor: "#16a34a", wickDownColor: "#dc2626", borderVisible: false,
    });
    this.markers = LC.createSeriesMarkers(this.candles, []);
    this.signals = [];
    this.liveMessages = 0;
    this.lastLiveSignal = null;
  }

  /** Every panel says there is nothing to show (instead of "loading…"), and why. */
  showEmpty(why) {
    this.candles.setData([]);
    this.regimes.setData([]);
    this.markers.setMarkers([]);
    this.signals = [];
    replace(document.getElementById("regime-legend"), "");
    for (const id of ["signal-body", "quality-body"]) {
      const body = document.getElementById(id);
      body.className = "muted";
      replace(body, `No data: ${why}.`);
    }
  }

  async load(symbol, timeframe) {
    this.symbol = symbol;
    this.timeframe = timeframe;
    for (const id of ["signal-body", "quality-body"]) replace(document.getElementById(id), "loading…");
    document.getElementById("chart-title").textContent = `${symbol} ${timeframe} — candles, regimes, signals`;
    const [candles, regimes, signals] = await Promise.all([
      api(`/api/candles/${symbol}/${timeframe}?limit=${CANDLE_LIMIT}`),
      api(`/api/regimes/${symbol}/${timeframe}?limit=${CANDLE_LIMIT}`).catch(() => null),
      api(`/api/signals/${symbol}/${timeframe}?limit=1000`).catch(() => ({ history: [], latest: null })),
    ]);
    this.candles.setData(candles.candles.map((c) => ({
      time: chartTime(c.ts), open: c.open, high: c.high, low: c.low, close: c.close,
    })));
    this.firstTs = candles.candles.length ? candles.candles[0].ts : null;
    this.regimes.setData(regimes ? regimes.ts.map((ts, i) => {
      const color = REGIME_COLORS[regimes.regime[i]] || REGIME_COLORS.unknown;
      return { time: chartTime(ts), value: 1, topColor: color, bottomColor: color, lineColor: color };
    }) : []);
    this.signals = signals.history;
    this.renderLegend(regimes);
    this.renderMarkers();
    this.renderSignal(signals.latest);
    requestAnimationFrame(() => this.chart.timeScale().fitContent());
    this.loadQuality();
  }

  renderLegend(regimes) {
    const legend = document.getElementById("regime-legend");
    if (!regimes) { replace(legend, "regimes unavailable for this series"); return; }
    const items = Object.entries(regimes.shares).filter(([name]) => name !== "unknown").map(([name, share]) =>
      el("span", {}, el("i", { style: `background:${REGIME_COLORS[name].replace(/0\.\d+\)$/, "0.6)")}` }),
        `${name.replace("_", " ")} ${pct(share, 0)}`));
    replace(legend, el("span", {}, "Regime bands:"), items,
      el("span", {}, `Signals: ${this.signals.length} stored`));
  }

  renderMarkers() {
    const markers = this.signals
      .filter((s) => this.firstTs !== null && s.ts >= this.firstTs)
      .map((s) => {
        const style = DIRECTION_STYLE[s.direction] || DIRECTION_STYLE.flat;
        return {
          time: chartTime(s.ts), position: style.position, shape: style.shape, color: style.color,
          size: STRENGTH_SIZE[s.strength] || 1, id: s.event_id,
          text: s.strength === "strong" ? `${pct(s.confidence, 0)}` : undefined,
        };
      })
      .sort((a, b) => a.time - b.time);
    this.markers.setMarkers(markers);
  }

  renderSignal(signal) {
    const body = document.getElementById("signal-body");
    if (!signal) {
      body.className = "muted";
      replace(body, "No signals for this series yet: the signal pipeline writes them to the event store as candles close.");
      return;
    }
    body.className = "";
    const members = Object.keys({ ...signal.member_probabilities, ...signal.member_weights }).sort();
    const classes = [...new Set(members.flatMap((m) => Object.keys(signal.member_probabilities[m] || {})))];
    const table = el("table", { id: "member-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "member"), classes.map((c) => el("th", { class: "num" }, `p(${c})`)),
        el("th", { class: "num" }, "weight"))),
      el("tbody", {}, members.map((m) => el("tr", {},
        el("td", {}, m),
        classes.map((c) => el("td", { class: "num" }, pct((signal.member_probabilities[m] || {})[c], 0))),
        el("td", { class: "num" }, el("span", { class: "bar", style: `width:${Math.round((signal.member_weights[m] || 0) * 36)}px` }),
          " ", num(signal.member_weights[m], 2))))));
    replace(body,
      el("div", { class: `direction ${signal.direction}`, id: "signal-direction" }, signal.direction),
      el("dl", { class: "kv" },
        el("dt", {}, "confidence"), el("dd", { id: "signal-confidence" }, pct(signal.confidence, 1)),
        el("dt", {}, "strength"), el("dd", {}, signal.strength),
        el("dt", {}, "regime"), el("dd", {}, signal.regime.replace("_", " ")),
        el("dt", {}, "candle"), el("dd", {}, isoTime(signal.ts)),
        el("dt", {}, "reason"), el("dd", { id: "signal-reason" }, signal.reason || "—")),
      members.length ? table : el("p", { class: "muted" }, "no member breakdown"));
  }

  async loadQuality() {
    const body = document.getElementById("quality-body");
    let quality;
    try {
      quality = await api(`/api/quality/${this.symbol}/${this.timeframe}`);
    } catch (error) {
      replace(body, `quality unavailable: ${error.message}`);
      return;
    }
    if (!quality.available) {
      body.className = "muted";
      replace(body, `No data — ${quality.reason}.`);
      return;
    }
    body.className = "";
    const last = quality.hit_rate.length ? quality.hit_rate[quality.hit_rate.length - 1] : null;
    replace(body,
      el("dl", { class: "kv" },
        el("dt", {}, "rolling hit rate"), el("dd", {}, last ? `${pct(last.hit_rate)} (${quality.window} signals)` : "n/a")),
      reliabilityDiagram(quality.reliability),
      quality.drift_alarms.length
        ? el("ul", {}, quality.drift_alarms.map((a) => el("li", { class: "alarm" }, `${isoTime(a.ts)} ${a.kind}: ${a.message}`)))
        : el("p", { class: "muted" }, "no drift alarms"));
  }

  /** A live message from the WebSocket. */
  onLive(message) {
    this.liveMessages += 1;
    const data = message.data;
    if (message.type === "CandleClosed" && data.timeframe === this.timeframe) {
      this.candles.update({ time: chartTime(data.ts), open: data.open, high: data.high, low: data.low, close: data.close });
    } else if (message.type === "SignalGenerated" && data.timeframe === this.timeframe) {
      this.lastLiveSignal = data;
      this.signals = this.signals.filter((s) => s.event_id !== data.event_id).concat([data]);
      this.renderMarkers();
      this.renderSignal(data);
    }
  }

  state() {
    return {
      symbol: this.symbol, timeframe: this.timeframe, candles: this.candles.data().length,
      regimeBars: this.regimes.data().length, markers: this.markers.markers().length,
      liveMessages: this.liveMessages, lastLiveSignal: this.lastLiveSignal ? this.lastLiveSignal.event_id : null,
    };
  }
}

function reliabilityDiagram(bins) {
  // Predicted confidence (x) against observed hit rate (y); the diagonal is perfect calibration.
  const ns = "http://www.w3.org/2000/svg";
  const size = 180, pad = 24;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", size + pad); svg.setAttribute("height", size + pad);
  svg.setAttribute("role", "img"); svg.setAttribute("aria-label", "reliability diagram");
  const line = (x1, y1, x2, y2, color) => {
    const l = document.createElementNS(ns, "line");
    Object.entries({ x1, y1, x2, y2, stroke: color }).forEach(([k, v]) => l.setAttribute(k, v));
    svg.append(l);
  };
  const x = (v) => pad + v * size, y = (v) => size - v * size;
  line(x(0), y(0), x(1), y(0), "#94a3b8"); line(x(0), y(0), x(0), y(1), "#94a3b8");
  line(x(0), y(0), x(1), y(1), "#cbd5e1");
  for (const bin of bins) {
    if (bin.mean_confidence === null || bin.hit_rate === null) continue;
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", x(bin.mean_confidence)); dot.setAttribute("cy", y(bin.hit_rate));
    dot.setAttribute("r", Math.min(8, 2 + Math.sqrt(bin.count) / 3)); dot.setAttribute("fill", "#2563eb");
    svg.append(dot);
  }
  return el("div", {}, el("div", { class: "muted" }, "reliability (confidence → hit rate)"), svg);
}
