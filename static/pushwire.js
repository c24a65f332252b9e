/**
 * pushwire.js — the Pushwire browser client.
 *
 * A plain ES module: no build step, no dependencies. Import it with
 * `<script type="module">` or any bundler:
 *
 * ```js
 * import { PushwireClient } from "https://push.example.com/static/pushwire.js";
 *
 * const client = new PushwireClient({
 *   url: "https://push.example.com",
 *   token: async () => (await fetch("/pushwire-token")).text(),
 *   channels: ["room.lobby"],
 *   onMessage: (msg) => console.log(msg.channel, msg.offset, msg.event, msg.data),
 *   onGap: (gap) => console.warn("lost messages on", gap.channel, gap),
 *   onStatus: (status, detail) => console.log(status, detail),
 * });
 * await client.connect();
 * ```
 *
 * What it does for you (see docs/client-protocol.md for the wire protocol):
 *
 * - WebSocket to `/api/v1/ws?token=…`; long-poll (`GET /api/v1/longpoll`) when WebSocket is
 *   unavailable, excluded by the `transports` option, or fails to open twice in a row.
 * - Reconnects with jittered exponential back-off (at once after close code 4500).
 * - Tracks the last `(epoch, offset)` seen on every channel; after a reconnect it resubscribes
 *   rooms (and `broadcast`) with `since`, so nothing is missed, and drops any `(channel, offset)`
 *   it has already delivered. The personal channel is resumed by the server (unread messages
 *   after the user's acknowledged offset).
 * - Loss the server cannot repair is reported explicitly through `onGap`, never silently.
 * - Answers the server's `{"type":"ping"}` with `{"type":"pong"}` and reconnects when the server
 *   goes silent for longer than two heartbeats.
 * - On close code 4001 (token invalid or expired) asks `token()` for a new token when `token`
 *   is a function; with a fixed string token it stops with status `"unauthorized"`.
 * - `ack()` goes over the WebSocket when it can, otherwise `POST /api/v1/ack`.
 *
 * @module pushwire
 */

/** Close codes the server uses (docs/client-protocol.md, "Close codes"). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  TOO_BIG: 1009,
  UNAUTHORIZED: 4001,
  BAD_FRAMES: 4002,
  HEARTBEAT_TIMEOUT: 4003,
  LIMIT: 4004,
  SLOW_CONSUMER: 4008,
  RECONNECT: 4500,
});

const PERSONAL_PREFIX = "user.";
const BROADCAST = "broadcast";

/**
 * A message as delivered on every transport.
 * @typedef {object} PushwireMessage
 * @property {"message"} type
 * @property {string} channel   Channel name (`user.<id>`, `broadcast` or a room).
 * @property {number} offset    Position in the channel: 1, 2, 3 … without gaps.
 * @property {string} epoch     Changes only when the channel's stored history was reset.
 * @property {string} id        Message id.
 * @property {string} event     Event name given by the publisher.
 * @property {*} data           Any JSON value.
 * @property {string} ts        RFC 3339 time the message was accepted.
 */

/**
 * A channel position: the last message seen (or the channel top when nothing was seen yet).
 * @typedef {object} Position
 * @property {string} epoch
 * @property {number} offset
 */

/**
 * Explicit loss: messages after `from` up to `to` could not be delivered (history past
 * retention, epoch changed, or a switch of transport that cannot resume).
 * @typedef {object} Gap
 * @property {string} channel
 * @property {Position} from   Where the client was.
 * @property {Position} to     Where delivery continues from (the next message is `to.offset + 1`).
 */

/**
 * Connection status passed to `onStatus`:
 * - `"connecting"`: opening a transport;
 * - `"open"`: connected (the `welcome` arrived), `detail.transport` says which;
 * - `"reconnecting"`: lost the connection, retrying after `detail.delay` ms (`detail.code`
 *   holds the close code when there was one);
 * - `"unauthorized"`: the token was refused and cannot be renewed (a fixed string); stopped;
 * - `"closed"`: `close()` was called, no transport is usable, or the server refused this page's
 *   Origin (`detail.code` 403); stopped.
 * @typedef {"connecting"|"open"|"reconnecting"|"unauthorized"|"closed"} Status
 */

/**
 * @typedef {object} PushwireOptions
 * @property {string} url  Base URL of the Pushwire server (`https://push.example.com`;
 *   `http(s)://` or `ws(s)://`, an optional path prefix is kept).
 * @property {string | (() => (string | Promise<string>))} token  A client token (JWT) or a
 *   function returning one. A function is called again when the token is refused (close 4001,
 *   HTTP 401), after a WebSocket fails to open, and when the cached token is about to expire.
 * @property {string[]} [channels]  Rooms to subscribe to (the personal channel and `broadcast`
 *   are always subscribed).
 * @property {Array<"ws"|"longpoll">} [transports]  Allowed transports, in order of preference.
 *   Default `["ws", "longpoll"]`.
 * @property {Record<string, Position>} [positions]  Positions to resume from, as returned by
 *   `client.positions()` (for example kept in `sessionStorage` across page loads).
 * @property {(msg: PushwireMessage) => void} [onMessage]  Each message, once, in offset order
 *   per channel.
 * @property {(gap: Gap) => void} [onGap]  Explicit loss.
 * @property {(status: Status, detail: object) => void} [onStatus]  Connection status changes.
 * @property {(channel: string, info: {epoch: string, offset: number, recovered: boolean, replayed: number}) => void} [onSubscribed]
 *   A room subscription is live (after its replay was requested).
 * @property {(frame: {channel: string, offset: number}) => void} [onRead]  Another connection
 *   of the same user acknowledged up to `offset`.
 * @property {(error: {code: string, message?: string, channel?: string}) => void} [onError]
 *   Errors the server reported (for example `forbidden` for a room the token does not allow).
 * @property {number} [pollTimeout]  Long-poll wait in seconds (1..30, default 25).
 * @property {number} [minDelay]  First reconnect delay in ms (default 500).
 * @property {number} [maxDelay]  Largest reconnect delay in ms (default 30000).
 */

/** @param {number} ms */
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Seconds until a JWT expires, or Infinity when that cannot be read. Only used to renew a
 * token early; the server does the real verification.
 * @param {string} token
 */
function secondsLeft(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
    return typeof claims.exp === "number" ? claims.exp - Date.now() / 1000 : Infinity;
  } catch {
    return Infinity;
  }
}

export class PushwireClient {
  /** @param {PushwireOptions} options */
  constructor(options) {
    if (!options || !options.url) throw new TypeError("PushwireClient: `url` is required");
    if (options.token === undefined || options.token === null) throw new TypeError("PushwireClient: `token` is required");
    /** @private */ this._opts = {
      transports: ["ws", "longpoll"],
      pollTimeout: 25,
      minDelay: 500,
      maxDelay: 30000,
      ...options,
    };
    const base = String(options.url).replace(/\/+$/, "");
    /** @private */ this._httpBase = base.replace(/^ws(s?):/i, "http$1:");
    /** @private */ this._wsBase = this._httpBase.replace(/^http(s?):/i, "ws$1:");

    /** @private @type {Map<string, Position>} last position per channel */
    this._positions = new Map(Object.entries(options.positions || {}).map(([ch, p]) => [ch, { epoch: p.epoch, offset: p.offset }]));
    /** @private @type {Set<string>} rooms asked for (not the personal channel, not broadcast) */
    this._rooms = new Set();
    for (const ch of options.channels || []) this._addRoom(ch);

    /** @private */ this._active = false;
    /** @private @type {"ws"|"longpoll"|null} */ this._transport = null;
    /** @private */ this._wsFailures = 0;
    /** @private */ this._attempt = 0;
    /** @private */ this._timer = null;
    /** @private */ this._wakeBackoff = null;
    /** @private @type {WebSocket|null} */ this._ws = null;
    /** @private the current WebSocket got its welcome */ this._welcomed = false;
    /** @private @type {Set<string>} channels subscribed on the current WebSocket */ this._live = new Set();
    /** @private @type {Set<string>} channels whose `subscribed` answer is awaited */ this._pending = new Set();
    /** @private */ this._watchdog = null;
    /** @private */ this._heartbeat = 25;
    /** @private */ this._user = null;
    /** @private */ this._cursor = null;
    /** @private @type {AbortController|null} */ this._pollAbort = null;
    /** @private @type {Set<string>} rooms the last successful poll carried */ this._polledRooms = new Set();
    /** @private */ this._generation = 0;
    /** @private */ this._token = typeof options.token === "function" ? null : String(options.token);
    /** @private */ this._freshToken = false;
    /** @private */ this._opened = null;
    /** @private */ this._onOnline = () => this._wakeBackoff && this._wakeBackoff();
  }

  // -- public API -------------------------------------------------------------------------

  /** The transport in use: `"ws"`, `"longpoll"` or `null` when not connected. */
  get transport() {
    return this._active ? this._transport : null;
  }

  /** The user id the server confirmed in `welcome` (null before the first connection). */
  get user() {
    return this._user;
  }

  /**
   * Last known position of every channel: keep it (for example in `sessionStorage`) and pass it
   * back as the `positions` option to resume after a page load.
   * @returns {Record<string, Position>}
   */
  positions() {
    /** @type {Record<string, Position>} */
    const out = {};
    for (const [ch, p] of this._positions) out[ch] = { epoch: p.epoch, offset: p.offset };
    return out;
  }

  /**
   * Start connecting (and keep reconnecting until `close()`).
   * @returns {Promise<void>} resolves on the first successful connection; rejects when the
   *   client stops before that for a reason other than `close()` (token refused, no transport).
   */
  connect() {
    if (this._active) return this._opened ? this._opened.promise : Promise.resolve();
    this._active = true;
    this._generation += 1;
    this._attempt = 0;
    this._wsFailures = 0;
    let resolve, reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    promise.catch(() => {}); // callers that do not await connect() get no unhandled rejection
    this._opened = { promise, resolve, reject };
    if (typeof addEventListener === "function") addEventListener("online", this._onOnline);
    this._start();
    return promise;
  }

  /**
   * Subscribe to a room. Allowed when the token's `channels` claim permits it; otherwise
   * `onError({code: "forbidden", channel})`. The personal channel and `broadcast` are always on.
   * @param {string} channel
   */
  subscribe(channel) {
    if (!this._addRoom(channel)) return;
    if (this._transport === "ws" && this._wsReady()) this._sendSubscribe(channel);
    else if (this._transport === "longpoll") this._repoll();
  }

  /**
   * Stop receiving a room, and forget its position.
   * @param {string} channel
   */
  unsubscribe(channel) {
    if (!this._rooms.delete(channel)) return;
    this._positions.delete(channel);
    this._pending.delete(channel);
    if (this._transport === "ws" && this._wsReady()) this._send({ type: "unsubscribe", channel });
    else if (this._transport === "longpoll") this._repoll();
  }

  /**
   * Acknowledge (cumulatively) every message of `channel` up to `offset`. Acks of the personal
   * channel decide what the server replays as unread on the next connection.
   * @param {string} channel
   * @param {number} offset
   * @returns {Promise<{channel: string, offset: number}>} over HTTP, the stored offset.
   */
  async ack(channel, offset) {
    if (this._transport === "ws" && this._wsReady() && this._live.has(channel)) {
      this._send({ type: "ack", channel, offset });
      return { channel, offset };
    }
    return this._httpAck(channel, offset);
  }

  /** Disconnect and stop reconnecting. The positions are kept: `connect()` resumes. */
  close() {
    if (!this._active) return;
    this._active = false;
    this._generation += 1;
    clearTimeout(this._timer);
    this._timer = null;
    if (this._wakeBackoff) this._wakeBackoff();
    if (typeof removeEventListener === "function") removeEventListener("online", this._onOnline);
    this._dropSocket(CloseCode.NORMAL, "client closed");
    if (this._pollAbort) this._pollAbort.abort("closed");
    this._transport = null;
    if (this._opened) this._opened.resolve();
    this._status("closed", {});
  }

  // -- transport selection and back-off --------------------------------------------------

  /** @private */
  _start() {
    if (!this._active) return;
    const transport = this._pickTransport();
    if (!transport) {
      this._fail("closed", { reason: "no usable transport (WebSocket and fetch unavailable or excluded)" });
      return;
    }
    this._transport = transport;
    if (transport === "ws") this._openSocket();
    else this._pollLoop(this._generation);
  }

  /** @private @returns {"ws"|"longpoll"|null} */
  _pickTransport() {
    const allowed = this._opts.transports;
    const wsOk = allowed.includes("ws") && typeof WebSocket !== "undefined";
    const pollOk = allowed.includes("longpoll") && typeof fetch === "function";
    if (wsOk && (this._wsFailures < 2 || !pollOk)) return "ws";
    return pollOk ? "longpoll" : null;
  }

  /** @private Jittered exponential back-off: half to all of min(max, min·2^attempt). */
  _nextDelay(floor = 0) {
    const { minDelay, maxDelay } = this._opts;
    const cap = Math.min(maxDelay, Math.max(floor, minDelay * 2 ** this._attempt));
    this._attempt = Math.min(this._attempt + 1, 30);
    return Math.round(cap / 2 + (Math.random() * cap) / 2);
  }

  /** @private */
  _reconnect(delay, detail) {
    if (!this._active) return;
    this._status("reconnecting", { ...detail, delay });
    clearTimeout(this._timer);
    this._timer = setTimeout(() => {
      this._timer = null;
      this._start();
    }, delay);
    this._wakeBackoff = () => {
      this._wakeBackoff = null;
      if (this._timer === null) return;
      clearTimeout(this._timer);
      this._timer = null;
      this._start();
    };
  }

  /** @private Stop for good (before or after having connected). */
  _fail(status, detail) {
    this._active = false;
    this._generation += 1;
    this._dropSocket(CloseCode.NORMAL, status);
    if (this._pollAbort) this._pollAbort.abort(status);
    this._transport = null;
    if (typeof removeEventListener === "function") removeEventListener("online", this._onOnline);
    this._status(status, detail);
    if (this._opened) this._opened.reject(new Error(`pushwire: ${status}${detail.reason ? ": " + detail.reason : ""}`));
  }

  /** @private */
  async _getToken() {
    const source = this._opts.token;
    if (typeof source !== "function") return this._token;
    if (this._token === null || this._freshToken || secondsLeft(this._token) < 30) {
      this._token = String(await source());
      this._freshToken = false;
    }
    return this._token;
  }

  // -- WebSocket --------------------------------------------------------------------------

  /** @private */
  async _openSocket() {
    const generation = this._generation;
    this._status("connecting", { transport: "ws" });
    let token;
    try {
      token = await this._getToken();
    } catch (err) {
      this._reconnect(this._nextDelay(), { transport: "ws", reason: `token: ${err}` });
      return;
    }
    if (!this._active || generation !== this._generation) return;
    let ws;
    try {
      ws = new WebSocket(`${this._wsBase}/api/v1/ws?token=${encodeURIComponent(token)}`);
    } catch (err) {
      this._socketClosed(null, false, 1006, String(err));
      return;
    }
    this._ws = ws;
    this._welcomed = false;
    this._live.clear();
    this._pending.clear();
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this._wsFailures = 0;
    };
    ws.onmessage = (event) => {
      if (this._ws !== ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this._armWatchdog();
      this._onFrame(frame, "ws");
    };
    ws.onerror = () => {}; // a close event always follows
    ws.onclose = (event) => {
      if (this._ws !== ws) return;
      this._socketClosed(ws, opened, event.code, event.reason);
    };
  }

  /** @private */
  _socketClosed(ws, opened, code, reason) {
    if (ws) this._detach(ws);
    if (!this._active) return;
    const detail = { transport: "ws", code, reason };
    if (!opened) {
      this._wsFailures += 1;
      // A refused upgrade (HTTP 401 included) looks like any failure: renew the token to be safe.
      if (typeof this._opts.token === "function") this._freshToken = true;
      if (this._pickTransport() === "longpoll") {
        this._reconnect(0, { ...detail, reason: "WebSocket failed to open twice; using long-poll" });
        return;
      }
    }
    switch (code) {
      case CloseCode.UNAUTHORIZED:
        if (typeof this._opts.token !== "function") {
          this._fail("unauthorized", detail);
          return;
        }
        this._freshToken = true;
        this._reconnect(this._nextDelay(), detail);
        return;
      case CloseCode.RECONNECT:
        this._reconnect(Math.round(Math.random() * 250), detail); // at once, spread a little
        return;
      case CloseCode.LIMIT:
        this._reconnect(this._nextDelay(5000), detail);
        return;
      default:
        this._reconnect(this._nextDelay(), detail);
    }
  }

  /** @private */
  _wsReady() {
    return this._ws !== null && this._ws.readyState === 1 && this._welcomed;
  }

  /** @private */
  _send(frame) {
    if (this._ws && this._ws.readyState === 1) this._ws.send(JSON.stringify(frame));
  }

  /** @private */
  _sendSubscribe(channel) {
    const frame = { type: "subscribe", channel };
    const pos = this._positions.get(channel);
    if (pos) frame.since = { epoch: pos.epoch, offset: pos.offset };
    this._pending.add(channel);
    this._send(frame);
  }

  /** @private Detach handlers so a late event from an old socket changes nothing. */
  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    if (this._ws === ws) this._ws = null;
    this._welcomed = false;
    clearTimeout(this._watchdog);
    this._watchdog = null;
    this._live.clear();
    this._pending.clear();
  }

  /** @private */
  _dropSocket(code, reason) {
    const ws = this._ws;
    if (!ws) return;
    this._detach(ws);
    try {
      ws.close(code, reason.slice(0, 100));
    } catch {
      /* already closing */
    }
  }

  /** @private The server pings after `heartbeat` s of silence; much longer silence means a dead link. */
  _armWatchdog() {
    clearTimeout(this._watchdog);
    const ws = this._ws;
    this._watchdog = setTimeout(() => {
      if (this._ws !== ws || !ws) return;
      this._dropSocket(4000, "server silent");
      this._reconnect(this._nextDelay(), { transport: "ws", reason: "server silent for 2 x heartbeat" });
    }, (2 * this._heartbeat + 5) * 1000);
  }

  // -- frames (both transports) ------------------------------------------------------------

  /** @private */
  _onFrame(frame, via) {
    switch (frame.type) {
      case "message":
        this._onMessage(frame);
        break;
      case "ping":
        this._send({ type: "pong" });
        break;
      case "welcome":
        this._onWelcome(frame, via);
        break;
      case "subscribed":
        this._onSubscribed(frame, via);
        break;
      case "unsubscribed":
        this._live.delete(frame.channel);
        break;
      case "read":
        this._call("onRead", { channel: frame.channel, offset: frame.offset });
        break;
      case "error":
        this._onError(frame);
        break;
      default: // "pong" and anything newer: nothing to do
    }
  }

  /** @private */
  _onWelcome(frame, via) {
    this._user = frame.user;
    this._attempt = 0;
    if (typeof frame.heartbeat === "number" && frame.heartbeat > 0) this._heartbeat = frame.heartbeat;
    const personal = PERSONAL_PREFIX + frame.user;
    if (via === "ws") {
      this._welcomed = true;
      this._armWatchdog();
      this._live.add(personal); // the server resumes it: unread messages follow the welcome
      const top = frame.channels && frame.channels[BROADCAST];
      const pos = this._positions.get(BROADCAST);
      if (top) {
        if (!pos) {
          this._positions.set(BROADCAST, { epoch: top.epoch, offset: top.offset });
          this._live.add(BROADCAST);
        } else if (pos.epoch === top.epoch && pos.offset < top.offset) {
          this._sendSubscribe(BROADCAST); // resume what was published while away
        } else {
          this._checkGap(BROADCAST, pos, top);
          this._live.add(BROADCAST);
        }
      }
      for (const room of this._rooms) this._sendSubscribe(room);
    }
    this._status("open", { transport: via, session: frame.session, instance: frame.instance });
    if (this._opened) this._opened.resolve();
  }

  /** @private */
  _onSubscribed(frame, via) {
    const channel = frame.channel;
    this._pending.delete(channel);
    if (via === "ws") this._live.add(channel);
    const pos = this._positions.get(channel);
    const top = { epoch: frame.epoch, offset: frame.offset };
    if (!pos) this._positions.set(channel, top);
    else if (!frame.recovered) this._checkGap(channel, pos, top);
    // recovered: the replayed messages follow and move the position on.
    if (channel !== BROADCAST && !channel.startsWith(PERSONAL_PREFIX)) {
      this._call("onSubscribed", channel, {
        epoch: frame.epoch,
        offset: frame.offset,
        recovered: Boolean(frame.recovered),
        replayed: frame.replayed || 0,
      });
    }
  }

  /** @private Report loss when `pos` cannot continue into `top`; continue from `top`. */
  _checkGap(channel, pos, top) {
    if (pos.epoch !== top.epoch || pos.offset !== top.offset) {
      this._call("onGap", { channel, from: { epoch: pos.epoch, offset: pos.offset }, to: { epoch: top.epoch, offset: top.offset } });
    }
    this._positions.set(channel, { epoch: top.epoch, offset: top.offset });
  }

  /** @private */
  _onMessage(msg) {
    // A resubscription with `since` is pending: its replay will carry this message in order.
    if (this._pending.has(msg.channel)) return;
    const pos = this._positions.get(msg.channel);
    if (pos && pos.epoch === msg.epoch && msg.offset <= pos.offset) return; // duplicate
    this._positions.set(msg.channel, { epoch: msg.epoch, offset: msg.offset });
    this._call("onMessage", msg);
  }

  /** @private */
  _onError(frame) {
    if (frame.channel && frame.code === "forbidden") {
      this._rooms.delete(frame.channel);
      this._pending.delete(frame.channel);
      this._positions.delete(frame.channel);
    } else if (frame.channel && frame.code === "unavailable" && this._rooms.has(frame.channel)) {
      const ws = this._ws;
      setTimeout(() => {
        if (this._ws === ws && this._rooms.has(frame.channel)) this._sendSubscribe(frame.channel);
      }, 1000 + Math.random() * 1000);
    }
    this._call("onError", { code: frame.code, message: frame.message, channel: frame.channel });
  }

  // -- long-poll ---------------------------------------------------------------------------

  /** @private Abort the waiting poll so the next one carries the new room list. */
  _repoll() {
    if (this._pollAbort) this._pollAbort.abort("rooms changed");
  }

  /** @private */
  async _pollLoop(generation) {
    const current = () => this._active && generation === this._generation && this._transport === "longpoll";
    this._cursor = null; // a cursor is per long-poll run: the first poll carries welcome and unread
    this._polledRooms = new Set();
    let announced = false;
    this._status("connecting", { transport: "longpoll" });
    while (current()) {
      let token;
      try {
        token = await this._getToken();
      } catch (err) {
        await this._pollBackoff(current, { reason: `token: ${err}` });
        continue;
      }
      const rooms = [...this._rooms];
      const params = new URLSearchParams();
      for (const room of rooms) params.append("channel", room);
      if (this._cursor) params.set("cursor", this._cursor);
      params.set("timeout", String(this._opts.pollTimeout));
      const controller = new AbortController();
      this._pollAbort = controller;
      const guard = setTimeout(() => controller.abort("timeout"), (this._opts.pollTimeout + 15) * 1000);
      let res, body;
      try {
        res = await fetch(`${this._httpBase}/api/v1/longpoll?${params}`, {
          headers: { Authorization: `Bearer ${token}` },
          cache: "no-store",
          signal: controller.signal,
        });
        body = await res.json().catch(() => ({}));
      } catch (err) {
        clearTimeout(guard);
        if (!current()) return;
        if (controller.signal.aborted && controller.signal.reason === "rooms changed") continue;
        await this._pollBackoff(current, { reason: String(err) });
        continue;
      } finally {
        clearTimeout(guard);
        if (this._pollAbort === controller) this._pollAbort = null;
      }
      if (!current()) return;
      if (res.status === 401) {
        if (typeof this._opts.token !== "function") {
          this._fail("unauthorized", { transport: "longpoll", reason: body.message });
          return;
        }
        this._freshToken = true;
        await this._pollBackoff(current, { code: 401, reason: body.message });
        continue;
      }
      if (res.status === 400 && body.error === "invalid_cursor") {
        this._cursor = null;
        continue;
      }
      if ((res.status === 403 && body.error === "forbidden") || res.status === 422) {
        // Which room was refused is not machine-readable here: drop the rooms this poll added.
        const added = rooms.filter((r) => !this._polledRooms.has(r));
        if (added.length) {
          const code = res.status === 403 ? "forbidden" : "bad_channel";
          for (const ch of added) this._onError({ type: "error", code, message: body.message, channel: ch });
          continue;
        }
      }
      if (!res.ok) {
        if (res.status === 403) {
          this._fail("closed", { transport: "longpoll", code: 403, reason: body.message });
          return;
        }
        await this._pollBackoff(current, { code: res.status, reason: body.message });
        continue;
      }
      this._attempt = 0;
      this._polledRooms = new Set(rooms);
      if (body.welcome) this._onWelcome(body.welcome, "longpoll");
      else if (!announced) this._status("open", { transport: "longpoll" });
      announced = true;
      for (const sub of body.subscribed || []) this._onSubscribed(sub, "longpoll");
      for (const msg of body.messages || []) this._onMessage(msg);
      if (body.cursor) this._cursor = body.cursor;
      // Poll again at once: the server holds the request until there is something (and a full
      // page of 1,000 messages means more is waiting).
    }
  }

  /** @private */
  async _pollBackoff(current, detail) {
    if (!current()) return;
    const delay = this._nextDelay();
    this._status("reconnecting", { transport: "longpoll", ...detail, delay });
    await new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this._wakeBackoff === done) this._wakeBackoff = null;
        resolve();
      };
      const timer = setTimeout(done, delay);
      this._wakeBackoff = done; // close() and the browser's "online" event cut the wait short
    });
  }

  /** @private */
  async _httpAck(channel, offset) {
    const token = await this._getToken();
    const res = await fetch(`${this._httpBase}/api/v1/ack`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ channel, offset }),
    });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      if (res.status === 401 && typeof this._opts.token === "function") this._freshToken = true;
      throw new Error(`pushwire: ack failed (${res.status} ${body.error || ""}): ${body.message || ""}`);
    }
    return body;
  }

  // -- helpers ------------------------------------------------------------------------------

  /** @private @returns {boolean} whether the room is new */
  _addRoom(channel) {
    if (typeof channel !== "string" || !channel) throw new TypeError("PushwireClient: a channel name is a non-empty string");
    if (channel === BROADCAST || channel.startsWith(PERSONAL_PREFIX)) return false; // always subscribed
    if (this._rooms.has(channel)) return false;
    this._rooms.add(channel);
    return true;
  }

  /** @private */
  _status(status, detail) {
    this._call("onStatus", status, detail);
  }

  /** @private Call a user callback; an exception there must not break the connection. */
  _call(name, ...args) {
    const fn = this._opts[name];
    if (typeof fn !== "function") return;
    try {
      fn(...args);
    } catch (err) {
      setTimeout(() => {
        throw err;
      });
    }
  }
}

export default PushwireClient;
