// Drives the unmodified `pusher` server SDK (npm, pusher-http-node) against a live server's HTTP API.
// Configuration: one JSON object in argv[2]: {appId, key, secret, host, port, encryptionMasterKeyBase64?}.
// Commands: JSON lines on stdin, {id, op, ...args, as?: {appId?, key?, secret?}, skew?: seconds}:
//   trigger {channels, event, data, params?}   triggerBatch {batch}   get {path, params?}
//   post {path, body, params?}                 terminateUserConnections {user_id}
//   sendToUser {user_id, event, data}          authorizeChannel {socket_id, channel, presence?}
// `as` signs with other credentials (a wrong secret, an unknown key); `skew` moves the clock the SDK
// reads its auth_timestamp from by that many seconds, for this request only.
// Each command gets one JSON line back: {id, status, body} (body parsed as JSON when it is JSON), or
// {id, status, body, error} when the SDK rejected (an HTTP error status, or a check of its own: status null).
import PusherServer from "pusher";
import readline from "node:readline";

const config = JSON.parse(process.argv[2] || "{}");

function client(as) {
  return new PusherServer({
    appId: config.appId,
    key: config.key,
    secret: config.secret,
    host: config.host,
    port: config.port,
    useTLS: false,
    timeout: 10000,
    ...(config.encryptionMasterKeyBase64 ? { encryptionMasterKeyBase64: config.encryptionMasterKeyBase64 } : {}),
    ...(as || {}),
  });
}

const standard = client();

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

const ops = {
  trigger: (p, c) => p.trigger(c.channels, c.event, c.data, c.params),
  triggerBatch: (p, c) => p.triggerBatch(c.batch),
  get: (p, c) => p.get({ path: c.path, params: c.params }),
  post: (p, c) => p.post({ path: c.path, body: c.body, params: c.params }),
  terminateUserConnections: (p, c) => p.terminateUserConnections(c.user_id),
  sendToUser: (p, c) => p.sendToUser(c.user_id, c.event, c.data),
  authorizeChannel: (p, c) => p.authorizeChannel(c.socket_id, c.channel, c.presence),
};

function reply(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

async function run(command) {
  const op = ops[command.op];
  if (!op) throw new Error(`unknown op ${command.op}`);
  const sdk = command.as ? client(command.as) : standard;
  const realNow = Date.now;
  if (command.skew) Date.now = () => realNow() + command.skew * 1000;
  let pending;
  try {
    pending = op(sdk, command); // the SDK signs synchronously, inside this call
  } finally {
    Date.now = realNow;
  }
  const result = await pending;
  if (result && typeof result.text === "function") {
    return { status: result.status, body: parse(await result.text()) };
  }
  return { status: null, body: result };
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (!line.trim()) return;
  let command;
  try {
    command = JSON.parse(line);
  } catch (err) {
    reply({ id: null, error: String(err) });
    return;
  }
  run(command).then(
    (result) => reply({ id: command.id, ...result }),
    (err) =>
      reply({
        id: command.id,
        status: err?.status ?? null,
        body: err?.body !== undefined ? parse(err.body) : null,
        error: String(err?.message ?? err),
      }),
  );
}).on("close", () => setTimeout(() => process.exit(0), 100));

reply({ id: "started" });
