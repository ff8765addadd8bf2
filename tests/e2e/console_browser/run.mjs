// Drives Debian's Chromium through the operator console (called by tests/e2e/test_console.py).
// usage: node run.mjs <gateway url> <artifacts dir>; credentials in CONSOLE_USER, CONSOLE_PASSWORD,
// CONSOLE_OTHER_USER, CONSOLE_OTHER_PASSWORD. Prints one JSON line with what it saw; exits 1 on failure.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

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
const page = context.pages()[0] || await context.newPage();
const shot = (name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });

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

  step("log out; another account cannot see the message");
  await Promise.all([page.waitForNavigation(), page.click("nav button[type=submit]")]);
  check(page.url().includes("/console/login"), "logged out");
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
