// User behaviour: daily activity and click-through rate (user_activity_metrics), recent
// sessions (user_session_stats) and, on a click, one user's timeline (user_event_timeline).

import { draw } from "../charts.js";
import { $, fillTable, linkButton, setKpis } from "../dom.js";
import * as fmt from "../format.js";

const SESSIONS = 20;
const TIMELINE = 50;

export function createBehaviourTab({ onChange }) {
  const panel = $("#panel-behaviour");
  const timelineCard = $("#behaviour-timeline-card", panel);
  let selectedUser = "";

  $("#behaviour-timeline-close", panel).addEventListener("click", () => {
    selectedUser = "";
    timelineCard.hidden = true;
  });

  function openTimeline(userId) {
    selectedUser = userId;
    onChange();
  }

  function showActivity(rows) {
    // The endpoint answers newest day first; charts read left to right.
    const days = [...rows].reverse();
    const labels = days.map((row) => row.date);
    draw($('[data-chart="behaviour-activity"]', panel), {
      kind: "line",
      labels,
      series: [
        { label: "Events", data: days.map((row) => row.total_events) },
        { label: "Users", data: days.map((row) => row.unique_users) },
        { label: "Sessions", data: days.map((row) => row.sessions) },
      ],
      format: fmt.count,
    });
    draw($('[data-chart="behaviour-ctr"]', panel), {
      kind: "line",
      labels,
      series: [{ label: "Click-through rate", data: days.map((row) => row.click_through_rate) }],
      format: fmt.rate,
      axisFormat: fmt.shortRate,
    });
    const sum = (key) => rows.reduce((total, row) => total + row[key], 0);
    const pageViews = sum("page_views");
    const clicks = sum("clicks");
    setKpis(panel, {
      total_events: fmt.count(sum("total_events")),
      page_views: fmt.count(pageViews),
      clicks: fmt.count(clicks),
      // Over the whole range, as the endpoint defines it per day: clicks / page views.
      click_through_rate: pageViews ? fmt.rate(clicks / pageViews) : "–",
    });
  }

  function showSessions(rows) {
    fillTable(
      $("#behaviour-sessions", panel),
      [
        { key: "session_start", label: "Started (UTC)" },
        {
          key: "user_id",
          label: "User",
          cell: (row) => linkButton(row.user_id, () => openTimeline(row.user_id), "Show this user's timeline"),
        },
        { key: "duration_seconds", label: "Duration", numeric: true, format: fmt.duration },
        { key: "event_count", label: "Events", numeric: true, format: fmt.count },
        { key: "page_views", label: "Page views", numeric: true, format: fmt.count },
        { key: "unique_pages", label: "Pages", numeric: true, format: fmt.count },
        { key: "device_type", label: "Device" },
        { key: "browser", label: "Browser" },
        { key: "country", label: "Country" },
      ],
      rows,
      { rowKey: (row) => row.session_id, empty: "No sessions in this date range" },
    );
  }

  function showTimeline(rows) {
    $("#behaviour-timeline-user", panel).textContent = selectedUser;
    fillTable(
      $("#behaviour-timeline", panel),
      [
        { key: "timestamp", label: "Time (UTC)" },
        { key: "event_type", label: "Event" },
        { key: "page_url", label: "Page" },
        { key: "referrer", label: "Referrer" },
        { key: "session_id", label: "Session" },
        { key: "device_type", label: "Device" },
        { key: "properties", label: "Properties" },
      ],
      rows,
      { rowKey: (row) => row.event_id, empty: "No events for this user in this date range" },
    );
    timelineCard.hidden = false;
  }

  return {
    // Every pipe it calls; the tab is shown only when GET /v0/pipes lists them all.
    pipes: ["user_activity_metrics", "user_session_stats", "user_event_timeline"],
    async load({ api, range, signal }) {
      const user = selectedUser;
      const [activity, sessions, timeline] = await Promise.all([
        api.pipe("user_activity_metrics", range, signal),
        api.pipe("user_session_stats", { ...range, limit: SESSIONS }, signal),
        user ? api.pipe("user_event_timeline", { ...range, user_id: user, limit: TIMELINE }, signal) : null,
      ]);
      showActivity(activity.data);
      showSessions(sessions.data);
      if (timeline && user === selectedUser) showTimeline(timeline.data);
    },
  };
}
