// Live view of one camera: the recorder's rolling HLS playlist (/liveview answers its URL).

import { getJson } from "./api.js";
import { clear, el } from "./util.js";
import * as video from "./video.js";

export class Live {
  constructor(app) {
    this.app = app;
    this.select = document.getElementById("live-camera");
    this.video = document.getElementById("live");
    this.info = document.getElementById("live-info");
    this.select.addEventListener("change", () => {
      location.hash = `#live/${encodeURIComponent(this.select.value)}`;
    });
  }

  fillCameras(cameras) {
    const current = this.select.value;
    clear(this.select);
    for (const c of cameras) this.select.append(el("option", { value: c.id, text: c.name || c.id }));
    if (cameras.some((c) => c.id === current)) this.select.value = current;
  }

  async show(cameraId) {
    const id = cameraId || this.select.value;
    if (!id) {
      this.info.textContent = "no camera in scope";
      return;
    }
    this.select.value = id;
    if (!this.app.can("video:live")) {
      this.info.textContent = "this credential may not watch live";
      return;
    }
    this.info.textContent = "opening…";
    try {
      const view = await getJson(`/api/v1/cameras/${encodeURIComponent(id)}/liveview`);
      this.info.textContent = view.live
        ? `${view.name}: live (${view.viewers} viewer(s))`
        : `${view.name}: no fresh live playlist (is it recording?)`;
      video.play(this.video, view.hls_url, { live: true, onError: (why) => (this.info.textContent = `live view failed: ${why}`) });
    } catch (err) {
      video.stop(this.video);
      this.info.textContent = `live view: ${err.message}`;
    }
  }

  hide() {
    video.stop(this.video);
  }
}
