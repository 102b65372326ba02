// Fleet: every camera in the principal's scope (the API filters), error first, with a recent thumbnail.

import { ApiError, blobUrl, getJson, request } from "./api.js";
import { ago, clear, el, iso, notice } from "./util.js";

const RANK = { error: 0, offline: 1, backoff: 1, crash_loop: 1, stopped: 2, connecting: 3, starting: 3, recording: 5 };
const THUMB_EVERY_MS = 30000;

export function causeOf(health) {
  if (!health) return null;
  if (health.last_error_code) return health.last_error_code;
  if (health.last_error) return health.last_error;
  const causes = Object.entries(health.restarts_by_cause || {}).sort((a, b) => b[1] - a[1]);
  return causes.length ? causes[0][0] : null;
}

export function sortCameras(rows) {
  return rows.sort((a, b) => {
    const ra = RANK[a.state] ?? 4;
    const rb = RANK[b.state] ?? 4;
    return ra - rb || String(a.camera.name || a.camera.id).localeCompare(String(b.camera.name || b.camera.id));
  });
}

export class Fleet {
  constructor(app) {
    this.app = app;
    this.root = document.getElementById("fleet");
    this.summary = document.getElementById("fleet-summary");
    this.thumbs = new Map(); // camera id -> {url, at}
    document.getElementById("fleet-refresh").addEventListener("click", () => this.refresh(true));
  }

  async load() {
    const cameras = await getJson("/api/v1/cameras");
    let health = [];
    if (this.app.can("camera:read")) {
      health = await getJson("/api/v1/health/cameras").catch(() => []);
    }
    const byId = new Map(health.map((h) => [h.camera_id, h]));
    return sortCameras(
      cameras.map((camera) => {
        const h = byId.get(camera.id) || null;
        const state = !camera.enabled ? "disabled" : h ? h.state : "pending";
        return { camera, health: h, state };
      }),
    );
  }

  async refresh(thumbsToo = false) {
    let rows;
    try {
      rows = await this.load();
    } catch (err) {
      notice(`fleet: ${err.message}`);
      return;
    }
    this.app.setCameras(rows.map((r) => r.camera));
    const errors = rows.filter((r) => r.state === "error").length;
    const recording = rows.filter((r) => r.state === "recording").length;
    this.summary.textContent = `${rows.length} camera(s), ${recording} recording, ${errors} in error`;
    clear(this.root);
    for (const row of rows) this.root.append(this.card(row, thumbsToo));
  }

  card(row, thumbsToo) {
    const { camera, health, state } = row;
    const can = this.app.can;
    const img = el("img", { class: "thumb", alt: `${camera.name || camera.id}: latest picture`, hidden: true });
    img.addEventListener("load", () => (img.hidden = false));
    const frame = el("div", { class: "thumb-box" }, el("span", { class: "muted", text: "no recent picture" }), img);
    this.thumbnail(img, row, thumbsToo);
    const bitrate = health && health.bitrate_kbps != null ? `${Math.round(health.bitrate_kbps)} kbit/s` : "–";
    const cause = causeOf(health);
    const actions = el(
      "div",
      { class: "actions" },
      el("a", { href: `#timeline/${encodeURIComponent(camera.id)}`, text: "Timeline" }),
      can("video:live") ? el("a", { href: `#live/${encodeURIComponent(camera.id)}`, text: "Live" }) : null,
      can("registry:manage")
        ? el("button", {
            type: "button",
            class: "toggle",
            text: camera.enabled ? "Disable" : "Enable",
            onclick: () => this.setEnabled(camera, !camera.enabled),
          })
        : null,
      can("admin")
        ? el("button", { type: "button", class: "danger delete", text: "Delete", onclick: () => this.remove(camera) })
        : null,
    );
    return el(
      "article",
      { class: `camera state-${state}`, dataset: { camera: camera.id, state } },
      frame,
      el(
        "div",
        { class: "body" },
        el("div", { class: "title" }, el("span", { text: camera.name || camera.id }), el("span", { class: `pill ${state}`, text: state })),
        el(
          "dl",
          {},
          el("dt", { text: "id" }),
          el("dd", { text: camera.id }),
          el("dt", { text: "last stop" }),
          el("dd", { class: "cause", text: cause || "–" }),
          el("dt", { text: "last segment" }),
          el("dd", { class: "age", text: health ? ago(health.last_segment_at) : "–" }),
          el("dt", { text: "bitrate" }),
          el("dd", { class: "bitrate", text: bitrate }),
        ),
        actions,
      ),
    );
  }

  async thumbnail(img, row, force) {
    const { camera, health } = row;
    const cached = this.thumbs.get(camera.id);
    if (cached && !force && Date.now() - cached.at < THUMB_EVERY_MS) {
      img.src = cached.url;
      return;
    }
    if (!this.app.can("video:playback") || !health || !health.last_segment_at) return;
    // the latest recorded second: near-live, and it opens no session on the camera itself
    const at = iso(Date.parse(health.last_segment_at) - 1000);
    try {
      const url = await blobUrl(`/api/v1/cameras/${encodeURIComponent(camera.id)}/snapshot`, { at });
      if (cached) URL.revokeObjectURL(cached.url);
      this.thumbs.set(camera.id, { url, at: Date.now() });
      img.src = url;
    } catch (err) {
      if (cached) img.src = cached.url;
    }
  }

  async setEnabled(camera, enabled) {
    try {
      await request("PATCH", `/api/v1/cameras/${encodeURIComponent(camera.id)}`, { body: { enabled } });
      notice(`${camera.id} ${enabled ? "enabled" : "disabled"}`);
    } catch (err) {
      notice(`${camera.id}: ${err.message}`);
    }
    this.refresh();
  }

  async remove(camera) {
    if (!confirm(`Delete camera ${camera.id} and all its footage?`)) return;
    try {
      await request("DELETE", `/api/v1/cameras/${encodeURIComponent(camera.id)}`);
      notice(`${camera.id} deleted`);
    } catch (err) {
      notice(`${camera.id}: ${err instanceof ApiError ? err.message : err}`);
    }
    this.refresh();
  }
}
