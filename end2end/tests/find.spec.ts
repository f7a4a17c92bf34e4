import { test, expect } from "@playwright/test";
import { openDashboard, submit } from "./helpers";

// Finding work: a search by the short id a card shows opens that ingestion's page; a page of a
// big ingestion opens fast and pages through its batches; the list filters and pages.

// What a test submitted is cancelled after it, whatever happened, so no backlog is left for
// the specs after it.
const submitted: string[] = [];
test.afterEach(async ({ request }) => {
  for (const id of submitted.splice(0)) await request.post(`/ingest/${id}/cancel`);
  await request.post("/admin/resume");
});

test("a search by the short id on a card opens that ingestion's page, live", async ({ page, request }) => {
  // Held, so the ingestion waits where the test can watch it start.
  await request.post("/admin/pause");
  await openDashboard(page);
  const card = await submit(page, "1-7", "LOW");
  const id = (await card.getAttribute("data-ingestion-id"))!;
  const short = id.slice(-8);
  await page.getByTestId("search").fill(short);
  await page.getByTestId("search-go").click();
  await page.waitForURL(`**/ingestions/${id}`);
  await expect(page.getByTestId("app")).toHaveAttribute("data-hydrated", "true");
  await expect(page.getByTestId("connection")).toHaveAttribute("data-state", "live");
  const shown = page.locator(`[data-testid="ingestion"][data-ingestion-id="${id}"]`);
  await expect(shown).toBeVisible();
  await expect(shown.getByTestId("batch")).toHaveCount(3);
  await expect(page.getByTestId("page-range")).toHaveText("Batches 1–3 of 3");
  // Live: resumed from outside, the page shows the batches run without a reload.
  await request.post("/admin/resume");
  await expect(shown.getByTestId("ingestion-status")).toHaveText("completed", { timeout: 20_000 });
  // An id that matches nothing says so, on the dashboard.
  await openDashboard(page);
  await page.getByTestId("search").fill("ffffffff0000");
  await page.getByTestId("search-go").click();
  await expect(page.getByTestId("search-none")).toBeVisible();
  await page.getByTestId("search").fill("not an id");
  await page.getByTestId("search-go").click();
  await expect(page.getByTestId("search-error")).toContainText("neither an id");
});

test("the page of a 10 000-batch ingestion opens within a second and pages through its batches", async ({ page, request }) => {
  await request.post("/admin/pause");
  const res = await request.post("/ingest", {
    data: { ids: Array.from({ length: 30_000 }, (_, i) => i + 1), priority: "LOW" },
  });
  expect(res.status()).toBe(200);
  const id = (await res.json()).ingestion_id as string;
  submitted.push(id);
  await page.goto(`/ingestions/${id}`);
  const batches = page.getByTestId("batch");
  await expect(batches).toHaveCount(100);
  // The browser's own timing of the navigation: from asking for the page to its batches parsed
  // into the document (they come rendered by the server; the 7 MB debug wasm that hydrates
  // them loads after).
  const opened = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming;
    return Math.round(nav.domContentLoadedEventStart - nav.startTime);
  });
  console.log(`the page of a 10 000-batch ingestion opened in ${opened} ms`);
  expect(opened, `opened in ${opened} ms`).toBeLessThan(1_000);
  await expect(page.getByTestId("page-range")).toHaveText("Batches 1–100 of 10000");
  await expect(page.getByTestId("app")).toHaveAttribute("data-hydrated", "true");
  // Paging moves through the batches without reloading the page.
  await page.getByTestId("page-next").click();
  await expect(page.getByTestId("page-range")).toHaveText("Batches 101–200 of 10000");
  await expect(batches.first()).toHaveAttribute("data-position", "100");
  await expect(batches.first()).toContainText("301");
  await page.getByTestId("page-last").click();
  await expect(page.getByTestId("page-range")).toHaveText("Batches 9901–10000 of 10000");
  await expect(batches.last()).toContainText("30000");
  await batches.last().scrollIntoViewIfNeeded();
  // Every waiting batch on the page says when it should start.
  await request.post("/admin/resume");
  await expect(batches.first()).toContainText("starts ");
});

test("the list filters by status and priority and pages to older ingestions", async ({ page, request }) => {
  await request.post("/admin/pause");
  const ids: string[] = [];
  for (let i = 0; i < 22; i++) {
    const res = await request.post("/ingest", { data: { ids: [i + 1], priority: i === 0 ? "HIGH" : "MEDIUM" } });
    ids.push((await res.json()).ingestion_id);
  }
  submitted.push(...ids);
  await openDashboard(page);
  const listed = page.getByTestId("ingestion");
  await expect(listed).toHaveCount(20);
  await expect(listed.first()).toHaveAttribute("data-ingestion-id", ids[21]);
  await page.getByTestId("list-older").click();
  await expect(listed.first()).toHaveAttribute("data-ingestion-id", ids[1]);
  await expect(page.locator(`[data-testid="ingestion"][data-ingestion-id="${ids[0]}"]`)).toBeVisible();
  await page.getByTestId("list-newest").click();
  await expect(listed.first()).toHaveAttribute("data-ingestion-id", ids[21]);
  await page.getByTestId("priority-filter").selectOption("HIGH");
  await page.getByTestId("status-filter").selectOption("yet_to_start");
  await expect(listed.first()).toHaveAttribute("data-ingestion-id", ids[0]);
  await expect(listed.locator('[data-testid="ingestion-status"]:not(:text("yet_to_start"))')).toHaveCount(0);
  await page.getByTestId("status-filter").selectOption("completed");
  await expect(page.locator(`[data-testid="ingestion"][data-ingestion-id="${ids[0]}"]`)).toHaveCount(0);
  await page.getByTestId("priority-filter").selectOption("");
  await page.getByTestId("status-filter").selectOption("");
});
