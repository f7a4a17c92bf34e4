import { test, expect } from "@playwright/test";
import { failingURL } from "../playwright.config";
import { card } from "./helpers";

// A server whose downstream cannot be reached: two attempts per batch, then failed.

test("a batch the downstream never took shows failed, with the error, on its card", async ({ page, request }) => {
  await page.goto(`${failingURL}/`);
  await expect(page.getByTestId("app")).toHaveAttribute("data-hydrated", "true");
  await expect(page.getByTestId("connection")).toHaveAttribute("data-state", "live");
  const res = await request.post(`${failingURL}/ingest`, { data: { ids: [1, 2, 3, 4], priority: "HIGH" } });
  expect(res.status()).toBe(200);
  const ingestion = card(page, (await res.json()).ingestion_id);
  await expect(ingestion).toHaveAttribute("data-status", "failed");
  const batch = ingestion.getByTestId("batch").first();
  await expect(batch).toHaveAttribute("data-status", "failed");
  await expect(batch).toContainText("failed after 2 attempts");
  await expect(batch.getByTestId("batch-error")).toContainText("could not connect");
  await expect(ingestion.getByTestId("eta")).toContainText("Failed: 2 batches failed");
  // The batch's history, read when opened: each attempt with its replica and outcome.
  const history = batch.getByTestId("batch-attempts");
  await expect(history.locator("summary")).toHaveText("2 attempts");
  await history.locator("summary").click();
  const attempts = history.getByTestId("attempt");
  await expect(attempts).toHaveCount(2);
  await expect(attempts.nth(0)).toHaveAttribute("data-outcome", "retrying");
  await expect(attempts.nth(1)).toHaveAttribute("data-outcome", "failed");
  await expect(attempts.nth(1)).toContainText("could not connect");
  // An operator puts it back: it runs once more (its attempts keep counting) and fails again.
  await batch.getByTestId("retry").click();
  await expect(batch).toContainText("failed after 3 attempts");
});
