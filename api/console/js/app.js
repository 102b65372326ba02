// The console's entry point: who is signed in (GET /api/v1/auth/me), then hash routing between the views.
// What is shown follows the capabilities the API reports for the principal; the API enforces them anyway.

import { ApiError, capabilities, loginWithKey, loginWithPassword, logout, me } from "./api.js";
import { Events } from "./events.js";
import { Fleet } from "./fleet.js";
import { Live } from "./live.js";
import { Timeline } from "./timeline.js";
import { notice } from "./util.js";

const VIEWS = ["fleet", "timeline", "events", "live"];
const FLEET_REFRESH_MS = 10000;

class App {
  constructor() {
    this.principal = null;
    this.can = () => false;
    this.cameras = [];
    this.view = null;
    this.fleet = new Fleet(this);
    this.timeline = new Timeline(this);
    this.events = new Events(this);
    this.live = new Live(this);
    this.fleetTimer = null;
    window.addEventListener("hashchange", () => this.route());
    document.getElementById("logout").addEventListener("click", () => this.signOut());
    this.wireLogin();
  }

  wireLogin() {
    const form = document.getElementById("login-form");
    const byPassword = form.querySelector(".by-password");
    const byKey = form.querySelector(".by-key");
    for (const radio of form.querySelectorAll("input[name=mode]")) {
      radio.addEventListener("change", () => {
        const key = form.mode.value === "key";
        byPassword.hidden = key;
        byKey.hidden = !key;
      });
    }
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const error = document.getElementById("login-error");
      error.hidden = true;
      try {
        const principal =
          form.mode.value === "key"
            ? await loginWithKey(form.key.value.trim())
            : await loginWithPassword(form.username.value, form.password.value);
        form.password.value = "";
        form.key.value = "";
        this.signedIn(principal);
      } catch (err) {
        error.textContent = err instanceof ApiError && err.status === 401 ? "wrong user name, password or key" : err.message;
        error.hidden = false;
      }
    });
  }

  async start() {
    try {
      this.signedIn(await me());
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401) notice(`cannot reach the API: ${err.message}`, 0);
      this.showLogin();
    }
  }

  showLogin() {
    this.principal = null;
    document.getElementById("login").hidden = false;
    document.getElementById("nav").hidden = true;
    document.getElementById("logout").hidden = true;
    document.getElementById("who").textContent = "";
    document.body.dataset.signedIn = "no";
    for (const v of VIEWS) document.getElementById(`view-${v}`).hidden = true;
  }

  signedIn(principal) {
    this.principal = principal;
    this.can = capabilities(principal);
    document.getElementById("login").hidden = true;
    document.getElementById("nav").hidden = false;
    const needs = { events: "events:read", live: "video:live", timeline: "video:playback" };
    for (const a of document.querySelectorAll("#nav a")) a.hidden = Boolean(needs[a.dataset.view]) && !this.can(needs[a.dataset.view]);
    document.getElementById("logout").hidden = principal.kind === "system";
    const scope = principal.camera_scope ? ` · ${principal.camera_scope.length} camera(s)` : "";
    document.getElementById("who").textContent = `${principal.name} (${principal.role}, ${principal.kind}${scope})`;
    document.body.dataset.signedIn = "yes";
    document.body.dataset.role = principal.role;
    this.fleet.refresh(true).then(() => this.route());
    clearInterval(this.fleetTimer);
    this.fleetTimer = setInterval(() => {
      if (this.view === "fleet") this.fleet.refresh();
    }, FLEET_REFRESH_MS);
  }

  async signOut() {
    clearInterval(this.fleetTimer);
    this.events.stop();
    this.live.hide();
    this.timeline.hide();
    await this.timeline.closePlayer();
    await logout();
    this.showLogin();
  }

  setCameras(cameras) {
    this.cameras = cameras;
    this.events.fillCameras(cameras);
    this.live.fillCameras(cameras);
  }

  route() {
    if (!this.principal) return;
    const [name, arg] = location.hash.replace(/^#/, "").split("/");
    const view = VIEWS.includes(name) ? name : "fleet";
    const param = arg ? decodeURIComponent(arg) : null;
    const previous = this.view;
    this.view = view;
    for (const v of VIEWS) document.getElementById(`view-${v}`).hidden = v !== view;
    for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === view);
    if (previous === "events" && view !== "events") this.events.stop();
    if (previous === "live" && view !== "live") this.live.hide();
    if (previous === "timeline" && view !== "timeline") this.timeline.hide();
    if (view === "fleet" && previous !== null && previous !== "fleet") this.fleet.refresh();
    if (view === "timeline") this.timeline.show(param);
    if (view === "events" && previous !== "events") this.events.start();
    if (view === "live") this.live.show(param);
  }
}

const app = new App();
window.heldarConsole = app; // for debugging from the browser's console
app.start();
