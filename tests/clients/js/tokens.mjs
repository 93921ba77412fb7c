// Runs Tinybird's TypeScript SDK token helpers against PIPIT_URL: `createJWT` (the SDK's
// documented way to get a JWT: POST /v0/tokens/?expiration_time=…) with PIPIT_TOKEN, the
// admin token, and `createTinybirdApi().createToken` for a static token; then reads a pipe
// with each token the way an app would. Reads one JSON object on stdin —
// {"jwt": CreateJWTOptions (expiresAt as Unix seconds), "static": {name, scopes},
//  "pipe": name, "params": {...}} — and prints {"jwt", "jwt_query", "static", "static_query"}
// with each outcome {"ok": true, "value": ...} or {"ok": false, "status", "error"}.
import { createJWT, createTinybirdApi } from "@tinybirdco/sdk";

const baseUrl = process.env.PIPIT_URL;
const admin = { baseUrl, token: process.env.PIPIT_TOKEN };

let input = "";
for await (const chunk of process.stdin) input += chunk;
const request = JSON.parse(input);

async function outcome(call) {
  try {
    return { ok: true, value: await call() };
  } catch (error) {
    return { ok: false, status: error.statusCode ?? error.status ?? null, error: String(error.message) };
  }
}

const result = {};
result.jwt = await outcome(() => createJWT(admin, request.jwt));
if (result.jwt.ok) {
  const reader = createTinybirdApi({ baseUrl, token: result.jwt.value.token });
  result.jwt_query = await outcome(() => reader.query(request.pipe, request.params));
}
result.static = await outcome(() => createTinybirdApi(admin).createToken(request.static));
if (result.static.ok) {
  const reader = createTinybirdApi({ baseUrl, token: result.static.value.token });
  result.static_query = await outcome(() => reader.query(request.pipe, request.params));
}
process.stdout.write(JSON.stringify(result));
