// The /v1 API as the dashboard uses it: the user's key on every request, OpenAI error envelopes
// turned into ApiError (with the `param` a form shows the message next to), cursor pagination.

const KEY = "ftapi.apiKey";

export function getKey() {
  return sessionStorage.getItem(KEY) || localStorage.getItem(KEY);
}

export function setKey(key, remember) {
  sessionStorage.setItem(KEY, key);
  if (remember) localStorage.setItem(KEY, key);
  else localStorage.removeItem(KEY);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.type = e.type || null;
    this.code = e.code || null;
    this.param = e.param || null;
  }
}

function headers(extra = {}) {
  const key = getKey();
  return key ? { Authorization: `Bearer ${key}`, ...extra } : extra;
}

async function raise(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const err = new ApiError(response.status, body);
  if (response.status === 401) window.dispatchEvent(new CustomEvent("ftapi:unauthorized"));
  throw err;
}

/** `request("GET", "/files", {query})`, `request("POST", "/fine_tuning/jobs", {json})`. */
export async function request(method, path, { json, form, query, signal, raw } = {}) {
  const url = new URL("/v1" + path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.append(k, v);
  }
  const init = { method, headers: headers(), signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) init.body = form;
  const response = await fetch(url, init);
  if (!response.ok) await raise(response);
  if (raw) return response;
  return response.json();
}

export const get = (path, query, signal) => request("GET", path, { query, signal });
export const post = (path, json) => request("POST", path, { json: json ?? {} });
export const del = (path) => request("DELETE", path);

/** Every item of a cursor-paginated list (`after` = the last id of the page before). */
export async function listAll(path, query = {}, max = 10_000) {
  const items = [];
  let after;
  for (;;) {
    const page = await get(path, { ...query, after });
    items.push(...page.data);
    if (!page.has_more || !page.data.length || items.length >= max) return items;
    after = page.data[page.data.length - 1].id;
  }
}

/**
 * POST a multipart body with upload progress (fetch cannot report it; XMLHttpRequest can).
 * onProgress(sentBytes) is called as the body goes out.
 */
export function postForm(path, form, onProgress, query = {}) {
  const url = new URL("/v1" + path, location.origin);
  for (const [k, v] of Object.entries(query)) if (v) url.searchParams.append(k, v);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => onProgress && onProgress(e.loaded);
    xhr.onerror = () => reject(new ApiError(0, { error: { message: "The upload failed: network error." } }));
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else {
        if (xhr.status === 401) window.dispatchEvent(new CustomEvent("ftapi:unauthorized"));
        reject(new ApiError(xhr.status, body));
      }
    };
    xhr.send(form);
  });
}

/** Download a file's content (it needs the key, so not a plain link) under its own name. */
export async function download(fileId, filename) {
  const response = await request("GET", `/files/${encodeURIComponent(fileId)}/content`, { raw: true });
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename || fileId;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export async function fileText(fileId) {
  const response = await request("GET", `/files/${encodeURIComponent(fileId)}/content`, { raw: true });
  return response.text();
}

/**
 * Stream a chat completion (SSE). onDelta(text) gets each piece of the answer; resolves with the
 * final usage (or null). Abort with `signal`.
 */
export async function streamChat(body, onDelta, signal) {
  const response = await request("POST", "/chat/completions", {
    json: { ...body, stream: true, stream_options: { include_usage: true } },
    raw: true,
    signal,
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "", usage = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of frame.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return usage;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(500, chunk);
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices || []) {
          if (choice.delta && choice.delta.content) onDelta(choice.delta.content);
        }
      }
    }
  }
  return usage;
}
