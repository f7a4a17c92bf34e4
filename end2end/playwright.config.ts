import { defineConfig, devices } from "@playwright/test";
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

// The real server, started by Playwright: the binary `cargo leptos build` produced, the site it
// wrote, a fresh SQLite file and a fast interval. `scripts/test` sets SLUICE_BIN and
// LEPTOS_SITE_ROOT; the defaults fit a plain `cargo leptos build` in this checkout.
const root = resolve(__dirname, "..");
const port = Number(process.env.SLUICE_E2E_PORT ?? 3217);
const baseURL = `http://127.0.0.1:${port}`;
// The client-side (Trunk) build, served from another origin that the server allows.
const csrPort = port + 1;
export const csrURL = `http://127.0.0.1:${csrPort}`;
const dataDir = mkdtempSync(join(tmpdir(), "sluice-e2e-"));
const database = join(dataDir, "sluice.db");
// A third server that needs API tokens for writes and reads.
const guardedPort = port + 2;
export const guardedURL = `http://127.0.0.1:${guardedPort}`;
export const writeToken = "e2e-write-token-0123456789";
export const readToken = "e2e-read-token-0123456789";
const server = process.env.SLUICE_BIN ?? join(root, "target/debug/sluice");
const siteRoot = process.env.LEPTOS_SITE_ROOT ?? join(root, "target/site");

// Two replicas on one fresh PostgreSQL database (SLUICE_TEST_POSTGRES, as for the Rust tests).
// The runner creates the database once; workers, which load this file again, inherit its name.
export const replicaURLs = [port + 3, port + 4].map((p) => `http://127.0.0.1:${p}`);
const postgres = process.env.SLUICE_TEST_POSTGRES;
if (postgres && !process.env.SLUICE_E2E_DATABASE) {
  const psql = (sql: string) =>
    execFileSync("psql", [postgres, "-qAtc", sql], { encoding: "utf8" }).trim();
  // Earlier runs' databases (one e2e run at a time on a machine).
  for (const stale of psql("SELECT datname FROM pg_database WHERE datname LIKE 'sluice_e2e_%'").split("\n")) {
    if (stale) psql(`DROP DATABASE IF EXISTS ${stale} WITH (FORCE)`);
  }
  const name = `sluice_e2e_${Date.now()}`;
  psql(`CREATE DATABASE ${name}`);
  const url = new URL(postgres);
  url.pathname = `/${name}`;
  process.env.SLUICE_E2E_DATABASE = url.toString();
}
// A server whose downstream never answers (nothing listens on port 9): batches fail. It also
// allows one event stream per client, so a second page is refused its stream.
export const failingURL = `http://127.0.0.1:${port + 5}`;
const failingServer = {
  command: `${server} serve`,
  cwd: root,
  url: `${failingURL}/healthz`,
  reuseExistingServer: false,
  timeout: 60_000,
  stdout: "pipe" as const,
  stderr: "pipe" as const,
  env: {
    SLUICE_ADDR: failingURL.replace("http://", ""),
    DATABASE_URL: `sqlite://${join(dataDir, "failing.db")}`,
    SLUICE_RATE_INTERVAL: "200ms",
    SLUICE_PROCESSOR: "http",
    SLUICE_PROCESSOR_URL: "http://127.0.0.1:9/batches",
    SLUICE_PROCESSOR_ATTEMPTS: "2",
    SLUICE_PROCESSOR_BACKOFF: "0s",
    SLUICE_MAX_STREAMS_PER_CLIENT: "1",
    LEPTOS_SITE_ROOT: siteRoot,
    RUST_LOG: "warn",
  },
};
const replicaServers = process.env.SLUICE_E2E_DATABASE
  ? replicaURLs.map((url) => ({
      command: `${server} serve`,
      cwd: root,
      url: `${url}/readyz`,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: "pipe" as const,
      stderr: "pipe" as const,
      env: {
        SLUICE_ADDR: url.replace("http://", ""),
        DATABASE_URL: process.env.SLUICE_E2E_DATABASE!,
        SLUICE_RATE_INTERVAL: "500ms",
        SLUICE_SIMULATED_WORK: "200ms",
        LEPTOS_SITE_ROOT: siteRoot,
        RUST_LOG: "warn",
      },
    }))
  : [];

export default defineConfig({
  testDir: "./tests",
  timeout: 30_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  forbidOnly: true,
  retries: 0,
  reporter: [["list"]],
  use: {
    baseURL,
    trace: "retain-on-failure",
  },
  // SLUICE_E2E_MAIN_ONLY=1 starts only the main server (scripts/bench's status-to-screen run).
  webServer: (process.env.SLUICE_E2E_MAIN_ONLY ? (s: any[]) => s.slice(0, 1) : (s: any[]) => s)([{
    command: `${server} serve`,
    cwd: root,
    url: `${baseURL}/`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: "pipe",
    stderr: "pipe",
    env: {
      SLUICE_ADDR: `127.0.0.1:${port}`,
      DATABASE_URL: `sqlite://${database}`,
      SLUICE_RATE_INTERVAL: "500ms",
      SLUICE_SIMULATED_WORK: "200ms",
      LEPTOS_SITE_ROOT: siteRoot,
      SLUICE_CORS_ORIGINS: csrURL,
      RUST_LOG: "warn",
    },
  }, {
    command: `${server} serve`,
    cwd: root,
    url: `${guardedURL}/healthz`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: "pipe",
    stderr: "pipe",
    env: {
      SLUICE_ADDR: `127.0.0.1:${guardedPort}`,
      DATABASE_URL: `sqlite://${join(dataDir, "guarded.db")}`,
      SLUICE_RATE_INTERVAL: "500ms",
      SLUICE_SIMULATED_WORK: "200ms",
      LEPTOS_SITE_ROOT: siteRoot,
      SLUICE_API_TOKENS: writeToken,
      SLUICE_READ_TOKENS: readToken,
      RUST_LOG: "warn",
    },
  }, {
    command: `node static-server.mjs ${join(root, "target/trunk-dist")} ${csrPort}`,
    url: `${csrURL}/index.html`,
    reuseExistingServer: false,
    timeout: 10_000,
  }, failingServer, ...replicaServers]),
  projects: [
    {
      name: "chromium",
      use: {
        ...devices["Desktop Chrome"],
        launchOptions: {
          executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
          args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
          ],
        },
      },
    },
  ],
});
