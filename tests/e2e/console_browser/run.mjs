// Drives Debian's Chromium through the operator console (called by tests/e2e/test_console.py).
// usage: node run.mjs <gateway url> <artifacts dir>; credentials in CONSOLE_USER, CONSOLE_PASSWORD,
// CONSOLE_OTHER_USER, CONSOLE_OTHER_PASSWORD. Prints one JSON line with what it saw; exits 1 on failure.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

// axe-core, run inside each page (evaluated through the DevTools protocol, so the pages' CSP stays as it is)
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 900 };

const [base, artifacts] = process.argv.slice(2);
const env = process.env;
const TO = "41793026727";
mkdirSync(artifacts, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), "omnirelay-console-chromium-"));
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
context.setDefaultTimeout(15000);
// nothing may come from anywhere but the gateway
const foreign = [];
context.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("data:")) foreign.push(r.url()); });
// every answer of 400 or more, but for the pages that are meant to answer so (checked by the Python side)
const failed = [];
context.on("response", (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`); });
const page = context.pages()[0] || await context.newPage();
const shot = (name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });

/** axe-core's critical and serious violations on the page as it is now. */
async function axe(name) {
  if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.evaluate(AXE);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return result.violations.filter((v) => v.impact === "critical" || v.impact === "serious").map((v) => ({
    page: name, id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")),
  }));
}

/** How the page fits a phone: the document's width, and whether each navigation link is on the screen. */
async function phoneFit(name) {
  return page.evaluate((name) => {
    const links = Array.from(document.querySelectorAll("header nav a, header nav button")).map((el) => {
      const box = el.getBoundingClientRect();
      const style = getComputedStyle(el);
      const onScreen = box.width > 0 && box.height > 0 && box.left >= 0 && box.right <= window.innerWidth
        && style.visibility !== "hidden" && style.display !== "none";
      // nothing else covers the link's middle: a tap lands on it
      const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
      return { text: el.textContent.trim(), onScreen, tappable: !!hit && (hit === el || el.contains(hit)) };
    });
    return { page: name, scrollWidth: document.documentElement.scrollWidth,
      bodyScrollWidth: document.body.scrollWidth, innerWidth: window.innerWidth, links };
  }, name);
}

/** The rows of the search's results: each cell's text by its column's label. */
const resultRows = () => page.$$eval("#results tbody tr", (rows) => rows.map((r) =>
  Object.fromEntries(Array.from(r.querySelectorAll("td")).map((td) => [td.dataset.label, td.textContent.trim()]))));
const countText = async () => (await page.textContent("#count")).replace(/\s+/g, " ").trim();

async function login(user, password) {
  await page.goto(`${base}/console/login`);
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", password);
  const [response] = await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  return response;
}

try {
  step("an unauthenticated page redirects to the login form");
  await page.goto(`${base}/console/overview`);
  check(page.url().includes("/console/login"), `redirected to login, at ${page.url()}`);

  step("a wrong password is refused");
  await login(env.CONSOLE_USER, "not the password");
  check(page.url().includes("/console/login"), "still on the login page");
  check((await page.textContent("[role=alert]")).includes("Wrong username or password"), "refusal shown");
  seen.refusedCookie = (await context.cookies()).some((c) => c.name === "omnirelay_console");
  await shot("01-login-refused");

  step("log in");
  await login(env.CONSOLE_USER, env.CONSOLE_PASSWORD);
  check(page.url().endsWith("/console/overview"), `on the overview, at ${page.url()}`);
  const cookie = (await context.cookies()).find((c) => c.name === "omnirelay_console");
  seen.cookie = { httpOnly: cookie.httpOnly, sameSite: cookie.sameSite, path: cookie.path };

  step("create a WHATSAPP -> SMS scenario");
  await page.goto(`${base}/console/scenarios`);
  const name = `Console WA-SMS ${Date.now()}`;
  await page.fill("form.scenario-form input[name=name]", name);
  await page.selectOption("select[name=channel_0]", "WHATSAPP");
  await page.fill("input[name=from_0]", "WhatsAppSender");
  await page.selectOption("select[name=channel_1]", "SMS");
  await page.fill("input[name=from_1]", "InfoSMS");
  await Promise.all([page.waitForNavigation(), page.click("form.scenario-form button[type=submit]")]);
  check(/\/console\/scenarios\/[0-9A-Fa-f]{32}$/.test(page.url()), `on the new scenario, at ${page.url()}`);
  seen.scenarioKey = page.url().split("/").pop();
  await shot("02-scenario");

  step("edit it: a step without sender is refused, the form keeps what was typed; then save");
  await page.fill("form.scenario-form input[name=name]", name + " edited");
  await page.selectOption("select[name=channel_2]", "EMAIL");
  await Promise.all([page.waitForNavigation(), page.click("form.scenario-form button[type=submit]")]);
  seen.editError = await page.textContent("[role=alert]");
  check((await page.inputValue("form.scenario-form input[name=name]")).endsWith(" edited"), "typed name kept");
  check((await page.inputValue("select[name=channel_2]")) === "EMAIL", "typed step kept");
  await page.fill("input[name=from_2]", "noreply@example.com");
  await Promise.all([page.waitForNavigation(), page.click("form.scenario-form button[type=submit]")]);
  check((await page.textContent("h1")).includes("edited"), "renamed");
  check((await page.textContent("main > p")).includes("EMAIL"), "e-mail step added");
  await page.selectOption("select[name=channel_2]", "");
  await Promise.all([page.waitForNavigation(), page.click("form.scenario-form button[type=submit]")]);
  seen.editedFlow = (await page.textContent("main > p")).replace(/\s+/g, " ").trim();

  step("make it the default from the list");
  await page.goto(`${base}/console/scenarios`);
  const row = page.locator("#scenarios tr", { hasText: name });
  await Promise.all([page.waitForNavigation(), row.locator("button", { hasText: "Make default" }).click()]);
  seen.defaultShown = (await page.locator("#scenarios tr", { hasText: name }).textContent()).includes("default");

  step("try it in the sandbox");
  await page.goto(`${base}/console/scenarios/${seen.scenarioKey}`);
  await page.fill("input[name=to]", TO);
  await page.fill("input[name=text]", "Hello from the console test");
  await Promise.all([page.waitForNavigation(), page.click("form.try-form button[type=submit]")]);
  check(page.url().includes("/console/messages/"), `on the message page, at ${page.url()}`);
  seen.messageId = decodeURIComponent(page.url().split("/").pop());

  step("watch the timeline: WHATSAPP REJECTED, then SMS DELIVERED");
  const deadline = Date.now() + 20000;
  let attempts = [];
  for (;;) {
    attempts = await page.$$eval("#attempts tbody tr", (rows) =>
      rows.map((r) => Array.from(r.querySelectorAll("td")).map((td) => td.textContent.trim())));
    const phase = await page.textContent("#phase");
    if (phase === "DONE" || Date.now() > deadline) break;
    await page.waitForTimeout(300);
    await page.reload();
  }
  seen.attempts = attempts.map((cells) => ({ step: cells[0], channel: cells[1], state: cells[2],
    status: cells[5], error: cells[6] }));
  seen.outcome = await page.textContent("#outcome");
  seen.history = await page.$$eval("#history li", (items) => items.map((li) => li.textContent.trim()));
  await shot("03-timeline");

  step("find the message in the search");
  await page.goto(`${base}/console/messages`);
  await page.fill("input[name=to]", TO);
  await page.selectOption("select[name=status]", "DELIVERED");
  await page.selectOption("select[name=channel]", "SMS");
  await Promise.all([page.waitForNavigation(), page.click("form.filters button[type=submit]")]);
  seen.searchIds = await page.$$eval("#results tbody tr td:nth-child(2) a", (as) => as.map((a) => a.textContent));
  await shot("04-search");
  await page.fill("input[name=messageId]", seen.messageId);
  await Promise.all([page.waitForNavigation(), page.click("form.filters button[type=submit]")]);
  await Promise.all([page.waitForNavigation(), page.click(`#results a:text("${seen.messageId}")`)]);
  seen.searchLinkOpens = (await page.textContent("#message-id")) === seen.messageId;

  step("seed 125 messages in one request (one instant: three pages of 50 cut through equal times)");
  seen.bulk = `paging-${Date.now()}`;
  const destinations = [];
  for (let i = 0; i < 125; i++) {
    // numbers ending in 1 are undeliverable on every channel in the sandbox (EC_ABSENT_SUBSCRIBER_SM)
    destinations.push({ to: { phoneNumber: `4179300${String(i).padStart(3, "0")}${i % 5 === 0 ? 1 : 0}` },
      messageId: `${seen.bulk}-${String(i).padStart(3, "0")}` });
  }
  const auth = "Basic " + Buffer.from(`${env.CONSOLE_USER}:${env.CONSOLE_PASSWORD}`).toString("base64");
  const sent = await fetch(`${base}/omni/1/advanced`, { method: "POST",
    headers: { Authorization: auth, "Content-Type": "application/json" },
    body: JSON.stringify({ bulkId: seen.bulk, destinations, whatsApp: { text: "hi" }, sms: { text: "hi" } }) });
  check(sent.status === 200, `seeded, status ${sent.status}`);
  const pendingUrl = `${base}/console/messages?bulkId=${seen.bulk}&status=PENDING`;
  for (const deadline = Date.now() + 30000; ;) {
    await page.goto(pendingUrl);
    if ((await countText()).startsWith("0 messages") || Date.now() > deadline) break;
    await page.waitForTimeout(300);
  }

  step("search the bulk: the total, three pages forward, one back");
  await page.goto(`${base}/console/messages`);
  await page.fill("input[name=bulkId]", seen.bulk);
  await Promise.all([page.waitForNavigation(), page.click("form.filters button[type=submit]")]);
  seen.total = await countText();
  seen.pages = [];
  for (;;) {
    seen.pages.push(await resultRows());
    const older = page.locator("a[rel=next]");
    if (!(await older.count())) break;
    await Promise.all([page.waitForNavigation(), older.click()]);
  }
  seen.lastPageHasNewer = (await page.locator("a[rel=prev]").count()) === 1;
  await Promise.all([page.waitForNavigation(), page.click("a[rel=prev]")]);
  seen.backPage = await resultRows();
  await Promise.all([page.waitForNavigation(), page.click("a[rel=prev]")]);
  seen.firstAgain = await resultRows();
  seen.firstHasNewer = (await page.locator("a[rel=prev]").count()) === 1;
  await page.goto(`${base}/console/messages?bulkId=${seen.bulk}`);
  await shot("08-messages-desktop");
  seen.axe = await axe("messages");

  step("the error column links to the error filter");
  await Promise.all([page.waitForNavigation(), page.click("#results a.err >> nth=0")]);
  seen.errorLinkUrl = page.url();
  seen.errorLinkTotal = await countText();
  step("filter by error name within the bulk");
  await page.goto(`${base}/console/messages?bulkId=${seen.bulk}`);
  await page.fill("input[name=error]", "ec_absent_subscriber_sm");
  await Promise.all([page.waitForNavigation(), page.click("form.filters button[type=submit]")]);
  seen.errorTotal = await countText();
  seen.errorRows = await resultRows();
  await page.goto(`${base}/console/messages?error=not+an+error!`);
  seen.badErrorAlert = await page.textContent("[role=alert]");

  step("export the bulk's search as CSV");
  await page.goto(`${base}/console/messages?bulkId=${seen.bulk}`);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export")]);
  seen.csvName = download.suggestedFilename();
  await download.saveAs(join(artifacts, "export.csv"));
  seen.csvPath = join(artifacts, "export.csv");

  step("the overview draws its charts");
  await page.goto(`${base}/console/overview`);
  await page.waitForSelector("body[data-charts=ready]");
  seen.charts = await page.$$eval("canvas", (canvases) => canvases.map((c) => {
    const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let painted = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) painted++;
    return { id: c.id, width: c.width, height: c.height, painted };
  }));
  await shot("05-overview");

  step("the sandbox rules page");
  await page.goto(`${base}/console/sandbox`);
  seen.rules = await page.$$eval("#rules tbody tr", (rows) =>
    rows.map((r) => Array.from(r.querySelectorAll("td")).slice(1).map((td) => td.textContent.trim())));
  await shot("06-rules");

  // every page, at a desktop width and a phone's
  const pages = [
    ["overview", "/console/overview"],
    ["messages", "/console/messages"],
    ["messages-found", `/console/messages?bulkId=${seen.bulk}`],
    ["messages-refused", "/console/messages?status=NOPE"],
    ["message", `/console/messages/${encodeURIComponent(seen.messageId)}`],
    ["message-not-found", "/console/messages/nothing-here"],
    ["scenarios", "/console/scenarios"],
    ["scenario", `/console/scenarios/${seen.scenarioKey}`],
    ["sandbox", "/console/sandbox"],
  ];
  step("axe-core on every page (desktop)");
  for (const [name, path] of pages) {
    await page.goto(base + path);
    seen.axe.push(...await axe(name));
  }
  step("axe-core does see a violation: a select without a label, put into the page");
  await page.goto(`${base}/console/messages`);
  await page.evaluate(() => document.querySelector("main").append(document.createElement("select")));
  seen.axeSanity = (await axe("sanity")).map((v) => v.id);
  step("every page at 390 px: no sideways scroll, the navigation on screen, axe-core again");
  await page.setViewportSize(PHONE);
  seen.phone = [];
  for (const [name, path] of pages) {
    await page.goto(base + path);
    seen.phone.push(await phoneFit(name));
    seen.axe.push(...await axe(`${name} (390 px)`));
    if (name === "messages-found") {
      await page.screenshot({ path: join(artifacts, "09-messages-phone.png") });
      await shot("09-messages-phone-full");
      seen.phoneCards = await page.$eval("#results tbody tr", (tr) => {
        const td = tr.querySelector("td");
        return { rowDisplay: getComputedStyle(tr).display, cellDisplay: getComputedStyle(td).display,
          label: getComputedStyle(td, "::before").content,
          headerHeight: document.querySelector("#results thead").getBoundingClientRect().height };
      });
    }
    await shot(`phone-${name}`);
  }
  step("at 390 px, each navigation link opens its page");
  seen.phoneNav = [];
  for (const [label, path] of [["Messages", "/console/messages"], ["Scenarios", "/console/scenarios"],
    ["Sandbox rules", "/console/sandbox"], ["Overview", "/console/overview"]]) {
    await Promise.all([page.waitForNavigation(), page.click(`header nav a:text-is("${label}")`)]);
    seen.phoneNav.push(page.url().endsWith(path));
  }
  step("keyboard: the first Tab reaches the skip link, which is then visible");
  await page.goto(`${base}/console/messages`);
  await page.keyboard.press("Tab");
  seen.skip = await page.evaluate(() => {
    const el = document.activeElement;
    const box = el.getBoundingClientRect();
    return { text: el.textContent.trim(), href: el.getAttribute("href"), visible: box.top >= 0 && box.height > 0,
      outline: getComputedStyle(el).outlineStyle };
  });
  await page.keyboard.press("Enter");
  seen.afterSkip = await page.evaluate(() => document.activeElement.id);
  await page.setViewportSize(DESKTOP);

  step("log out; another account cannot see the message");
  await Promise.all([page.waitForNavigation(), page.click("nav button[type=submit]")]);
  check(page.url().includes("/console/login"), "logged out");
  seen.axe.push(...await axe("login"));
  await page.setViewportSize(PHONE);
  seen.phone.push(await phoneFit("login"));
  seen.axe.push(...await axe("login (390 px)"));
  await shot("phone-login");
  await page.setViewportSize(DESKTOP);
  await login(env.CONSOLE_OTHER_USER, env.CONSOLE_OTHER_PASSWORD);
  const other = await page.goto(`${base}/console/messages/${encodeURIComponent(seen.messageId)}`);
  seen.otherStatus = other.status();
  await shot("07-other-account");
  await page.goto(`${base}/console/messages?to=${TO}`);
  seen.otherSearchRows = await page.locator("#results tbody tr").count();
  const api = await page.goto(`${base}/console/api/messages/${encodeURIComponent(seen.messageId)}`);
  seen.otherApiStatus = api.status();
  await page.goto(`${base}/console/scenarios`);
  seen.otherSeesScenario = (await page.content()).includes(seen.scenarioKey);
  seen.foreignRequests = foreign;
  seen.failedResponses = failed;
  console.log(JSON.stringify(seen));
} catch (error) {
  await shot("99-failure").catch(() => {});
  seen.error = String(error && error.stack || error);
  seen.url = page.url();
  console.log(JSON.stringify(seen));
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
