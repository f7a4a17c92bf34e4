import { test, expect } from "@playwright/test";
import { csrURL } from "../playwright.config";
import { submit } from "./helpers";

// The Trunk build, served as static files from another origin, pointed at the server with
// ?server=; the server allows that origin (SLUICE_CORS_ORIGINS).
test("the client-side dashboard on another origin submits and follows work live", async ({ page, baseURL }) => {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${csrURL}/?server=${encodeURIComponent(baseURL!)}`);
  await expect(page.getByTestId("app")).toHaveAttribute("data-hydrated", "true");
  await expect(page.getByTestId("connection")).toHaveAttribute("data-state", "live");
  await expect(page.getByTestId("queue")).toContainText("One batch every 0.5 s");

  const ingestion = await submit(page, "7001-7004", "HIGH");
  await expect(ingestion).toHaveAttribute("data-status", "completed");
  await expect(ingestion.locator('[data-testid="batch"][data-status="completed"]')).toHaveCount(2);
  // Its page is the server's (the static host has none).
  const id = await ingestion.getAttribute("data-ingestion-id");
  await expect(ingestion.getByTestId("ingestion-link")).toHaveAttribute("href", `${baseURL}/ingestions/${id}`);
  expect(errors).toEqual([]);
});
