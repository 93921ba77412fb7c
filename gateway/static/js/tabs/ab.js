// A/B tests: the chosen test's variants (test_summary), whether each beats the control and by how
// much (test_results: significance, intervals, a lift chart, the sample-ratio check), their
// conversion rate and revenue over time (test_timeseries) and their conversion rate per device
// or country (test_segments).

import { draw, drawIntervals, pivot } from "../charts.js";
import { $, el, fillTable, unique } from "../dom.js";
import * as fmt from "../format.js";

export function createAbTab({ onChange }) {
  const panel = $("#panel-ab");
  const testSelect = $("#ab-test", panel);
  const intervalSelect = $("#ab-interval", panel);
  const segmentSelect = $("#ab-segment", panel);
  const sequentialSwitch = $("#ab-sequential", panel);
  for (const select of [testSelect, intervalSelect, segmentSelect, sequentialSwitch]) {
    select.addEventListener("change", onChange);
  }

  function chooseTest(testIds) {
    const current = testSelect.value;
    testSelect.replaceChildren(...testIds.map((id) => el("option", { value: id }, id)));
    testSelect.disabled = testIds.length === 0;
    if (testIds.includes(current)) testSelect.value = current;
    return testSelect.value;
  }

  function showSummary(rows) {
    // The first variant (A, control…) is the baseline the others are compared with.
    const baseline = rows[0]?.conversion_rate ?? 0;
    const lift = (row) =>
      row === rows[0] || baseline === 0 ? null : row.conversion_rate / baseline - 1;
    fillTable(
      $("#ab-summary", panel),
      [
        { key: "variant", label: "Variant" },
        { key: "users", label: "Users", numeric: true, format: fmt.count },
        { key: "conversions", label: "Conversions", numeric: true, format: fmt.count },
        { key: "conversion_rate", label: "Conversion rate", numeric: true, format: fmt.rate },
        {
          key: "lift",
          label: rows.length ? `Lift vs ${rows[0].variant}` : "Lift",
          numeric: true,
          cell: (row) => {
            const value = lift(row);
            const tone = value === null ? "" : value > 0 ? "up" : value < 0 ? "down" : "";
            return el("span", { className: tone }, fmt.lift(value));
          },
        },
        { key: "total_revenue", label: "Revenue", numeric: true, format: fmt.money },
        { key: "revenue_per_user", label: "Revenue per user", numeric: true, format: fmt.money },
      ],
      rows,
      { rowKey: (row) => row.variant, empty: "No events for this test in this date range" },
    );
  }

  // What a variant's row says in words: the control, a significant win or loss, or not yet.
  function verdict(row) {
    if (row.variant === row.control) return el("span", {}, "Control");
    if (!row.significant) return el("span", { className: "pending" }, "Not significant yet");
    return row.lift > 0
      ? el("span", { className: "up" }, "Significant: better")
      : el("span", { className: "down" }, "Significant: worse");
  }

  const between = (low, high, format) => `${format(low)} to ${format(high)}`;

  function showResults(rows) {
    const control = rows[0]?.control ?? "";
    $("#ab-control", panel).textContent = control || "control";
    const srm = $("#ab-srm", panel);
    const broken = rows.find((row) => row.srm);
    srm.hidden = !broken;
    srm.textContent = broken
      ? `Sample ratio mismatch: the users per variant (${rows.map((r) => fmt.count(r.users)).join(" / ")}) ` +
        `are not the expected split (chi-square p = ${fmt.pValue(broken.srm_p_value)}). ` +
        "Assignment or tracking is broken; do not trust these results."
      : "";
    fillTable(
      $("#ab-results", panel),
      [
        { key: "variant", label: "Variant" },
        {
          key: "conversion_rate",
          label: "Conversion rate (95% CI)",
          numeric: true,
          cell: (row) =>
            `${fmt.rate(row.conversion_rate)} (${between(row.conversion_rate_low, row.conversion_rate_high, fmt.rate)})`,
        },
        {
          key: "lift",
          label: "Lift (95% CI)",
          numeric: true,
          cell: (row) =>
            row.variant === row.control
              ? "–"
              : `${fmt.points(row.lift)} (${between(row.lift_low, row.lift_high, fmt.points)})`,
        },
        {
          key: "relative_lift",
          label: "Relative lift",
          numeric: true,
          cell: (row) => (row.variant === row.control ? "–" : fmt.lift(row.relative_lift)),
        },
        {
          key: "p_value",
          label: "p-value",
          numeric: true,
          cell: (row) => (row.variant === row.control ? "–" : fmt.pValue(row.p_value)),
        },
        {
          key: "chance_to_beat_control",
          label: "Chance to beat control",
          numeric: true,
          cell: (row) => (row.variant === row.control ? "–" : fmt.rate(row.chance_to_beat_control)),
        },
        {
          key: "revenue_lift",
          label: "Revenue per user vs control (95% CI)",
          numeric: true,
          cell: (row) =>
            row.variant === row.control
              ? fmt.money(row.revenue_per_user)
              : `${fmt.signedMoney(row.revenue_lift)} (${between(row.revenue_lift_low, row.revenue_lift_high, fmt.signedMoney)})`,
        },
        { key: "verdict", label: "Verdict", cell: verdict },
      ],
      rows,
      {
        rowKey: (row) => row.variant,
        empty: "No events for this test in this date range",
      },
    );
    const variants = rows.filter((row) => row.variant !== row.control);
    drawIntervals($('[data-chart="ab-lift"]', panel), {
      labels: variants.map((row) => row.variant),
      estimates: variants.map((row) => row.lift),
      lows: variants.map((row) => row.lift_low),
      highs: variants.map((row) => row.lift_high),
      format: fmt.points,
    });
  }

  function showTimeseries(rows) {
    const periods = rows.map((row) => ({ ...row, period: fmt.period(row.period) }));
    const byVariant = { seriesKey: "variant", labelKey: "period" };
    draw($('[data-chart="ab-conversion"]', panel), {
      kind: "line",
      ...pivot(periods, { ...byVariant, valueKey: "conversion_rate" }),
      format: fmt.rate,
      axisFormat: fmt.shortRate,
    });
    // A bucket with no events brought in no revenue.
    draw($('[data-chart="ab-revenue"]', panel), {
      kind: "line",
      ...pivot(periods, { ...byVariant, valueKey: "total_revenue", missing: 0 }),
      format: fmt.money,
      axisFormat: fmt.count,
    });
  }

  function showSegments(rows, segment) {
    $("#ab-segment-name", panel).textContent = segment;
    draw($('[data-chart="ab-segments"]', panel), {
      kind: "bar",
      ...pivot(rows, { seriesKey: "variant", labelKey: "segment", valueKey: "conversion_rate" }),
      format: fmt.rate,
      axisFormat: fmt.shortRate,
    });
  }

  return {
    // Every pipe it calls; the tab is shown only when GET /v0/pipes lists them all.
    pipes: ["test_summary", "test_results", "test_timeseries", "test_segments"],
    async load({ api, range, signal }) {
      // Without test_id, test_summary lists every test in the range: that fills the picker.
      const all = await api.pipe("test_summary", range, signal);
      const testId = chooseTest(unique(all.data.map((row) => row.test_id)).sort());
      const segment = segmentSelect.value;
      const sequential = sequentialSwitch.checked ? "true" : "false";
      const [results, series, segments] = testId
        ? await Promise.all([
            api.pipe("test_results", { ...range, test_id: testId, sequential }, signal),
            api.pipe("test_timeseries", { ...range, test_id: testId, interval: intervalSelect.value }, signal),
            api.pipe("test_segments", { ...range, test_id: testId, segment }, signal),
          ])
        : [{ data: [] }, { data: [] }, { data: [] }];
      showSummary(all.data.filter((row) => row.test_id === testId));
      showResults(results.data);
      showTimeseries(series.data);
      showSegments(segments.data, segment);
    },
  };
}
