// The pipeline tab: server health and the live pipeline's stages (throughput, lag, latency).

import { api, el, isoTime, num, replace } from "./api.js";

export async function loadPipeline() {
  const [health, pipeline] = await Promise.all([api("/api/health", { alsoOk: [503] }), api("/api/pipeline")]);
  document.getElementById("health-body").dataset.loaded = document.getElementById("pipeline-body").dataset.loaded = "yes";
  replace(document.getElementById("health-body"), el("table", { id: "health-table" },
    el("tbody", {}, ["store", "bus", "models", "pipeline"].map((name) => {
      const part = health[name] ?? { ok: true, detail: "not configured: live updates from this server only" };
      return el("tr", {},
        el("td", {}, name),
        el("td", { class: part.ok ? "pos" : "neg" },
          !part.ok ? "problem" : !health[name] || (name === "pipeline" && part.detail !== "running") ? "off" : "ok"),
        el("td", {}, part.detail));
    }))));
  const body = document.getElementById("pipeline-body");
  body.className = pipeline.running ? "" : "muted";
  if (!pipeline.running) {
    replace(body, `Not running — ${pipeline.reason || "no status reported"}.`);
    return pipeline;
  }
  replace(body,
    pipeline.updated_ts ? el("p", { class: "muted" }, `updated ${isoTime(pipeline.updated_ts)}`) : null,
    el("table", { id: "stages-table" },
      el("thead", {}, el("tr", {}, ["stage", "processed", "per second", "lag (ms)", "latency p50 (ms)", "p99 (ms)", "errors"]
        .map((h, i) => el("th", { class: i ? "num" : undefined }, h)))),
      el("tbody", {}, pipeline.stages.map((s) => el("tr", {},
        el("td", {}, s.name), el("td", { class: "num" }, num(s.processed, 0)), el("td", { class: "num" }, num(s.throughput_per_s, 1)),
        el("td", { class: "num" }, num(s.lag_ms, 0)), el("td", { class: "num" }, num(s.latency_ms_p50, 1)),
        el("td", { class: "num" }, num(s.latency_ms_p99, 1)), el("td", { class: `num ${s.errors ? "neg" : ""}` }, num(s.errors, 0)))))));
  return pipeline;
}
