// Journeys: a funnel through ordered steps (funnel), a retention heatmap of cohorts (retention)
// and the pages around one page (page_paths).

import { draw } from "../charts.js";
import { $, el, fillTable } from "../dom.js";
import * as fmt from "../format.js";

const PATH_PAGES = 10;
const DAY_MS = 86_400_000;

// The steps box holds "a, b, c": the funnel takes each as one `steps` value.
export function splitSteps(text) {
  return text
    .split(",")
    .map((step) => step.trim())
    .filter((step) => step !== "");
}

// Whole periods from one period's start (`YYYY-MM-DD`, UTC) to another's.
function periodsBetween(from, to, period) {
  const [a, b] = [new Date(`${from}T00:00:00Z`), new Date(`${to}T00:00:00Z`)];
  if (period === "month") {
    return (b.getUTCFullYear() - a.getUTCFullYear()) * 12 + b.getUTCMonth() - a.getUTCMonth();
  }
  return Math.round((b - a) / DAY_MS / (period === "week" ? 7 : 1));
}

function addPeriods(start, count, period) {
  const date = new Date(`${start}T00:00:00Z`);
  if (period === "month") date.setUTCMonth(date.getUTCMonth() + count);
  else date.setUTCDate(date.getUTCDate() + count * (period === "week" ? 7 : 1));
  return date.toISOString().slice(0, 10);
}

// One row per cohort, with p0, p1, … holding the share active that many periods later: 0 where
// no one came back in a period the data covers, absent (blank) past the latest period seen.
export function triangle(rows, period) {
  const cohorts = new Map();
  let latest = null;
  for (const row of rows) {
    if (!cohorts.has(row.cohort)) {
      cohorts.set(row.cohort, { cohort: row.cohort, cohort_users: row.cohort_users });
    }
    cohorts.get(row.cohort)[`p${row.period_number}`] = row.retention;
    const seen = addPeriods(row.cohort, row.period_number, period);
    if (latest === null || seen > latest) latest = seen;
  }
  const table = [...cohorts.values()];
  const width = table.length ? periodsBetween(table[0].cohort, latest, period) + 1 : 0;
  for (const row of table) {
    const observed = periodsBetween(row.cohort, latest, period);
    for (let n = 0; n <= observed; n += 1) row[`p${n}`] ??= 0;
  }
  return { rows: table, width };
}

function heat(value) {
  if (value === undefined) return "";
  const cell = el("span", { className: value >= 0.5 ? "heat dark" : "heat" }, fmt.shortRate(value));
  // Set through the CSSOM: the page's Content-Security-Policy forbids style attributes.
  cell.style.backgroundColor = `rgba(37, 99, 235, ${0.08 + 0.92 * value})`;
  return cell;
}

export function createJourneysTab({ onChange }) {
  const panel = $("#panel-journeys");
  const funnelForm = $("#funnel-form", panel);
  const pathsForm = $("#paths-form", panel);
  for (const form of [funnelForm, pathsForm]) {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      onChange();
    });
  }
  for (const id of ["#funnel-source", "#funnel-step-by", "#funnel-window", "#funnel-mode", "#funnel-breakdown"]) {
    $(id, panel).addEventListener("change", onChange);
  }
  for (const id of ["#retention-source", "#retention-period"]) {
    $(id, panel).addEventListener("change", onChange);
  }

  function funnelParams() {
    return {
      steps: splitSteps($("#funnel-steps", panel).value),
      source: $("#funnel-source", panel).value,
      step_by: $("#funnel-step-by", panel).value,
      window_seconds: $("#funnel-window", panel).value,
      mode: $("#funnel-mode", panel).value,
      breakdown: $("#funnel-breakdown", panel).value,
    };
  }

  function showFunnel(rows, steps, broken) {
    const groups = [...new Set(rows.map((row) => row.breakdown))];
    draw($('[data-chart="journeys-funnel"]', panel), {
      kind: "bar",
      labels: steps.map((step, i) => `${i + 1}. ${step}`),
      series: groups.map((group) => ({
        label: broken ? group || "(none)" : "Users",
        data: steps.map((_, i) => rows.find((r) => r.breakdown === group && r.step === i + 1)?.users ?? null),
      })),
      format: fmt.count,
    });
    fillTable(
      $("#journeys-funnel", panel),
      [
        ...(broken ? [{ key: "breakdown", label: "Breakdown", format: (v) => v || "(none)" }] : []),
        { key: "step", label: "Step", numeric: true },
        { key: "step_name", label: "Event or page" },
        { key: "users", label: "Users", numeric: true, format: fmt.count },
        { key: "conversion_from_previous", label: "From previous", numeric: true, format: fmt.rate },
        { key: "conversion_overall", label: "From first", numeric: true, format: fmt.rate },
        {
          key: "median_seconds_from_previous",
          label: "Median time from previous",
          numeric: true,
          format: (v, row) => (row.step === 1 || row.users === 0 ? "–" : fmt.duration(Math.round(v))),
        },
      ],
      rows,
      {
        rowKey: (row) => `${row.breakdown}|${row.step}`,
        rowClass: (row, i) => (broken && i > 0 && rows[i - 1].breakdown !== row.breakdown ? "new-group" : ""),
        empty: "No user reached the first step in this date range",
      },
    );
  }

  function showRetention(rows, period) {
    const { rows: cohorts, width } = triangle(rows, period);
    const columns = [
      { key: "cohort", label: "Cohort" },
      { key: "cohort_users", label: "Users", numeric: true, format: fmt.count },
    ];
    for (let n = 0; n < width; n += 1) {
      columns.push({ key: `p${n}`, label: String(n), numeric: true, cell: (row) => heat(row[`p${n}`]) });
    }
    fillTable($("#journeys-retention", panel), columns, cohorts, {
      rowKey: (row) => row.cohort,
      empty: "No users in this date range",
    });
  }

  function showPaths(rows) {
    for (const direction of ["previous", "next"]) {
      const mine = rows.filter((row) => row.direction === direction);
      draw($(`[data-chart="journeys-${direction}"]`, panel), {
        kind: "hbar",
        labels: mine.map((row) => fmt.urlPath(row.page_url)),
        series: [{ label: "Sessions", data: mine.map((row) => row.transitions) }],
        format: fmt.count,
      });
    }
    fillTable(
      $("#journeys-paths", panel),
      [
        { key: "direction", label: "Direction", format: (v) => (v === "next" ? "went to" : "came from") },
        { key: "page_url", label: "Page", format: fmt.urlPath },
        { key: "transitions", label: "Sessions", numeric: true, format: fmt.count },
        { key: "share", label: "Share", numeric: true, format: fmt.rate },
      ],
      rows,
      {
        rowKey: (row) => `${row.direction}|${row.page_url}`,
        rowClass: (row, i) => (i > 0 && rows[i - 1].direction !== row.direction ? "new-group" : ""),
        empty: "No session viewed this page in this date range",
      },
    );
  }

  return {
    // Every pipe it calls; the tab is shown only when GET /v0/pipes lists them all.
    pipes: ["funnel", "retention", "page_paths"],
    async load({ api, range, signal }) {
      const funnel = funnelParams();
      const period = $("#retention-period", panel).value;
      const page = $("#paths-page", panel).value.trim();
      const [steps, retention, paths] = await Promise.all([
        api.pipe("funnel", { ...range, ...funnel }, signal),
        api.pipe("retention", { ...range, source: $("#retention-source", panel).value, period }, signal),
        page ? api.pipe("page_paths", { ...range, page_url: page, limit: PATH_PAGES }, signal) : { data: [] },
      ]);
      showFunnel(steps.data, funnel.steps, funnel.breakdown !== "none");
      showRetention(retention.data, period);
      showPaths(paths.data);
    },
  };
}

