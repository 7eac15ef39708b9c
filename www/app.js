// Demo chat page. Everything WebRTC goes through the npm package `miaou-transport`;
// this file renders, and speaks the file-transfer protocol of docs/file-transfer.md (the same
// one `native-demo send` / `native-demo receive` speak). Query parameters: ?room=NAME (default
// "lobby"), ?signal=WS_URL (default: this server's /ws), ?turn=bridge (TURN credentials from the
// bridge, `serve --turn-secret`), ?relay=1 (relay-only ICE: everything through TURN); see
// docs/turn.md.
import init, { Transport } from "miaou-transport";

const params = new URLSearchParams(location.search);
const room = params.get("room") || "lobby";
const signal = params.get("signal") || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

const $ = (id) => document.getElementById(id);
const shortId = (id) => id.slice(0, 8);
const peers = new Map(); // peerId -> "joined" | "connected"

// ---- file-transfer protocol (docs/file-transfer.md) -------------------------------------------

/** Chunk size: every binary message of a transfer carries 64 KiB, except the last. */
const CHUNK_SIZE = 64 * 1024;
/** Largest declared size: 2^53 - 1, exact in a JS number. */
const MAX_FILE_SIZE = Number.MAX_SAFE_INTEGER;
/** After a sender disconnects mid-file, how long its queued messages may still complete it. */
const DISCONNECT_GRACE_MS = 2000;

class FileProtocolError extends Error {}

/** A file message ({type:"file-start"|"file-end", …}) from a text message, or null for chat.
 *  Throws FileProtocolError("malformed …") for a file message with missing or wrong fields. */
function parseFileMessage(text) {
  let value;
  try { value = JSON.parse(text); } catch { return null; }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
  const kind = value.type;
  if (kind !== "file-start" && kind !== "file-end") return null;
  const malformed = (what) => new FileProtocolError(`malformed file message: ${kind}: ${what}`);
  const { id } = value;
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) throw malformed(`"id" must be an integer 0..=4294967295`);
  if (kind === "file-start") {
    if (typeof value.name !== "string") throw malformed(`"name" must be a string`);
    if (!Number.isInteger(value.size) || value.size < 0 || value.size > MAX_FILE_SIZE) {
      throw malformed(`"size" must be an integer 0..=2^53-1`);
    }
    return { type: kind, id, name: value.name, size: value.size };
  }
  if (typeof value.sha256 !== "string" || !/^[0-9a-fA-F]{64}$/.test(value.sha256)) {
    throw malformed(`"sha256" must be 64 hex digits`);
  }
  return { type: kind, id, sha256: value.sha256.toLowerCase() };
}

/** What follows the last `/` or `\`; throws for "", ".", "..", control characters, > 255 bytes. */
function baseName(name) {
  const base = name.split(/[/\\]/).pop();
  let reason = null;
  if (base === "") reason = "empty base name";
  else if (base === "." || base === "..") reason = "base name is . or ..";
  else if (/[\u0000-\u001f\u007f]/.test(base)) reason = "control character in name";
  else if (new TextEncoder().encode(base).length > 255) reason = "name longer than 255 bytes";
  if (reason) throw new FileProtocolError(`bad name ${JSON.stringify(name)}: ${reason}`);
  return base;
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256Hex(blob) {
  if (!crypto.subtle) throw new Error("SHA-256 needs a secure context (https, or http://127.0.0.1 / localhost)");
  return hex(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));
}

function formatBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

// ---- rendering ---------------------------------------------------------------------------------

function status(text, kind = "") {
  $("status").textContent = text;
  $("status").className = `status ${kind}`;
}

function logLine(text, { from = null, mine = false, notice = false, error = false } = {}) {
  const item = document.createElement("li");
  if (mine) item.className = "mine";
  if (notice) item.className = error ? "notice error" : "notice";
  if (from) {
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = mine ? "you" : shortId(from);
    item.append(who);
  }
  item.append(document.createTextNode(text));
  append(item);
}

function append(item) {
  const log = $("log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.append(item);
  if (atBottom) item.scrollIntoView({ block: "end" });
}

/** A card in the log for one transfer, each way: name, size, progress bar, rate, SHA-256. */
class TransferCard {
  constructor({ mine, peer, name, size, to }) {
    this.size = size;
    this.started = performance.now();
    this.item = document.createElement("li");
    this.item.className = `file ${mine ? "mine" : ""}`;
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = mine ? `you → ${to.map(shortId).join(", ")}` : shortId(peer);
    this.title = document.createElement("div");
    this.title.className = "file-name";
    this.title.textContent = `${name} · ${formatBytes(size)}`;
    this.bar = document.createElement("progress");
    this.bar.max = Math.max(size, 1);
    this.bar.value = 0;
    this.detail = document.createElement("div");
    this.detail.className = "file-detail";
    this.detail.textContent = mine ? "sending…" : "receiving…";
    this.item.append(who, this.title, this.bar, this.detail);
    append(this.item);
  }

  rate(bytes) {
    const seconds = (performance.now() - this.started) / 1000;
    return `${formatBytes(bytes / Math.max(seconds, 1e-3))}/s`;
  }

  progress(bytes) {
    this.bar.value = bytes;
    const percent = this.size ? Math.floor((bytes / this.size) * 100) : 100;
    this.detail.textContent = `${formatBytes(bytes)} of ${formatBytes(this.size)} · ${percent}% · ${this.rate(bytes)}`;
  }

  done({ sha256, blobUrl = null, name = null }) {
    this.bar.value = this.bar.max;
    this.item.classList.add("done");
    const seconds = ((performance.now() - this.started) / 1000).toFixed(1);
    this.detail.textContent = `${blobUrl ? "received" : "sent"} in ${seconds} s · ${this.rate(this.size)}`;
    if (blobUrl) {
      const link = document.createElement("a");
      link.href = blobUrl;
      link.download = name;
      link.textContent = `${name} · ${formatBytes(this.size)}`;
      this.title.replaceChildren(link);
    }
    const hash = document.createElement("code");
    hash.className = "sha256";
    hash.title = "SHA-256";
    hash.textContent = `SHA-256 ${sha256}`;
    this.item.append(hash);
  }

  fail(message) {
    this.item.classList.add("failed");
    this.detail.textContent = message;
  }
}

function renderPeers() {
  const list = $("peers");
  list.replaceChildren();
  if (peers.size === 0) {
    const empty = document.createElement("li");
    empty.className = "empty";
    empty.textContent = "no one else here — open this page in another tab";
    list.append(empty);
  }
  for (const [id, state] of peers) {
    const item = document.createElement("li");
    item.className = state;
    item.title = id;
    item.textContent = `${shortId(id)} · ${state}`;
    list.append(item);
  }
  const anyone = [...peers.values()].includes("connected");
  $("input").disabled = !anyone;
  $("send").disabled = !anyone;
  $("send-file").disabled = !anyone;
}

// ---- receiving files ---------------------------------------------------------------------------

/** Per sender: { state: "idle" | "receiving" | "skipping", id, name, size, received, parts, card }. */
const incoming = new Map();

function receiverOf(peerId) {
  if (!incoming.has(peerId)) incoming.set(peerId, { state: "idle" });
  return incoming.get(peerId);
}

/** Ends the open transfer of `rx` with `error` (its card marked failed); next state `next`. */
function abort(rx, error, next) {
  rx.card?.fail(error.message);
  Object.assign(rx, { state: next, parts: null, card: null });
}

function fileError(peerId, rx, error, next) {
  if (rx.state === "receiving") abort(rx, error, next);
  else rx.state = next;
  logLine(`file from ${shortId(peerId)}: ${error.message}`, { notice: true, error: true });
}

function onFileStart(peerId, rx, { id, name, size }) {
  if (rx.state === "receiving") {
    return fileError(peerId, rx, new FileProtocolError(`start before end: file-start ${id} while transfer ${rx.id} is still open (both dropped)`), "skipping");
  }
  let base;
  try { base = baseName(name); } catch (error) { return fileError(peerId, rx, error, "skipping"); }
  const card = new TransferCard({ mine: false, peer: peerId, name: base, size });
  Object.assign(rx, { state: "receiving", id, name: base, size, received: 0, parts: [], card });
}

function onChunk(peerId, rx, chunk) {
  if (rx.state === "skipping") return;
  if (rx.state === "idle") {
    return fileError(peerId, rx, new FileProtocolError(`chunk without start: ${chunk.length}-byte binary message with no file-start`), "idle");
  }
  if (chunk.length > CHUNK_SIZE) {
    return fileError(peerId, rx, new FileProtocolError(`oversized chunk in transfer ${rx.id}: ${chunk.length} bytes, at most ${CHUNK_SIZE}`), "skipping");
  }
  const received = rx.received + chunk.length;
  if (received > rx.size) {
    return fileError(peerId, rx, new FileProtocolError(`size mismatch in transfer ${rx.id} (${rx.name}): declared ${rx.size} bytes, received more (${received})`), "skipping");
  }
  rx.parts.push(chunk);
  rx.received = received;
  rx.card.progress(received);
}

function onFileEnd(peerId, rx, { id, sha256 }) {
  if (rx.state === "skipping") { rx.state = "idle"; return; }
  if (rx.state === "idle") return fileError(peerId, rx, new FileProtocolError(`end without start: file-end ${id} with no transfer open`), "idle");
  if (id !== rx.id) return fileError(peerId, rx, new FileProtocolError(`id mismatch: file-end ${id} while transfer ${rx.id} is open`), "idle");
  if (rx.received !== rx.size) {
    return fileError(peerId, rx, new FileProtocolError(`size mismatch in transfer ${id} (${rx.name}): declared ${rx.size} bytes, file-end after ${rx.received}`), "idle");
  }
  // The next transfer from this peer may start while we hash: leave the state idle now.
  const { name, size, parts, card } = rx;
  Object.assign(rx, { state: "idle", parts: null, card: null });
  const blob = new Blob(parts);
  sha256Hex(blob).then((actual) => {
    if (actual !== sha256) {
      card.fail(`hash mismatch: file-end says sha256 ${sha256}, data has ${actual}`);
      logLine(`file from ${shortId(peerId)}: hash mismatch in transfer ${id} (${name})`, { notice: true, error: true });
      return;
    }
    const blobUrl = URL.createObjectURL(blob);
    window.miaouChat.files.push({ peerId, name, size, sha256: actual, blobUrl });
    card.done({ sha256: actual, blobUrl, name });
  }).catch((error) => card.fail(error.message));
}

function onPeerGone(peerId) {
  const rx = incoming.get(peerId);
  if (rx?.state !== "receiving") { incoming.delete(peerId); return; }
  // Messages it sent before leaving may still be queued: give them a moment to complete it.
  setTimeout(() => {
    if (rx.state === "receiving") {
      fileError(peerId, rx, new FileProtocolError(`peer disconnected mid-file: transfer ${rx.id} (${rx.name}) stopped at ${rx.received} of ${rx.size} bytes`), "idle");
    }
    incoming.delete(peerId);
  }, DISCONNECT_GRACE_MS);
}

function onMessage(peerId, data) {
  const rx = receiverOf(peerId);
  if (typeof data !== "string") return onChunk(peerId, rx, data);
  let message;
  try {
    message = parseFileMessage(data);
  } catch (error) {
    return fileError(peerId, rx, error, "skipping");
  }
  if (message === null) {
    window.miaouChat.received.push([peerId, data]);
    return logLine(data, { from: peerId });
  }
  if (message.type === "file-start") return onFileStart(peerId, rx, message);
  return onFileEnd(peerId, rx, message);
}

// ---- sending files -----------------------------------------------------------------------------

let nextId = 1;
let sendQueue = Promise.resolve();

/** Sends `file` (a File or Blob) to every connected peer; transfers run one after the other.
 *  Resolves with { id, name, size, sha256, peers } once the last message is handed over. */
function sendFile(file) {
  const run = sendQueue.then(() => sendOne(file));
  sendQueue = run.catch(() => {});
  return run;
}

async function sendOne(file) {
  const { transport } = window.miaouChat;
  const name = baseName(file.name || "blob");
  const to = transport.peers(); // the peers that get this file, from start to end
  if (to.length === 0) throw new Error(`no connected peer to send ${name} to`);
  const id = nextId++;
  const size = file.size;
  const card = new TransferCard({ mine: true, name, size, to });
  const toAll = (data) => Promise.all(to.map((peerId) => transport.send(peerId, data)));
  try {
    const hashing = sha256Hex(file); // runs while the chunks go out
    hashing.catch(() => {});
    await toAll(JSON.stringify({ type: "file-start", id, name, size }));
    for (let offset = 0; offset < size; offset += CHUNK_SIZE) {
      const chunk = new Uint8Array(await file.slice(offset, offset + CHUNK_SIZE).arrayBuffer());
      await toAll(chunk);
      card.progress(offset + chunk.length);
    }
    const sha256 = await hashing;
    await toAll(JSON.stringify({ type: "file-end", id, sha256 }));
    card.done({ sha256 });
    return { id, name, size, sha256, peers: to };
  } catch (error) {
    card.fail(`not sent: ${error.message}`);
    throw error;
  }
}

function sendFiles(files) {
  for (const file of files) {
    sendFile(file).catch((error) => logLine(`${file.name}: ${error.message}`, { notice: true, error: true }));
  }
}

function setUpFileInput() {
  $("send-file").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", () => {
    sendFiles([...$("file-input").files]);
    $("file-input").value = "";
  });
  // Drop a file anywhere on the page.
  const overlay = $("drop-overlay");
  const hasFiles = (event) => event.dataTransfer?.types.includes("Files");
  let depth = 0;
  window.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth++;
    const n = window.miaouChat?.transport.peers().length ?? 0;
    overlay.textContent = n ? `Drop to send to ${n} peer${n > 1 ? "s" : ""}` : "No connected peer to send to";
    overlay.hidden = false;
  });
  window.addEventListener("dragover", (event) => { if (hasFiles(event)) event.preventDefault(); });
  window.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; overlay.hidden = true; } });
  window.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth = 0;
    overlay.hidden = true;
    sendFiles([...event.dataTransfer.files]);
  });
}

// ---- peers and start-up ------------------------------------------------------------------------

function onPeer(event) {
  switch (event.type) {
    case "joined": peers.set(event.peerId, "joined"); break;
    case "connected":
      peers.set(event.peerId, "connected");
      logLine(`${shortId(event.peerId)} connected`, { notice: true });
      // Which path ICE chose (host, srflx, prflx or relay on each end); informative only.
      window.miaouChat.transport.selectedCandidatePair(event.peerId).then(
        ({ local, remote }) => logLine(`path to ${shortId(event.peerId)}: ${local.candidateType} → ${remote.candidateType}`, { notice: true }),
        () => {},
      );
      break;
    case "disconnected":
      if (peers.has(event.peerId)) peers.set(event.peerId, "joined");
      logLine(`${shortId(event.peerId)} disconnected${event.reason ? `: ${event.reason}` : ""}`, { notice: true });
      onPeerGone(event.peerId);
      break;
    case "left": peers.delete(event.peerId); onPeerGone(event.peerId); break;
    case "error":
      logLine(`error: ${event.reason}`, { notice: true });
      if (/signaling connection/.test(event.reason)) {
        status("signaling server lost — open chats continue, new peers cannot join", "error");
      }
      break;
  }
  renderPeers();
}

async function main() {
  $("room").textContent = room;
  await init();
  const options = { signal, room };
  if (params.get("turn") === "bridge") options.turnFromBridge = true;
  if (params.get("relay") === "1") options.iceTransportPolicy = "relay";
  const transport = await Transport.connect(options);
  // Exposed for the end-to-end tests and for poking at from the devtools console:
  // `received` holds chat lines [peerId, text]; `files` the verified received files.
  window.miaouChat = { transport, received: [], files: [], sendFile };
  $("me").textContent = transport.peerId;
  status(`in room “${room}”`, "ok");
  transport.onPeer(onPeer);
  transport.onMessage(onMessage);
  $("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("input").value;
    if (!text) return;
    $("input").value = "";
    try {
      await transport.broadcast(text);
      logLine(text, { from: transport.peerId, mine: true });
    } catch (error) {
      logLine(`not sent: ${error.message}`, { notice: true });
    }
  });
  setUpFileInput();
  window.addEventListener("pagehide", () => transport.close());
}

main().catch((error) => {
  status(`error: ${error.message}`, "error");
  console.error(error);
});
