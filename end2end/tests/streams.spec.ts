import { test, expect } from "@playwright/test";
import { failingURL } from "../playwright.config";

// The failing server allows one event stream per client: a second page is refused its stream
// (429 too_many_streams) and must say so, back off, and go live once the first page closes.

test("a page refused its event stream says so, retries with backoff, and goes live once a stream is free", async ({ browser }) => {
  const first = await browser.newPage();
  await first.goto(`${failingURL}/`);
  await expect(first.getByTestId("connection")).toHaveAttribute("data-state", "live");

  const second = await browser.newPage();
  await second.goto(`${failingURL}/`);
  await expect(second.getByTestId("app")).toHaveAttribute("data-hydrated", "true");
  const badge = second.getByTestId("connection");
  await expect(badge).toHaveAttribute("data-state", "backing-off");
  await expect(badge).toContainText(/retrying in \d+ s/);

  await first.close();
  await expect(badge).toHaveAttribute("data-state", "live", { timeout: 20_000 });
  await second.close();
});
