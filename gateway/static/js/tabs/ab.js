// A/B tests: the chosen test's variants (test_summary), their conversion rate and revenue over
// time (test_timeseries) and their conversion rate per device or country (test_segments).

import { draw, pivot } from "../charts.js";
import { $, el, fillTable, unique } from "../dom.js";
import * as fmt from "../format.js";

export function createAbTab({ onChange }) {
  const panel = $("#panel-ab");
  const testSelect = $("#ab-test", panel);
  const intervalSelect = $("#ab-interval", panel);
  const segmentSelect = $("#ab-segment", panel);
  for (const select of [testSelect, intervalSelect, segmentSelect]) {
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
    pipes: ["test_summary", "test_timeseries", "test_segments"],
    async load({ api, range, signal }) {
      // Without test_id, test_summary lists every test in the range: that fills the picker.
      const all = await api.pipe("test_summary", range, signal);
      const testId = chooseTest(unique(all.data.map((row) => row.test_id)).sort());
      const segment = segmentSelect.value;
      const [series, segments] = testId
        ? await Promise.all([
            api.pipe("test_timeseries", { ...range, test_id: testId, interval: intervalSelect.value }, signal),
            api.pipe("test_segments", { ...range, test_id: testId, segment }, signal),
          ])
        : [{ data: [] }, { data: [] }];
      showSummary(all.data.filter((row) => row.test_id === testId));
      showTimeseries(series.data);
      showSegments(segments.data, segment);
    },
  };
}
