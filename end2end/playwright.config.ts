import { defineConfig, devices } from "@playwright/test";
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
const database = join(mkdtempSync(join(tmpdir(), "sluice-e2e-")), "sluice.db");

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
  webServer: [{
    command: `${process.env.SLUICE_BIN ?? join(root, "target/debug/sluice")} serve`,
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
      LEPTOS_SITE_ROOT: process.env.LEPTOS_SITE_ROOT ?? join(root, "target/site"),
      SLUICE_CORS_ORIGINS: csrURL,
      RUST_LOG: "warn",
    },
  }, {
    command: `node static-server.mjs ${join(root, "target/trunk-dist")} ${csrPort}`,
    url: `${csrURL}/index.html`,
    reuseExistingServer: false,
    timeout: 10_000,
  }],
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
