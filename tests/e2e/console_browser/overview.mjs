// Drives Debian's Chromium through the console's overview (called by tests/e2e/test_console_overview_browser.py).
// usage: node overview.mjs <gateway url> <artifacts dir>; CONSOLE_USER, CONSOLE_PASSWORD and API_KEY (to send
// more messages while the page is open) in the environment. Prints one JSON line with what it saw; exits 1 on
// failure.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [base, artifacts] = process.argv.slice(2);
const env = process.env;
mkdirSync(artifacts, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), "omnirelay-overview-chromium-"));
const seen = { steps: [] };
const step = (name) => { seen.steps.push(name); console.error(`-- ${name}`); };
const check = (ok, what) => { if (!ok) throw new Error(`check failed: ${what}`); };

const context = await chromium.launchPersistentContext(profile, {
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1280, height: 900 },
  timeout: 30000,
});
context.setDefaultTimeout(20000);
const page = context.pages()[0] || await context.newPage();
const shot = (name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
const text = async (selector) => (await page.textContent(selector)).trim();
const navigations = [];
page.on("framenavigated", (frame) => { if (frame === page.mainFrame()) navigations.push(frame.url()); });

async function send(count) {
  // last digits the sandbox delivers (no …1 undeliverable, …2 expiring, …3 seen)
  const destinations = Array.from({ length: count }, (_, i) => ({ to: { phoneNumber: `417955500${i}${"0456890"[i % 7]}` } }));
  const r = await fetch(`${base}/omni/1/advanced`, {
    method: "POST",
    headers: { "Authorization": `App ${env.API_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify({ destinations, whatsApp: { text: "Hi" }, sms: { text: "Hi" } }),
  });
  check(r.status === 200, `send answered ${r.status}`);
}

try {
  step("log in and open the overview");
  await page.goto(`${base}/console/login`);
  await page.fill("input[name=username]", env.CONSOLE_USER);
  await page.fill("input[name=password]", env.CONSOLE_PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  check(page.url().endsWith("/console/overview"), `on the overview, at ${page.url()}`);
  await page.waitForSelector("body[data-charts=ready]");
  seen.initial = {
    range: await page.getAttribute("body", "data-range"),
    accepted: await text("#kpi-accepted"),
    delivered: await text("#kpi-delivered"),
    label: await text("#range-label"),
    pressed: await page.getAttribute("button[value='1h']", "aria-pressed"),
    errors: await page.$$eval("#errors tbody a", (as) => as.map((a) => ({ text: a.textContent, href: a.getAttribute("href") }))),
    failover: await page.$$eval("#failover-table tbody tr", (rows) => rows.map((r) => Array.from(r.cells).map((c) => c.textContent))),
    connectors: await text("#connectors tbody"),
  };

  step("it refreshes itself: messages sent meanwhile show up without a reload");
  await page.evaluate(() => { window.__sameDocument = true; });
  const before = Number(await page.getAttribute("body", "data-refreshes"));
  const navigatedBefore = navigations.length;
  await send(7);
  const want = (Number(seen.initial.accepted.replace(/,/g, "")) + 7).toLocaleString("en");
  await page.waitForFunction((w) => document.getElementById("kpi-accepted").textContent === w, want, { timeout: 30000 });
  seen.refreshed = {
    accepted: await text("#kpi-accepted"),
    refreshes: Number(await page.getAttribute("body", "data-refreshes")) - before,
    sameDocument: await page.evaluate(() => window.__sameDocument === true),
    navigations: navigations.length - navigatedBefore,
  };
  await shot("overview-desktop");

  step("the range switcher");
  seen.ranges = {};
  for (const key of ["24h", "7d"]) {
    await page.click(`#range button[value='${key}']`);
    await page.waitForSelector(`body[data-range='${key}']`);
    seen.ranges[key] = {
      url: page.url(),
      accepted: await text("#kpi-accepted"),
      label: await text("#range-label"),
      pressed: await page.getAttribute(`#range button[value='${key}']`, "aria-pressed"),
      lastHourPressed: await page.getAttribute("#range button[value='1h']", "aria-pressed"),
      buckets: await page.evaluate(() => Chart.getChart("perMinute").data.labels.length),
    };
  }
  await page.fill("input[name=from]", "2020-01-01T00:00");
  await page.fill("input[name=to]", "2020-01-02T00:00");
  await page.click("#range button[value='custom']");
  await page.waitForSelector("body[data-range='custom']");
  seen.ranges.custom = { url: page.url(), accepted: await text("#kpi-accepted"), label: await text("#range-label") };
  seen.sameDocumentAfterSwitching = await page.evaluate(() => window.__sameDocument === true);

  step("a reload keeps the range; an error's link opens the search for it");
  await page.goto(`${base}/console/overview?range=24h`);
  await page.waitForSelector("body[data-charts=ready]");
  seen.reloaded = { range: await page.getAttribute("body", "data-range"), pressed: await page.getAttribute("#range button[value='24h']", "aria-pressed") };
  const link = page.locator("#errors tbody a").first();
  await Promise.all([page.waitForNavigation(), link.click()]);
  seen.errorSearch = { url: page.url(), rows: await page.locator("#results tbody tr").count() };

  step("a phone's width");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/console/overview`);
  await page.waitForSelector("body[data-charts=ready]");
  // the overview's own content (the navigation bar is the layout's, shared by every page)
  seen.phoneWidth = await page.evaluate(() => Math.max(...Array.from(document.querySelectorAll("main *"))
    .map((e) => e.getBoundingClientRect().right)));
  await shot("overview-phone");
  console.log(JSON.stringify(seen));
} catch (error) {
  await shot("overview-failure").catch(() => {});
  seen.error = String(error && error.stack || error);
  seen.url = page.url();
  console.log(JSON.stringify(seen));
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
