// Prints the time to an open data channel (median of N runs, default 5), through a real
// bridge: native <-> native (two native-demo processes) and browser <-> native (headless
// Chromium with default mDNS candidate hiding). Run inside the namespace:
//   tests/scripts/in-netns.sh node tests/e2e/open_time.bench.mjs [runs]
// Figures only: nothing here asserts a speed.
import { startBridge, startJoin, launchChromium, openChat, pagePeers, waitFor } from "./harness.mjs";

const runs = Number(process.argv[2] || 5);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const openMs = (stderr) => {
  const match = stderr.replace(/\x1b\[[0-9;]*m/g, "").match(/channel open .*elapsed_ms=(\d+)/);
  return match ? Number(match[1]) : NaN;
};

const bridge = await startBridge();
const browser = await launchChromium();
const nativeNative = [];
const browserNative = [];
try {
  for (let i = 0; i < runs; i++) {
    // The second process offers; its log gives process start -> channel open, which includes
    // the WebSocket connect and join.
    const first = startJoin(bridge.ws, `open-nn-${i}`, ["--wait-peers", "1"]);
    await new Promise((r) => setTimeout(r, 300));
    const second = startJoin(bridge.ws, `open-nn-${i}`, ["--wait-peers", "1"]);
    await waitFor(() => /channel open/.test(second.stderr), "native channel");
    nativeNative.push(openMs(second.stderr));
    first.endInput(); second.endInput();
    await Promise.all([first.exited, second.exited]);
  }
  for (let i = 0; i < runs; i++) {
    const node = startJoin(bridge.ws, `open-bn-${i}`, ["--wait-peers", "1"]);
    await new Promise((r) => setTimeout(r, 300));
    const page = await openChat(browser, bridge.http, `open-bn-dummy-${i}`);
    // The page offers: measure from Transport.connect() to the "connected" event.
    const ms = await page.evaluate(async ([signal, room]) => {
      const { Transport } = await import("miaou-transport");
      const start = performance.now();
      const t = await Transport.connect({ signal, room });
      await new Promise((resolve) => t.onPeer((e) => e.type === "connected" && resolve()));
      const elapsed = performance.now() - start;
      await t.close();
      return elapsed;
    }, [bridge.ws, `open-bn-${i}`]);
    browserNative.push(ms);
    await page.close();
    node.endInput();
    await node.exited;
  }
} finally {
  await browser.close();
  bridge.stop();
}
const fmt = (xs) => `median ${median(xs).toFixed(1)} ms (runs: ${xs.map((x) => x.toFixed(0)).join(", ")})`;
console.log(`time to open channel, native <-> native (offerer, incl. WebSocket join): ${fmt(nativeNative)}`);
console.log(`time to open channel, browser -> native (Transport.connect to "connected"): ${fmt(browserNative)}`);
