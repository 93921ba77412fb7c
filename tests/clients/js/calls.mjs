// Runs Tinybird's TypeScript SDK (`createTinybirdApi`, its README's "Public Tinybird API"
// example) against PIPIT_URL with PIPIT_TOKEN. Reads a JSON list of calls on stdin —
// {"call": "query" | "sql" | "ingest", "args": [...]} — and prints one JSON list of
// outcomes: {"ok": true, "value": ...} or {"ok": false, "status": ..., "error": message}.
import { createTinybirdApi } from "@tinybirdco/sdk";

const api = createTinybirdApi({ baseUrl: process.env.PIPIT_URL, token: process.env.PIPIT_TOKEN });

let input = "";
for await (const chunk of process.stdin) input += chunk;

const outcomes = [];
for (const { call, args } of JSON.parse(input)) {
  try {
    outcomes.push({ ok: true, value: await api[call](...args) });
  } catch (error) {
    outcomes.push({ ok: false, status: error.statusCode ?? null, error: String(error.message) });
  }
}
// BigInt (the SDK may parse 64-bit integers as such) printed as its decimal digits.
process.stdout.write(JSON.stringify(outcomes, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
