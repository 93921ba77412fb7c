// Clickstream: the most viewed pages (get_popular_pages), a user's journey across sessions
// (get_user_journey) and, on a click, one session's events (get_session_events).

import { draw } from "../charts.js";
import { $, fillTable, linkButton } from "../dom.js";
import * as fmt from "../format.js";

const PAGES = 10;
// The columns a journey's events and a session's share (each table adds its own).
const TIME = { key: "timestamp", label: "Time (UTC)" };
const EVENT = [
  { key: "event_type", label: "Event" },
  { key: "page_title", label: "Page" },
  { key: "page_url", label: "URL", format: fmt.urlPath },
  { key: "referrer", label: "Referrer" },
];

export function createClickstreamTab({ onChange }) {
  const panel = $("#panel-clickstream");
  const userInput = $("#journey-user", panel);
  const sessionInput = $("#session-id", panel);
  let selectedUser = "";
  let selectedSession = "";

  $("#journey-form", panel).addEventListener("submit", (event) => {
    event.preventDefault();
    selectedUser = userInput.value.trim();
    onChange();
  });
  $("#session-form", panel).addEventListener("submit", (event) => {
    event.preventDefault();
    selectedSession = sessionInput.value.trim();
    onChange();
  });

  function openSession(sessionId) {
    selectedSession = sessionId;
    sessionInput.value = sessionId;
    onChange();
  }

  function showPages(rows) {
    draw($('[data-chart="clickstream-pages"]', panel), {
      kind: "hbar",
      labels: rows.map((row) => row.page_title || fmt.urlPath(row.page_url)),
      series: [{ label: "Page views", data: rows.map((row) => row.view_count) }],
      format: fmt.count,
    });
    fillTable(
      $("#clickstream-pages", panel),
      [
        { key: "page_title", label: "Page" },
        { key: "page_url", label: "URL", format: fmt.urlPath },
        { key: "view_count", label: "Views", numeric: true, format: fmt.count },
      ],
      rows,
      { rowKey: (row) => row.page_url, empty: "No page views in this date range" },
    );
  }

  function showJourney(rows) {
    fillTable(
      $("#clickstream-journey", panel),
      [
        TIME,
        {
          key: "session_id",
          label: "Session",
          cell: (row) => linkButton(row.session_id, () => openSession(row.session_id), "Show this session's events"),
        },
        ...EVENT,
        { key: "device_type", label: "Device" },
        { key: "browser", label: "Browser" },
      ],
      rows,
      {
        // A rule between sessions makes the visits readable at a glance.
        rowClass: (row, i) =>
          [
            i > 0 && rows[i - 1].session_id !== row.session_id ? "new-group" : "",
            row.session_id === selectedSession ? "selected" : "",
          ].join(" "),
        empty: selectedUser ? "No events for this user in this date range" : "Enter a user ID",
      },
    );
  }

  function showSession(rows) {
    fillTable(
      $("#clickstream-session", panel),
      [
        TIME,
        ...EVENT,
        { key: "user_id", label: "User" },
        { key: "properties", label: "Properties" },
      ],
      rows,
      {
        rowKey: (row) => row.event_id,
        empty: selectedSession ? "No events in this session" : "Enter a session ID or click one above",
      },
    );
  }

  return {
    // Every pipe it calls; the tab is shown only when GET /v0/pipes lists them all.
    pipes: ["get_popular_pages", "get_user_journey", "get_session_events"],
    async load({ api, range, signal }) {
      const user = selectedUser;
      const session = selectedSession;
      const [pages, journey, events] = await Promise.all([
        api.pipe("get_popular_pages", { ...range, limit: PAGES }, signal),
        user ? api.pipe("get_user_journey", { ...range, user_id: user }, signal) : { data: [] },
        session ? api.pipe("get_session_events", { session_id: session }, signal) : { data: [] },
      ]);
      showPages(pages.data);
      showJourney(journey.data);
      showSession(events.data);
    },
  };
}
