// Jobs: this project's fine-tuning jobs, newest first, refreshed every few seconds while visible.
// Both filters are the API's: `metadata[k]=v` as OpenAI's, `status` an ftapi extension, so a status
// filter finds old jobs too, not only those among the newest 100.
import { get } from "../api.js";
import { clear, errorBox, fmtDuration, fmtNumber, fmtTime, h, statusBadge } from "../dom.js";
import { poll } from "../poll.js";

const STATUSES = ["validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"];
const REFRESH_MS = 4000;

export function parseMetadata(text) {
  const found = {};
  for (const part of text.split(/[,\n]/)) {
    const cut = part.indexOf("=");
    if (cut > 0) found[part.slice(0, cut).trim()] = part.slice(cut + 1).trim();
  }
  return found;
}

export function duration(job, now = Date.now() / 1000) {
  if (job.finished_at) return job.finished_at - job.created_at;
  if (["succeeded", "failed", "cancelled"].includes(job.status)) return null;
  return now - job.created_at;
}

export async function render(root, _params, query) {
  document.title = "Jobs · ftapi";
  const status = h("select", { id: "filter-status" },
    h("option", { value: "" }, "any"),
    STATUSES.map((s) => h("option", { value: s, selected: query.get("status") === s }, s.replaceAll("_", " "))));
  const metadata = h("input", {
    id: "filter-metadata", type: "text", placeholder: "team=search, run=7", value: query.get("metadata") || "",
  });
  const body = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter jobs" },
    h("div", { class: "field" }, h("label", { for: "filter-status" }, "Status"), status),
    h("div", { class: "field grow" }, h("label", { for: "filter-metadata" }, "Metadata (key=value, comma separated)"), metadata),
    h("button", { type: "submit" }, "Filter"));
  clear(root,
    h("div", { class: "title-row" }, h("h1", {}, "Fine-tuning jobs"), h("a", { class: "button primary", href: "#/new" }, "Create job")),
    form, body);

  let filter = { status: status.value, metadata: parseMetadata(metadata.value) };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    filter = { status: status.value, metadata: parseMetadata(metadata.value) };
    const qs = new URLSearchParams();
    if (filter.status) qs.set("status", filter.status);
    if (metadata.value.trim()) qs.set("metadata", metadata.value.trim());
    history.replaceState(null, "", `#/jobs${qs.toString() ? "?" + qs : ""}`);
    refresh();
  });
  status.addEventListener("change", () => form.requestSubmit());

  async function refresh() {
    const q = { limit: 100 };
    if (filter.status) q.status = filter.status;
    for (const [k, v] of Object.entries(filter.metadata)) q[`metadata[${k}]`] = v;
    let page;
    try {
      page = await get("/fine_tuning/jobs", q);
    } catch (err) {
      clear(body, errorBox(err));
      throw err;
    }
    clear(body, table(page.data, page.has_more));
  }

  return poll(refresh, REFRESH_MS);
}

function table(jobs, hasMore) {
  if (!jobs.length) return h("p", { class: "empty" }, "No jobs yet. ", h("a", { href: "#/new" }, "Create one"), ".");
  return h("div", { class: "table-wrap" }, h("table", { id: "jobs-table" },
    h("caption", { class: "sr-only" }, "Fine-tuning jobs, newest first"),
    h("thead", {}, h("tr", {}, ["Job", "Status", "Model", "Suffix", "Created", "Duration", "Trained tokens"]
      .map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, jobs.map((job) => h("tr", { dataset: { job: job.id } },
      h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, job.id)),
      h("td", {}, statusBadge(job.status)),
      h("td", {}, job.fine_tuned_model ? [job.model, h("br"), h("small", {}, job.fine_tuned_model)] : job.model),
      h("td", {}, job.suffix || "—"),
      h("td", {}, fmtTime(job.created_at)),
      h("td", {}, fmtDuration(duration(job))),
      h("td", { class: "num" }, fmtNumber(job.trained_tokens))))),
  ), hasMore ? h("p", { class: "muted" }, "Showing the newest 100 jobs.") : null);
}
