// Job: status and progress, live curves and event log, hyperparameters, checkpoints, the base-vs-tuned
// evaluation and result files. Polls the job and its newest events every 2 s while the job is live
// and the tab visible; each poll is one indexed query per resource.
import { download, fileText, get, listAll, post } from "../api.js";
import { MetricChart } from "../chart.js";
import { clear, copyButton, errorBox, fmtDuration, fmtNumber, fmtTime, h, parseCsv, statusBadge } from "../dom.js";
import { poll } from "../poll.js";

const POLL_MS = 2000;
const TERMINAL = ["succeeded", "failed", "cancelled"];
const EVAL_PREFIX = "Evaluation on ";

/** New events (oldest first) since the newest one we know, paging back with `after` if needed. */
async function newEvents(jobId, newestKnown) {
  const fresh = [];
  let after;
  for (;;) {
    const page = await get(`/fine_tuning/jobs/${jobId}/events`, { limit: 100, after });
    for (const event of page.data) {
      if (event.id === newestKnown) return fresh.reverse();
      fresh.push(event);
    }
    if (!page.has_more || !page.data.length) return fresh.reverse();
    after = page.data[page.data.length - 1].id;
  }
}

/** Metrics rows by step; a step reported twice (a resumed attempt) keeps the later report. */
export function metricRows(events) {
  const byStep = new Map();
  for (const e of events) {
    if (e.type === "metrics" && e.data && Number.isInteger(e.data.step)) byStep.set(e.data.step, e.data);
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

/** Seconds left, from the pace of the metrics so far (null until two steps are known). */
export function eta(events, rows) {
  const withTime = events.filter((e) => e.type === "metrics" && e.data && Number.isInteger(e.data.step));
  if (withTime.length < 2 || !rows.length) return null;
  const first = withTime[0], last = withTime[withTime.length - 1];
  const steps = last.data.step - first.data.step, secs = last.created_at - first.created_at;
  const total = last.data.total_steps;
  if (steps <= 0 || !total) return null;
  return ((total - last.data.step) * secs) / steps;
}

function hyperparameters(job) {
  const method = job.method || {};
  const block = method.type && method[method.type];
  return (block && block.hyperparameters) || job.hyperparameters || {};
}

function section(title, id, ...children) {
  return h("section", { class: "card", "aria-labelledby": `${id}-title`, id },
    h("h2", { id: `${id}-title` }, title), ...children);
}

export async function render(root, [jobId]) {
  document.title = `${jobId} · ftapi`;
  let job = await get(`/fine_tuning/jobs/${encodeURIComponent(jobId)}`);
  let events = (await listAll(`/fine_tuning/jobs/${jobId}/events`, { limit: 100 })).reverse();
  let checkpointsKey = null, resultsShown = null;

  const header = h("div", { class: "title-row" });
  const summary = h("div", { class: "card", id: "summary", "aria-live": "polite" });
  const lossBox = h("div", { class: "chart", id: "loss-chart", role: "img", "aria-label": "Loss by step" });
  const accBox = h("div", { class: "chart", id: "accuracy-chart", role: "img", "aria-label": "Token accuracy by step" });
  const log = h("ol", { class: "log", id: "event-log", "aria-label": "Events, oldest first" });
  const logWrap = h("div", { class: "log-wrap", tabindex: "0" }, log);
  const hyper = h("div", { id: "hyperparameters" });
  const checkpoints = h("div", { id: "checkpoints" });
  const evaluation = h("div", { id: "evaluation" });
  const results = h("div", { id: "result-files" });
  const actionStatus = h("div", { "aria-live": "assertive" });

  clear(root,
    h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " / ", jobId),
    header, actionStatus, summary,
    h("div", { class: "grid2" },
      section("Loss", "loss", lossBox, h("p", { class: "muted" }, "Lines: every logging step. Dots: full validation at epoch ends.")),
      section("Token accuracy", "accuracy", accBox)),
    section("Events", "events", logWrap),
    // The evaluation and checkpoint tables are wide (a column per metric): full width, so at
    // 1280 px none of their columns is cut off.
    section("Evaluation: base vs fine-tuned", "eval", evaluation),
    section("Checkpoints", "ckpts", checkpoints),
    h("div", { class: "grid2" },
      section("Hyperparameters", "hyper", hyper),
      section("Result files", "results", results)));

  const lossChart = new MetricChart(lossBox, "Loss", ["train_loss", "valid_loss", "full_valid_loss"]);
  const accChart = new MetricChart(accBox, "Token accuracy",
    ["train_mean_token_accuracy", "valid_mean_token_accuracy", "full_valid_mean_token_accuracy"]);

  async function act(verb) {
    if (verb === "cancel" && !window.confirm(`Cancel ${jobId}? A cancelled job cannot be resumed.`)) return;
    clear(actionStatus);
    try {
      job = await post(`/fine_tuning/jobs/${jobId}/${verb}`);
      drawHeader();
      drawSummary();
    } catch (err) {
      clear(actionStatus, errorBox(err));
    }
  }

  function drawHeader() {
    const live = !TERMINAL.includes(job.status);
    clear(header,
      h("h1", {}, "Job ", h("code", {}, job.id), " ", statusBadge(job.status)),
      h("div", { class: "actions" },
        job.status === "running" ? h("button", { type: "button", id: "pause", onclick: () => act("pause") }, "Pause") : null,
        job.status === "paused" ? h("button", { type: "button", id: "resume", onclick: () => act("resume") }, "Resume") : null,
        live ? h("button", { type: "button", id: "cancel", class: "danger", onclick: () => act("cancel") }, "Cancel") : null));
  }

  function drawSummary() {
    const rows = metricRows(events);
    const last = rows[rows.length - 1];
    const step = last ? last.step : 0, total = last ? last.total_steps : null;
    const left = job.status === "running" ? eta(events, rows) : null;
    const finish = job.estimated_finish ? fmtTime(job.estimated_finish) : null;
    clear(summary,
      h("dl", { class: "facts" },
        fact("Status", h("span", { id: "job-status" }, job.status)),
        fact("Model", job.model),
        fact("Fine-tuned model", job.fine_tuned_model
          ? [h("code", { id: "fine-tuned-model" }, job.fine_tuned_model), " ", copyButton(job.fine_tuned_model),
            " ", h("a", { href: `#/playground?model=${encodeURIComponent(job.fine_tuned_model)}` }, "Try it")]
          : "—"),
        fact("Progress", total
          ? [h("progress", { max: total, value: step, "aria-label": "Training progress" }), ` step ${step} / ${total}`]
          : "—", "progress"),
        fact("ETA", left !== null ? `about ${fmtDuration(left)}` : finish || "—", "eta"),
        fact("Created", fmtTime(job.created_at)),
        fact("Finished", fmtTime(job.finished_at)),
        fact("Trained tokens", fmtNumber(job.trained_tokens)),
        fact("Training file", h("a", { href: `#/files/${job.training_file}` }, job.training_file)),
        fact("Validation file", job.validation_file ? h("a", { href: `#/files/${job.validation_file}` }, job.validation_file) : "—"),
        fact("Suffix", job.suffix || "—"),
        fact("Metadata", job.metadata && Object.keys(job.metadata).length
          ? Object.entries(job.metadata).map(([k, v]) => `${k}=${v}`).join(", ") : "—")),
      job.error && job.error.message
        ? h("div", { class: "error", role: "alert" }, `${job.error.code || "error"}: ${job.error.message}`
          + (job.error.param ? ` (${job.error.param})` : ""))
        : null);
    lossChart.update(rows);
    accChart.update(rows);
  }

  function drawEvents(fresh, all) {
    const nearBottom = logWrap.scrollHeight - logWrap.scrollTop - logWrap.clientHeight < 40;
    if (all) log.replaceChildren();
    for (const e of fresh) {
      log.append(h("li", { class: `level-${e.level} type-${e.type}`, dataset: { id: e.id } },
        h("time", { datetime: new Date(e.created_at * 1000).toISOString() }, fmtTime(e.created_at)),
        e.level !== "info" ? h("strong", { class: "level" }, e.level === "warn" ? "warning" : e.level) : null,
        h("span", { class: "message" }, e.message)));
    }
    if (nearBottom || all) logWrap.scrollTop = logWrap.scrollHeight;
  }

  function drawHyper() {
    const hp = hyperparameters(job);
    clear(hyper, h("table", { class: "kv" }, h("tbody", {},
      h("tr", {}, h("th", { scope: "row" }, "method"), h("td", {}, (job.method && job.method.type) || "supervised")),
      Object.entries(hp).map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", { class: "num" }, String(v))))),
    job.status === "validating_files" ? h("p", { class: "muted" }, "\"auto\" values are resolved once the files are validated.") : null));
  }

  async function drawCheckpoints() {
    const key = `${job.status}:${events.length}`;
    if (key === checkpointsKey) return;
    checkpointsKey = key;
    const list = await get(`/fine_tuning/jobs/${jobId}/checkpoints`, { limit: 100 });
    if (!list.data.length) return clear(checkpoints, h("p", { class: "muted" }, "No checkpoint yet (one per epoch; the last three are kept)."));
    const cols = ["train_loss", "valid_loss", "full_valid_loss", "full_valid_mean_token_accuracy"];
    const head = h("tr", {}, h("th", { scope: "col" }, "Step"), h("th", { scope: "col" }, "Model name"),
      cols.map((c) => h("th", { scope: "col" }, c.replaceAll("_", " "))));
    const rows = list.data.map((c) => h("tr", {},
      h("td", { class: "num" }, c.step_number),
      h("td", {}, h("code", {}, c.fine_tuned_model_checkpoint), " ", copyButton(c.fine_tuned_model_checkpoint), " ",
        h("a", { href: `#/playground?model=${encodeURIComponent(c.fine_tuned_model_checkpoint)}` }, "Try it")),
      cols.map((k) => h("td", { class: "num" }, fmtNumber(c.metrics[k])))));
    clear(checkpoints, h("div", { class: "table-wrap" },
      h("table", { id: "checkpoints-table" }, h("thead", {}, head), h("tbody", {}, rows))));
  }

  async function drawResults() {
    const key = job.result_files.join(",");
    if (key === resultsShown) return;
    resultsShown = key;
    const files = await Promise.all(job.result_files.map((id) => get(`/files/${id}`).catch(() => ({ id, filename: id }))));
    clear(results, files.length
      ? h("ul", { class: "plain" }, files.map((f) => h("li", {},
        h("button", { type: "button", class: "small", onclick: () => download(f.id, f.filename) }, `Download ${f.filename}`),
        " ", h("small", { class: "muted" }, f.id))))
      : h("p", { class: "muted" }, "Written when the job succeeds: step_metrics.csv, and evaluation.csv with a validation file."));
    const csv = files.find((f) => f.filename === "evaluation.csv");
    if (csv) {
      const rows = parseCsv(await fileText(csv.id));
      drawEvaluation(rows[0], rows.slice(1), "from evaluation.csv");
    }
  }

  function drawEvaluationFromEvent() {
    const event = [...events].reverse().find((e) => e.message.startsWith(EVAL_PREFIX) && e.data && e.data.base);
    if (!event || resultsShown) return !!event;
    const cols = ["examples", "loss", "mean_token_accuracy", "exact_match"];
    drawEvaluation(["model", ...cols],
      [["base", event.data.base], ["fine-tuned", event.data.tuned]].map(([m, r]) => [m, ...cols.map((c) => r[c])]),
      "from the evaluation event");
    return true;
  }

  function drawEvaluation(header, rows, source) {
    const cell = (v, i) => (i === 0
      ? h("th", { scope: "row" }, v)
      : h("td", { class: "num" }, fmtNumber(v === "" ? null : Number(v))));
    const table = h("table", { id: "evaluation-table" },
      h("thead", {}, h("tr", {}, header.map((c) => h("th", { scope: "col" }, c.replaceAll("_", " "))))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map(cell)))));
    clear(evaluation, h("div", { class: "table-wrap" }, table), h("p", { class: "muted" }, `Greedy answers on the validation file (${source}).`));
  }

  function drawAll() {
    drawHeader();
    drawSummary();
    drawHyper();
    if (!drawEvaluationFromEvent() && !job.result_files.length) {
      clear(evaluation, h("p", { class: "muted" }, job.validation_file
        ? "Computed when training ends." : "Needs a validation file."));
    }
  }

  drawAll();
  drawEvents(events, true);
  await Promise.all([drawCheckpoints(), drawResults()]).catch((err) => checkpoints.append(errorBox(err)));

  let finalPass = TERMINAL.includes(job.status);
  const stop = poll(async () => {
    const before = job.status;
    job = await get(`/fine_tuning/jobs/${jobId}`);
    const fresh = await newEvents(jobId, events.length ? events[events.length - 1].id : undefined);
    if (fresh.length) {
      events = events.concat(fresh);
      drawEvents(fresh, false);
    }
    if (fresh.length || before !== job.status) {
      drawAll();
      await drawCheckpoints();
    }
    await drawResults();
    // One more round after the end, for events written just after the status changed.
    if (TERMINAL.includes(job.status)) {
      if (finalPass) return false;
      finalPass = true;
    }
    return true;
  }, POLL_MS);
  return () => { stop(); lossChart.destroy(); accChart.destroy(); };

  function fact(name, value, id) {
    return h("div", { class: "fact", id: id ? `fact-${id}` : null }, h("dt", {}, name), h("dd", {}, value));
  }
}
