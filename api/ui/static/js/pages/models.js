// Models: the base models of the catalogue and this project's fine-tuned models, the engine that
// serves each (ftapi's `served_by` field), and delete for tuned ones.
import { del, get } from "../api.js";
import { clear, errorBox, fmtTime, h } from "../dom.js";

export async function render(root) {
  document.title = "Models · ftapi";
  const box = h("div", { "aria-live": "polite" });
  clear(root, h("h1", {}, "Models"), box);

  async function refresh() {
    const models = (await get("/models")).data;
    const groups = [["Base models", models.filter((m) => m.owned_by === "system")],
      ["Fine-tuned models", models.filter((m) => m.owned_by !== "system")]];
    clear(box, groups.map(([title, items]) => h("section", { class: "card" }, h("h2", {}, title),
      items.length ? h("div", { class: "table-wrap" }, h("table", { class: "models-table" },
        h("thead", {}, h("tr", {}, ["Model", "Served by", "Created", "Owner", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, items.map((m) => h("tr", { dataset: { model: m.id } },
          h("td", {}, h("code", {}, m.id)),
          h("td", {}, m.served_by || "—"),
          h("td", {}, fmtTime(m.created)),
          h("td", {}, m.owned_by),
          h("td", {}, h("div", { class: "actions" },
            h("a", { class: "button small", href: `#/playground?model=${encodeURIComponent(m.id)}` }, "Try it"),
            m.owned_by === "system" ? null : h("button", {
              type: "button", class: "small danger", "aria-label": `Delete ${m.id}`,
              onclick: async () => {
                if (!window.confirm(`Delete ${m.id}? Its job stays listed; the model stops answering.`)) return;
                try { await del(`/models/${m.id}`); } catch (err) { box.prepend(errorBox(err)); return; }
                await refresh();
              },
            }, "Delete"))))))))
        : h("p", { class: "empty" }, title === "Base models" ? "None." : "None yet: a succeeded job adds its model here."))));
  }
  await refresh();
}
