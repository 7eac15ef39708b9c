// README's "Use it from a web page" example is www/hello.html, byte for byte, and that page
// really works: served by the bridge, in headless Chromium, it greets a `native-demo join` and
// shows its reply.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { bridgeAndChromiumPerFile, startJoin, openPage, waitFor, repoRoot } from "./harness.mjs";

const pageFile = path.join(repoRoot, "www/hello.html");

test("README's web page example is www/hello.html, byte for byte", () => {
  const readme = readFileSync(path.join(repoRoot, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Use it from a web page"));
  assert.ok(section.length < readme.length, "README has no \"Use it from a web page\" section");
  const block = section.match(/```html\n([\s\S]*?)```\n/);
  assert.ok(block, "no ```html block in that section");
  assert.equal(block[1], readFileSync(pageFile, "utf8"));
  assert.match(section.slice(0, block.index), /open <http:\/\/127\.0\.0\.1:8080\/hello\.html\?room=lobby>/);
});

const rig = bridgeAndChromiumPerFile();

test("hello.html greets a native peer and prints its reply", async () => {
  const room = "hello-page";
  const node = startJoin(rig.bridge.ws, room, ["--wait-peers", "1"]);
  const page = await openPage(rig.browser, rig.bridge.http, `/hello.html?room=${room}`);
  try {
    const log = () => page.locator("#log").innerText();
    const joined = await waitFor(async () => (await log()).match(/^joined room hello-page as (\S+)$/m), "the page to join");
    const tabId = joined[1];
    // The page sends "hello" once the channel is open: `join` prints it as "<peer-id> <text>".
    await waitFor(() => node.lines.length >= 1, "the native side to get the tab's hello")
      .catch((e) => { throw new Error(`${e.message}; page log:\n${page.miaouErrors.join("\n")}`); });
    assert.deepEqual(node.lines, [`${tabId} hello`]);
    await node.writeLines(["hi from the native side"]);
    const shown = await waitFor(async () => (await log()).match(/^(\S+): hi from the native side$/m), "the page to show the reply");
    const text = await log();
    assert.match(text, new RegExp(`^connected ${shown[1]}$`, "m"), "the page logged the native peer connecting");
    assert.notEqual(shown[1], tabId);
    assert.deepEqual(page.miaouErrors, []);
    node.endInput();
    assert.equal((await node.exited).code, 0, node.stderr);
    await waitFor(async () => new RegExp(`^left ${shown[1]}$`, "m").test(await log()), "the page to log the peer leaving");
  } finally {
    node.kill();
    await page.close();
  }
});
