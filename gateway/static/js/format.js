// Number and time formatting in the reader's locale; API values are never changed, only shown.

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const amount = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
});
const percent = new Intl.NumberFormat(undefined, {
  style: "percent",
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
});
const shortPercent = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });
const change = new Intl.NumberFormat(undefined, {
  style: "percent",
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
  signDisplay: "exceptZero",
});

export const count = (value) => integer.format(value);
export const money = (value) => amount.format(value);
// Rates arrive as fractions (0.1234) and read as percentages (12.34%).
export const rate = (value) => percent.format(value);
export const shortRate = (value) => shortPercent.format(value);
export const lift = (value) => (value === null ? "–" : change.format(value));
// A difference of two rates, in percentage points.
const pointChange = new Intl.NumberFormat(undefined, {
  maximumFractionDigits: 2,
  signDisplay: "exceptZero",
});
export const points = (value) => `${pointChange.format(value * 100)} pp`;
const signedAmount = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
  signDisplay: "exceptZero",
});
export const signedMoney = (value) => signedAmount.format(value);
// p-values: four decimals, or "< 0.0001" below what four decimals can say.
export const pValue = (value) => (value < 0.0001 ? "< 0.0001" : value.toFixed(4));

export function duration(seconds) {
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${String(seconds % 60).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, "0")}m`;
}

// Periods are UTC `YYYY-MM-DD HH:MM:SS`; a bucket starting at midnight reads as its date.
export function period(value) {
  return value.endsWith(" 00:00:00") ? value.slice(0, 10) : value.slice(0, 16);
}

// The page's date inputs give days; the API takes inclusive UTC bounds.
export function range(from, to) {
  return {
    start_date: from ? `${from} 00:00:00` : "",
    end_date: to ? `${to} 23:59:59` : "",
  };
}

// Any number an answer holds, grouped but otherwise exact: 64-bit integers may arrive as
// strings, and formatting the text (not a float made of it) keeps every digit.
const exact = new Intl.NumberFormat(undefined, { maximumFractionDigits: 20 });
const NUMBER_TEXT = /^-?\d+(\.\d+)?(e[+-]?\d+)?$/i;

export function number(value) {
  const text = String(value);
  return NUMBER_TEXT.test(text) ? exact.format(text) : text; // nan, inf: as sent
}

// A page's URL as its path and query: the host is the same on every page of a site.
export function urlPath(url) {
  try {
    const parsed = new URL(url);
    return parsed.pathname + parsed.search;
  } catch {
    return url; // not an absolute URL: as sent
  }
}

// statistics.elapsed is in seconds.
export function elapsed(seconds) {
  return seconds < 1 ? `${(seconds * 1000).toFixed(1)} ms` : `${seconds.toFixed(2)} s`;
}

const UNITS = ["B", "KB", "MB", "GB", "TB"];

export function bytes(value) {
  let size = value;
  let unit = 0;
  while (size >= 1000 && unit < UNITS.length - 1) {
    size /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${size} B` : `${size.toFixed(1)} ${UNITS[unit]}`;
}
