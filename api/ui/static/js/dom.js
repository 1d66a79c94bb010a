// Small DOM helpers: elements built from data (never from HTML strings, so API text cannot inject markup).

/** h("div", {class: "x", onclick: fn}, child, "text", [more]) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function fmtTime(unixSeconds) {
  if (!unixSeconds) return "—";
  return new Date(unixSeconds * 1000).toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || seconds < 0 || !Number.isFinite(seconds)) return "—";
  seconds = Math.round(seconds);
  const hrs = Math.floor(seconds / 3600), min = Math.floor((seconds % 3600) / 60), sec = seconds % 60;
  if (hrs) return `${hrs} h ${min} min`;
  if (min) return `${min} min ${sec} s`;
  return `${sec} s`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function fmtNumber(n, digits = 4) {
  if (n === null || n === undefined || n === "" || Number.isNaN(n)) return "—";
  if (typeof n === "string" && !/^-?[\d.]+(e-?\d+)?$/.test(n)) return n; // not a number: as it is
  n = Number(n);
  if (!Number.isInteger(n)) return String(parseFloat(n.toFixed(digits)));
  return n.toLocaleString();
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}` }, status.replaceAll("_", " "));
}

/** A button that copies `text` and says so (to screen readers too). */
export function copyButton(text, label = "Copy") {
  const button = h("button", { type: "button", class: "small", "aria-label": `${label}: ${text}` }, label);
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      // No clipboard permission (e.g. plain http on another host): select the text instead.
      window.prompt("Copy this:", text);
    }
    setTimeout(() => { button.textContent = label; }, 1500);
  });
  return button;
}

export function errorBox(err) {
  return h("div", { class: "error", role: "alert" }, err && err.message ? err.message : String(err));
}

/** Parse a CSV without quoted newlines (our result files) into rows of strings. */
export function parseCsv(text) {
  return text.trim().split("\n").filter(Boolean).map((line) => {
    const cells = [];
    let cur = "", quoted = false;
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      if (quoted) {
        if (c === '"' && line[i + 1] === '"') { cur += '"'; i++; }
        else if (c === '"') quoted = false;
        else cur += c;
      } else if (c === '"') quoted = true;
      else if (c === ",") { cells.push(cur); cur = ""; }
      else cur += c;
    }
    cells.push(cur);
    return cells;
  });
}
