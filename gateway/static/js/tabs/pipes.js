// Pipes: every pipe of the project in service that the token may read (GET /v0/pipes), a form
// for the chosen pipe's parameters, and its answer as a table, with a line chart when the
// answer has a time column and numbers. Nothing here knows any project: all of it comes from
// the listing and from the answer's `meta`.

import { draw, pivot } from "../charts.js";
import { $, el, fillTable } from "../dom.js";
import * as fmt from "../format.js";

// A big answer is cut for the page, not for the API: the note says how many were shown.
const MAX_TABLE_ROWS = 1000;
const MAX_CHART_ROWS = 10000;
// More lines than this read as noise: such an answer gets no chart.
const MAX_LINES = 8;
const EVERY_COLUMN = "";

// ClickHouse types, seen through the wrappers that do not change how a value reads.
function baseType(type) {
  let inner = String(type ?? "").trim();
  for (;;) {
    const wrapped = /^(Nullable|LowCardinality)\((.*)\)$/.exec(inner);
    if (!wrapped) return inner;
    inner = wrapped[2];
  }
}
const isTime = (type) => /^(Date|Date32|DateTime|DateTime64)(\(|$)/.test(baseType(type));
const isDateTime = (type) => /^DateTime(64)?(\(|$)/.test(baseType(type));
const isDate = (type) => /^Date(32)?$/.test(baseType(type));
const isInteger = (type) => /^U?Int(8|16|32|64|128|256)?$|^Integer$/.test(baseType(type));
const isFloat = (type) => /^(Float(32|64)|Decimal(32|64|128|256)?)(\(|$)/.test(baseType(type));
const isNumber = (type) => isInteger(type) || isFloat(type);
const isBool = (type) => /^Bool(ean)?$/.test(baseType(type));

// --- the form ----------------------------------------------------------------------------

// A DateTime parameter reads `YYYY-MM-DD HH:MM:SS[.sss]`; a datetime-local input shows
// `YYYY-MM-DDTHH:MM[:SS[.sss]]` and drops zero seconds.
const toInputTime = (text) => text.replace(" ", "T");
function fromInputTime(value) {
  const text = value.replace("T", " ");
  return text.length === 16 ? `${text}:00` : text;
}
const truthy = (text) => /^(true|1)$/i.test(String(text).trim());

function inputFor(parameter) {
  const { name, type } = parameter;
  const id = `pipe-param-${name}`;
  const base = { id, name, "aria-required": parameter.required ? "true" : null };
  const fallback = parameter.default_value ?? "";
  if (isBool(type)) {
    const input = el("input", { ...base, type: "checkbox" });
    input.checked = truthy(fallback);
    return input;
  }
  let input;
  if (isDateTime(type)) {
    const millis = /^DateTime64/.test(baseType(type));
    input = el("input", { ...base, type: "datetime-local", step: millis ? "0.001" : "1" });
    input.value = toInputTime(fallback); // inputs show no placeholder: the default is its value
  } else if (isDate(type)) {
    input = el("input", { ...base, type: "date" });
    input.value = fallback;
  } else if (isInteger(type)) {
    const unsigned = baseType(type).startsWith("U");
    input = el("input", { ...base, type: "number", step: "1", min: unsigned ? "0" : null, inputmode: "numeric" });
    input.placeholder = fallback;
  } else if (isFloat(type)) {
    input = el("input", { ...base, type: "number", step: "any", inputmode: "decimal" });
    input.placeholder = fallback;
  } else {
    const array = baseType(type).startsWith("Array(");
    input = el("input", { ...base, type: "text", spellcheck: "false", autocomplete: "off" });
    input.placeholder = fallback || (array ? "comma-separated" : "");
  }
  return input;
}

// What each input sends: nothing while it shows the pipe's own default (so the server's
// default applies), its value once changed, and always when the pipe requires it.
function valueOf(input, parameter) {
  const changed =
    input.type === "checkbox" ? input.checked !== input.defaultChecked : input.value !== input.defaultValue;
  if (!changed && !parameter.required) return null;
  if (input.type === "checkbox") return input.checked ? "true" : "false";
  if (input.type === "datetime-local") return input.value ? fromInputTime(input.value) : null;
  return input.value === "" ? null : input.value;
}

function field(parameter) {
  const input = inputFor(parameter);
  // What the page shows now is the default: resetting the form comes back to it.
  if (input.type === "checkbox") input.defaultChecked = input.checked;
  else input.defaultValue = input.value;
  const helpId = `${input.id}-help`;
  const help = [];
  if (parameter.description) help.push(parameter.description);
  if (parameter.default_value) help.push(`Default: ${parameter.default_value}`);
  if (help.length) input.setAttribute("aria-describedby", helpId);
  const label = el(
    "label",
    { for: input.id },
    el("span", { className: "param-name" }, parameter.name),
    el("span", { className: "param-type" }, parameter.type),
    parameter.required ? el("span", { className: "param-required" }, "required") : null,
  );
  const control = input.type === "checkbox" ? el("div", { className: "check" }, input, label) : null;
  return el(
    "div",
    { className: "param", "data-param": parameter.name },
    ...(control ? [control] : [label, input]),
    help.length ? el("small", { id: helpId, className: "param-help" }, help.join(" · ")) : null,
  );
}

// --- the chart ---------------------------------------------------------------------------

// Midnight everywhere reads as dates, whole minutes everywhere lose their seconds.
function timeLabels(values) {
  const midnights = values.every((v) => v.length === 10 || /^\S+ 00:00:00(\.0+)?$/.test(v));
  if (midnights) return values.map((v) => v.slice(0, 10));
  const minutes = values.every((v) => /^\S+ \d\d:\d\d:00(\.0+)?$/.test(v));
  return minutes ? values.map((v) => v.slice(0, 16)) : values;
}

const asNumber = (value) => (value === null || value === undefined || value === "" ? null : Number(value));

// How an answer is drawn: one line per number column over unique times, or, when times
// repeat, one line per combination of the text columns that vary (a variant, a country…) for
// the chosen number column. null when neither fits.
function chartPlan(meta, rows) {
  const time = meta.find((column) => isTime(column.type));
  const numbers = meta.filter((column) => column !== time && isNumber(column.type));
  if (!time || numbers.length === 0) return null;
  const timed = rows.filter((row) => row[time.name] !== null && row[time.name] !== undefined);
  if (timed.length === 0) return null;
  const times = timed.map((row) => String(row[time.name]));
  if (new Set(times).size === times.length) {
    return { time, numbers, rows: timed, groups: null };
  }
  const others = meta.filter((c) => c !== time && !isNumber(c.type));
  const varying = others.filter((c) => new Set(timed.map((row) => JSON.stringify(row[c.name]))).size > 1);
  if (varying.length === 0) return null;
  const key = (row) => varying.map((c) => String(row[c.name] ?? "")).join(" · ");
  const pairs = new Set(timed.map((row) => `${row[time.name]}\u0000${key(row)}`));
  const groups = new Set(timed.map(key));
  if (pairs.size !== timed.length || groups.size > MAX_LINES) return null;
  return { time, numbers, rows: timed, groups: key };
}

function chartData(plan, measure) {
  const { time, numbers, rows, groups } = plan;
  if (groups) {
    const column = numbers.find((c) => c.name === measure) ?? numbers[0];
    const keyed = rows.map((row) => ({
      time: String(row[time.name]),
      line: groups(row),
      value: asNumber(row[column.name]),
    }));
    const { labels, series } = pivot(keyed, { seriesKey: "line", labelKey: "time", valueKey: "value" });
    return { labels: timeLabels(labels), series, measure: column.name };
  }
  const sorted = [...rows].sort((a, b) => (String(a[time.name]) < String(b[time.name]) ? -1 : 1));
  const shown = numbers.filter((c) => measure === EVERY_COLUMN || c.name === measure);
  return {
    labels: timeLabels(sorted.map((row) => String(row[time.name]))),
    series: (shown.length ? shown : numbers).map((c) => ({
      label: c.name,
      data: sorted.map((row) => asNumber(row[c.name])),
    })),
    measure: shown.length ? measure : EVERY_COLUMN,
  };
}

// --- the tab -----------------------------------------------------------------------------

export function createPipesTab({ onChange }) {
  const panel = $("#panel-pipes");
  const list = $("#pipes-list", panel);
  const empty = $("#pipes-none", panel);
  const detail = $("#pipes-detail", panel);
  const form = $("#pipes-form", panel);
  const fields = $("#pipes-fields", panel);
  const result = $("#pipes-result", panel);
  const figure = $('[data-chart="pipes-chart"]', panel);
  const measureSelect = $("#pipes-measure", panel);

  let listing = [];
  let selected = null; // the chosen pipe, as listed
  let shape = ""; // its parameters as the form was built for them
  let run = null; // {name, params} of the last Run, repeated on every refresh
  let plan = null; // how the last answer is drawn, kept to redraw it for another column
  let listed = ""; // what the list shows, so a refresh that changes nothing keeps its focus

  function showList() {
    const now = JSON.stringify([selected?.name, listing.map((pipe) => [pipe.name, pipe.description])]);
    if (now === listed) return;
    listed = now;
    list.replaceChildren(
      ...listing.map((pipe) =>
        el(
          "li",
          {},
          el(
            "button",
            {
              type: "button",
              className: "pipe",
              "data-pipe": pipe.name,
              "aria-current": pipe.name === selected?.name ? "true" : null,
              onclick: () => choose(pipe.name),
            },
            el("span", { className: "pipe-name" }, pipe.name),
            pipe.description ? el("span", { className: "pipe-description" }, pipe.description) : null,
          ),
        ),
      ),
    );
    empty.hidden = listing.length > 0;
  }

  function showForm() {
    const parameters = selected.parameters ?? [];
    $("#pipes-name", panel).textContent = selected.name;
    $("#pipes-description", panel).textContent = selected.description ?? "";
    $("#pipes-endpoint", panel).textContent = selected.endpoint ?? `/v0/pipes/${selected.name}.json`;
    fields.replaceChildren(...parameters.map(field));
    $("#pipes-no-params", panel).hidden = parameters.length > 0;
    detail.hidden = false;
  }

  function clearResult(hint) {
    plan = null;
    result.hidden = true;
    $("#pipes-hint", panel).textContent = hint;
    $("#pipes-hint", panel).hidden = !hint;
  }

  // Shows the pipe's form; returns whether it can run as it is (it requires nothing).
  function open(pipe) {
    selected = pipe;
    shape = JSON.stringify(pipe.parameters ?? []);
    run = null;
    showList();
    showForm();
    const needed = (pipe.parameters ?? []).some((p) => p.required);
    clearResult(needed ? "Fill in the required parameters, then press Run." : "Press Run.");
    return !needed;
  }

  function choose(name) {
    const pipe = listing.find((p) => p.name === name);
    if (!pipe) return;
    // A pipe that needs nothing answers straight away, with its defaults.
    if (open(pipe)) submit();
    detail.scrollIntoView({ block: "nearest" });
  }

  function submit() {
    const params = {};
    for (const parameter of selected.parameters ?? []) {
      const input = form.elements.namedItem(parameter.name);
      const value = input ? valueOf(input, parameter) : null;
      if (value !== null) params[parameter.name] = value;
    }
    run = { name: selected.name, params };
    onChange();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (selected) submit();
  });
  measureSelect.addEventListener("change", () => {
    if (plan) showChart(measureSelect.value);
  });

  function showChart(measure) {
    const data = chartData(plan, measure);
    figure.hidden = false;
    draw(figure, { kind: "line", labels: data.labels, series: data.series, format: fmt.number });
    measureSelect.value = data.measure;
  }

  function chooseMeasure(current) {
    const options = plan.groups ? [] : [el("option", { value: EVERY_COLUMN }, "every number column")];
    options.push(...plan.numbers.map((c) => el("option", { value: c.name }, c.name)));
    measureSelect.replaceChildren(...options);
    const values = options.map((o) => o.value);
    measureSelect.value = values.includes(current) ? current : values[0];
    $("#pipes-measure-control", panel).hidden = options.length < 2;
    return measureSelect.value;
  }

  function showAnswer(body, api) {
    const meta = Array.isArray(body.meta) ? body.meta : [];
    const rows = Array.isArray(body.data) ? body.data : [];
    const total = typeof body.rows === "number" ? body.rows : rows.length;
    const stats = body.statistics ?? {};
    const shown = rows.slice(0, MAX_TABLE_ROWS);
    let count = `${fmt.count(total)} ${total === 1 ? "row" : "rows"}`;
    if (typeof stats.elapsed === "number") count += ` in ${fmt.elapsed(stats.elapsed)}`;
    const facts = [count];
    if (typeof stats.rows_read === "number") {
      const read = `read ${fmt.count(stats.rows_read)} rows`;
      facts.push(typeof stats.bytes_read === "number" ? `${read}, ${fmt.bytes(stats.bytes_read)}` : read);
    }
    if (rows.length > shown.length) facts.push(`the first ${fmt.count(shown.length)} shown`);
    $("#pipes-stats", panel).textContent = facts.join(" · ");
    $("#pipes-call", panel).textContent = `GET ${api.pipeUrl(run.name, run.params).href}`;

    fillTable(
      $("#pipes-table", panel),
      meta.map((column) => {
        const numeric = isNumber(column.type);
        return {
          key: column.name,
          label: el("span", { title: column.type }, column.name),
          numeric,
          format: (value) => {
            if (value === null || value === undefined) return el("span", { className: "null" }, "null");
            if (typeof value === "object") return JSON.stringify(value);
            return numeric ? fmt.number(value) : String(value);
          },
        };
      }),
      shown,
      { empty: "The pipe answered no rows" },
    );

    // Shown before the chart is drawn: a chart made in a hidden box measures it as 0 wide and
    // waits for a resize to be drawn at its size.
    result.hidden = false;
    $("#pipes-hint", panel).hidden = true;
    plan = chartPlan(meta, rows.slice(0, MAX_CHART_ROWS));
    if (plan) showChart(chooseMeasure(measureSelect.value));
    else figure.hidden = true;
  }

  return {
    pipes: [],
    // `listing` is GET /v0/pipes, which the page has just fetched.
    async load({ api, signal, listing: pipes }) {
      listing = [...pipes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const still = selected ? listing.find((pipe) => pipe.name === selected.name) : null;
      if (!still) {
        // Never chosen, or gone with a deploy.
        selected = null;
        run = null;
        detail.hidden = true;
        clearResult("");
      } else if (JSON.stringify(still.parameters ?? []) !== shape) {
        // A deploy changed its parameters: the old form would send the wrong ones.
        open(still);
      } else {
        selected = still;
      }
      showList();
      if (!selected) {
        $("#pipes-pick", panel).hidden = listing.length === 0;
        return;
      }
      $("#pipes-pick", panel).hidden = true;
      if (!run || run.name !== selected.name) return;
      const body = await api.pipe(run.name, run.params, signal);
      if (signal.aborted) return;
      showAnswer(body, api);
    },
  };
}
