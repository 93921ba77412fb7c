// Building the page from API answers. Values are always set as text, never parsed as HTML:
// event fields (page titles, URLs, properties) are whatever clients sent.

export function $(selector, root = document) {
  const element = root.querySelector(selector);
  if (!element) throw new Error(`missing element ${selector}`);
  return element;
}

export function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "onclick") element.addEventListener("click", value);
    else if (name === "className") element.className = value;
    else if (value !== null && value !== undefined && value !== false) {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  element.append(...children.filter((child) => child !== null && child !== undefined));
  return element;
}

// A column: {key, label, format?, numeric?, cell?(row) -> Node}. Cells carry data-col=<key> and
// rows data-key=<rowKey(row)>, so each shown value can be traced to its field in the answer.
export function fillTable(table, columns, rows, { rowKey = null, rowClass = null, empty = "No rows" } = {}) {
  const head = el(
    "thead",
    {},
    el("tr", {}, ...columns.map((c) => el("th", { scope: "col", className: c.numeric ? "num" : "" }, c.label))),
  );
  const body = el("tbody");
  if (rows.length === 0) {
    body.append(el("tr", { className: "empty" }, el("td", { colspan: columns.length }, empty)));
  }
  rows.forEach((row, index) => {
    const tr = el("tr", {
      "data-key": rowKey ? rowKey(row) : null,
      className: rowClass ? rowClass(row, index) : "",
    });
    for (const column of columns) {
      const value = row[column.key];
      let content;
      if (column.cell) content = column.cell(row);
      else if (column.format) content = column.format(value, row);
      else content = value ?? "";
      tr.append(el("td", { "data-col": column.key, className: column.numeric ? "num" : "" }, content));
    }
    body.append(tr);
  });
  table.replaceChildren(head, body);
}

// A button that looks like a link, for values that open a detail view.
export function linkButton(text, onclick, title) {
  return el("button", { type: "button", className: "link", title, onclick }, text);
}

export function setKpis(root, values) {
  for (const [key, text] of Object.entries(values)) {
    $(`[data-kpi="${key}"]`, root).textContent = text;
  }
}

export function unique(values) {
  return [...new Set(values)];
}
