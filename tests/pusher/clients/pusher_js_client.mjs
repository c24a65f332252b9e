// Drives the unmodified pusher-js (the npm package's Node build) against a live server, for the tests in
// tests/pusher/. Configuration: one JSON object in argv[2]. Commands: JSON lines on stdin. Everything the
// library reports: JSON lines on stdout, each with a `type`:
//   state      {previous, current, socket_id}  connection state changes
//   error      {error}                          connection errors (pusher:error frames, socket errors)
//   message    {event, channel, data, user_id}  every frame the connection received (data already decoded)
//   event      {channel, event, data}           what a channel's bind_global handler sees (decrypted, members)
//   user_event {event, data}                    events on the signed-in user (#server-to-user-{id})
//   reply      {id, ...}                        the answer to a command that carries an `id`
//   auth       {channel, socket_id}             the channel authorizer ran (the `pusher` SDK signed it)
//   log        {message}                        pusher-js's own log lines (warnings, decryption failures)
//
// Channel and user auth are what a tenant backend does: the real `pusher` server SDK (npm) signs with the
// app secret, in a customHandler. Config: {key, host, port, appId, secret, authKey?, authSecret?,
// encryptionMasterKeyBase64?, presence?: {user_id, user_info}, user?: {id, ...}}; authKey/authSecret make
// a forged signature (another key or a wrong secret).
import Pusher from "pusher-js"; // Node build: bundles its WebSocket client and tweetnacl (encrypted channels)
import PusherServer from "pusher";
import readline from "node:readline";

const config = JSON.parse(process.argv[2] || "{}");
const started = Date.now();

function safe(value, depth = 0, ancestors = new Set()) {
  // JSON-safe copy: functions dropped, cycles (socket error objects have them) and deep nesting cut.
  if (value === null || typeof value !== "object") return value;
  if (depth > 8 || ancestors.has(value)) return "[…]";
  if (value instanceof Error) return { name: value.name, message: value.message };
  ancestors.add(value);
  let out;
  if (Array.isArray(value)) {
    out = value.map((v) => safe(v, depth + 1, ancestors));
  } else {
    out = {};
    for (const [k, v] of Object.entries(value)) {
      if (typeof v !== "function") out[k] = safe(v, depth + 1, ancestors);
    }
  }
  ancestors.delete(value);
  return out;
}

function emit(line) {
  process.stdout.write(JSON.stringify({ ...safe(line), t: Date.now() - started }) + "\n");
}

function members(channel) {
  const m = channel.members;
  return m ? { count: m.count, me: m.me, members: m.members } : null;
}

const signer = new PusherServer({
  appId: config.appId,
  key: config.authKey || config.key,
  secret: config.authSecret || config.secret,
  host: config.host,
  port: config.port,
  useTLS: false,
  ...(config.encryptionMasterKeyBase64 ? { encryptionMasterKeyBase64: config.encryptionMasterKeyBase64 } : {}),
});

Pusher.logToConsole = false;
Pusher.log = (message) => emit({ type: "log", message: String(message) });

const pusher = new Pusher(config.key, {
  cluster: "mt1", // required by pusher-js 8; unused once wsHost is set
  wsHost: config.host,
  wsPort: config.port,
  wssPort: config.port,
  forceTLS: false,
  enabledTransports: ["ws"],
  channelAuthorization: {
    customHandler: ({ socketId, channelName }, callback) => {
      emit({ type: "auth", channel: channelName, socket_id: socketId });
      try {
        const presence = channelName.startsWith("presence-") ? config.presence : undefined;
        callback(null, signer.authorizeChannel(socketId, channelName, presence));
      } catch (err) {
        callback(err, null);
      }
    },
  },
  userAuthentication: {
    customHandler: ({ socketId }, callback) => {
      try {
        callback(null, signer.authenticateUser(socketId, config.user));
      } catch (err) {
        callback(err, null);
      }
    },
  },
});

const connection = pusher.connection;
connection.bind("state_change", ({ previous, current }) =>
  emit({ type: "state", previous, current, socket_id: connection.socket_id ?? null }),
);
connection.bind("error", (error) => emit({ type: "error", error }));
connection.bind("message", (m) =>
  emit({ type: "message", event: m.event, channel: m.channel ?? null, data: m.data ?? null, user_id: m.user_id ?? null }),
);
pusher.user.bind_global((event, data) => emit({ type: "user_event", event, data }));

function subscribe(name) {
  const channel = pusher.subscribe(name);
  channel.unbind_global();
  channel.bind_global((event, data) => {
    const shown = event === "pusher:subscription_succeeded" && channel.members ? members(channel) : data;
    emit({ type: "event", channel: name, event, data: shown ?? null });
  });
}

const commands = {
  subscribe: (c) => subscribe(c.channel),
  unsubscribe: (c) => pusher.unsubscribe(c.channel),
  trigger: (c) => {
    const channel = pusher.channel(c.channel);
    return { ok: channel ? channel.trigger(c.event, c.data) : false };
  },
  members: (c) => ({ members: members(pusher.channel(c.channel)) }),
  state: () => ({ state: connection.state, socket_id: connection.socket_id ?? null }),
  signin: () => pusher.signin(),
  connect: () => pusher.connect(),
  disconnect: () => pusher.disconnect(),
  exit: () => {
    pusher.disconnect();
    setTimeout(() => process.exit(0), 50);
  },
};

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (!line.trim()) return;
  let command;
  try {
    command = JSON.parse(line);
    const handler = commands[command.op];
    if (!handler) throw new Error(`unknown op ${command.op}`);
    const result = handler(command);
    if (command.id !== undefined) emit({ type: "reply", id: command.id, ...(result || {}) });
  } catch (err) {
    emit({ type: "reply", id: command?.id ?? null, error: String(err?.message ?? err) });
  }
}).on("close", () => {
  pusher.disconnect();
  setTimeout(() => process.exit(0), 50);
});

process.on("uncaughtException", (err) => emit({ type: "fatal", error: String(err?.stack ?? err) }));
process.on("unhandledRejection", (err) => emit({ type: "fatal", error: String(err?.stack ?? err) }));
emit({ type: "started", key: config.key, port: config.port });
