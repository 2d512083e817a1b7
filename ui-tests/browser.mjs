// Drives coherd's dashboards in headless Chromium against a running server:
// every page renders what the fleet reported, a new divergence appears
// live without a reload and a resolved one disappears, links lead where
// they say, axe-core finds no serious or critical accessibility violation,
// and a screenshot of each page is written for a person to look at.
//
//   node browser.mjs SERVER_URL SCREENSHOT_DIR
//
// Prints one JSON line of findings; exits 1 when a check fails.
import { chromium } from "playwright-core";
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";

const [server, shots] = process.argv.slice(2);
if (!server || !shots) {
  console.error("usage: node browser.mjs SERVER_URL SCREENSHOT_DIR");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const axePath = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
const failures = [];
const found = {};
const check = (ok, what) => { if (!ok) failures.push(what); };

let seq = 1000;
async function report(member, config) {
  const r = await fetch(`${server}/v1/observations`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ service: "checkout", member, seq: seq++, facets: { config, phase: "ready" } }),
  });
  check(r.ok, `report ${member}=${config}: ${r.status}`);
}

async function accessible(page, name) {
  await page.addScriptTag({ path: axePath });
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  found[`axe ${name}`] = result.violations.map((v) => `${v.id}:${v.impact}`);
  for (const v of bad) failures.push(`${name}: ${v.id} (${v.impact}) ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  // The pages forbid inline scripts; axe is injected as one, so only this test context bypasses that.
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: true });
  const page = await context.newPage();
  page.on("pageerror", (e) => failures.push(`script error: ${e.message}`));
  const pages = [
    ["executive", "/ui/", "checkout"],
    ["oncall", "/ui/oncall", "drift"],
    ["service", "/ui/services/checkout", "c-01"],
    ["member", "/ui/services/checkout/members/c-01", "config"],
  ];
  for (const [name, path, text] of pages) {
    const r = await page.goto(server + path, { waitUntil: "load" });
    check(r && r.status() === 200, `${path}: status ${r && r.status()}`);
    check((await page.textContent("main")).includes(text), `${path} does not show ${text}`);
    check(!(await page.evaluate(() => window.__pwned === true)), `${path} ran a reported value`);
    await accessible(page, name);
    await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  }

  // The member's timeline holds its divergence episode (the history is written within a second or two).
  let timeline = false;
  for (let i = 0; i < 10 && !timeline; i++) {
    await page.goto(server + "/ui/services/checkout/members/c-01", { waitUntil: "load" });
    timeline = (await page.textContent("main")).includes("opened drift");
    if (!timeline) await page.waitForTimeout(500);
  }
  check(timeline, "the member's timeline does not show its drift episode");

  // Live: a new drift appears on the on-call page without a reload, and leaves when resolved.
  await page.goto(server + "/ui/oncall", { waitUntil: "load" });
  await page.waitForSelector("#live:has-text('live')", { timeout: 10000 }).catch(() => failures.push("the stream never connected"));
  await page.evaluate(() => { window.__sameDocument = true; });
  const row = 'tr[data-id="drift:checkout:c-new:config"]';
  await report("c-new", "v0");
  await page.waitForSelector(row, { timeout: 15000 }).catch(() => failures.push("a new divergence did not appear live"));
  check(await page.evaluate(() => window.__sameDocument === true), "the page reloaded instead of updating");
  await page.screenshot({ path: `${shots}/oncall-live.png`, fullPage: true });
  await report("c-new", "v2");
  await page.waitForSelector(row, { state: "detached", timeout: 15000 }).catch(() => failures.push("a resolved divergence did not leave"));
  check(await page.evaluate(() => window.__sameDocument === true), "the page reloaded instead of updating");

  // Sorting by keyboard: the first header is a button; Enter sorts.
  await page.goto(server + "/ui/", { waitUntil: "load" });
  await page.focus("table.sortable th button[data-col='3']");
  await page.keyboard.press("Enter");
  check((await page.getAttribute("table.sortable th:nth-child(4)", "aria-sort")) === "ascending", "sorting by keyboard");

  // Links: executive -> service -> member -> back to the service.
  await page.click("table.sortable a[href='/ui/services/checkout']");
  check(page.url().endsWith("/ui/services/checkout"), `the service link led to ${page.url()}`);
  await page.click("a[href='/ui/services/checkout/members/c-01']");
  check(page.url().endsWith("/ui/services/checkout/members/c-01"), `the member link led to ${page.url()}`);
  await page.click("main a[href='/ui/services/checkout']");
  check(page.url().endsWith("/ui/services/checkout"), `the back link led to ${page.url()}`);
  await page.click("header a[href='/ui/oncall']");
  check(page.url().endsWith("/ui/oncall"), "the navigation to on-call");
} finally {
  await browser.close();
}
console.log(JSON.stringify({ failures, found }));
process.exit(failures.length ? 1 : 0);
