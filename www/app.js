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
/** Largest file this page receives, bytes (2 GiB): it holds received files in memory, so it
 *  also refuses a file-start that would take the files it is receiving at once past this. */
const PAGE_MAX_FILE_SIZE = 2 ** 31;
/** After a sender disconnects mid-file, how long its queued messages may still complete it;
 *  likewise after a receiver leaves, how long its acknowledgement may still arrive. */
const DISCONNECT_GRACE_MS = 2000;
/** How long a sent file waits after its file-end for each receiver's acknowledgement, ms. */
const ACK_TIMEOUT_MS = 60_000;
/** Entries kept in the hooks `miaouChat.received` and `miaouChat.files` (oldest dropped). */
const MAX_KEPT = 2000;
/** Longest file-error reason sent, characters. */
const MAX_REASON = 1000;
/** The `type`s of file messages; any other text message is chat. */
const FILE_TYPES = new Set(["file-start", "file-end", "file-received", "file-error", "file-declined", "file-accepted"]);

class FileProtocolError extends Error {}

/** A file message ({type:"file-start"|"file-end"|"file-received"|"file-error"|"file-declined"|
 *  "file-accepted", …}) from a text message, or null for chat. Throws FileProtocolError("malformed …") for a
 *  file message with missing or wrong fields. */
function parseFileMessage(text) {
  let value;
  try { value = JSON.parse(text); } catch { return null; }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
  const kind = value.type;
  if (!FILE_TYPES.has(kind)) return null;
  const malformed = (what) => new FileProtocolError(`malformed file message: ${kind}: ${what}`);
  const { id } = value;
  const validId = Number.isInteger(id) && id >= 0 && id <= 0xffffffff;
  if (kind === "file-error") {
    // "id" is optional here: a fault that belongs to no transfer.
    if (id !== undefined && !validId) throw malformed(`"id" must be an integer 0..=4294967295`);
    if (typeof value.reason !== "string") throw malformed(`"reason" must be a string`);
    return { type: kind, id: id ?? null, reason: value.reason };
  }
  if (!validId) throw malformed(`"id" must be an integer 0..=4294967295`);
  if (kind === "file-declined" || kind === "file-accepted") return { type: kind, id };
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

/** `text` with control characters escaped, for showing what a remote peer sent. */
function printable(text) {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u{${c.charCodeAt(0).toString(16)}}`);
}

/** Appends `item` to a test-hook array, dropping the oldest past MAX_KEPT. */
function keep(array, item) {
  array.push(item);
  if (array.length > MAX_KEPT) array.splice(0, array.length - MAX_KEPT);
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

  /** Sender's card: the file-end is out, acknowledgements awaited. */
  awaitingAcks(waiting) {
    this.detail.textContent = `sent · waiting for ${waiting.map(shortId).join(", ")} to verify…`;
  }

  /** Sender's card: `peerId` acknowledged the file with the right SHA-256. */
  verifiedBy(peerId) {
    if (!this.acks) {
      this.acks = document.createElement("div");
      this.acks.className = "file-acks";
      this.item.append(this.acks);
    }
    const line = document.createElement("div");
    line.className = "verified";
    line.title = peerId;
    line.textContent = `verified by ${shortId(peerId)}`;
    this.acks.append(line);
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

/** Sends an acknowledgement (file-received / file-error) to the sender `peerId`. A sender that
 *  is gone cannot hear it: nothing to do then. */
function acknowledge(peerId, message) {
  window.miaouChat.transport.send(peerId, JSON.stringify(message)).catch(() => {});
}

/** Ends the open transfer of `rx` with `error` (its card marked failed); next state `next`. */
function abort(rx, error, next) {
  rx.card?.fail(error.message);
  Object.assign(rx, { state: next, parts: null, card: null });
}

/** Reports `error` from `peerId`: logged, the open transfer (if any) aborted, and the sender
 *  told with one file-error per transfer in `ids` (one without id when `ids` is empty). */
function fileError(peerId, rx, error, next, ids = []) {
  if (rx.state === "receiving") abort(rx, error, next);
  else rx.state = next;
  logLine(`file from ${shortId(peerId)}: ${error.message}`, { notice: true, error: true });
  const reason = error.message.slice(0, MAX_REASON);
  if (ids.length === 0) acknowledge(peerId, { type: "file-error", reason });
  for (const id of ids) acknowledge(peerId, { type: "file-error", id, reason });
}

/** Bytes of the files being received now, from every sender (declared sizes). */
function bytesBeingReceived() {
  let total = 0;
  for (const rx of incoming.values()) if (rx.state === "receiving") total += rx.size;
  return total;
}

function onFileStart(peerId, rx, { id, name, size }) {
  if (rx.state === "receiving") {
    return fileError(peerId, rx, new FileProtocolError(`start before end: file-start ${id} while transfer ${rx.id} is still open (both dropped)`), "skipping", [rx.id, id]);
  }
  let base;
  try { base = baseName(name); } catch (error) { return fileError(peerId, rx, error, "skipping", [id]); }
  const busy = bytesBeingReceived();
  if (size > PAGE_MAX_FILE_SIZE - busy) {
    const already = busy ? ` (${formatBytes(busy)} already being received)` : "";
    return fileError(peerId, rx, new FileProtocolError(`too large for the page: transfer ${id} (${base}) is ${formatBytes(size)}; this page receives at most ${formatBytes(PAGE_MAX_FILE_SIZE)} at once${already}`), "skipping", [id]);
  }
  const card = new TransferCard({ mine: false, peer: peerId, name: base, size });
  Object.assign(rx, { state: "receiving", id, name: base, size, received: 0, parts: [], card });
  acknowledge(peerId, { type: "file-accepted", id }); // tells the sender we take files
}

function onChunk(peerId, rx, chunk) {
  if (rx.state === "skipping") return;
  if (rx.state === "idle") {
    return fileError(peerId, rx, new FileProtocolError(`chunk without start: ${chunk.length}-byte binary message with no file-start`), "idle");
  }
  if (chunk.length > CHUNK_SIZE) {
    return fileError(peerId, rx, new FileProtocolError(`oversized chunk in transfer ${rx.id}: ${chunk.length} bytes, at most ${CHUNK_SIZE}`), "skipping", [rx.id]);
  }
  const received = rx.received + chunk.length;
  if (received > rx.size) {
    return fileError(peerId, rx, new FileProtocolError(`size mismatch in transfer ${rx.id} (${rx.name}): declared ${rx.size} bytes, received more (${received})`), "skipping", [rx.id]);
  }
  rx.parts.push(chunk);
  rx.received = received;
  rx.card.progress(received);
}

function onFileEnd(peerId, rx, { id, sha256 }) {
  if (rx.state === "skipping") { rx.state = "idle"; return; }
  if (rx.state === "idle") return fileError(peerId, rx, new FileProtocolError(`end without start: file-end ${id} with no transfer open`), "idle", [id]);
  if (id !== rx.id) return fileError(peerId, rx, new FileProtocolError(`id mismatch: file-end ${id} while transfer ${rx.id} is open`), "idle", [rx.id, id]);
  if (rx.received !== rx.size) {
    return fileError(peerId, rx, new FileProtocolError(`size mismatch in transfer ${id} (${rx.name}): declared ${rx.size} bytes, file-end after ${rx.received}`), "idle", [id]);
  }
  // The next transfer from this peer may start while we hash: leave the state idle now.
  const { name, size, parts, card } = rx;
  Object.assign(rx, { state: "idle", parts: null, card: null });
  const blob = new Blob(parts);
  sha256Hex(blob).then((actual) => {
    if (actual !== sha256) {
      const reason = `hash mismatch in transfer ${id} (${name}): file-end says sha256 ${sha256}, data has ${actual}`;
      card.fail(`hash mismatch: file-end says sha256 ${sha256}, data has ${actual}`);
      logLine(`file from ${shortId(peerId)}: hash mismatch in transfer ${id} (${name})`, { notice: true, error: true });
      acknowledge(peerId, { type: "file-error", id, reason });
      return;
    }
    const blobUrl = URL.createObjectURL(blob);
    keep(window.miaouChat.files, { peerId, name, size, sha256: actual, blobUrl });
    card.done({ sha256: actual, blobUrl, name });
    acknowledge(peerId, { type: "file-received", id, sha256: actual });
  }).catch((error) => {
    card.fail(error.message);
    acknowledge(peerId, { type: "file-error", id, reason: error.message.slice(0, MAX_REASON) });
  });
}

function onPeerGone(peerId) {
  for (const pending of outgoing.values()) pending.peerGone(peerId);
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
    return fileError(peerId, rx, error, "skipping", rx.state === "receiving" ? [rx.id] : []);
  }
  if (message === null) {
    keep(window.miaouChat.received, [peerId, data]);
    return logLine(data, { from: peerId });
  }
  if (message.type === "file-start") return onFileStart(peerId, rx, message);
  if (message.type === "file-end") return onFileEnd(peerId, rx, message);
  return onAck(peerId, message);
}

// ---- sending files -----------------------------------------------------------------------------

let nextId = 1;
let sendQueue = Promise.resolve();
/** Transfers we are sending: id -> Pending. At most one at a time (sendQueue). */
const outgoing = new Map();

/** The acknowledgements one sent transfer waits for (docs/file-transfer.md, "Delivery"). */
class Pending {
  constructor({ id, name, to, card }) {
    Object.assign(this, { id, name, card, sha256: null, ended: false, failure: null });
    this.waiting = new Set(to);
    this.verified = [];
    this.declined = [];
    this.settled = new Promise((resolve, reject) => { this.resolve = resolve; this.reject = reject; });
    this.settled.catch(() => {});
  }

  fail(message) {
    if (this.failure) return;
    this.failure = new Error(message);
    this.reject(this.failure);
  }

  check() {
    if (this.failure) return;
    if (this.waiting.size === 0 && this.verified.length === 0) {
      return this.fail(`no peer takes files (${this.declined.map(shortId).join(", ")} declined); ${this.name} reached nobody`);
    }
    if (this.ended && this.waiting.size === 0) this.resolve(this.verified);
  }

  onAck(peerId, message) {
    if (!this.waiting.has(peerId)) return;
    if (message.type === "file-accepted") return; // its verdict comes with file-received
    const who = shortId(peerId);
    if (message.type === "file-error") return this.fail(`${who} rejected ${this.name}: ${printable(message.reason)}`);
    this.waiting.delete(peerId);
    if (message.type === "file-declined") {
      this.declined.push(peerId);
    } else if (this.sha256 !== null && message.sha256 !== this.sha256) {
      return this.fail(`${who} acknowledged ${this.name} with sha256 ${message.sha256}, we sent ${this.sha256}`);
    } else {
      this.verified.push(peerId);
      this.card.verifiedBy(peerId);
    }
    this.check();
  }

  peerGone(peerId) {
    if (!this.waiting.has(peerId)) return;
    // An acknowledgement already on its way may still arrive.
    setTimeout(() => {
      if (this.waiting.has(peerId)) this.fail(`${shortId(peerId)} left before acknowledging ${this.name}`);
    }, DISCONNECT_GRACE_MS);
  }

  /** Resolves with the peers that verified the file; rejects on the first failure or after
   *  ACK_TIMEOUT_MS. */
  async acknowledged(sha256) {
    Object.assign(this, { sha256, ended: true });
    this.check();
    const timer = setTimeout(() => this.fail(`no acknowledgement of ${this.name} from ${[...this.waiting].map(shortId).join(", ")} within ${ACK_TIMEOUT_MS / 1000} s`), ACK_TIMEOUT_MS);
    try { return await this.settled; } finally { clearTimeout(timer); }
  }
}

/** An acknowledgement from a receiver: for the transfer it names, or (file-error without id)
 *  for whatever we are sending to that peer. */
function onAck(peerId, message) {
  const targets = message.id === null ? [...outgoing.values()] : [outgoing.get(message.id)].filter(Boolean);
  for (const pending of targets) pending.onAck(peerId, message);
}

/** Sends `file` (a File or Blob) to every connected peer; transfers run one after the other.
 *  Resolves with { id, name, size, sha256, peers, verifiedBy } once every peer acknowledged it
 *  (file-received with our SHA-256); rejects, naming the peer, on a rejection, a peer gone or
 *  no acknowledgement within ACK_TIMEOUT_MS. */
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
  const pending = new Pending({ id, name, to, card });
  outgoing.set(id, pending);
  // To the peers still waited for (not those that declined); stops at the first failure.
  const toAll = async (data) => {
    if (pending.failure) throw pending.failure;
    await Promise.all([...pending.waiting].map((peerId) => transport.send(peerId, data)));
  };
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
    card.awaitingAcks([...pending.waiting]);
    const verifiedBy = await pending.acknowledged(sha256);
    card.done({ sha256 });
    return { id, name, size, sha256, peers: to, verifiedBy };
  } catch (error) {
    card.fail(pending.failure === error ? error.message : `not sent: ${error.message}`);
    throw error;
  } finally {
    outgoing.delete(id);
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
  // ?arq=1 / ?arq=0: announce the ARQ layer or not (docs/frame.md); default: the library's.
  if (params.has("arq")) options.arq = params.get("arq") === "1";
  const transport = await Transport.connect(options);
  // Exposed for the end-to-end tests and for poking at from the devtools console:
  // `received` holds chat lines [peerId, text]; `files` the verified received files (the last
  // MAX_KEPT of each).
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
