// Events: the latest rows from /events, then the live feed from /events/stream, with the same filters.

import { eventStream, getJson } from "./api.js";
import { clear, el, notice, stamp } from "./util.js";

const KEEP = 200;

export class Events {
  constructor(app) {
    this.app = app;
    this.list = document.getElementById("events");
    this.state = document.getElementById("events-state");
    this.camera = document.getElementById("ev-camera");
    this.type = document.getElementById("ev-type");
    this.severity = document.getElementById("ev-severity");
    this.seen = new Set();
    this.stopStream = null;
    this.typesLoaded = false;
    for (const select of [this.camera, this.type, this.severity]) select.addEventListener("change", () => this.start());
  }

  filters() {
    return { camera_id: this.camera.value, event_type: this.type.value, severity: this.severity.value };
  }

  fillCameras(cameras) {
    const current = this.camera.value;
    clear(this.camera);
    this.camera.append(el("option", { value: "", text: "all" }));
    for (const c of cameras) this.camera.append(el("option", { value: c.id, text: c.name || c.id }));
    this.camera.value = cameras.some((c) => c.id === current) ? current : "";
  }

  async loadTypes() {
    if (this.typesLoaded) return;
    try {
      const types = await getJson("/api/v1/events/types");
      for (const t of types) this.type.append(el("option", { value: t.event_type, text: t.event_type, title: t.description }));
      this.typesLoaded = true;
    } catch (err) {
      notice(`event types: ${err.message}`);
    }
  }

  setState(state, why) {
    this.state.textContent = state;
    this.state.className = `pill ${state}`;
    this.state.title = why || "";
    this.list.dataset.stream = state;
  }

  async start() {
    this.stop();
    if (!this.app.can("events:read")) {
      this.setState("closed", "this credential may not read events");
      return;
    }
    await this.loadTypes();
    this.seen.clear();
    clear(this.list);
    const f = this.filters();
    this.setState("connecting");
    // subscribe first, then read the history: an event in between arrives on both and is shown once
    this.stopStream = eventStream("/api/v1/events/stream", f, {
      onEvent: (message) => {
        if (message.event === "ready" || message.event === "end") return;
        try {
          this.add(JSON.parse(message.data), true);
        } catch (_) {
          /* a malformed frame is skipped */
        }
      },
      onState: (state, why) => this.setState(state, why),
    });
    try {
      const rows = await getJson("/api/v1/events", { ...f, limit: 50 });
      for (const row of rows.reverse()) this.add(row, false);
    } catch (err) {
      notice(`events: ${err.message}`);
    }
  }

  stop() {
    if (this.stopStream) this.stopStream();
    this.stopStream = null;
    this.setState("closed");
  }

  add(row, live) {
    if (this.seen.has(row.id)) return;
    this.seen.add(row.id);
    const item = el(
      "li",
      { class: `event sev-${row.severity}${live ? " live" : ""}`, dataset: { id: row.id, type: row.event_type, camera: row.camera_id || "" } },
      el("time", { datetime: row.timestamp, text: stamp(Date.parse(row.timestamp)) }),
      el("span", { class: "what", text: `${row.event_type} · ${row.severity}${row.camera_id ? ` · ${row.camera_id}` : ""}` }),
      el("span", { class: "payload", text: JSON.stringify(row.payload) }),
    );
    // newest first, by the server's sequence
    let before = null;
    for (const node of this.list.children) {
      if (Number(node.dataset.seq) < row.seq) {
        before = node;
        break;
      }
    }
    item.dataset.seq = String(row.seq);
    this.list.insertBefore(item, before);
    while (this.list.children.length > KEEP) this.list.lastElementChild.remove();
  }
}
