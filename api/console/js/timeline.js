// Timeline: per camera a bar over a window (24 h down to 10 min) drawn from /timeline (recorded ranges), /gaps
// (holes in footage that was expected) and /recording-gaps (the persisted gaps with their cause and ANR state).
// Click a moment to play it through a playback session; drag a range to export a clip or play it.

import { getJson, request, sendJson, blobUrl } from "./api.js";
import { clear, clock, duration, el, iso, notice, stamp } from "./util.js";
import * as video from "./video.js";

const MAX_TRACKS = 50;
const PLAY_SECONDS = 600;
const CLICK_PX = 4;
const REFRESH_MS = 15000;

// the recorder's stop causes (heldar.media.ffmpeg_errors), each its own hue; "unknown" muted
const KNOWN_CAUSES = {
  refused: 0, exited: 15, timeout: 30, unreachable: 45, stalled: 60, unauthorized: 280, not_found: 300,
  codec: 320, config: 260, disk_full: 200, unknown: 340,
};

/** A stable colour per cause: the known ones fixed, any other hashed onto the wheel. */
export function causeColour(cause) {
  const key = cause || "unknown";
  let hue = KNOWN_CAUSES[key];
  if (hue === undefined) {
    hue = 0;
    for (const ch of key) hue = (hue * 31 + ch.charCodeAt(0)) % 360;
  }
  return `hsl(${hue}, 65%, 50%)`;
}

function overlap(a0, a1, b0, b1) {
  return Math.max(0, Math.min(a1, b1) - Math.max(a0, b0));
}

/** The persisted gap that best explains a hole (largest overlap), or null. */
export function causeFor(hole, recordingGaps) {
  let best = null;
  let bestOverlap = 0;
  for (const g of recordingGaps) {
    const o = overlap(hole.start, hole.end, g.start, g.end);
    if (o > bestOverlap) {
      best = g;
      bestOverlap = o;
    }
  }
  return best;
}

function tickStep(spanS) {
  for (const step of [60, 300, 600, 1800, 3600, 10800]) if (spanS / step <= 8) return step;
  return 21600;
}

export class Timeline {
  constructor(app) {
    this.app = app;
    this.root = document.getElementById("timelines");
    this.generation = 0;
    this.span = 86400;
    this.end = null; // null: follow now
    this.only = null;
    this.selection = null; // {cameraId, from, to}
    this.session = null;
    this.timer = null;
    this.tracks = new Map();
    this.spanSelect = document.getElementById("tl-span");
    this.spanSelect.addEventListener("change", () => {
      this.span = Number(this.spanSelect.value);
      this.render();
    });
    document.getElementById("tl-back").addEventListener("click", () => this.pan(-0.5));
    document.getElementById("tl-fwd").addEventListener("click", () => this.pan(0.5));
    document.getElementById("tl-now").addEventListener("click", () => {
      this.end = null;
      this.render();
    });
    document.getElementById("tl-clear").addEventListener("click", () => this.select(null));
    document.getElementById("tl-export").addEventListener("click", () => this.exportSelection());
    document.getElementById("tl-play-range").addEventListener("click", () => {
      const s = this.selection;
      if (s) this.play(s.cameraId, s.from, s.to);
    });
    document.getElementById("tl-zoom").addEventListener("click", () => this.zoomToSelection());
    document.getElementById("player-close").addEventListener("click", () => this.closePlayer());
    this.legend();
  }

  legend() {
    const node = document.getElementById("tl-legend");
    const item = (cls, text, colour) => {
      const sw = el("span", { class: `sw ${cls}` });
      if (colour) sw.style.background = colour;
      return el("span", {}, sw, text);
    };
    clear(node);
    node.append(
      item("", "recorded", "var(--rec)"),
      item("", "lost (colour: cause)", "var(--lost)"),
      item("", "back-filled by ANR", "var(--anr)"),
      item("", "fill pending", "var(--pending)"),
      item("", "fill failed", "var(--failed)"),
    );
  }

  window() {
    const end = this.end ?? Date.now();
    return { from: end - this.span * 1000, to: end };
  }

  /** The smallest span that holds the selection, ending just after it. */
  zoomToSelection() {
    const s = this.selection;
    if (!s) return;
    const needed = ((s.to - s.from) / 1000) * 1.1;
    const spans = [...this.spanSelect.options].map((o) => Number(o.value)).sort((a, b) => a - b);
    this.span = spans.find((v) => v >= needed) || spans[spans.length - 1];
    this.spanSelect.value = String(this.span);
    const end = s.to + (this.span * 1000 - (s.to - s.from)) / 2;
    this.end = end >= Date.now() ? null : end;
    this.render();
  }

  pan(fraction) {
    const { to } = this.window();
    const next = to + fraction * this.span * 1000;
    this.end = next >= Date.now() ? null : next;
    this.render();
  }

  show(cameraId) {
    this.only = cameraId || null;
    this.render();
    clearInterval(this.timer);
    this.timer = setInterval(() => {
      if (this.end === null && this.app.view === "timeline") this.render();
    }, REFRESH_MS);
  }

  hide() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async render() {
    const cameras = this.app.cameras.filter((c) => !this.only || c.id === this.only).slice(0, MAX_TRACKS);
    if (!cameras.length) {
      clear(this.root);
      this.root.append(el("p", { class: "muted", text: this.only ? `no camera ${this.only} in scope` : "no cameras" }));
      return;
    }
    const win = this.window();
    const generation = (this.generation = (this.generation || 0) + 1);
    const loaded = await Promise.all(cameras.map((c) => this.load(c, win).catch((err) => ({ camera: c, error: err }))));
    if (generation !== this.generation) return; // a later render (another span, camera or pan) owns the view
    clear(this.root);
    this.tracks.clear();
    for (const data of loaded) this.root.append(this.track(data, win));
  }

  async load(camera, win) {
    const base = `/api/v1/cameras/${encodeURIComponent(camera.id)}`;
    const q = { from: iso(win.from), to: iso(win.to) };
    const [timeline, gaps, persisted] = await Promise.all([
      getJson(`${base}/timeline`, q),
      getJson(`${base}/gaps`, q),
      getJson(`${base}/recording-gaps`, { limit: 2000 }),
    ]);
    const ms = (s) => Date.parse(s);
    const recordingGaps = persisted
      .map((g) => ({ ...g, start: ms(g.gap_start), end: ms(g.gap_end) }))
      .filter((g) => g.end > win.from && g.start < win.to);
    return {
      camera,
      ranges: timeline.ranges.map((r) => ({ start: ms(r.start), end: ms(r.end) })),
      holes: gaps.gaps.map((g) => ({ start: ms(g.start), end: ms(g.end), seconds: g.seconds, open: g.open_ended })),
      recordingGaps,
    };
  }

  track(data, win) {
    const { camera } = data;
    const bar = el("div", { class: "tl-bar", dataset: { camera: camera.id, span: String((win.to - win.from) / 1000) }, role: "slider", tabindex: "0",
      "aria-label": `${camera.name || camera.id} timeline` });
    const list = el("ul", { class: "gaps" });
    const wrap = el(
      "div",
      { class: "track", dataset: { camera: camera.id } },
      el("div", { class: "label" }, el("strong", { text: camera.name || camera.id }),
        el("span", { class: "muted", text: `${stamp(win.from)} – ${stamp(win.to)}` })),
      bar,
      this.ticks(win),
      list,
    );
    if (data.error) {
      list.append(el("li", { class: "error", text: data.error.message }));
      return wrap;
    }
    const total = win.to - win.from;
    const place = (node, start, end) => {
      const a = Math.max(start, win.from);
      const b = Math.min(end, win.to);
      node.style.left = `${((a - win.from) / total) * 100}%`;
      node.style.width = `${Math.max(0, ((b - a) / total) * 100)}%`;
      return node;
    };
    for (const hole of data.holes) {
      const persisted = causeFor(hole, data.recordingGaps);
      const cause = persisted ? persisted.cause || "unknown" : "unknown";
      const node = place(el("div", { class: "span lost", dataset: { kind: "lost", cause },
        title: `lost ${clock(hole.start)}–${clock(hole.end)} (${duration(hole.seconds)}), cause ${cause}` }), hole.start, hole.end);
      node.style.background = causeColour(cause);
      bar.append(node);
    }
    for (const r of data.ranges) {
      bar.append(place(el("div", { class: "span recorded", dataset: { kind: "recorded" },
        title: `recorded ${clock(r.start)}–${clock(r.end)}` }), r.start, r.end));
    }
    for (const g of data.recordingGaps) {
      const kind = g.fill_state === "filled" ? "anr" : g.fill_state;
      bar.append(place(el("div", { class: `span ${kind}`, dataset: { kind, cause: g.cause || "unknown" },
        title: `${g.fill_state === "filled" ? "back-filled by ANR" : `fill ${g.fill_state}`}: ${clock(g.start)}–${clock(g.end)}, cause ${g.cause || "unknown"}` }), g.start, g.end));
    }
    for (const g of data.recordingGaps.slice(0, 20)) list.append(this.gapItem(camera, g));
    const unexplained = data.holes.filter((h) => !causeFor(h, data.recordingGaps));
    for (const h of unexplained.slice(0, 5)) {
      list.append(el("li", { class: "hole", text: `${stamp(h.start)} – ${h.open ? "now" : clock(h.end)}: no footage (${duration(h.seconds)})` }));
    }
    this.tracks.set(camera.id, { bar, data, win });
    this.interact(bar, camera.id, win);
    if (this.selection && this.selection.cameraId === camera.id) this.drawSelection();
    return wrap;
  }

  gapItem(camera, g) {
    const state = g.fill_state === "filled" ? "back-filled by ANR" : `fill ${g.fill_state}`;
    const item = el("li", { class: `gap gap-${g.fill_state}`, dataset: { cause: g.cause || "unknown" } },
      el("span", { class: "sw" }),
      `${stamp(g.start)} – ${clock(g.end)} (${duration(g.gap_seconds)}), cause `,
      el("strong", { class: "cause", text: g.cause || "unknown" }),
      `, ${state}${g.fill_attempts ? ` after ${g.fill_attempts} attempt(s)` : ""}`);
    item.firstChild.style.background = causeColour(g.cause);
    if (g.fill_state !== "filled" && this.app.can("registry:manage")) {
      const action = g.fill_state === "failed" ? "retry" : "fill-now";
      item.append(" ", el("button", { type: "button", class: "gap-action", text: action === "retry" ? "Retry fill" : "Fill now",
        onclick: async () => {
          try {
            await sendJson("POST", `/api/v1/cameras/${encodeURIComponent(camera.id)}/recording-gaps/${encodeURIComponent(g.id)}/${action}`);
            notice(`gap ${g.id}: ${action} requested`);
          } catch (err) {
            notice(`gap ${g.id}: ${err.message}`);
          }
          this.render();
        } }));
    }
    return item;
  }

  ticks(win) {
    const node = el("div", { class: "ticks" });
    const spanS = (win.to - win.from) / 1000;
    const step = tickStep(spanS) * 1000;
    const offset = new Date().getTimezoneOffset() * 60000;
    for (let t = Math.ceil((win.from - offset) / step) * step + offset; t <= win.to; t += step) {
      const tick = el("span", { text: clock(t, step < 60000) });
      tick.style.left = `${((t - win.from) / (win.to - win.from)) * 100}%`;
      node.append(tick);
    }
    return node;
  }

  timeAt(bar, win, clientX) {
    const rect = bar.getBoundingClientRect();
    const f = Math.min(1, Math.max(0, (clientX - rect.left) / rect.width));
    return win.from + f * (win.to - win.from);
  }

  interact(bar, cameraId, win) {
    let downX = null;
    let t0 = null;
    bar.addEventListener("pointerdown", (e) => {
      downX = e.clientX;
      t0 = this.timeAt(bar, win, e.clientX);
      bar.setPointerCapture(e.pointerId);
    });
    bar.addEventListener("pointermove", (e) => {
      if (downX === null || Math.abs(e.clientX - downX) < CLICK_PX) return;
      const t1 = this.timeAt(bar, win, e.clientX);
      this.select({ cameraId, from: Math.min(t0, t1), to: Math.max(t0, t1) }, false);
    });
    bar.addEventListener("pointerup", (e) => {
      if (downX === null) return;
      const t1 = this.timeAt(bar, win, e.clientX);
      const moved = Math.abs(e.clientX - downX) >= CLICK_PX;
      downX = null;
      if (moved) this.select({ cameraId, from: Math.min(t0, t1), to: Math.max(t0, t1) });
      else this.playMoment(cameraId, t1);
    });
    bar.addEventListener("pointercancel", () => (downX = null));
  }

  select(selection, announce = true) {
    this.selection = selection;
    for (const { bar } of this.tracks.values()) bar.querySelectorAll(".sel").forEach((n) => n.remove());
    const box = document.getElementById("tl-selection");
    box.hidden = !selection;
    document.getElementById("tl-export-result").textContent = "";
    if (!selection) return;
    this.drawSelection();
    document.getElementById("tl-selection-text").textContent =
      `${selection.cameraId}: ${stamp(selection.from)} – ${clock(selection.to)} (${duration((selection.to - selection.from) / 1000)})`;
    document.getElementById("tl-export").hidden = !this.app.can("video:export");
    if (announce) box.scrollIntoView({ block: "nearest" });
  }

  drawSelection() {
    const s = this.selection;
    const track = s && this.tracks.get(s.cameraId);
    if (!track) return;
    track.bar.querySelectorAll(".sel").forEach((n) => n.remove());
    const total = track.win.to - track.win.from;
    const node = el("div", { class: "sel" });
    node.style.left = `${((s.from - track.win.from) / total) * 100}%`;
    node.style.width = `${((s.to - s.from) / total) * 100}%`;
    track.bar.append(node);
  }

  /** Play from the clicked moment, or from the next recorded moment after it within the window. */
  playMoment(cameraId, t) {
    const track = this.tracks.get(cameraId);
    if (!track) return;
    const ranges = track.data.ranges;
    const inside = ranges.find((r) => r.start <= t && t < r.end);
    const next = inside ? null : ranges.find((r) => r.start > t);
    const start = inside ? t : next ? next.start : null;
    if (start === null) {
      notice(`${cameraId}: no footage at or after ${stamp(t)} in this window`);
      return;
    }
    this.play(cameraId, start, Math.min(start + PLAY_SECONDS * 1000, Date.now()));
  }

  async play(cameraId, from, to) {
    if (!this.app.can("video:playback")) {
      notice("this credential may not play recordings");
      return;
    }
    await this.endSession();
    const box = document.getElementById("player-box");
    const info = document.getElementById("player-info");
    const player = document.getElementById("player");
    box.hidden = false;
    document.getElementById("player-title").textContent = `${cameraId} from ${stamp(from)}`;
    info.textContent = "opening…";
    try {
      const session = await sendJson("POST", `/api/v1/cameras/${encodeURIComponent(cameraId)}/playback/sessions`,
        { from: iso(from), to: iso(Math.max(to, from + 1000)) });
      this.session = session;
      const holes = session.gaps.length ? `, ${session.gaps.length} hole(s) skipped` : "";
      info.textContent = `${duration(session.duration_s)} of footage in ${session.segment_count} segment(s)${holes}`;
      player.dataset.session = session.id;
      video.play(player, session.playlist_url, { onError: (why) => (info.textContent = `playback failed: ${why}`) });
      box.scrollIntoView({ block: "nearest" });
    } catch (err) {
      info.textContent = `cannot play: ${err.message}`;
    }
  }

  async endSession() {
    const session = this.session;
    this.session = null;
    if (session) await request("DELETE", `/api/v1/playback/sessions/${encodeURIComponent(session.id)}`).catch(() => null);
  }

  async closePlayer() {
    video.stop(document.getElementById("player"));
    document.getElementById("player-box").hidden = true;
    await this.endSession();
  }

  async exportSelection() {
    const s = this.selection;
    if (!s) return;
    const out = document.getElementById("tl-export-result");
    out.textContent = "exporting…";
    try {
      const clip = await sendJson("POST", `/api/v1/cameras/${encodeURIComponent(s.cameraId)}/clip`,
        { from: iso(s.from), to: iso(s.to) });
      clear(out);
      const link = el("a", { href: "#", class: "clip-link", download: clip.filename,
        text: `download ${clip.filename} (${Math.round(clip.size_bytes / 1024)} KiB, ${duration(clip.covered_seconds)} covered)` });
      link.addEventListener("click", async (e) => {
        if (link.dataset.ready) return;
        e.preventDefault();
        link.href = await blobUrl(clip.url);
        link.dataset.ready = "1";
        link.click();
      }, { once: false });
      out.append(link);
    } catch (err) {
      out.textContent = `export failed: ${err.message}`;
    }
  }
}
