// Charts, drawn with the vendored Chart.js (static/vendor/, MIT). One chart per <figure>,
// updated in place on refresh so a live dashboard does not flicker.

const PALETTE = ["#2563eb", "#f76707", "#0ca678", "#ae3ec9", "#f59f00", "#1098ad", "#e64980", "#74b816"];
const LABEL_CHARS = 30;

export const color = (index) => PALETTE[index % PALETTE.length];

let configured = false;

function chartJs() {
  const { Chart } = window;
  if (!Chart) throw new Error("the chart library (static/vendor/chart.umd.min.js) did not load");
  if (!configured) {
    Chart.defaults.animation = false;
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.color = "#495057";
    Chart.defaults.borderColor = "#e9ecef";
    configured = true;
  }
  return Chart;
}

function shorten(label) {
  return label.length > LABEL_CHARS ? `${label.slice(0, LABEL_CHARS - 1)}…` : label;
}

function dataset(kind, series, index, points) {
  const c = color(index);
  const type = series.type ?? (kind === "line" ? "line" : "bar");
  if (type === "line") {
    return {
      ...series,
      type,
      borderColor: c,
      backgroundColor: c,
      borderWidth: 2,
      pointRadius: points > 60 ? 0 : 2.5,
      pointHoverRadius: 4,
      spanGaps: true,
      cubicInterpolationMode: "monotone", // smooth, never overshooting the data
      order: 0,
    };
  }
  return { ...series, type, backgroundColor: c, borderColor: c, borderRadius: 3, maxBarThickness: 40, order: 1 };
}

function options(kind, format, axisFormat, legend) {
  const horizontal = kind === "hbar";
  const valueAxis = { beginAtZero: true, ticks: { callback: (value) => axisFormat(value) } };
  const categoryAxis = {
    grid: { display: false },
    ticks: {
      autoSkip: !horizontal,
      maxRotation: 0,
      callback(value) {
        return shorten(String(this.getLabelForValue(value)));
      },
    },
  };
  return {
    indexAxis: horizontal ? "y" : "x",
    interaction: { mode: "index", intersect: false },
    plugins: {
      legend: {
        display: legend,
        position: "bottom",
        labels: { boxWidth: 12, boxHeight: 12, sort: (a, b) => a.datasetIndex - b.datasetIndex },
      },
      tooltip: {
        callbacks: {
          label: (ctx) => `${ctx.dataset.label}: ${format(horizontal ? ctx.parsed.x : ctx.parsed.y)}`,
        },
      },
    },
    scales: horizontal ? { x: valueAxis, y: categoryAxis } : { x: categoryAxis, y: valueAxis },
  };
}

// kind: "line", "bar" or "hbar" (horizontal bars); series: [{label, data, type?}] aligned with
// labels (null = no value); format: a value as tooltips show it; axisFormat: as the axis shows it.
export function draw(figure, { kind, labels, series, format, axisFormat = format }) {
  const Chart = chartJs();
  const canvas = figure.querySelector("canvas");
  const empty = labels.length === 0 || series.every((s) => s.data.every((v) => v === null));
  figure.toggleAttribute("data-empty", empty);
  const datasets = series.map((s, i) => dataset(kind, s, i, labels.length));
  const chart = Chart.getChart(canvas);
  if (chart) {
    chart.data.labels = labels;
    chart.data.datasets = datasets;
    chart.options.plugins.legend.display = series.length > 1; // the Pipes tab's vary
    chart.update();
    return;
  }
  new Chart(canvas, {
    type: kind === "line" ? "line" : "bar",
    data: { labels, datasets },
    options: options(kind, format, axisFormat, series.length > 1),
  });
}

// Rows of several series (e.g. one per variant) on one shared, sorted axis.
export function pivot(rows, { seriesKey, labelKey, valueKey, missing = null }) {
  const labels = [...new Set(rows.map((row) => row[labelKey]))].sort();
  const index = new Map(labels.map((label, i) => [label, i]));
  const bySeries = new Map();
  for (const row of rows) {
    const name = row[seriesKey];
    if (!bySeries.has(name)) bySeries.set(name, new Array(labels.length).fill(missing));
    bySeries.get(name)[index.get(row[labelKey])] = row[valueKey];
  }
  const series = [...bySeries.keys()].sort().map((name) => ({ label: name, data: bySeries.get(name) }));
  return { labels, series };
}

const INTERVAL_FILL = "#bfd3fb";
const ESTIMATE = "#1e3a8a";

// Estimates with their intervals, one row per label: a floating bar from each interval's low to
// its high end and a mark at the estimate. Where a bar crosses 0, the data cannot yet tell the
// estimate from no difference at all.
export function drawIntervals(figure, { labels, estimates, lows, highs, format }) {
  const Chart = chartJs();
  const canvas = figure.querySelector("canvas");
  figure.toggleAttribute("data-empty", labels.length === 0);
  const datasets = [
    {
      type: "bar",
      label: "95% interval",
      data: labels.map((_, i) => [lows[i], highs[i]]),
      backgroundColor: INTERVAL_FILL,
      borderColor: color(0),
      borderWidth: 1,
      borderSkipped: false,
      maxBarThickness: 28,
      order: 1,
    },
    {
      type: "line",
      label: "Lift",
      data: estimates,
      showLine: false,
      pointStyle: "rectRot",
      pointRadius: 6,
      pointHoverRadius: 7,
      backgroundColor: ESTIMATE,
      borderColor: ESTIMATE,
      order: 0,
    },
  ];
  const chart = Chart.getChart(canvas);
  if (chart) {
    chart.data.labels = labels;
    chart.data.datasets = datasets;
    chart.update();
    return;
  }
  new Chart(canvas, {
    type: "bar",
    data: { labels, datasets },
    options: {
      indexAxis: "y",
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            label: (ctx) =>
              Array.isArray(ctx.raw)
                ? `95% interval: ${format(ctx.raw[0])} to ${format(ctx.raw[1])}`
                : `Lift: ${format(ctx.parsed.x)}`,
          },
        },
      },
      scales: {
        x: {
          ticks: { callback: (value) => format(value) },
          // The line at 0: no difference from the control.
          grid: { color: (ctx) => (ctx.tick.value === 0 ? "#868e96" : "#e9ecef") },
        },
        y: { grid: { display: false } },
      },
    },
  });
}
