// Browser <-> native and browser <-> browser through the real bridge, in headless Chromium.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { bridgeAndChromiumPerFile, startJoin, startEcho, openChat, pagePeers, waitFor, repoRoot } from "./harness.mjs";

const COUNT = 1000;
const rig = bridgeAndChromiumPerFile();

test("browser tab and native node exchange 1000 messages each way, in order", async () => {
  const page = await openChat(rig.browser, rig.bridge.http, "e2e-native");
  const node = startJoin(rig.bridge.ws, "e2e-native", ["--wait-peers", "1"]);
  try {
    await waitFor(async () => (await pagePeers(page)) === 1, "the page's channel to the native node");
    const fromNative = Array.from({ length: COUNT }, (_, i) => `native-${i} ${"x".repeat(i % 50)}`);
    const fromPage = Array.from({ length: COUNT }, (_, i) => `page-${i} ✓ ${"y".repeat(i % 70)}`);
    await node.writeLines(fromNative);
    await page.evaluate(async (lines) => {
      for (const line of lines) await window.miaouChat.transport.broadcast(line);
    }, fromPage);

    await waitFor(() => node.lines.length >= COUNT, "native to receive everything", 60_000);
    const pagePeerId = await page.evaluate(() => window.miaouChat.transport.peerId);
    assert.deepEqual(node.lines, fromPage.map((l) => `${pagePeerId} ${l}`));

    await waitFor(() => page.evaluate((n) => window.miaouChat.received.length >= n, COUNT), "the page to receive everything", 60_000);
    const received = await page.evaluate(() => window.miaouChat.received);
    assert.equal(received.length, COUNT);
    assert.deepEqual(received.map(([, text]) => text), fromNative);
    assert.equal(new Set(received.map(([peer]) => peer)).size, 1);

    // Chromium kept its default mDNS hiding: its host candidates were `<uuid>.local` names,
    // and the native side still connected.
    const candidates = await page.evaluate(() => window.localCandidates);
    assert.ok(candidates.some((c) => / [0-9a-f-]{36}\.local /.test(c)), `no .local candidate in ${candidates}`);
    assert.ok(!candidates.some((c) => c.includes("198.18.0.1")), `raw address leaked: ${candidates}`);
    // Chromium learned the native side's real receive limit from our SDP (webrtc-rs reads at
    // most 65 535 bytes per message), so it can never send a message that would kill the channel.
    const limits = await page.evaluate(() => window.peerConnections.map((pc) => pc.sctp?.maxMessageSize));
    assert.deepEqual(limits, [65535]);

    node.endInput();
    const { code } = await node.exited;
    assert.equal(code, 0, `native-demo join exit code; stderr:\n${node.stderr}`);
    assert.deepEqual(page.miaouErrors, []);
  } finally {
    node.kill();
    await page.close();
  }
});

test("native side answering: the tab learns 65535 from the answer and caps 256 KiB frames at it", async () => {
  // The newcomer offers (src/signaling/negotiation.rs): the echo joins first, so the tab offers
  // and the native side answers. Its answer must carry a=max-message-size:65535 too (src/sdp.rs),
  // or Chromium assumes 65 536 and its first full-size frame silently closes the channel.
  const echo = await startEcho(rig.bridge.ws, "answer-limit");
  const page = await openChat(rig.browser, rig.bridge.http, "answer-limit-ui");
  try {
    const outcome = await page.evaluate(async (signal) => {
      const { Transport } = await import("miaou-transport");
      const t = await Transport.connect({ signal, room: "answer-limit", maxFrameSize: 262144 });
      const peer = await new Promise((resolve) => t.onPeer((e) => e.type === "connected" && resolve(e.peerId)));
      const inbox = [];
      let wake = () => {};
      t.onMessage((from, data) => { inbox.push(data); wake(); });
      // A lost echo (the channel died) shows as "timeout" instead of hanging the test.
      const next = () => Promise.race([
        inbox.length ? Promise.resolve(inbox.shift()) : new Promise((resolve) => { wake = () => resolve(inbox.shift()); }),
        new Promise((resolve) => setTimeout(() => resolve("timeout"), 10_000)),
      ]);
      const pc = window.peerConnections.at(-1);
      const random = (n) => {
        const bytes = new Uint8Array(n);
        for (let i = 0; i < n; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
        return bytes;
      };
      const sameBytes = (a, b) => b instanceof Uint8Array && a.length === b.length && a.every((x, i) => x === b[i]);
      const trips = [];
      // 1 MiB each way, twice, then every size around the limit (whole messages and fragmented
      // ones of the largest frames), then a text: the channel must outlive all of them.
      const sizes = [1024 * 1024, 1024 * 1024, ...Array.from({ length: 48 }, (_, i) => 65535 - 46 + i)];
      for (const size of sizes) {
        const payload = random(size);
        await t.send(peer, payload);
        const echo = await next();
        trips.push(sameBytes(payload, echo) ? "ok" : `${size}: ${echo === "timeout" ? "no echo" : "wrong echo"}`);
        if (echo === "timeout") break;
      }
      await t.send(peer, "still open?").catch((e) => e.message);
      const after = await next();
      const result = {
        remoteType: pc.remoteDescription.type,
        remoteAdvertises: /^a=max-message-size:65535\r?$/m.test(pc.remoteDescription.sdp),
        maxMessageSize: pc.sctp.maxMessageSize,
        largestSend: window.largestSend,
        trips,
        after,
        channels: window.dataChannels.map((c) => c.readyState),
        peers: t.peers().length,
      };
      await t.close();
      return result;
    }, rig.bridge.ws);
    assert.equal(outcome.remoteType, "answer", "the native side answered");
    assert.ok(outcome.remoteAdvertises, "the native answer carries a=max-message-size:65535");
    assert.equal(outcome.maxMessageSize, 65535);
    // maxFrameSize 262144 asked for more; the frames were cut for the remote's 65535 (the
    // encoder reserves a worst-case header, so the largest lands a few bytes below it).
    assert.ok(outcome.largestSend <= 65535 && outcome.largestSend > 65535 - 42, `largest frame sent: ${outcome.largestSend} bytes`);
    assert.deepEqual(outcome.trips, Array(50).fill("ok"));
    assert.equal(outcome.after, "still open?");
    assert.deepEqual(outcome.channels, ["open"]);
    assert.equal(outcome.peers, 1);
    assert.deepEqual(page.miaouErrors, []);
  } finally {
    echo.stop();
    await page.close();
  }
});

test("two browser tabs talk through the bridge", async () => {
  const a = await openChat(rig.browser, rig.bridge.http, "e2e-tabs");
  const b = await openChat(rig.browser, rig.bridge.http, "e2e-tabs");
  try {
    await waitFor(async () => (await pagePeers(a)) === 1 && (await pagePeers(b)) === 1, "tab channels");
    const send = (page, prefix) => page.evaluate(async (p) => {
      for (let i = 0; i < 200; i++) await window.miaouChat.transport.broadcast(`${p}-${i}`);
    }, prefix);
    await Promise.all([send(a, "a"), send(b, "b")]);
    const texts = (page) => page.evaluate(() => window.miaouChat.received.map(([, t]) => t));
    await waitFor(async () => (await texts(a)).length === 200 && (await texts(b)).length === 200, "both tabs to receive");
    assert.deepEqual(await texts(b), Array.from({ length: 200 }, (_, i) => `a-${i}`));
    assert.deepEqual(await texts(a), Array.from({ length: 200 }, (_, i) => `b-${i}`));
  } finally {
    await a.close();
    await b.close();
  }
});

test("chat UI: Enter sends to the native node, replies show in the log (screenshot)", async () => {
  const page = await openChat(rig.browser, rig.bridge.http, "e2e-ui");
  const node = startJoin(rig.bridge.ws, "e2e-ui", ["--wait-peers", "1"]);
  try {
    await waitFor(async () => (await pagePeers(page)) === 1, "the page's channel");
    await page.fill("#input", "Hello from the browser tab");
    await page.press("#input", "Enter");
    await waitFor(() => node.lines.length === 1, "native to get the typed line");
    assert.match(node.lines[0], / Hello from the browser tab$/);
    await node.writeLines(["Hi! This is a native node on webrtc-rs.", "Same frames, same codec, both ways."]);
    await waitFor(() => page.evaluate(() => document.querySelectorAll("#log li:not(.notice):not(.mine)").length === 2), "replies in the log");
    const log = await page.locator("#log").innerText();
    assert.match(log, /Same frames, same codec, both ways\./);
    // The peer list names the native node (id in the title, first 8 characters shown) as
    // connected; it is the only entry.
    const nativeId = await page.evaluate(() => window.miaouChat.received[0][0]);
    const peerList = () => page.evaluate(() => [...document.querySelectorAll("#peers li")]
      .map((li) => ({ title: li.title, text: li.textContent, className: li.className })));
    assert.deepEqual(await peerList(), [{ title: nativeId, text: `${nativeId.slice(0, 8)} · connected`, className: "connected" }]);
    // docs/demo.png is refreshed on demand (MIAOU_SCREENSHOT=docs/demo.png npm test), so a
    // test run leaves the work tree clean.
    const shot = process.env.MIAOU_SCREENSHOT || "target/e2e/demo.png";
    fs.mkdirSync(path.dirname(path.resolve(repoRoot, shot)), { recursive: true });
    await page.screenshot({ path: path.resolve(repoRoot, shot) });
    node.endInput();
    assert.equal((await node.exited).code, 0, node.stderr);
    // Once it left, the list is back to its "no one else here" placeholder.
    await waitFor(async () => (await peerList()).every((p) => p.title !== nativeId), "the native node to leave the peer list", 15_000);
    assert.deepEqual(await peerList(), [{ title: "", text: "no one else here — open this page in another tab", className: "empty" }]);
    assert.equal(await page.isDisabled("#input"), true, "nobody to send to: the input is disabled");
  } finally {
    node.kill();
    await page.close();
  }
});

/** In `page`: connects a Transport to `room` and records every peer event as "type peerId". */
async function recordPeerEvents(page, room) {
  return page.evaluate(async ({ signal, room }) => {
    const { Transport } = await import("miaou-transport");
    const t = await Transport.connect({ signal, room });
    window.recorded = { transport: t, events: [] };
    t.onPeer((e) => window.recorded.events.push(`${e.type} ${e.peerId ?? ""}`));
    return t.peerId;
  }, { signal: rig.bridge.ws, room });
}

const eventsOf = (page) => page.evaluate(() => window.recorded.events);

test("onPeer: a native peer that joins, then closes, is joined -> connected -> disconnected -> left", async () => {
  const page = await openChat(rig.browser, rig.bridge.http, "peer-events-native-ui");
  const node = startJoin(rig.bridge.ws, "peer-events-native", ["--wait-peers", "1"]);
  try {
    await recordPeerEvents(page, "peer-events-native");
    await waitFor(async () => (await eventsOf(page)).some((e) => e.startsWith("connected ")), "the native peer to connect");
    await waitFor(() => /peers ready/.test(node.stderr), "the native side's channel");
    const nativeId = (await eventsOf(page))[0].split(" ")[1];
    assert.ok(nativeId, "the first event names the peer");
    node.endInput(); // join delivers, closes and leaves on stdin EOF
    assert.equal((await node.exited).code, 0, node.stderr);
    await waitFor(async () => (await eventsOf(page)).length >= 4, "the native peer to leave", 15_000);
    await new Promise((r) => setTimeout(r, 300)); // nothing more may follow
    assert.deepEqual(await eventsOf(page), ["joined", "connected", "disconnected", "left"].map((type) => `${type} ${nativeId}`));
    assert.deepEqual(await page.evaluate(() => window.recorded.transport.peers()), []);
  } finally {
    node.kill();
    await page.close();
  }
});

test("onPeer: a tab that joins, then closes, is joined -> connected -> disconnected -> left", async () => {
  const first = await openChat(rig.browser, rig.bridge.http, "peer-events-tabs-ui");
  const second = await openChat(rig.browser, rig.bridge.http, "peer-events-tabs-ui2");
  try {
    await recordPeerEvents(first, "peer-events-tabs");
    const secondId = await recordPeerEvents(second, "peer-events-tabs");
    await waitFor(async () => (await eventsOf(first)).length >= 2 && (await eventsOf(second)).length >= 2, "both tabs to connect");
    // "joined" means "is in the room": the newcomer gets it too, for the peer in its welcome.
    const firstId = await first.evaluate(() => window.recorded.transport.peerId);
    assert.deepEqual(await eventsOf(second), [`joined ${firstId}`, `connected ${firstId}`]);
    await second.evaluate(() => window.recorded.transport.close());
    await waitFor(async () => (await eventsOf(first)).length >= 4, "the closed tab to leave", 15_000);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await eventsOf(first), ["joined", "connected", "disconnected", "left"].map((type) => `${type} ${secondId}`));
  } finally {
    await first.close();
    await second.close();
  }
});
