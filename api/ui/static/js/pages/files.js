// Files: drag-and-drop upload (the Uploads API for big files) with a progress bar, the list, delete,
// and the validator's report for fine-tune files (ftapi's /v1/files/{id}/validation extension). A file
// the upload refused has no id: its report comes from POST /v1/files/validation, which stores nothing.
import { del, download, get, listAll, postForm } from "../api.js";
import { clear, errorBox, fmtBytes, fmtNumber, fmtTime, h } from "../dom.js";
import { UPLOADS_FROM_BYTES, uploadFile } from "../upload.js";

const PURPOSES = ["fine-tune", "batch", "user_data", "assistants", "vision", "evals"];

export async function render(root, [fileId]) {
  document.title = "Files · ftapi";
  const purpose = h("select", { id: "upload-purpose" }, PURPOSES.map((p) => h("option", { value: p }, p)));
  const input = h("input", { type: "file", id: "file-input", multiple: true, class: "sr-only" });
  const progress = h("div", { id: "upload-progress", "aria-live": "polite" });
  // A real button for keyboards (its Enter is a trusted click, which may open a file chooser).
  const choose = h("button", { type: "button", id: "choose-files", class: "linkish" }, "choose files");
  const drop = h("div", { class: "dropzone", id: "dropzone" },
    h("strong", {}, "Drop files here"), " or ", choose,
    h("br"), h("small", { class: "muted" },
      `Files over ${fmtBytes(UPLOADS_FROM_BYTES)} go through the Uploads API in parts.`));
  const report = h("div", { id: "report" });
  const list = h("div", { id: "files-list" });

  choose.addEventListener("click", (e) => { e.stopPropagation(); input.click(); });
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    uploadAll([...e.dataTransfer.files]);
  });
  input.addEventListener("change", () => { uploadAll([...input.files]); input.value = ""; });

  async function uploadAll(files) {
    for (const file of files) await uploadOne(file);
    await refresh();
  }

  async function uploadOne(file) {
    const bar = h("progress", { max: file.size || 1, value: 0, "aria-label": `Uploading ${file.name}` });
    const label = h("span", {}, `${file.name}: 0%`);
    const row = h("div", { class: "upload-row" }, label, bar);
    progress.prepend(row);
    try {
      const created = await uploadFile(file, purpose.value, (sent, total) => {
        bar.value = sent;
        label.textContent = `${file.name}: ${Math.round((100 * sent) / (total || 1))}%`;
      });
      label.textContent = `${file.name}: uploaded as ${created.id}`;
      if (created.purpose === "fine-tune") await showReport(created.id);
    } catch (err) {
      label.textContent = `${file.name}: refused`;
      row.append(errorBox(err));
      if (purpose.value === "fine-tune" && file.name.toLowerCase().endsWith(".jsonl")) await showUnstoredReport(file);
    }
  }

  async function showReport(id) {
    clear(report, h("p", { class: "muted" }, "Validating…"));
    try {
      renderReport(report, await get(`/files/${encodeURIComponent(id)}/validation`));
    } catch (err) {
      clear(report, errorBox(err));
    }
  }

  async function showUnstoredReport(file) {
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      renderReport(report, await postForm("/files/validation", form), true);
    } catch (err) {
      clear(report, errorBox(err));
    }
  }

  async function refresh() {
    const files = await listAll("/files");
    clear(list, files.length ? h("div", { class: "table-wrap" }, h("table", { id: "files-table" },
      h("thead", {}, h("tr", {}, ["File", "Purpose", "Size", "Created", "Status", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, files.map((f) => h("tr", { dataset: { file: f.id } },
        h("td", {}, f.filename, h("br"), h("small", { class: "muted" }, f.id)),
        h("td", {}, f.purpose),
        h("td", { class: "num" }, fmtBytes(f.bytes)),
        h("td", {}, fmtTime(f.created_at)),
        h("td", {}, f.status),
        h("td", {}, h("div", { class: "actions" },
          f.purpose === "fine-tune"
            ? h("a", { class: "button small", href: `#/files/${encodeURIComponent(f.id)}` }, "Report") : null,
          h("button", { type: "button", class: "small", onclick: () => download(f.id, f.filename) }, "Download"),
          h("button", { type: "button", class: "small danger", "aria-label": `Delete ${f.filename}`,
            onclick: async () => {
              if (!window.confirm(`Delete ${f.filename} (${f.id})?`)) return;
              try { await del(`/files/${encodeURIComponent(f.id)}`); } catch (err) { list.prepend(errorBox(err)); }
              await refresh();
            } }, "Delete"))))))))
      : h("p", { class: "empty" }, "No files yet."));
  }

  clear(root, h("h1", {}, "Files"),
    h("section", { class: "card", "aria-labelledby": "upload-title" }, h("h2", { id: "upload-title" }, "Upload"),
      h("div", { class: "field" }, h("label", { for: "upload-purpose" }, "Purpose"), purpose),
      drop, input, progress),
    report,
    h("section", { class: "card", "aria-labelledby": "list-title" }, h("h2", { id: "list-title" }, "Your files"), list));
  await refresh();
  if (fileId) await showReport(fileId);
}

const STAT_ROWS = [
  ["n_examples", "Examples"],
  ["format", "Format"],
  ["total_tokens", "Tokens in all"],
  ["min_tokens", "Tokens per example: min"],
  ["mean_tokens", "mean"],
  ["p50_tokens", "median"],
  ["p95_tokens", "95th percentile"],
  ["max_tokens", "max"],
  ["n_over_limit", "Over the model's context"],
  ["n_duplicates", "Exact duplicates"],
  ["n_empty_assistant", "Empty assistant turns"],
  ["n_without_system", "Without a system message"],
  ["n_without_user", "Without a user message"],
  ["n_blank_lines", "Blank lines (ignored)"],
];

export function renderReport(box, r, unstored = false) {
  const total = Object.values(r.problem_counts).reduce((a, b) => a + b, 0);
  const s = r.stats;
  clear(box, h("section", { class: `card report ${r.ok ? "ok" : "bad"}`, id: "validation-report", "aria-labelledby": "report-title" },
    h("h2", { id: "report-title" }, `Validation report: ${r.filename}`),
    h("p", { class: "verdict", role: "status" }, r.ok
      ? `Valid: ${s.n_examples} examples, ${s.format || "unknown"} format.`
      : `Invalid: ${total} problem${total === 1 ? "" : "s"} in ${s.n_examples} examples.`,
    unstored ? " The upload was refused, so nothing was stored." : null,
    r.file_id ? [" ", h("small", { class: "muted" }, r.file_id)] : null),
    total ? [
      h("h3", {}, "Problems by kind"),
      h("ul", { class: "counts", id: "problem-counts" }, Object.entries(r.problem_counts)
        .map(([code, n]) => h("li", {}, h("code", {}, code), `: ${n}`))),
      h("h3", {}, total > r.problems.length ? `The first ${r.problems.length} problems` : "Problems"),
      h("div", { class: "table-wrap" }, h("table", { id: "problems-table" },
        h("thead", {}, h("tr", {}, ["Line", "Example", "Message", "Kind", "What is wrong"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, r.problems.map((p) => h("tr", {},
          h("td", { class: "num" }, p.line), h("td", { class: "num" }, p.example ?? "—"),
          h("td", { class: "num" }, p.message_index ?? "—"), h("td", { class: "nowrap" }, h("code", {}, p.code)),
          h("td", {}, p.message)))))),
    ] : null,
    h("h3", {}, "Data quality"),
    h("table", { class: "kv", id: "quality-table" }, h("tbody", {}, STAT_ROWS
      .filter(([k]) => k !== "n_over_limit" || s.max_tokens_limit !== null)
      .map(([k, label]) => h("tr", {}, h("th", { scope: "row" }, label), h("td", { class: "num" }, fmtNumber(s[k])))))),
    s.tokens_counted ? null
      : h("p", { class: "muted" }, "Token figures are estimates (bytes / 4); ",
        h("code", {}, "ftapi validate --tokenizer"), " counts them exactly.")));
}
