// End-to-end test of the demo page in a real browser: Debian's headless
// Chromium (/usr/bin/chromium, never downloaded) driven by playwright-core.
//
// It starts its own redis-server (free port), the portable component in
// `wasmtime serve` with DEV_MODE=true, and the demo producer, then:
//   1. runs an execution and checks that every event renders exactly once,
//      in order, that the result shows, that the page closed its
//      EventSource after result_stored and that the notification arrived;
//   2. cuts the connection mid-run by restarting the gateway on the same
//      port: the browser reconnects by itself with Last-Event-ID and the
//      page still shows every event exactly once.
//
// Run: `node --test browser/` (after `npm ci` in browser/). Environment:
// WASMTIME, SSE_GATEWAY_WASM, DEMO_PRODUCER (prebuilt binaries; otherwise
// found or built with cargo), CHROMIUM (default /usr/bin/chromium),
// UPDATE_SCREENSHOT=1 (also write docs/demo.png), SSE_GATEWAY_WASMTIME_ARGS
// (extra `wasmtime serve` flags: the p3 build runs with the README's).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const OUT = path.join(ROOT, "target", "e2e", "browser");
const SECRET = "browser-test-secret-0123456789abcdef";
const EXPECTED = [
  "execution_requested",
  "execution_queued",
  "pod_created",
  "pod_running",
  "execution_completed",
  "result_stored",
];
const RETRY_MS = 500; // the gateway's `retry:` hint: how soon the browser reconnects

fs.mkdirSync(OUT, { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function until(what, fn, timeoutMs, stepMs = 100) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(stepMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ": " + last.message : ""}`);
}

function redisPing(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.setTimeout(500, () => { s.destroy(); resolve(false); });
    s.on("error", () => resolve(false));
    s.on("connect", () => s.write("PING\r\n"));
    s.on("data", (d) => { s.destroy(); resolve(d.toString().startsWith("+PONG")); });
  });
}

function wasmtimeBin() {
  const candidates = [
    process.env.WASMTIME,
    path.join(process.env.SSE_GATEWAY_CACHE || path.join(os.homedir(), ".cache", "sse-gateway"), "wasmtime-48.0.8", "bin", "wasmtime"),
  ].filter(Boolean);
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error(`wasmtime not found (tried ${candidates.join(", ")}); run scripts/tools.sh's ensure_wasmtime`);
  return found;
}

function cargo(args, env = {}) {
  execFileSync("cargo", args, { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, ...env } });
}

function componentWasm() {
  if (process.env.SSE_GATEWAY_WASM) return process.env.SSE_GATEWAY_WASM;
  // scripts/build.sh prints the component's path as its last line.
  const out = execFileSync(path.join(ROOT, "scripts", "build.sh"), ["portable"], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "inherit"],
  });
  return out.toString().trim().split("\n").pop();
}

function producerBin() {
  if (process.env.DEMO_PRODUCER) return process.env.DEMO_PRODUCER;
  cargo(["build", "--quiet", "--example", "demo_producer"]);
  const dir = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, "target");
  return path.join(dir, "debug", "examples", "demo_producer");
}

/** A child process whose output goes to a log file. */
function start(name, cmd, args, env = {}) {
  const logPath = path.join(OUT, `${name}.log`);
  const fd = fs.openSync(logPath, "a");
  const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", fd, fd] });
  fs.closeSync(fd);
  child.logPath = logPath;
  child.exited = new Promise((r) => child.once("exit", r));
  return child;
}

async function stop(child, signal = "SIGTERM") {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  await Promise.race([child.exited, sleep(3000)]);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill("SIGKILL");
    await child.exited;
  }
}

function tail(file, lines = 40) {
  try {
    return fs.readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** Compares Redis stream ids (`ms-seq`). */
function idLess(a, b) {
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  return am < bm || (am === bm && as < bs);
}

const env = {};
let redis, gateway, producer, context, userDataDir;
const consoleLines = [];

async function startGateway() {
  gateway = start("gateway", env.wasmtime, [
    "serve", "-S", "cli", "-S", "inherit-network",
    "--env", `REDIS_URL=redis://127.0.0.1:${env.redisPort}`,
    "--env", `JWT_SECRET=${SECRET}`,
    "--env", "DEV_MODE=true",
    "--env", `RETRY_MS=${RETRY_MS}`,
    "--env", "HEARTBEAT_SECONDS=5",
    "--addr", `127.0.0.1:${env.port}`,
    // The p3 build's instance flags (scripts/test.sh passes the README's).
    ...(process.env.SSE_GATEWAY_WASMTIME_ARGS || "").split(/\s+/).filter(Boolean),
    env.wasm,
  ]);
  await until("the gateway's health check", async () => {
    if (gateway.exitCode !== null) throw new Error("wasmtime exited:\n" + tail(gateway.logPath));
    const r = await fetch(`${env.base}/api/v1/events/health/ready`);
    return r.status === 200;
  }, 60_000, 100);
}

before(async () => {
  for (const f of ["gateway.log", "producer.log", "redis.log"]) fs.rmSync(path.join(OUT, f), { force: true });
  const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
  if (!fs.existsSync(chromiumPath)) throw new Error(`${chromiumPath} not found: apt-get install -y chromium`);
  env.wasmtime = wasmtimeBin();
  env.wasm = componentWasm();
  env.producer = producerBin();

  env.redisPort = await freePort();
  redis = start("redis", "redis-server", [
    "--port", String(env.redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
  ]);
  await until("redis-server", () => redisPing(env.redisPort), 10_000);

  env.port = await freePort();
  env.base = `http://127.0.0.1:${env.port}`;
  await startGateway();

  producer = start("producer", env.producer, [], {
    GATEWAY_URL: env.base,
    REDIS_URL: `redis://127.0.0.1:${env.redisPort}`,
    JWT_SECRET: SECRET,
    DEMO_STEP_MS: "500-1000",
  });

  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "sse-demo-chromium-"));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    viewport: { width: 1180, height: 820 },
    deviceScaleFactor: 1,
  });
});

after(async () => {
  await context?.close().catch(() => {});
  await stop(producer);
  await stop(gateway);
  await stop(redis);
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
});

/** Runs `body`; on failure prints the page's console and the process logs. */
async function withDiagnostics(page, body) {
  try {
    await body();
  } catch (e) {
    const shot = path.join(OUT, "failure.png");
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    console.error(`--- browser console ---\n${consoleLines.join("\n")}`);
    console.error(`--- page log ---\n${await page.locator("#log").innerText().catch(() => "?")}`);
    for (const c of [gateway, producer]) console.error(`--- ${c.logPath} ---\n${tail(c.logPath)}`);
    console.error(`screenshot of the failing page: ${shot}`);
    throw e;
  }
}

async function openDemo(user) {
  const page = await context.newPage();
  page.on("console", (m) => consoleLines.push(`[${user}] ${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`[${user}] pageerror: ${e.message}`));
  const streamRequests = [];
  page.on("request", async (req) => {
    if (req.url().includes("/api/v1/events/executions/") && req.method() === "GET") {
      const headers = await req.allHeaders().catch(() => req.headers());
      streamRequests.push({ url: req.url(), lastEventId: headers["last-event-id"] ?? null, at: Date.now() });
    }
  });
  await page.goto(`${env.base}/demo?user=${user}`);
  await page.waitForSelector("body[data-ready=true]", { timeout: 10_000 });
  await page.waitForSelector('#notif-state[data-state="open"]', { timeout: 10_000 });
  return { page, streamRequests };
}

/** What the page rendered: execution events, snapshots and stats. */
function snapshot(page) {
  return page.evaluate(() => ({
    events: [...document.querySelectorAll('#timeline li[data-kind="event"]')].map((li) => ({
      type: li.dataset.eventType, id: li.dataset.sseId, seq: Number(li.dataset.seq),
    })),
    snapshots: [...document.querySelectorAll('#timeline li[data-kind="snapshot"]')].map((li) => li.dataset.status),
    markers: document.querySelectorAll('#timeline li[data-kind="marker"]').length,
    firstKind: document.querySelector("#timeline li")?.dataset.kind,
    readyState: window.demo.exec ? window.demo.exec.readyState : null,
    executionId: window.demo.executionId,
    stats: { ...window.demo.stats },
    execState: document.getElementById("exec-state").textContent,
    log: document.getElementById("log").innerText,
  }));
}

function assertEveryEventOnce(view) {
  assert.deepEqual(view.events.map((e) => e.type), EXPECTED, "every event type rendered exactly once, in order");
  const ids = view.events.map((e) => e.id);
  assert.ok(ids.every((id) => /^\d+-\d+$/.test(id)), `every event carries its SSE id: ${ids}`);
  assert.equal(new Set(ids).size, ids.length, `SSE ids are unique: ${ids}`);
  for (let i = 1; i < ids.length; i++) assert.ok(idLess(ids[i - 1], ids[i]), `SSE ids increase: ${ids}`);
}

async function assertFinished(page, view, streamRequests) {
  assert.equal(view.readyState, 2, "the page closed its EventSource after result_stored");
  assert.equal(await page.locator("#result-card").isVisible(), true, "the result card shows");
  assert.equal(await page.locator("#exit-code").innerText(), "0");
  assert.match(await page.locator("#stdout").innerText(), /2 3 5 7 11 13 17 19 23 29/);
  assert.match(await page.locator("#resources").innerText(), /memory \d+ MiB/);
  // The notification for this execution arrives on the notification stream.
  const note = page.locator(`#notifications li[data-execution-id="${view.executionId}"]`);
  await note.waitFor({ timeout: 10_000 });
  assert.equal(await note.count(), 1, "one notification for the execution");
  assert.match(await note.innerText(), /finished/);
  // Closed means closed: no reconnect after the terminal event.
  const before = streamRequests.length;
  await sleep(RETRY_MS * 3);
  assert.equal(streamRequests.length, before, "no new stream request after the terminal event");
  const later = await snapshot(page);
  assert.equal(later.events.length, EXPECTED.length, "nothing rendered after the terminal event");
}

test("demo page: an execution renders every event once and the stream closes", async () => {
  const { page, streamRequests } = await openDemo("browser-happy");
  await withDiagnostics(page, async () => {
    await page.click("#run");
    await page.waitForSelector('#timeline li[data-event-type="result_stored"]', { timeout: 20_000 });
    const view = await snapshot(page);
    assert.match(view.executionId, /^demo-[0-9a-f]{16}$/);
    assert.equal(view.firstKind, "snapshot", "the status snapshot comes first");
    assert.equal(view.snapshots.length, 1, "one connection, one status snapshot");
    assertEveryEventOnce(view);
    assert.equal(view.stats.execOpens, 1);
    assert.equal(view.stats.execReconnects, 0);
    assert.equal(streamRequests.length, 1, "one stream request");
    assert.equal(streamRequests[0].lastEventId, null, "the first request has no Last-Event-ID");
    await assertFinished(page, view, streamRequests);
  });
  await page.close();
});

test("demo page: the browser reconnects with Last-Event-ID after a gateway restart and still shows every event once", async () => {
  const { page, streamRequests } = await openDemo("browser-reconnect");
  await withDiagnostics(page, async () => {
    await page.click("#run");
    // Cut the connection mid-run: after pod_created, before the rest.
    await page.waitForSelector('#timeline li[data-event-type="pod_created"]', { timeout: 15_000 });
    await stop(gateway, "SIGKILL");
    const beforeCut = await snapshot(page);
    assert.ok(beforeCut.events.length < EXPECTED.length, "the cut happens mid-run");
    const lastSeen = beforeCut.events.at(-1).id;
    await page.waitForSelector('#exec-state[data-state="reconnecting"]', { timeout: 5_000 });
    await sleep(1000);
    await startGateway();
    await page.waitForSelector('#timeline li[data-event-type="result_stored"]', { timeout: 30_000 });
    const view = await snapshot(page);
    assertEveryEventOnce(view);
    assert.ok(view.stats.execReconnects >= 1, `the page counted a reconnect: ${JSON.stringify(view.stats)}`);
    assert.ok(view.markers >= 1, "the timeline shows the reconnect");
    assert.match(view.log, /connection lost, reconnecting/);
    assert.equal(view.stats.execFresh, 0, "the browser's own reconnect, no fresh stream");
    assert.equal(view.snapshots.length, view.stats.execOpens, "one status snapshot per connection");
    // The browser itself resumed: a later request carried Last-Event-ID.
    const resumed = streamRequests.filter((r) => r.lastEventId);
    assert.ok(resumed.length >= 1, `a reconnect carried Last-Event-ID: ${JSON.stringify(streamRequests)}`);
    assert.ok(resumed.every((r) => r.lastEventId === lastSeen || !idLess(r.lastEventId, lastSeen)),
      `Last-Event-ID resumes at or after ${lastSeen}: ${JSON.stringify(resumed)}`);
    assert.equal(resumed[0].lastEventId, lastSeen, "the first reconnect resumes after the last event seen");
    await assertFinished(page, view, streamRequests);
    await page.screenshot({ path: path.join(OUT, "demo.png") });
    if (process.env.UPDATE_SCREENSHOT === "1") {
      fs.mkdirSync(path.join(ROOT, "docs"), { recursive: true });
      fs.copyFileSync(path.join(OUT, "demo.png"), path.join(ROOT, "docs", "demo.png"));
    }
  });
  await page.close();
});
