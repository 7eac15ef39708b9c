// File transfer (docs/file-transfer.md) between the demo page in headless Chromium and the
// native CLI (`native-demo send` / `native-demo receive`), through the real bridge; plus the
// page's own UI (file input, drop) between two tabs. MIAOU_E2E_FILE_MIB (default 64) sets the
// size of the big native <-> browser files; MIAOU_E2E_LOSS_MIB (default 16) the size of the same
// transfers under 1 % UDP loss each way (tests/scripts/netem.sh, docs/testing-under-loss.md),
// which stay on v1 frames over SCTP: tabs do not announce the ARQ layer yet (docs/frame.md).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { once } from "node:events";
import { tmpdir } from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { startBridge, launchChromium, openChat, pagePeers, waitFor, nativeDemo, repoRoot } from "./harness.mjs";
import { setLoss } from "../bench/netem.mjs";

const MIB = Number(process.env.MIAOU_E2E_FILE_MIB || 64);
const LOSS_MIB = Number(process.env.MIAOU_E2E_LOSS_MIB || 16);
// Generous for an unoptimised build: a few MiB/s at worst.
const transferMs = (mib) => 60_000 + mib * 3_000;

let bridge;
let browser;
let work;

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), "miaou-files-"));
  bridge = await startBridge();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  bridge?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A `native-demo` command; stdout lines collected, stderr kept for failure reports. */
function native(args) {
  const proc = spawn(nativeDemo, args, {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: "info,webrtc=error,webrtc_ice=error,webrtc_sctp=error,webrtc_dtls=error,webrtc_mdns=error" },
  });
  const lines = [];
  let stderr = "";
  createInterface({ input: proc.stdout }).on("line", (line) => lines.push(line));
  proc.stderr.on("data", (chunk) => { stderr += chunk; });
  const exited = once(proc, "exit").then(([code, signal]) => ({ code, signal }));
  return {
    lines, exited,
    get stderr() { return stderr; },
    kill() { if (proc.exitCode === null) proc.kill("SIGKILL"); },
  };
}

/** Writes `bytes` random bytes to `file`; resolves with their SHA-256 (hex). */
async function randomFile(file, bytes) {
  const out = createWriteStream(file);
  const hash = createHash("sha256");
  for (let left = bytes; left > 0;) {
    const chunk = randomBytes(Math.min(left, 1 << 20));
    hash.update(chunk);
    left -= chunk.length;
    if (!out.write(chunk)) await once(out, "drain");
  }
  out.end();
  await once(out, "finish");
  return hash.digest("hex");
}

async function sha256OfFile(file) {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk);
  return hash.digest("hex");
}

/** The `peak RSS … KiB` a native command logs on exit, in MiB. */
function peakRss(stderr) {
  const match = stderr.match(/peak RSS (\d+) KiB/);
  return match ? `${(Number(match[1]) / 1024).toFixed(1)} MiB` : "?";
}

/** `native-demo send` of a random `mib` MiB file to the page, with `lossPermille` / 1000 of
 *  the namespace's UDP datagrams dropped once the channel is open. */
async function nativeToBrowser(room, mib, lossPermille) {
  const SIZE = mib * 1024 * 1024;
  const MIB = mib;
  const TRANSFER_MS = transferMs(mib);
  const file = path.join(work, "to-browser.bin");
  const expected = await randomFile(file, SIZE);
  const page = await openChat(browser, bridge.http, room);
  const sender = native(["send", "--signal", bridge.ws, "--room", room, "--wait-peers", "1", file]);
  try {
    await waitFor(async () => (await pagePeers(page)) === 1, "the page's channel to the sender");
    const [senderId] = await page.evaluate(() => window.miaouChat.transport.peers());
    assert.equal(await page.evaluate((id) => window.miaouChat.transport.channelInfo(id).arq, senderId), false, "tabs keep v1 frames (docs/frame.md: webrtc-sctp bug)");
    if (lossPermille) setLoss(lossPermille);
    const started = Date.now();
    await waitFor(() => page.evaluate(() => window.miaouChat.files.length === 1), "the page to verify the file", TRANSFER_MS, 100)
      .catch((e) => { throw new Error(`${e.message}\nsend stderr:\n${sender.stderr}`); });
    const seconds = (Date.now() - started) / 1000;
    const received = await page.evaluate(() => window.miaouChat.files[0]);
    assert.equal(received.sha256, expected);
    assert.equal(received.name, "to-browser.bin");
    assert.equal(received.size, SIZE);
    assert.equal(received.peerId, senderId);
    // The Blob behind the download link holds the bytes.
    assert.equal(await page.evaluate(async (url) => (await (await fetch(url)).blob()).size, received.blobUrl), SIZE);
    assert.deepEqual(await page.evaluate(() => window.miaouChat.received), [], "file messages are not chat");
    assert.equal(await page.locator("#log li.file.done a[download='to-browser.bin']").count(), 1, "a download link");
    const { code } = await sender.exited;
    assert.equal(code, 0, `send exit code; stderr:\n${sender.stderr}`);
    // The page acknowledged the file (file-received), so the sender knows it was verified.
    const pageId = await page.evaluate(() => window.miaouChat.transport.peerId);
    assert.match(sender.stderr, new RegExp(`verified by ${pageId}`), sender.stderr);
    const sentIn = sender.stderr.match(/sent in ([\d.]+) s/)?.[1];
    console.log(`native -> browser, ${lossPermille / 10} % loss: ${MIB} MiB in ${seconds.toFixed(1)} s (${(MIB / seconds).toFixed(1)} MiB/s; sender's own count ${sentIn} s); send peak RSS ${peakRss(sender.stderr)}`);
    assert.deepEqual(page.miaouErrors, []);
  } finally {
    if (lossPermille) setLoss(0);
    sender.kill();
    await page.close();
  }
}

test(`native send -> browser: ${MIB} MiB random file, same SHA-256`, () => nativeToBrowser("e2e-files-n2b", MIB, 0));
test(`native send -> browser under 1 % UDP loss: ${LOSS_MIB} MiB random file, same SHA-256`, () => nativeToBrowser("e2e-files-n2b-loss", LOSS_MIB, 10));

/** The page sends a random `mib` MiB file to `native-demo receive`, with `lossPermille` / 1000
 *  of the namespace's UDP datagrams dropped once the channel is open. */
async function browserToNative(room, mib, lossPermille) {
  const SIZE = mib * 1024 * 1024;
  const MIB = mib;
  const TRANSFER_MS = transferMs(mib);
  const out = path.join(work, `inbox-${room}`);
  const page = await openChat(browser, bridge.http, room);
  const receiver = native(["receive", "--signal", bridge.ws, "--room", room, "--out", out, "--count", "1"]);
  try {
    await waitFor(async () => (await pagePeers(page)) === 1, "the page's channel to the receiver");
    // Read now: receive leaves as soon as it has the file.
    const [receiverId] = await page.evaluate(() => window.miaouChat.transport.peers());
    assert.equal(await page.evaluate((id) => window.miaouChat.transport.channelInfo(id).arq, receiverId), false, "tabs keep v1 frames (docs/frame.md: webrtc-sctp bug)");
    if (lossPermille) setLoss(lossPermille);
    const sent = await page.evaluate(async (size) => {
      const parts = [];
      for (let left = size; left > 0;) {
        const part = new Uint8Array(Math.min(left, 65536)); // getRandomValues' limit per call
        crypto.getRandomValues(part);
        parts.push(part);
        left -= part.length;
      }
      const file = new File(parts, "from-browser.bin");
      const expected = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", await file.arrayBuffer())),
        (b) => b.toString(16).padStart(2, "0")).join("");
      const started = performance.now();
      const result = await window.miaouChat.sendFile(file);
      return { expected, result, ms: performance.now() - started };
    }, SIZE);
    assert.equal(sent.result.sha256, sent.expected, "the page announced the SHA-256 of its bytes");
    assert.equal(sent.result.size, SIZE);
    // sendFile resolved only once receive acknowledged the file; the card says so.
    assert.deepEqual(sent.result.verifiedBy, [receiverId]);
    assert.equal(await page.locator("#log li.file.mine.done .verified").innerText(), `verified by ${receiverId.slice(0, 8)}`);
    await waitFor(() => receiver.lines.length === 1, "receive to verify the file", TRANSFER_MS, 100)
      .catch((e) => { throw new Error(`${e.message}\nreceive stderr:\n${receiver.stderr}`); });
    const seconds = sent.ms / 1000;
    assert.equal(receiver.lines[0], `${sent.expected}  from-browser.bin`);
    const { code } = await receiver.exited;
    assert.equal(code, 0, `receive exit code; stderr:\n${receiver.stderr}`);
    const onDisk = path.join(out, "from-browser.bin");
    assert.equal(statSync(onDisk).size, SIZE);
    assert.equal(await sha256OfFile(onDisk), sent.expected, "the file on disk has the page's bytes");
    const receivedIn = receiver.stderr.match(/received in ([\d.]+) s/)?.[1];
    console.log(`browser -> native, ${lossPermille / 10} % loss: ${MIB} MiB in ${seconds.toFixed(1)} s (${(MIB / seconds).toFixed(1)} MiB/s, page's sendFile; receiver's own count ${receivedIn} s); receive peak RSS ${peakRss(receiver.stderr)}`);
    assert.deepEqual(page.miaouErrors, []);
  } finally {
    if (lossPermille) setLoss(0);
    receiver.kill();
    await page.close();
  }
}

test(`browser -> native receive: ${MIB} MiB random file, same SHA-256`, () => browserToNative("e2e-files-b2n", MIB, 0));
test(`browser -> native receive under 1 % UDP loss: ${LOSS_MIB} MiB random file, same SHA-256`, () => browserToNative("e2e-files-b2n-loss", LOSS_MIB, 10));

test("page UI: Send file button and drop between two tabs, chat unaffected", async () => {
  const a = await openChat(browser, bridge.http, "e2e-files-ui");
  const b = await openChat(browser, bridge.http, "e2e-files-ui");
  try {
    await waitFor(async () => (await pagePeers(a)) === 1 && (await pagePeers(b)) === 1, "tab channels");
    assert.equal(await a.isEnabled("#send-file"), true, "Send file is enabled once a peer is connected");
    const picked = randomBytes(200_000);
    const pickedSha = createHash("sha256").update(picked).digest("hex");

    // "Send file" opens the file chooser; pick a file in it.
    const [chooser] = await Promise.all([a.waitForEvent("filechooser"), a.click("#send-file")]);
    await chooser.setFiles({ name: "picked.bin", mimeType: "application/octet-stream", buffer: picked });
    await a.fill("#input", "chat still works");
    await a.press("#input", "Enter");

    // Drop a file on the page (a synthetic drop event carrying a File).
    await a.evaluate(() => {
      const transfer = new DataTransfer();
      transfer.items.add(new File(["dropped text\n"], "dropped.txt", { type: "text/plain" }));
      for (const type of ["dragenter", "dragover", "drop"]) {
        document.body.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
      }
    });

    await waitFor(() => b.evaluate(() => window.miaouChat.files.length === 2), "tab b to verify both files", 60_000);
    const files = await b.evaluate(() => window.miaouChat.files.map(({ name, size, sha256 }) => ({ name, size, sha256 })));
    assert.deepEqual(files, [
      { name: "picked.bin", size: picked.length, sha256: pickedSha },
      { name: "dropped.txt", size: 13, sha256: createHash("sha256").update("dropped text\n").digest("hex") },
    ]);
    assert.deepEqual(await b.evaluate(() => window.miaouChat.received.map(([, t]) => t)), ["chat still works"]);
    // Both sides show a finished card with the hash; the receiver offers download links.
    await waitFor(() => a.evaluate(() => document.querySelectorAll("#log li.file.mine.done").length === 2), "sender cards done");
    const bId = await b.evaluate(() => window.miaouChat.transport.peerId);
    assert.deepEqual(await a.locator("#log li.file.mine.done .verified").allInnerTexts(),
      [`verified by ${bId.slice(0, 8)}`, `verified by ${bId.slice(0, 8)}`], "each sent card is verified by tab b");
    assert.equal(await b.locator("#log li.file.done a[download='picked.bin']").count(), 1);
    assert.match(await b.locator("#log li.file.done").first().innerText(), new RegExp(`SHA-256 ${pickedSha}`));
    const dropped = await b.evaluate(async () => (await fetch(window.miaouChat.files[1].blobUrl)).text());
    assert.equal(dropped, "dropped text\n");
    await b.screenshot({ path: path.join(work, "files-ui.png") });
    if (process.env.MIAOU_SCREENSHOT_DIR) await b.screenshot({ path: path.join(process.env.MIAOU_SCREENSHOT_DIR, "files-ui.png") });
    assert.deepEqual(a.miaouErrors, []);
    assert.deepEqual(b.miaouErrors, []);
  } finally {
    await a.close();
    await b.close();
  }
});

test("page receiver: every protocol error is reported, none taken for chat", async () => {
  const a = await openChat(browser, bridge.http, "e2e-files-bad");
  const b = await openChat(browser, bridge.http, "e2e-files-bad");
  try {
    await waitFor(async () => (await pagePeers(a)) === 1 && (await pagePeers(b)) === 1, "tab channels");
    await a.evaluate(async () => {
      const t = window.miaouChat.transport;
      // Tab a plays a raw sender: it keeps what tab b answers.
      window.answers = [];
      t.onMessage((peerId, data) => window.answers.push(data));
      const send = (data) => t.broadcast(data);
      const start = (id, name, size) => send(JSON.stringify({ type: "file-start", id, name, size }));
      const end = (id, sha256) => send(JSON.stringify({ type: "file-end", id, sha256 }));
      const zeros = "0".repeat(64);
      await send(new Uint8Array(10)); // chunk without start
      await start(1, "..", 1); // bad name
      await send(new Uint8Array(1)); // dropped (skipping)
      await end(1, zeros); // dropped
      await start(2, "x.bin", 3);
      await send(new Uint8Array([1, 2, 3]));
      await end(2, zeros); // hash mismatch
      await start(3, "big.bin", 200000);
      await send(new Uint8Array(65537)); // oversized chunk
      await end(3, zeros); // dropped
      await start(4, "first.bin", 2);
      await start(5, "second.bin", 1); // start before end
      await send(new Uint8Array(1)); // dropped
      await end(5, zeros); // dropped
      await start(6, "over.bin", 1);
      await send(new Uint8Array(2)); // size mismatch: too much
      await end(6, zeros); // dropped
      await start(7, "under.bin", 3);
      await send(new Uint8Array(1));
      await end(7, zeros); // size mismatch: too little
      await end(8, zeros); // end without start
      await start(9, "id.bin", 1);
      await send(new Uint8Array(1));
      await end(10, zeros); // id mismatch
      await send(JSON.stringify({ type: "file-end", id: 1 })); // malformed
      await start(11, "../../etc/ok.txt", 2); // path stripped
      await send(new Uint8Array([104, 105]));
      await end(11, "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"); // sha256("hi")
      await start(13, "huge.bin", 3 * 2 ** 30); // above the page's 2 GiB
      await send(new Uint8Array(5)); // dropped
      await end(13, zeros); // dropped
      await send("just chatting");
      await send(JSON.stringify({ type: "chat", text: "JSON that is not a file message" }));
    });
    const expected = [
      /chunk without start: 10-byte binary message/,
      /bad name "\.\.": base name is \. or \.\./,
      /hash mismatch in transfer 2 \(x\.bin\)/,
      /oversized chunk in transfer 3: 65537 bytes, at most 65536/,
      /start before end: file-start 5 while transfer 4 is still open/,
      /size mismatch in transfer 6 \(over\.bin\): declared 1 bytes, received more \(2\)/,
      /size mismatch in transfer 7 \(under\.bin\): declared 3 bytes, file-end after 1/,
      /end without start: file-end 8/,
      /id mismatch: file-end 10 while transfer 9 is open/,
      /malformed file message: file-end: "sha256" must be 64 hex digits/,
      /too large for the page: transfer 13 \(huge\.bin\) is 3\.00 GiB; this page receives at most 2\.00 GiB at once/,
    ];
    await waitFor(() => b.evaluate((n) => window.miaouChat.files.length === 1 && window.miaouChat.received.length === 2
      && document.querySelectorAll("#log li.notice.error").length === n, expected.length), "tab b to settle");
    assert.deepEqual(await b.evaluate(() => window.miaouChat.files.map((f) => f.name)), ["ok.txt"]);
    assert.deepEqual(await b.evaluate(() => window.miaouChat.received.map(([, t]) => t)),
      ["just chatting", JSON.stringify({ type: "chat", text: "JSON that is not a file message" })]);
    const errors = await b.locator("#log li.notice.error").allInnerTexts();
    for (const pattern of expected) assert.ok(errors.some((e) => pattern.test(e)), `no error matching ${pattern} in:\n${errors.join("\n")}`);
    // Every transfer was answered: file-error per id it ended (none for faults of no transfer),
    // file-received for the one good file.
    // (file-accepted answers each transfer that opened; the verdicts follow.)
    const verdicts = () => window.answers.filter((t) => !t.includes('"file-accepted"')).length;
    await waitFor(() => a.evaluate(verdicts).then((n) => n === 14), "tab b's 14 acknowledgements");
    const all = (await a.evaluate(() => window.answers)).map((t) => JSON.parse(t));
    // Accepted: every transfer that opened (not 1: bad name, 5: start before end, 13: too large).
    assert.deepEqual(all.filter((m) => m.type === "file-accepted").map((m) => m.id), [2, 3, 4, 6, 7, 9, 11]);
    const answers = all.filter((m) => m.type !== "file-accepted");
    assert.deepEqual(answers.filter((m) => m.type === "file-error" && m.id === undefined).map((m) => m.reason),
      ["chunk without start: 10-byte binary message with no file-start", 'malformed file message: file-end: "sha256" must be 64 hex digits']);
    assert.deepEqual(answers.filter((m) => m.type === "file-error" && m.id !== undefined).map((m) => m.id).sort((x, y) => x - y),
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13]);
    assert.match(answers.find((m) => m.id === 13).reason, /^too large for the page/);
    assert.deepEqual(answers.filter((m) => m.type === "file-received"),
      [{ type: "file-received", id: 11, sha256: "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4" }]);
    assert.ok((await b.evaluate(() => window.miaouChat.files.length)) === 1 && answers.length === 14);

    // A sender that leaves mid-file.
    await a.evaluate(async () => {
      const t = window.miaouChat.transport;
      await t.broadcast(JSON.stringify({ type: "file-start", id: 12, name: "cut.bin", size: 100 }));
      await t.broadcast(new Uint8Array(40));
      await t.close();
    });
    await waitFor(() => b.evaluate(() => [...document.querySelectorAll("#log li.notice.error")].some((e) =>
      e.textContent.includes("peer disconnected mid-file: transfer 12 (cut.bin) stopped at 40 of 100 bytes"))), "the mid-file error", 15_000);
    assert.equal(await b.locator("#log li.file.failed").count(), 7, "a failed card per transfer that had opened");

    // The test hooks stay bounded: the last 2000 chat lines.
    const c = await openChat(browser, bridge.http, "e2e-files-bad");
    try {
      await waitFor(async () => (await pagePeers(c)) === 1, "tab c's channel to b");
      await c.evaluate(async () => { for (let i = 0; i < 2050; i++) await window.miaouChat.transport.broadcast(`line ${i}`); });
      await waitFor(() => b.evaluate(() => window.miaouChat.received.at(-1)?.[1] === "line 2049"), "the 2050 lines at b");
      const kept = await b.evaluate(() => window.miaouChat.received.map(([, t]) => t));
      assert.equal(kept.length, 2000);
      assert.equal(kept[0], "line 50");
    } finally {
      await c.close();
    }
  } finally {
    await a.close();
    await b.close();
  }
});

test("page sender: a receiver's file-error fails sendFile and shows on the card, naming the peer", async () => {
  // Every name receive could use for taken.bin exists already: it answers "name taken".
  const out = path.join(work, "full-inbox");
  mkdirSync(out);
  writeFileSync(path.join(out, "taken.bin"), "mine");
  for (let n = 1; n < 1000; n++) writeFileSync(path.join(out, `taken (${n}).bin`), "mine");
  const page = await openChat(browser, bridge.http, "e2e-files-nack");
  const receiver = native(["receive", "--signal", bridge.ws, "--room", "e2e-files-nack", "--out", out, "--count", "1"]);
  try {
    await waitFor(async () => (await pagePeers(page)) === 1, "the page's channel to the receiver");
    const [receiverId] = await page.evaluate(() => window.miaouChat.transport.peers());
    const outcome = await page.evaluate(() => window.miaouChat.sendFile(new File(["new"], "taken.bin"))
      .then((r) => ({ resolved: r }), (e) => ({ rejected: e.message })));
    const short = receiverId.slice(0, 8);
    assert.equal(outcome.rejected, `${short} rejected taken.bin: name taken in transfer 1: "taken.bin" and 999 numbered variants exist`);
    assert.match(await page.locator("#log li.file.mine.failed .file-detail").innerText(), new RegExp(`^${short} rejected taken\\.bin: name taken`));
    const { code } = await receiver.exited;
    assert.equal(code, 1, `receive fails on its error; stderr:\n${receiver.stderr}`);
    assert.equal(readdirSync(out).length, 1000, "nothing written, nothing replaced");
    assert.deepEqual(page.miaouErrors, []);
  } finally {
    receiver.kill();
    await page.close();
  }
});
