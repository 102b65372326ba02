// Plays an HLS URL in a <video>: natively where the browser can (Safari), else through the vendored hls.js.
// hls.js runs without its worker (the CSP allows no blob: workers) and sends the tab's API key on its XHRs.

import Hls from "../vendor/hls.light.min.mjs";
import { apiKey } from "./api.js";

const players = new WeakMap();

export function stop(video) {
  const hls = players.get(video);
  if (hls) {
    hls.destroy();
    players.delete(video);
  }
  video.removeAttribute("src");
  video.load();
}

export function play(video, url, { live = false, onError } = {}) {
  stop(video);
  if (Hls.isSupported()) {
    const hls = new Hls({
      enableWorker: false,
      lowLatencyMode: false,
      liveSyncDurationCount: live ? 2 : 3,
      xhrSetup(xhr) {
        const key = apiKey();
        if (key) xhr.setRequestHeader("X-API-Key", key);
      },
    });
    players.set(video, hls);
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (data.fatal) {
        if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
        else if (onError) onError(data.details || data.type);
      }
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => null));
    hls.loadSource(url);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = url;
    video.play().catch(() => null);
  } else if (onError) {
    onError("this browser cannot play HLS");
  }
}
