import { test, expect } from "@playwright/test";
import { replicaURLs } from "../playwright.config";
import { card } from "./helpers";

// Two replicas on one PostgreSQL database: one queue, seen live from either.

test.describe("two replicas on PostgreSQL", () => {
  test.skip(process.env.SLUICE_SKIP_POSTGRES === "1", "SLUICE_SKIP_POSTGRES=1");

  test("a dashboard on one replica shows work submitted to and dispatched by the other", async ({ page, request }) => {
    expect(process.env.SLUICE_E2E_DATABASE, "set SLUICE_TEST_POSTGRES (or SLUICE_SKIP_POSTGRES=1)").toBeTruthy();
    const [watched, other] = replicaURLs;
    await page.goto(`${watched}/`);
    await expect(page.getByTestId("app")).toHaveAttribute("data-hydrated", "true");
    await expect(page.getByTestId("connection")).toHaveAttribute("data-state", "live");

    const res = await request.post(`${other}/ingest`, { data: { ids: [1, 2, 3, 4, 5, 6, 7], priority: "HIGH" } });
    expect(res.status()).toBe(200);
    const id: string = (await res.json()).ingestion_id;
    const ingestion = card(page, id);
    // It appears without a reload (the other replica's NOTIFY reached this one's stream)...
    await expect(ingestion).toBeVisible();
    // ...and its cards flip live until done.
    await expect(ingestion).toHaveAttribute("data-status", "completed");
    await expect(ingestion.locator('[data-testid="batch"][data-status="completed"]')).toHaveCount(3);
  });
});
