// Prints the time to an open data channel (median of N runs, default 5), through a real
// bridge: native <-> native (two native-demo processes) and browser <-> native (headless
// Chromium with default mDNS candidate hiding). Run inside the namespace:
//   tests/scripts/in-netns.sh node tests/e2e/open_time.bench.mjs [runs] [--turn]
// --turn: relay-only through a coturn started here (use-auth-secret), credentials from the
// bridge; also prints the selected candidate types. Figures only: nothing asserts a speed.
import { startBridge, startJoin, startTurn, launchChromium, openChat, pagePeers, waitFor } from "./harness.mjs";

const runs = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) || 5);
const viaTurn = process.argv.includes("--turn");
const turn = viaTurn ? await startTurn("secret:bench-secret") : null;
const nativeIce = viaTurn ? ["--turn-from-bridge", "--relay-only"] : [];
const pageIce = viaTurn ? { turnFromBridge: true, iceTransportPolicy: "relay" } : {};
const pairs = new Map(); // "side: local/remote" -> count
const seen = (key) => pairs.set(key, (pairs.get(key) || 0) + 1);
const nativePair = (stderr) => stderr.replace(/\x1b\[[0-9;]*m/g, "").match(/channel open .*pair=local (\w+) .* <-> remote (\w+) /);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const openMs = (stderr) => {
  const match = stderr.replace(/\x1b\[[0-9;]*m/g, "").match(/channel open .*elapsed_ms=(\d+)/);
  return match ? Number(match[1]) : NaN;
};

const bridge = await startBridge(viaTurn ? ["--turn-secret", "bench-secret", "--turn-url", turn.url] : []);
const browser = await launchChromium();
const nativeNative = [];
const browserNative = [];
try {
  for (let i = 0; i < runs; i++) {
    // The second process offers; its log gives process start -> channel open, which includes
    // the WebSocket connect and join.
    const first = startJoin(bridge.ws, `open-nn-${i}`, ["--wait-peers", "1", ...nativeIce]);
    await new Promise((r) => setTimeout(r, 300));
    const second = startJoin(bridge.ws, `open-nn-${i}`, ["--wait-peers", "1", ...nativeIce]);
    await waitFor(() => /channel open/.test(second.stderr), "native channel");
    nativeNative.push(openMs(second.stderr));
    const pair = nativePair(second.stderr);
    if (pair) seen(`native (native <-> native): ${pair[1]}/${pair[2]}`);
    first.endInput(); second.endInput();
    await Promise.all([first.exited, second.exited]);
  }
  for (let i = 0; i < runs; i++) {
    const node = startJoin(bridge.ws, `open-bn-${i}`, ["--wait-peers", "1", ...nativeIce]);
    await new Promise((r) => setTimeout(r, 300));
    const page = await openChat(browser, bridge.http, `open-bn-dummy-${i}`);
    // The page offers: measure from Transport.connect() to the "connected" event.
    const { ms, pair } = await page.evaluate(async ([signal, room, ice]) => {
      const { Transport } = await import("miaou-transport");
      const start = performance.now();
      const t = await Transport.connect({ signal, room, ...ice });
      const peer = await new Promise((resolve) => t.onPeer((e) => e.type === "connected" && resolve(e.peerId)));
      const elapsed = performance.now() - start;
      const pair = await t.selectedCandidatePair(peer);
      await t.close();
      return { ms: elapsed, pair };
    }, [bridge.ws, `open-bn-${i}`, pageIce]);
    browserNative.push(ms);
    seen(`browser (browser <-> native): ${pair.local.candidateType}/${pair.remote.candidateType}`);
    await waitFor(() => /channel open/.test(node.stderr), "native side's open log");
    const nodePair = nativePair(node.stderr);
    if (nodePair) seen(`native (browser <-> native): ${nodePair[1]}/${nodePair[2]}`);
    await page.close();
    node.endInput();
    await node.exited;
  }
} finally {
  await browser.close();
  bridge.stop();
  turn?.stop();
}
const fmt = (xs) => `median ${median(xs).toFixed(1)} ms (runs: ${xs.map((x) => x.toFixed(0)).join(", ")})`;
const how = viaTurn ? ", relay-only via TURN (credentials from the bridge)" : "";
console.log(`time to open channel${how}, native <-> native (offerer, incl. WebSocket join): ${fmt(nativeNative)}`);
console.log(`time to open channel${how}, browser -> native (Transport.connect to "connected"): ${fmt(browserNative)}`);
console.log(`selected candidate types (local/remote), runs: ${[...pairs].map(([k, n]) => `${k} ×${n}`).join("; ")}`);
