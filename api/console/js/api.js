// The console's only way to the server: the public API, same origin, with one of two credentials.
//  * a user session: the HttpOnly session cookie the login set; mutations echo the CSRF token (from the login
//    answer, or the readable heldar_csrf cookie after a reload) as X-Heldar-CSRF, as the API's CSRF guard wants;
//  * an API key: kept in this tab's sessionStorage and sent as X-API-Key (a browser never adds it by itself).

const KEY_STORE = "heldar.console.apiKey";
const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
let csrfToken = null;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return null;
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORE);
}

/** Headers that carry the credential (for fetch and for hls.js's XHRs). */
export function authHeaders(method = "GET") {
  const headers = {};
  const key = apiKey();
  if (key) {
    headers["X-API-Key"] = key;
  } else if (UNSAFE.has(method)) {
    const token = csrfToken || cookie("heldar_csrf");
    if (token) headers["X-Heldar-CSRF"] = token;
  }
  return headers;
}

export async function request(method, path, { body, query, accept, signal } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const headers = authHeaders(method);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (accept) headers["Accept"] = accept;
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
    signal,
  });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const data = await response.json();
      if (data && data.error) message = data.error;
    } catch (_) {
      /* not JSON */
    }
    throw new ApiError(response.status, message);
  }
  return response;
}

export async function getJson(path, query) {
  return (await request("GET", path, { query })).json();
}

export async function sendJson(method, path, body) {
  const response = await request(method, path, { body });
  return response.status === 204 ? null : response.json();
}

/** A media URL fetched with the credential, as an object URL (for <img> and download links). */
export async function blobUrl(path, query) {
  const response = await request("GET", path, { query });
  return URL.createObjectURL(await response.blob());
}

export async function loginWithPassword(username, password) {
  sessionStorage.removeItem(KEY_STORE);
  const data = await sendJson("POST", "/api/v1/auth/login", { username, password });
  csrfToken = data.csrf_token;
  return me();
}

export async function loginWithKey(key) {
  sessionStorage.setItem(KEY_STORE, key);
  try {
    return await me();
  } catch (err) {
    sessionStorage.removeItem(KEY_STORE);
    throw err;
  }
}

export async function logout() {
  const hadKey = apiKey();
  sessionStorage.removeItem(KEY_STORE);
  csrfToken = null;
  if (!hadKey) await request("POST", "/api/v1/auth/logout").catch(() => null);
}

export async function me() {
  return getJson("/api/v1/auth/me");
}

/** What the principal may do: the capability list /auth/me reports ("admin" holds them all). */
export function capabilities(principal) {
  const held = new Set(principal.capabilities || []);
  return (capability) => held.has("admin") || held.has(capability);
}

/**
 * Server-sent events over fetch (EventSource cannot send X-API-Key): calls onEvent({id, event, data}) per
 * message, reconnects with Last-Event-ID after a drop; returns a function that ends it.
 */
export function eventStream(path, query, { onEvent, onState }) {
  let stopped = false;
  let lastId = null;
  let controller = null;
  let retryMs = 2000;

  async function run() {
    while (!stopped) {
      controller = new AbortController();
      try {
        const q = { ...query };
        if (lastId !== null) q.last_event_id = lastId;
        const response = await request("GET", path, { query: q, accept: "text/event-stream", signal: controller.signal });
        onState("open");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const message = { id: null, event: "message", data: "" };
            const data = [];
            for (const line of block.split("\n")) {
              if (!line || line.startsWith(":")) continue;
              const colon = line.indexOf(":");
              const field = colon < 0 ? line : line.slice(0, colon);
              const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
              if (field === "data") data.push(val);
              else if (field === "id") message.id = val;
              else if (field === "event") message.event = val;
              else if (field === "retry" && /^\d+$/.test(val)) retryMs = Number(val);
            }
            if (message.id !== null) lastId = message.id;
            if (data.length) {
              message.data = data.join("\n");
              onEvent(message);
            }
          }
        }
      } catch (err) {
        if (stopped) return;
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
          onState("closed", err.message);
          return;
        }
      }
      if (stopped) return;
      onState("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
  }

  run();
  return () => {
    stopped = true;
    if (controller) controller.abort();
  };
}
