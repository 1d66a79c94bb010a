// Create a job: files (pick or upload), model, method, hyperparameters ("auto" or a number), suffix,
// seed, metadata. An API error is shown next to the field its `param` names.
import { get, listAll, post } from "../api.js";
import { clear, errorBox, fmtBytes, h } from "../dom.js";
import { uploadFile } from "../upload.js";

const HYPER = {
  supervised: ["n_epochs", "batch_size", "learning_rate_multiplier"],
  dpo: ["n_epochs", "batch_size", "learning_rate_multiplier", "beta"],
};

/** The form field an error's `param` belongs to: exact, then by its last dotted part, then by prefix. */
export function fieldFor(param, names) {
  if (!param) return null;
  if (names.includes(param)) return param;
  const parts = param.split(".").filter((p) => !/^\d+$/.test(p));
  for (let i = parts.length - 1; i >= 0; i--) if (names.includes(parts[i])) return parts[i];
  return names.find((n) => param.startsWith(n + ".") || param.startsWith(n + "[")) || null;
}

function numberOrRaw(text) {
  const t = text.trim();
  if (t === "" || t === "auto") return "auto";
  const n = Number(t);
  return Number.isFinite(n) ? n : t; // the API says what is wrong with anything else
}

export async function render(root) {
  document.title = "Create job · ftapi";
  const [files, models] = await Promise.all([listAll("/files", { purpose: "fine-tune" }), get("/models")]);
  const fields = {};
  const errors = {};

  function field(name, label, control, help) {
    fields[name] = control;
    errors[name] = h("div", { class: "field-error", id: `${name}-error`, "aria-live": "polite" });
    control.id = control.id || `f-${name}`;
    control.setAttribute("aria-describedby", `${name}-error${help ? ` ${name}-help` : ""}`);
    return h("div", { class: "field", dataset: { param: name } },
      h("label", { for: control.id }, label), control,
      help ? h("small", { id: `${name}-help`, class: "muted" }, help) : null, errors[name]);
  }

  function fileSelect(name, optional) {
    return h("select", { name },
      optional ? h("option", { value: "" }, "none") : h("option", { value: "" }, "choose a file…"),
      files.map((f) => h("option", { value: f.id }, `${f.filename} (${fmtBytes(f.bytes)}, ${f.id})`)));
  }

  function uploader(select, name) {
    const input = h("input", { type: "file", accept: ".jsonl", id: `upload-${name}`, class: "sr-only" });
    const status = h("span", { class: "muted", "aria-live": "polite" });
    input.addEventListener("change", async () => {
      const file = input.files[0];
      if (!file) return;
      clear(errors[name]);
      status.textContent = `Uploading ${file.name}…`;
      try {
        const created = await uploadFile(file, "fine-tune", (sent, total) => {
          status.textContent = `Uploading ${file.name}: ${Math.round((100 * sent) / total)}%`;
        });
        select.append(h("option", { value: created.id, selected: true }, `${created.filename} (${created.id})`));
        select.value = created.id;
        status.textContent = `Uploaded ${created.filename}.`;
      } catch (err) {
        status.textContent = "";
        clear(errors[name], err.message);
      }
      input.value = "";
    });
    return h("span", {}, h("label", { for: `upload-${name}`, class: "button small", tabindex: "0",
      onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } } },
    "Upload a new file…"), input, " ", status);
  }

  const training = fileSelect("training_file", false);
  const validation = fileSelect("validation_file", true);
  const model = h("select", { name: "model" }, models.data.map((m) => h("option", { value: m.id }, m.id)));
  const method = h("select", { name: "method" },
    h("option", { value: "supervised" }, "supervised (SFT)"), h("option", { value: "dpo" }, "dpo (preference pairs)"));
  const hyperBox = h("fieldset", { class: "hyper" }, h("legend", {}, "Hyperparameters (\"auto\" lets the service choose)"));
  const suffix = h("input", { name: "suffix", type: "text", maxlength: "64", placeholder: "my-model" });
  const seed = h("input", { name: "seed", type: "text", inputmode: "numeric", placeholder: "random" });
  const metadata = h("textarea", { name: "metadata", rows: "2", placeholder: "team=search\nrun=7" });
  const general = h("div", { "aria-live": "assertive" });
  const hyperInputs = {};

  function drawHyper() {
    for (const key of Object.keys(hyperInputs)) { delete hyperInputs[key]; delete fields[key]; }
    hyperBox.replaceChildren(hyperBox.firstChild);
    for (const name of HYPER[method.value]) {
      const input = h("input", { name, type: "text", value: "auto", inputmode: "decimal" });
      hyperInputs[name] = input;
      hyperBox.append(field(name, name.replaceAll("_", " "), input));
    }
  }
  method.addEventListener("change", drawHyper);

  const form = h("form", { class: "card", id: "create-form", novalidate: true },
    field("training_file", "Training file", training), uploader(training, "training_file"),
    field("validation_file", "Validation file (optional: validation curves and the base-vs-tuned evaluation)", validation),
    uploader(validation, "validation_file"),
    h("div", { class: "grid2" }, field("model", "Base model", model), field("method", "Method", method)),
    hyperBox,
    h("div", { class: "grid2" },
      field("suffix", "Suffix (part of the model name)", suffix),
      field("seed", "Seed", seed)),
    field("metadata", "Metadata (key=value per line)", metadata),
    general,
    h("button", { type: "submit", class: "primary" }, "Create job"));
  drawHyper();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const box of Object.values(errors)) clear(box);
    clear(general);
    const hyperparameters = {};
    for (const [name, input] of Object.entries(hyperInputs)) hyperparameters[name] = numberOrRaw(input.value);
    const body = {
      model: model.value,
      training_file: training.value,
      method: { type: method.value, [method.value]: { hyperparameters } },
    };
    if (validation.value) body.validation_file = validation.value;
    if (suffix.value.trim()) body.suffix = suffix.value.trim();
    if (seed.value.trim()) body.seed = numberOrRaw(seed.value);
    const meta = {};
    for (const line of metadata.value.split("\n")) {
      const cut = line.indexOf("=");
      if (cut > 0) meta[line.slice(0, cut).trim()] = line.slice(cut + 1).trim();
    }
    if (Object.keys(meta).length) body.metadata = meta;
    try {
      const job = await post("/fine_tuning/jobs", body);
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (err) {
      const name = fieldFor(err.param, Object.keys(fields));
      if (name) {
        clear(errors[name], err.message);
        fields[name].setAttribute("aria-invalid", "true");
        fields[name].focus();
      } else {
        clear(general, errorBox(err));
      }
    }
  });
  for (const control of Object.values(fields)) control.addEventListener("input", () => control.removeAttribute("aria-invalid"));

  clear(root, h("h1", {}, "Create a fine-tuning job"), form);
}
