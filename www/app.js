// Demo chat page. Everything WebRTC goes through the npm package `miaou-transport`;
// this file only renders. Query parameters: ?room=NAME (default "lobby"), ?signal=WS_URL
// (default: this server's /ws).
import init, { Transport } from "miaou-transport";

const params = new URLSearchParams(location.search);
const room = params.get("room") || "lobby";
const signal = params.get("signal") || `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

const $ = (id) => document.getElementById(id);
const shortId = (id) => id.slice(0, 8);
const peers = new Map(); // peerId -> "joined" | "connected"

function status(text, kind = "") {
  $("status").textContent = text;
  $("status").className = `status ${kind}`;
}

function logLine(text, { from = null, mine = false, notice = false } = {}) {
  const item = document.createElement("li");
  if (mine) item.className = "mine";
  if (notice) item.className = "notice";
  if (from) {
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = mine ? "you" : shortId(from);
    item.append(who);
  }
  item.append(document.createTextNode(text));
  $("log").append(item);
  item.scrollIntoView({ block: "end" });
}

function renderPeers() {
  const list = $("peers");
  list.replaceChildren();
  if (peers.size === 0) {
    const empty = document.createElement("li");
    empty.className = "empty";
    empty.textContent = "nobody yet — open this page in another tab";
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
}

function onPeer(event) {
  switch (event.type) {
    case "joined": peers.set(event.peerId, "joined"); break;
    case "connected":
      peers.set(event.peerId, "connected");
      logLine(`${shortId(event.peerId)} connected`, { notice: true });
      break;
    case "disconnected":
      if (peers.has(event.peerId)) peers.set(event.peerId, "joined");
      logLine(`${shortId(event.peerId)} disconnected${event.reason ? `: ${event.reason}` : ""}`, { notice: true });
      break;
    case "left": peers.delete(event.peerId); break;
    case "error": logLine(`error: ${event.reason}`, { notice: true }); break;
  }
  renderPeers();
}

async function main() {
  $("room").textContent = room;
  await init();
  const transport = await Transport.connect({ signal, room });
  // Exposed for the end-to-end tests and for poking at from the devtools console.
  window.miaouChat = { transport, received: [] };
  $("me").textContent = transport.peerId;
  status(`in room “${room}”`, "ok");
  transport.onPeer(onPeer);
  transport.onMessage((peerId, data) => {
    const text = typeof data === "string" ? data : `[${data.length} bytes]`;
    window.miaouChat.received.push([peerId, text]);
    logLine(text, { from: peerId });
  });
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
  window.addEventListener("pagehide", () => transport.close());
}

main().catch((error) => {
  status(`error: ${error.message}`, "error");
  console.error(error);
});
