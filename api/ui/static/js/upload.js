// Uploading a file: one multipart POST /v1/files for small files, the Uploads API (create, parts,
// complete) for big ones, so no single request carries a huge body. Progress is reported in bytes.
import { postForm, request } from "./api.js";

export const UPLOADS_FROM_BYTES = 4 * 1024 * 1024; // above this, the Uploads API
export const PART_BYTES = 2 * 1024 * 1024;

/** Upload `file` with `purpose`; onProgress(sent, total). Resolves with the File object. */
export async function uploadFile(file, purpose, onProgress = () => {}) {
  if (file.size <= UPLOADS_FROM_BYTES) {
    const form = new FormData();
    form.append("purpose", purpose);
    form.append("file", file, file.name);
    const created = await postForm("/files", form, (sent) => onProgress(Math.min(sent, file.size), file.size));
    onProgress(file.size, file.size);
    return created;
  }
  const upload = await request("POST", "/uploads", {
    json: { filename: file.name, purpose, bytes: file.size, mime_type: file.type || "application/jsonl" },
  });
  const partIds = [];
  try {
    for (let offset = 0; offset < file.size; offset += PART_BYTES) {
      const form = new FormData();
      form.append("data", file.slice(offset, offset + PART_BYTES), "part");
      const part = await postForm(`/uploads/${upload.id}/parts`, form,
        (sent) => onProgress(Math.min(offset + sent, file.size), file.size));
      partIds.push(part.id);
      onProgress(Math.min(offset + PART_BYTES, file.size), file.size);
    }
    const done = await request("POST", `/uploads/${upload.id}/complete`, { json: { part_ids: partIds } });
    return done.file;
  } catch (err) {
    // Leave nothing half-uploaded behind (a completed-and-refused upload is already cancelled).
    request("POST", `/uploads/${upload.id}/cancel`).catch(() => {});
    throw err;
  }
}
