// SaaS: active users per day, week or month (active_users), feature usage (feature_usage) and
// the sessions that lasted (session_insights).

import { draw } from "../charts.js";
import { $, fillTable, setKpis } from "../dom.js";
import * as fmt from "../format.js";

const SESSIONS = 20;

export function createSaasTab({ onChange }) {
  const panel = $("#panel-saas");
  const intervalSelect = $("#saas-interval", panel);
  intervalSelect.addEventListener("change", onChange);

  function showActive(rows) {
    draw($('[data-chart="saas-active"]', panel), {
      kind: "bar",
      labels: rows.map((row) => fmt.period(row.period)),
      series: [
        { label: "Active users", data: rows.map((row) => row.active_users) },
        { label: "Sessions", data: rows.map((row) => row.sessions), type: "line" },
      ],
      format: fmt.count,
    });
  }

  function showFeatures(rows) {
    draw($('[data-chart="saas-features"]', panel), {
      kind: "hbar",
      labels: rows.map((row) => row.feature || "(none)"),
      series: [{ label: "Events", data: rows.map((row) => row.total_events) }],
      format: fmt.count,
    });
  }

  function showSessions(rows) {
    fillTable(
      $("#saas-sessions", panel),
      [
        { key: "session_start", label: "Started (UTC)" },
        { key: "user_id", label: "User" },
        { key: "session_duration_seconds", label: "Duration", numeric: true, format: fmt.duration },
        { key: "event_count", label: "Events", numeric: true, format: fmt.count },
        { key: "device_type", label: "Device" },
        { key: "browser", label: "Browser" },
        { key: "os", label: "OS" },
        { key: "location", label: "Location" },
      ],
      rows,
      { rowKey: (row) => row.session_id, empty: "No sessions longer than 0 s in this date range" },
    );
  }

  return {
    // Every pipe it calls; the tab is shown only when GET /v0/pipes lists them all.
    pipes: ["active_users", "feature_usage", "session_insights"],
    async load({ api, range, signal }) {
      const [active, features, sessions] = await Promise.all([
        api.pipe("active_users", { ...range, interval: intervalSelect.value }, signal),
        api.pipe("feature_usage", range, signal),
        api.pipe("session_insights", { ...range, limit: SESSIONS }, signal),
      ]);
      showActive(active.data);
      showFeatures(features.data);
      showSessions(sessions.data);
      const latest = active.data.at(-1);
      setKpis(panel, {
        latest_active_users: latest ? fmt.count(latest.active_users) : "–",
        total_events: fmt.count(active.data.reduce((total, row) => total + row.total_events, 0)),
        top_feature: features.data[0]?.feature || "–",
      });
    },
  };
}
