// Single large messages and both channel kinds between the browser package and a native peer
// (`native-demo echo`, which sends every message back unchanged).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { once } from "node:events";
import { bridgeAndChromiumPerFile, startJoin, startEcho, openChat, waitFor } from "./harness.mjs";

const rig = bridgeAndChromiumPerFile();

/** In the page: connects its own Transport (offering, since the echo joined first), sends each
 *  payload spec to the echo peer and checks the echo byte for byte. Returns a summary. */
function roundTrips(page, room, channel, specs) {
  return page.evaluate(async ({ signal, room, channel, specs }) => {
    const { Transport } = await import("miaou-transport");
    const t = await Transport.connect({ signal, room, channel });
    const peer = await new Promise((resolve) => t.onPeer((e) => e.type === "connected" && resolve(e.peerId)));
    const info = t.channelInfo(peer);
    // Backpressure: while sending, sample bufferedAmount (send pauses above 1 MiB).
    let maxBuffered = 0;
    const sampler = setInterval(() => { maxBuffered = Math.max(maxBuffered, t.bufferedAmount(peer)); }, 1);
    const inbox = [];
    let wake = () => {};
    t.onMessage((from, data) => { inbox.push({ from, data }); wake(); });
    const next = () => inbox.length ? Promise.resolve(inbox.shift())
      : new Promise((resolve) => { wake = () => resolve(inbox.shift()); });
    const results = [];
    for (const spec of specs) {
      let payload;
      if (spec.text) {
        payload = spec.text;
      } else {
        payload = new Uint8Array(spec.bytes);
        for (let i = 0; i < payload.length; i += 65536) crypto.getRandomValues(payload.subarray(i, i + 65536));
      }
      await t.send(peer, payload);
      const echo = await next();
      const same = typeof payload === "string"
        ? echo.data === payload
        : echo.data instanceof Uint8Array && echo.data.length === payload.length && echo.data.every((b, i) => b === payload[i]);
      results.push({ size: spec.bytes ?? spec.text.length, same, from: echo.from === peer });
    }
    clearInterval(sampler);
    await t.close();
    return { results, info, maxBuffered };
  }, { signal: rig.bridge.ws, room, channel, specs });
}

test("300 KiB and 8 MiB single messages browser -> native -> browser", async () => {
  const echo = await startEcho(rig.bridge.ws, "big-messages");
  const page = await openChat(rig.browser, rig.bridge.http, "big-messages-ui");
  try {
    const { results, info, maxBuffered } = await roundTrips(page, "big-messages", "reliable", [{ bytes: 300 * 1024 }, { bytes: 8 * 1024 * 1024 }, { text: "done ✓" }]);
    // Without backpressure the browser would buffer the whole 8 MiB message at once.
    assert.ok(maxBuffered > 0 && maxBuffered <= 1024 * 1024 + 16 * 1024, `bufferedAmount peaked at ${maxBuffered}`);
    // The tab's channel, read off RTCDataChannel; the native side (it answered) reads the
    // same parameters from the offer's DATA_CHANNEL_OPEN.
    assert.deepEqual(info, {
      label: "miaou-reliable", kind: "reliable", ordered: true, maxRetransmits: null,
      maxPacketLifeTime: null, maxFrameSize: 16384, remoteMaxMessageSize: 65535, arq: false,
    });
    assert.match(echo.stderr, /channel open .*kind=Reliable ordered=true max_retransmits=None/);
    assert.deepEqual(results, [
      { size: 300 * 1024, same: true, from: true },
      { size: 8 * 1024 * 1024, same: true, from: true },
      { size: 6, same: true, from: true },
    ]);
    assert.deepEqual(page.miaouErrors, []);
  } finally {
    echo.stop();
    await page.close();
  }
});

test("unreliable channel (unordered, maxRetransmits 0) between browser and native", async () => {
  const echo = await startEcho(rig.bridge.ws, "unreliable");
  const page = await openChat(rig.browser, rig.bridge.http, "unreliable-ui");
  try {
    const specs = [...Array.from({ length: 50 }, (_, i) => ({ text: `u${i}` })), { bytes: 100_000 }];
    const { results, info } = await roundTrips(page, "unreliable", "unreliable", specs);
    // Loopback loses nothing; each message is awaited before the next, so order holds too.
    assert.equal(results.length, 51);
    assert.ok(results.every((r) => r.same && r.from), JSON.stringify(results.filter((r) => !r.same)));
    assert.deepEqual([info.kind, info.ordered, info.maxRetransmits], ["unreliable", false, 0]);
    // The native side answered: it follows the tab's DATA_CHANNEL_OPEN (unordered, 0 rtx).
    assert.match(echo.stderr, /channel open .*kind=Unreliable ordered=false max_retransmits=Some\(0\)/);
  } finally {
    echo.stop();
    await page.close();
  }
});

test("browser close() right after a 10 MiB burst still delivers the last message", async () => {
  const node = startJoin(rig.bridge.ws, "burst-close", ["--wait-peers", "1"]);
  const page = await openChat(rig.browser, rig.bridge.http, "burst-close-ui");
  try {
    const count = 160; // 160 x 64 KiB text = 10 MiB
    await page.evaluate(async ({ signal, count }) => {
      const { Transport } = await import("miaou-transport");
      const t = await Transport.connect({ signal, room: "burst-close" });
      const peer = await new Promise((resolve) => t.onPeer((e) => e.type === "connected" && resolve(e.peerId)));
      const filler = "z".repeat(64 * 1024 - 16);
      for (let i = 0; i < count; i++) await t.send(peer, `${i} ${filler}`);
      await t.close(); // right after the last send
    }, { signal: rig.bridge.ws, count });
    await waitFor(() => node.lines.length >= count, "every message at the native side", 60_000);
    const numbers = node.lines.map((l) => Number(l.split(" ")[1]));
    assert.deepEqual(numbers, Array.from({ length: count }, (_, i) => i));
    assert.ok(node.lines.every((l) => l.length > 64 * 1024 - 16));
  } finally {
    node.endInput();
    node.kill();
    await page.close();
  }
});

test("browser close() right after 10 MiB of 1 KiB messages delivers every one, in order", async () => {
  // 1 KiB messages are single frames: send() resolves once queued and queued ones go out
  // coalesced (BATCH), so up to 1024 of them are still queued when close() runs.
  const node = startJoin(rig.bridge.ws, "burst-close-small", ["--wait-peers", "1"]);
  const page = await openChat(rig.browser, rig.bridge.http, "burst-close-small-ui");
  const count = 10 * 1024;
  // Message i: its number then 1 KiB of text that depends on i, so a lost, repeated, reordered
  // or corrupted message shows.
  const message = (i) => {
    const letters = Array.from({ length: 26 }, (_, k) => String.fromCharCode(97 + ((i + k * 7) % 26))).join("");
    return `${i} ${letters.repeat(40)}`.slice(0, 1024);
  };
  try {
    const { pageId, queuedAtClose } = await page.evaluate(async ({ signal, count, source }) => {
      const make = new Function(`return ${source}`)();
      const { Transport } = await import("miaou-transport");
      const t = await Transport.connect({ signal, room: "burst-close-small" });
      const peer = await new Promise((resolve) => t.onPeer((e) => e.type === "connected" && resolve(e.peerId)));
      const channel = window.dataChannels.at(-1);
      for (let i = 0; i < count; i++) await t.send(peer, make(i));
      const queuedAtClose = channel.bufferedAmount; // bytes still in Chromium's buffer
      await t.close(); // right after the last send
      return { pageId: t.peerId, queuedAtClose };
    }, { signal: rig.bridge.ws, count, source: message.toString() });
    // close() resolved: FIN_ACK came back, so everything was delivered; only printing is left.
    await waitFor(() => node.lines.length >= count, "every message at the native side", 15_000)
      .catch((e) => { throw new Error(`${e.message}: got ${node.lines.length}; stderr:\n${node.stderr.slice(-2000)}`); });
    await new Promise((r) => setTimeout(r, 200)); // and nothing more
    assert.equal(node.lines.length, count);
    const wrong = node.lines.findIndex((line, i) => line !== `${pageId} ${message(i)}`);
    assert.equal(wrong, -1, `line ${wrong} is ${JSON.stringify(node.lines[wrong]?.slice(0, 80))}`);
    assert.ok(queuedAtClose > 0, "close() ran while messages were still buffered");
  } finally {
    node.endInput();
    node.kill();
    await page.close();
  }
});

test("bad options and unknown peers give MiaouError, not a crash", async () => {
  const page = await openChat(rig.browser, rig.bridge.http, "bad-input");
  try {
    const outcome = await page.evaluate(async (signal) => {
      const { Transport } = await import("miaou-transport");
      const attempt = async (f) => { try { await f(); return "resolved"; } catch (e) { return `${e.name}: ${e.message}`; } };
      return {
        noRoom: await attempt(() => Transport.connect({ signal })),
        weirdChannel: await attempt(() => Transport.connect({ signal, room: "r", channel: "weird" })),
        badIce: await attempt(() => Transport.connect({ signal, room: "r", iceServers: 5 })),
        badIceUrl: await attempt(() => Transport.connect({ signal, room: "r", iceServers: [{ urls: "nonsense" }] })),
        shortTimeout: await attempt(() => Transport.connect({ signal, room: "r", connectTimeoutMs: 0 })),
        httpUrl: await attempt(() => Transport.connect({ signal: "http://127.0.0.1:1/", room: "r" })),
        closedPort: await attempt(() => Transport.connect({ signal: "ws://127.0.0.1:9/ws", room: "r" })),
        longRoom: await attempt(() => Transport.connect({ signal, room: "x".repeat(65) })),
        unknownPeer: await attempt(() => window.miaouChat.transport.send("no-such-peer", "hi")),
        badPayload: await attempt(() => window.miaouChat.transport.send("no-such-peer", 42)),
        numericPeer: await attempt(() => window.miaouChat.transport.send(123, "x")),
        missingPeer: await attempt(() => window.miaouChat.transport.send(undefined, "x")),
        misspeltOption: await attempt(() => Transport.connect({ signal, room: "r", icetransportPolicy: "relay" })),
        bareConstructor: await attempt(() => new Transport()),
        handlerNotAFunction: await attempt(() => window.miaouChat.transport.onPeer("notfn")),
        zeroMessageSize: await attempt(() => Transport.connect({ signal, room: "r", maxMessageSize: 0 })),
        sendAfterClose: await attempt(async () => {
          const t = await Transport.connect({ signal, room: "closed-early" });
          await t.close();
          await t.send("someone", "x");
        }),
        stillWorks: await attempt(() => window.miaouChat.transport.broadcast("after bad input")),
      };
    }, rig.bridge.ws);
    assert.match(outcome.noRoom, /^MiaouError: .*room/);
    assert.match(outcome.weirdChannel, /^MiaouError: .*channel must be/);
    assert.match(outcome.badIce, /^MiaouError: .*iceServers must be an array/);
    assert.match(outcome.badIceUrl, /^MiaouError: .*must start with stun:, stuns:, turn: or turns:/);
    assert.match(outcome.shortTimeout, /^MiaouError: timed out after 0 ms/);
    assert.match(outcome.httpUrl, /^MiaouError: .*ws:\/\//);
    assert.match(outcome.closedPort, /^MiaouError: signaling connection to ws:\/\/127\.0\.0\.1:9\/ws failed/);
    assert.match(outcome.longRoom, /^MiaouError: .*64/);
    assert.match(outcome.unknownPeer, /^MiaouError: peer no-such-peer is not connected/);
    assert.match(outcome.badPayload, /^MiaouError: invalid input: .*string, Uint8Array or ArrayBuffer/);
    assert.match(outcome.numericPeer, /^MiaouError: invalid input: peerId must be a string/);
    assert.match(outcome.missingPeer, /^MiaouError: invalid input: peerId must be a string/);
    assert.match(outcome.misspeltOption, /^MiaouError: .*unknown option "icetransportPolicy"/);
    assert.match(outcome.bareConstructor, /^MiaouError: .*Transport\.connect/);
    assert.match(outcome.handlerNotAFunction, /^MiaouError: invalid input: onPeer takes a function/);
    assert.match(outcome.zeroMessageSize, /^MiaouError: .*max_message_size must be at least 1/);
    assert.equal(outcome.sendAfterClose, "MiaouError: transport closed");
    assert.equal(outcome.stillWorks, "resolved", "the transport keeps working after bad input");
    // The timed-out connect left no handler behind to fire into a dropped closure (the
    // console errors of the deliberately failed WebSockets are expected).
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(page.uncaught.map(String), []);
  } finally {
    await page.close();
  }
});

test("connectTimeoutMs beyond 2^31 - 1 ms is waited, not treated as 0 by setTimeout", async () => {
  // A server that accepts TCP and never answers the WebSocket handshake: only the timeout can
  // end connect(). Browsers fire a setTimeout above 2^31 - 1 ms at once, so such a timeout
  // must be waited in steps (src/wasm/mod.rs), or connect() would fail immediately.
  const sockets = new Set();
  const silent = createServer((socket) => { sockets.add(socket); socket.on("error", () => {}); });
  silent.listen(0, "127.0.0.1");
  await once(silent, "listening");
  const signal = `ws://127.0.0.1:${silent.address().port}/ws`;
  const page = await openChat(rig.browser, rig.bridge.http, "long-timeout-ui");
  try {
    const outcome = await page.evaluate(async (signal) => {
      const { Transport } = await import("miaou-transport");
      const settle = (ms, timeout) => Promise.race([
        Transport.connect({ signal, room: "r", connectTimeoutMs: timeout })
          .then(() => "resolved", (e) => `${e.name}: ${e.message}`),
        new Promise((resolve) => setTimeout(() => resolve("pending"), ms)),
      ]);
      const started = performance.now();
      const short = await settle(5000, 300);
      const shortMs = performance.now() - started;
      const timeouts = [2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32 + 10, 30 * 24 * 3600 * 1000];
      const long = await Promise.all(timeouts.map((ms) => settle(1500, ms)));
      return { short, shortMs, long: Object.fromEntries(timeouts.map((ms, i) => [ms, long[i]])) };
    }, signal);
    // The silent server makes connect() time out, after its timeout and not before.
    assert.match(outcome.short, /^MiaouError: timed out after 300 ms/);
    assert.ok(outcome.shortMs >= 290, `timed out after ${outcome.shortMs} ms`);
    assert.deepEqual(outcome.long, {
      2147483647: "pending", 2147483648: "pending", 4294967295: "pending", 4294967306: "pending", 2592000000: "pending",
    });
  } finally {
    await page.close();
    for (const socket of sockets) socket.destroy();
    silent.close();
  }
});
