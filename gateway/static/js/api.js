// The public HTTP API, called exactly as curl calls it: nothing here is private to the dashboard.

// What went wrong, in the terms the page explains to the user.
export const Problem = Object.freeze({
  TOKEN_MISSING: "token-missing",
  TOKEN_INVALID: "token-invalid",
  TOKEN_REJECTED: "token-rejected",
  FORBIDDEN: "forbidden",
  UNREACHABLE: "unreachable",
  UNAVAILABLE: "unavailable",
  REQUEST: "request",
});

// The gRPC code in an error body for a missing or unknown token.
const UNAUTHENTICATED = 16;

// How errors of GET /v0/pipes name what failed.
const PIPE_LIST = "GET /v0/pipes";

export class ApiError extends Error {
  constructor(problem, message, { status = 0, code = null, pipe = "" } = {}) {
    super(message);
    this.name = "ApiError";
    this.problem = problem;
    this.status = status;
    this.code = code;
    this.pipe = pipe;
  }
}

// gRPC metadata (and so the gateway) accepts printable ASCII only; a token with anything else
// would make fetch() throw, which must not be mistaken for an unreachable gateway.
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;

// The gateway the page talks to: `?api=<url>` when given (a page served from another origin),
// otherwise the folder the page was served from, so a reverse proxy's path prefix is kept.
export function apiBase(location) {
  const given = new URLSearchParams(location.search).get("api");
  if (given) {
    const url = new URL(given, location.href);
    if (url.protocol === "http:" || url.protocol === "https:") {
      if (!url.pathname.endsWith("/")) url.pathname += "/";
      return url.href;
    }
  }
  return new URL("./", location.href).href;
}

export class Api {
  constructor(base, token) {
    this.base = base;
    this.token = token;
  }

  // GET /v0/pipes/<name>.json; empty parameters are left out so the endpoint's defaults apply.
  async pipe(name, params = {}, signal = undefined) {
    return this.#fetch(this.pipeUrl(name, params), { method: "GET", signal }, name);
  }

  // The URL pipe() calls, as curl would call it (the token goes in a header, not here). A list
  // (an Array parameter) goes once per item: `steps=a&steps=b`.
  pipeUrl(name, params = {}) {
    const url = new URL(`v0/pipes/${encodeURIComponent(name)}.json`, this.base);
    for (const [key, value] of Object.entries(params)) {
      if (Array.isArray(value)) {
        for (const item of value) url.searchParams.append(key, String(item));
      } else if (value !== "" && value !== null && value !== undefined) {
        url.searchParams.set(key, String(value));
      }
    }
    return url;
  }

  // GET /v0/pipes: the pipes of the project in service that this token may read.
  async pipes(signal = undefined) {
    const body = await this.#fetch(new URL("v0/pipes", this.base), { method: "GET", signal }, PIPE_LIST);
    return Array.isArray(body.pipes) ? body.pipes : [];
  }

  async #fetch(url, init, pipe) {
    if (!this.token) {
      throw new ApiError(Problem.TOKEN_MISSING, "no token", { pipe });
    }
    if (!PRINTABLE_ASCII.test(this.token)) {
      throw new ApiError(Problem.TOKEN_INVALID, "the token must be printable ASCII", { pipe });
    }
    let response;
    try {
      response = await fetch(url, {
        ...init,
        // A header rather than ?token=, so the token stays out of URLs and browser history.
        headers: { Authorization: `Bearer ${this.token}` },
        cache: "no-store",
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      // A refused connection and a CORS refusal look the same from a page: a TypeError.
      throw new ApiError(Problem.UNREACHABLE, String(error.message || error), { pipe });
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      if (error.name === "AbortError") throw error;
    }
    if (response.ok && body !== null) return body;

    // Errors are {"error", "code", "message", "details"} (`error` is what Tinybird's clients
    // read); anything else came from something in between.
    const message = body && typeof body.error === "string" ? body.error : response.statusText;
    const options = { status: response.status, code: body?.code ?? null, pipe };
    // A missing or unknown token is 403, as Tinybird answers it, with the gRPC code
    // UNAUTHENTICATED; a known token without the scope is 403 PERMISSION_DENIED.
    if (response.status === 401 || (response.status === 403 && options.code === UNAUTHENTICATED)) {
      throw new ApiError(Problem.TOKEN_REJECTED, message, options);
    }
    if (response.status === 403) throw new ApiError(Problem.FORBIDDEN, message, options);
    if (response.status === 503) throw new ApiError(Problem.UNAVAILABLE, message, options);
    throw new ApiError(Problem.REQUEST, message || "unreadable answer", options);
  }
}
