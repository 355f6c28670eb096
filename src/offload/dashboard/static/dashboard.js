// offload dashboard: live counts, charts, job state and progress by polling the server's JSON.
// Hand-written, no dependencies, no build step; the Content-Security-Policy
// allows only this file to run.
"use strict";

const POLL_MS = 2000;

async function getJSON(path) {
  const response = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw new Error(path + ": " + response.status);
  return response.json();
}

function liveCounts(table) {
  const cells = table.parentElement.querySelectorAll("[data-queue][data-state]");
  const known = new Set(Array.from(cells, (cell) => cell.dataset.queue));
  async function tick() {
    try {
      const counts = await getJSON("/api/counts");
      for (const queue of Object.keys(counts)) {
        if (!known.has(queue)) { location.reload(); return; }  // a new queue: redraw
      }
      for (const cell of cells) {
        const value = String((counts[cell.dataset.queue] || {})[cell.dataset.state] || 0);
        if (cell.textContent !== value) {
          cell.textContent = value;
          cell.classList.add("changed");
          setTimeout(() => cell.classList.remove("changed"), 600);
        }
      }
    } catch (error) {
      console.warn("offload: counts not refreshed", error);
    }
    setTimeout(tick, POLL_MS);
  }
  setTimeout(tick, POLL_MS);
}

function liveCharts(section) {
  const figures = section.querySelectorAll("figure.chart");
  async function tick() {
    try {
      const charts = await getJSON("/api/charts");
      charts.forEach((chart, index) => {
        const figure = figures[index];
        if (!figure) return;
        figure.querySelector("[data-chart-total]").textContent = chart.total;
        figure.querySelector("[data-chart-top]").textContent = chart.top;
        const lines = figure.querySelectorAll("polyline");
        chart.lines.forEach((points, i) => { if (lines[i]) lines[i].setAttribute("points", points); });
      });
    } catch (error) {
      console.warn("offload: charts not refreshed", error);
    }
    setTimeout(tick, POLL_MS * 5);
  }
  if (figures.length) setTimeout(tick, POLL_MS);
}

function showProgress(fields, progress) {
  if (!progress) return;
  const bar = fields.querySelector("[data-progress-bar]");
  if (progress.percent === null) {
    bar.removeAttribute("value");  // no total: an indeterminate bar
  } else {
    bar.max = 100;
    bar.value = progress.percent;
  }
  bar.hidden = false;
  fields.querySelector("[data-progress-text]").textContent = progress.text;
  fields.querySelector("[data-progress-at]").textContent =
    "at " + progress.at + " UTC (" + progress.ago + ")";
  fields.querySelector("[data-progress-note]").textContent = progress.note;  // text, never HTML
}

function liveJob(fields) {
  const id = fields.dataset.liveJob;
  const shown = fields.dataset.state;
  async function tick() {
    try {
      const job = await getJSON("/api/jobs/" + encodeURIComponent(id));
      if (job.state !== shown) { location.replace("/jobs/" + encodeURIComponent(id)); return; }
      showProgress(fields, job.progress);
    } catch (error) {
      console.warn("offload: job not refreshed", error);
    }
    setTimeout(tick, POLL_MS / 2);
  }
  if (!["succeeded", "failed", "cancelled"].includes(shown)) setTimeout(tick, POLL_MS / 2);
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.querySelector("[data-live-counts]");
  if (table) liveCounts(table);
  const section = document.querySelector("[data-live-charts]");
  if (section) liveCharts(section);
  const fields = document.querySelector("[data-live-job]");
  if (fields) liveJob(fields);
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
