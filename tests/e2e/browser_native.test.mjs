// Browser <-> native and browser <-> browser through the real bridge, in headless Chromium.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { startBridge, startJoin, launchChromium, openChat, pagePeers, waitFor, repoRoot } from "./harness.mjs";

const COUNT = 1000;
let bridge;
let browser;

before(async () => {
  bridge = await startBridge();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  bridge?.stop();
});

test("browser tab and native node exchange 1000 messages each way, in order", async () => {
  const page = await openChat(browser, bridge.http, "e2e-native");
  const node = startJoin(bridge.ws, "e2e-native", ["--wait-peers", "1"]);
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

test("two browser tabs talk through the bridge", async () => {
  const a = await openChat(browser, bridge.http, "e2e-tabs");
  const b = await openChat(browser, bridge.http, "e2e-tabs");
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
  const page = await openChat(browser, bridge.http, "e2e-ui");
  const node = startJoin(bridge.ws, "e2e-ui", ["--wait-peers", "1"]);
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
    // docs/demo.png is refreshed on demand (MIAOU_SCREENSHOT=docs/demo.png npm test), so a
    // test run leaves the work tree clean.
    const shot = process.env.MIAOU_SCREENSHOT || "target/e2e/demo.png";
    fs.mkdirSync(path.dirname(path.resolve(repoRoot, shot)), { recursive: true });
    await page.screenshot({ path: path.resolve(repoRoot, shot) });
    node.endInput();
    assert.equal((await node.exited).code, 0, node.stderr);
  } finally {
    node.kill();
    await page.close();
  }
});
