// Playground: one prompt to two models at once (base and a tuned model or checkpoint), both answers
// streamed side by side through /v1/chat/completions (SSE).
import { get, streamChat } from "../api.js";
import { clear, errorBox, h } from "../dom.js";

export async function render(root, _params, query) {
  document.title = "Playground · ftapi";
  const models = (await get("/models")).data;
  const base = models.filter((m) => m.owned_by === "system");
  const tuned = models.filter((m) => m.owned_by !== "system");
  const wanted = query.get("model");
  const controllers = [];

  function modelInput(id, value) {
    const listId = `${id}-options`;
    return [
      h("input", { id, type: "text", list: listId, value, spellcheck: "false", autocomplete: "off" }),
      h("datalist", { id: listId }, models.map((m) => h("option", { value: m.id }))),
    ];
  }
  const [leftModel, leftList] = modelInput("left-model", base[0] ? base[0].id : "");
  const [rightModel, rightList] = modelInput("right-model", wanted || (tuned[0] ? tuned[0].id : ""));
  const system = h("textarea", { id: "system", rows: "2", placeholder: "optional" });
  const prompt = h("textarea", { id: "prompt", rows: "4", required: true });
  const temperature = h("input", { id: "temperature", type: "number", min: "0", max: "2", step: "0.1", value: "0" });
  const maxTokens = h("input", { id: "max-tokens", type: "number", min: "1", max: "4096", value: "64" });
  const leftOut = h("div", { class: "answer", id: "left-answer", "aria-live": "polite" });
  const rightOut = h("div", { class: "answer", id: "right-answer", "aria-live": "polite" });
  const send = h("button", { type: "submit", class: "primary" }, "Send to both");
  const stop = h("button", { type: "button", disabled: true, onclick: () => abortAll() }, "Stop");

  function abortAll() {
    while (controllers.length) controllers.pop().abort();
  }

  async function run(model, out) {
    const controller = new AbortController();
    controllers.push(controller);
    const text = h("pre", { class: "answer-text" });
    const meta = h("small", { class: "muted" }, "streaming…");
    clear(out, h("h3", {}, model), text, meta);
    const messages = [];
    if (system.value.trim()) messages.push({ role: "system", content: system.value });
    messages.push({ role: "user", content: prompt.value });
    const started = performance.now();
    try {
      const usage = await streamChat({
        model, messages, temperature: Number(temperature.value), max_completion_tokens: Number(maxTokens.value),
      }, (delta) => { text.textContent += delta; }, controller.signal);
      const secs = ((performance.now() - started) / 1000).toFixed(1);
      meta.textContent = usage ? `${usage.completion_tokens} tokens in ${secs} s` : `done in ${secs} s`;
      out.dataset.done = "true";
    } catch (err) {
      meta.textContent = "";
      out.append(errorBox(err.name === "AbortError" ? "Stopped." : err));
      out.dataset.done = "error";
    }
  }

  const form = h("form", { class: "card", id: "playground-form" },
    h("div", { class: "grid2" },
      h("div", { class: "field" }, h("label", { for: "left-model" }, "Left model (e.g. the base)"), leftModel, leftList),
      h("div", { class: "field" }, h("label", { for: "right-model" }, "Right model (a tuned model or checkpoint)"), rightModel, rightList)),
    h("div", { class: "field" }, h("label", { for: "system" }, "System message"), system),
    h("div", { class: "field" }, h("label", { for: "prompt" }, "Prompt"), prompt),
    h("div", { class: "grid2" },
      h("div", { class: "field" }, h("label", { for: "temperature" }, "Temperature"), temperature),
      h("div", { class: "field" }, h("label", { for: "max-tokens" }, "Max tokens"), maxTokens)),
    h("div", { class: "actions" }, send, stop));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    abortAll();
    send.disabled = true;
    stop.disabled = false;
    delete leftOut.dataset.done;
    delete rightOut.dataset.done;
    await Promise.all([run(leftModel.value.trim(), leftOut), run(rightModel.value.trim(), rightOut)]);
    send.disabled = false;
    stop.disabled = true;
  });
  prompt.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit(); });

  clear(root, h("h1", {}, "Playground"),
    h("p", { class: "muted" }, "The same prompt to two models, streamed side by side. Ctrl+Enter sends."),
    form, h("div", { class: "grid2 answers" }, leftOut, rightOut));
  return abortAll;
}
