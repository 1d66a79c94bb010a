// The dashboard's shell: sign-in, navigation and a hash router (#/jobs, #/jobs/ID, ...). Hash routes
// need no server-side fallback, so the server only hands out static files.
import { forgetKey, get, getKey, setKey } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import * as createPage from "./pages/create.js";
import * as filesPage from "./pages/files.js";
import * as jobPage from "./pages/job.js";
import * as jobsPage from "./pages/jobs.js";
import * as modelsPage from "./pages/models.js";
import * as playgroundPage from "./pages/playground.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signout = document.getElementById("signout");
let cleanup = null;

const ROUTES = [
  [/^\/?$/, "jobs", jobsPage],
  [/^\/jobs$/, "jobs", jobsPage],
  [/^\/jobs\/([^/]+)$/, "jobs", jobPage],
  [/^\/new$/, "new", createPage],
  [/^\/files$/, "files", filesPage],
  [/^\/files\/([^/]+)$/, "files", filesPage],
  [/^\/playground$/, "playground", playgroundPage],
  [/^\/models$/, "models", modelsPage],
];

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/jobs";
  const [path, qs] = raw.split("?");
  return { path, query: new URLSearchParams(qs || "") };
}

function signIn(message) {
  nav.hidden = true;
  signout.hidden = true;
  document.title = "Sign in · ftapi";
  const key = h("input", { id: "api-key", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const remember = h("input", { id: "remember", type: "checkbox" });
  const status = h("div", { "aria-live": "polite" }, message ? errorBox(message) : null);
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("p", {}, "Use an API key of your project (", h("code", {}, "ftapi keys create --project NAME"),
      "). The dashboard calls the same /v1 API as the SDK, with this key; it sees only that project."),
    h("div", { class: "field" }, h("label", { for: "api-key" }, "API key"), key),
    h("div", { class: "field inline" }, remember, h("label", { for: "remember" }, "Remember on this device")),
    status,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setKey(key.value.trim(), remember.checked);
    try {
      await get("/models");
      route();
    } catch (err) {
      forgetKey();
      clear(status, errorBox(err.status === 401 ? "That key was not accepted." : err));
    }
  });
  clear(main, form);
  key.focus();
}

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  if (!getKey()) return signIn();
  nav.hidden = false;
  signout.hidden = false;
  const { path, query } = parseHash();
  const found = ROUTES.find(([re]) => re.test(path));
  if (!found) {
    clear(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/jobs" }, "Back to the jobs")));
    return;
  }
  const [re, page, module] = found;
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const params = path.match(re).slice(1).map(decodeURIComponent);
  clear(main);
  try {
    cleanup = (await module.render(main, params, query)) || null;
  } catch (err) {
    clear(main, errorBox(err));
  }
  main.focus({ preventScroll: true });
}

// The routes live in the hash, so the skip link moves the focus itself instead of changing it.
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
signout.addEventListener("click", () => { forgetKey(); location.hash = "#/jobs"; route(); });
window.addEventListener("ftapi:unauthorized", () => {
  if (nav.hidden) return; // the sign-in form says so itself
  if (cleanup) { cleanup(); cleanup = null; }
  forgetKey();
  signIn("Your key was not accepted any more: sign in again.");
});
window.addEventListener("hashchange", route);
route();
