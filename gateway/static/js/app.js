// The dashboard's shell: token, date range, tabs, refreshing, and saying clearly what is wrong.

import { Api, ApiError, Problem, apiBase } from "./api.js";
import { $, el } from "./dom.js";
import * as fmt from "./format.js";
import { createAbTab } from "./tabs/ab.js";
import { createBehaviourTab } from "./tabs/behaviour.js";
import { createClickstreamTab } from "./tabs/clickstream.js";
import { createJourneysTab } from "./tabs/journeys.js";
import { createPipesTab } from "./tabs/pipes.js";
import { createSaasTab } from "./tabs/saas.js";

const TOKEN_KEY = "pipit.token";
const DEFAULT_REFRESH_SECONDS = 5;

const params = new URLSearchParams(window.location.search);
const base = apiBase(window.location);
// `?refresh=<seconds>` changes the live refresh period (at least 1 s).
const refreshSeconds = Math.max(1, Number(params.get("refresh")) || DEFAULT_REFRESH_SECONDS);

const ui = {
  tokenForm: $("#token-form"),
  token: $("#token"),
  from: $("#from"),
  to: $("#to"),
  allTime: $("#all-time"),
  range: $(".range"),
  live: $("#live"),
  refresh: $("#refresh"),
  updated: $("#updated"),
  message: $("#message"),
  tabs: [...document.querySelectorAll('[role="tab"]')],
};

const onChange = () => refresh();
const tabs = {
  ab: createAbTab({ onChange }),
  behaviour: createBehaviourTab({ onChange }),
  saas: createSaasTab({ onChange }),
  clickstream: createClickstreamTab({ onChange }),
  journeys: createJourneysTab({ onChange }),
  pipes: createPipesTab({ onChange }),
};
// Where the page opens, and where it goes when a tutorial tab is not served.
const FIRST_TAB = "ab";
const ANY_PROJECT_TAB = "pipes";

let current = FIRST_TAB;
let loading = null; // the AbortController of the load in flight
let timer = null;

// --- token -------------------------------------------------------------------------------

function storedToken() {
  try {
    return window.localStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return ""; // storage disabled: the token lives only in the box
  }
}

function storeToken(token) {
  try {
    if (token) window.localStorage.setItem(TOKEN_KEY, token);
    else window.localStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled
  }
}

// --- messages ----------------------------------------------------------------------------

function explain(error) {
  if (!(error instanceof ApiError)) {
    return ["error", "Something went wrong in the page", String(error?.message ?? error)];
  }
  switch (error.problem) {
    case Problem.TOKEN_MISSING:
      return [
        "info",
        "Enter your API token",
        [
          el("code", {}, "pipit up"),
          " prints the admin token (it is also in ",
          el("code", {}, ".pipit/admin_token"),
          "). This browser keeps it in local storage.",
        ],
      ];
    case Problem.TOKEN_INVALID:
      return ["error", "This token cannot be right", "A token holds printable ASCII characters only."];
    case Problem.TOKEN_REJECTED:
      return [
        "error",
        "The gateway rejected this token",
        `HTTP ${error.status}: ${error.message}. Check the token and press Use.`,
      ];
    case Problem.FORBIDDEN:
      return [
        "error",
        `This token may not read ${error.pipe}`,
        [
          `HTTP 403: ${error.message}. Other tabs may still work; a token with `,
          el("code", {}, `PIPES:READ:${error.pipe}`),
          " (or the admin token) can read this one.",
        ],
      ];
    case Problem.UNREACHABLE:
      return [
        "error",
        `Cannot reach the gateway at ${base}`,
        [
          "Is ",
          el("code", {}, "pipit up"),
          " running? A page served from another origin also needs that origin in the gateway's ",
          el("code", {}, "PIPIT_ALLOWED_ORIGINS"),
          ".",
        ],
      ];
    case Problem.UNAVAILABLE:
      return [
        "error",
        "The warehouse is unavailable",
        `HTTP 503 from ${error.pipe}: ${error.message}. The gateway is up; try again shortly.`,
      ];
    default:
      return ["error", `${error.pipe} failed`, `HTTP ${error.status}: ${error.message}`];
  }
}

function showMessage(error) {
  const problem = error instanceof ApiError ? error.problem : error ? "page" : "";
  ui.token.toggleAttribute(
    "aria-invalid",
    problem === Problem.TOKEN_REJECTED || problem === Problem.TOKEN_INVALID,
  );
  if (!error) {
    ui.message.hidden = true;
    ui.message.replaceChildren();
    ui.message.removeAttribute("data-problem");
    return;
  }
  const [tone, title, detail] = explain(error);
  ui.message.dataset.problem = problem;
  ui.message.className = `message ${tone}`;
  ui.message.replaceChildren(el("strong", {}, title), " ", el("span", {}, ...[detail].flat()));
  ui.message.hidden = false;
}

// --- loading -----------------------------------------------------------------------------

async function refresh({ fromTimer = false } = {}) {
  if (loading) {
    // A slow gateway must not pile up requests: ticks wait, a person's action wins.
    if (fromTimer) return;
    loading.abort();
  }
  const controller = new AbortController();
  loading = controller;
  document.body.dataset.state = "loading";
  const api = new Api(base, storedToken());
  try {
    // Asked on every load, so a deploy (or another token) changes the tabs at once.
    const listing = await api.pipes(controller.signal);
    if (controller.signal.aborted) return;
    showServedTabs(listing);
    await tabs[current].load({
      api,
      range: fmt.range(ui.from.value, ui.to.value),
      signal: controller.signal,
      listing,
    });
    if (controller.signal.aborted) return;
    showMessage(null);
    ui.updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.state = "ready";
  } catch (error) {
    if (controller.signal.aborted || error?.name === "AbortError") return;
    showMessage(error);
    document.body.dataset.state = "error";
  } finally {
    if (loading === controller) loading = null;
  }
}

function setLive(on) {
  clearInterval(timer);
  timer = null;
  if (on) {
    timer = setInterval(() => {
      if (!document.hidden) refresh({ fromTimer: true });
    }, refreshSeconds * 1000);
    refresh();
  }
}

// --- tabs --------------------------------------------------------------------------------

const tabButton = (name) => ui.tabs.find((tab) => tab.dataset.tab === name);

function selectTab(name, { focus = false } = {}) {
  if (!(name in tabs) || tabButton(name).hidden) name = tabButton(FIRST_TAB).hidden ? ANY_PROJECT_TAB : FIRST_TAB;
  current = name;
  for (const tab of ui.tabs) {
    const selected = tab.dataset.tab === name;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    if (selected && focus) tab.focus();
    $(`#${tab.getAttribute("aria-controls")}`).hidden = !selected;
  }
  // The Pipes tab's dates are its pipes' own parameters.
  ui.range.hidden = name === ANY_PROJECT_TAB;
  if (window.location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
}

// A tutorial tab is shown only when every pipe it calls is listed: the project in service may
// not be the tutorials, and a scoped token sees only what it may read.
function showServedTabs(listing) {
  const listed = new Set(listing.map((pipe) => pipe.name));
  for (const tab of ui.tabs) {
    tab.hidden = !tabs[tab.dataset.tab].pipes.every((name) => listed.has(name));
  }
  if (tabButton(current).hidden) selectTab(ANY_PROJECT_TAB);
}

for (const tab of ui.tabs) {
  tab.addEventListener("click", () => {
    selectTab(tab.dataset.tab);
    refresh();
  });
  tab.addEventListener("keydown", (event) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    const shown = ui.tabs.filter((t) => !t.hidden);
    const index = (shown.indexOf(tab) + step + shown.length) % shown.length;
    selectTab(shown[index].dataset.tab, { focus: true });
    refresh();
  });
}

window.addEventListener("hashchange", () => {
  const name = window.location.hash.slice(1);
  if (name !== current && name in tabs && !tabButton(name).hidden) {
    selectTab(name);
    refresh();
  }
});

// --- controls ----------------------------------------------------------------------------

function useToken() {
  ui.token.value = ui.token.value.trim();
  storeToken(ui.token.value);
  refresh();
}
ui.tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  useToken();
});
// Leaving the box counts too, so a pasted token is not silently ignored.
ui.token.addEventListener("change", () => {
  if (ui.token.value.trim() !== storedToken()) useToken();
});
ui.from.addEventListener("change", onChange);
ui.to.addEventListener("change", onChange);
ui.allTime.addEventListener("click", () => {
  ui.from.value = "";
  ui.to.value = "";
  refresh();
});
ui.refresh.addEventListener("click", onChange);
ui.live.addEventListener("change", () => setLive(ui.live.checked));
ui.live.parentElement.title = `Refresh the open tab every ${refreshSeconds} s`;

$("#api-base").textContent = base;
ui.token.value = storedToken();
selectTab(window.location.hash.slice(1));
refresh();
