// Chromium in its own network namespace reaches a native node in another one, across a veth
// pair (198.18.2.1 <-> 198.18.2.2, multicast and default routes; the test creates and deletes
// both namespaces, nothing leaves them). Chromium keeps its default mDNS hiding of host
// addresses: the native node must resolve the tab's `<uuid>.local` candidate with webrtc-rs's
// own resolver over the veth, while mdns-sd runs in the same process — the node found the
// bridge by mDNS (no --signal) and advertises itself — so both share UDP port 5353.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { run, launchChromium, openChat, pagePeers, waitFor } from "./harness.mjs";

const isRoot = process.getuid?.() === 0;
const base = `mb-${process.pid}`;
const tabNs = `${base}-tab`;
const nodeNs = `${base}-node`;
const COUNT = 200;
let browser;
let bridge;
let wrapperDir;

const ip = (...args) => execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });

before(() => {
  if (!isRoot) return;
  ip("netns", "add", tabNs);
  ip("netns", "add", nodeNs);
  ip("link", "add", "vt", "netns", tabNs, "type", "veth", "peer", "name", "vn", "netns", nodeNs);
  for (const [ns, dev, addr] of [[tabNs, "vt", "198.18.2.1/24"], [nodeNs, "vn", "198.18.2.2/24"]]) {
    ip("-n", ns, "link", "set", "lo", "up");
    ip("-n", ns, "addr", "add", addr, "dev", dev);
    ip("-n", ns, "link", "set", dev, "up");
    ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev);
    ip("-n", ns, "route", "add", "default", "dev", dev);
  }
});

after(async () => {
  await browser?.close();
  bridge?.kill();
  if (wrapperDir) fs.rmSync(wrapperDir, { recursive: true, force: true });
  if (!isRoot) return;
  for (const ns of [tabNs, nodeNs]) {
    try { ip("netns", "del", ns); } catch { /* already gone */ }
  }
});

test("Chromium in one namespace reaches a native node in another; the node resolves its .local candidate while mdns-sd runs", { skip: !isRoot && "needs root to create network namespaces" }, async () => {
  // The bridge, in the node's namespace on its LAN address.
  bridge = run(["serve", "--addr", "198.18.2.2:0"], { name: "serve", netns: nodeNs });
  await waitFor(() => bridge.lines.some((l) => l.startsWith("mdns: ")), "the bridge to advertise itself", 30_000)
    .catch((e) => { throw new Error(`${e.message}\n${bridge.stderr}`); });
  const ws = bridge.lines.find((l) => l.startsWith("signaling: ")).slice("signaling: ".length);
  const http = ws.replace(/^ws:/, "http:").replace(/\/ws$/, "/");

  // The native node is not told where the bridge is. webrtc-rs's mDNS client logs at info when
  // a `.local` query is answered.
  const node = run(["join", "--room", "e2e-lan", "--wait-peers", "1"], {
    name: "join", netns: nodeNs,
    env: { RUST_LOG: "info,webrtc=error,webrtc_ice=error,webrtc_sctp=error,webrtc_dtls=error,webrtc_srtp=error,webrtc_mdns=info" },
  });
  try {
    await waitFor(() => node.stderr.includes(`signaling through url=${ws}`), "the node to find the bridge by mDNS", 30_000)
      .catch((e) => { throw new Error(`${e.message}\n${node.stderr}`); });
    assert.match(node.stderr, /found a signaling bridge by mDNS/);
    // It advertises itself right after it chose the bridge (the two lines may come apart).
    await waitFor(() => /mDNS: advertising instance=node-/.test(node.stderr), "the node to advertise itself", 10_000)
      .catch((e) => { throw new Error(`${e.message}
${node.stderr}`); });

    // Chromium, in the other namespace.
    wrapperDir = fs.mkdtempSync(path.join(os.tmpdir(), "miaou-chromium-"));
    const wrapper = path.join(wrapperDir, "chromium");
    const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
    fs.writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${tabNs} ${chromiumPath} "$@"\n`, { mode: 0o755 });
    browser = await launchChromium(wrapper);
    const page = await openChat(browser, http, "e2e-lan");
    try {
      await waitFor(async () => (await pagePeers(page)) === 1, "the tab's channel to the native node", 30_000)
        .catch((e) => { throw new Error(`${e.message}\n${node.stderr}`); });
      const fromNative = Array.from({ length: COUNT }, (_, i) => `native-${i}`);
      const fromPage = Array.from({ length: COUNT }, (_, i) => `tab-${i} ✓`);
      await node.writeLines(fromNative);
      await page.evaluate(async (lines) => {
        for (const line of lines) await window.miaouChat.transport.broadcast(line);
      }, fromPage);
      await waitFor(() => node.lines.length >= COUNT, "the node to receive everything", 60_000);
      const tabId = await page.evaluate(() => window.miaouChat.transport.peerId);
      assert.deepEqual(node.lines, fromPage.map((l) => `${tabId} ${l}`));
      await waitFor(() => page.evaluate((n) => window.miaouChat.received.length >= n, COUNT), "the tab to receive everything", 60_000);
      assert.deepEqual((await page.evaluate(() => window.miaouChat.received)).map(([, t]) => t), fromNative);

      // Chromium offered only `.local` host candidates, never its address...
      const candidates = await page.evaluate(() => window.localCandidates);
      assert.ok(candidates.some((c) => / [0-9a-f-]{36}\.local /.test(c)), `no .local candidate in ${candidates}`);
      assert.ok(!candidates.some((c) => c.includes("198.18.2.1")), `raw address leaked: ${candidates}`);
      // ...and the native node resolved it with webrtc-rs's mDNS client across the veth.
      await waitFor(() => node.stderr.includes("Received query result"), "webrtc-rs to resolve the tab's .local name", 10_000)
        .catch((e) => { throw new Error(`${e.message}\n${node.stderr}`); });

      node.endInput();
      const { code } = await node.exited;
      assert.equal(code, 0, node.stderr);
      assert.match(node.stderr, /mDNS: goodbye sent/);
      assert.deepEqual(page.miaouErrors, []);
    } finally {
      await page.close();
    }
  } finally {
    node.kill();
  }
});
