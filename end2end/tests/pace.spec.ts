import { test, expect, type Page } from "@playwright/test";
import { openDashboard } from "./helpers";

// Seeing the pace: the timeline marks every start, and the page reads only when events come.

test.afterEach(async ({ request }) => {
  // What a test left waiting is cancelled, so no backlog is left for the specs after it.
  const listed = (await (await request.get("/ingestions?status=yet_to_start&limit=100")).json()).ingestions;
  for (const i of listed) await request.post(`/ingest/${i.ingestion_id}/cancel`);
  await request.post("/admin/resume");
});

test("the timeline gains a mark per start, on the interval grid", async ({ page, request }) => {
  await openDashboard(page);
  const res = await request.post("/ingest", { data: { ids: [1, 2, 3, 4, 5, 6, 7], priority: "HIGH" } });
  const id = (await res.json()).ingestion_id as string;
  await expect
    .poll(async () => (await (await request.get(`/status/${id}`)).json()).status, { timeout: 15_000 })
    .toBe("completed");
  const status = await (await request.get(`/status/${id}`)).json();
  for (const batch of status.batches) {
    const mark = page.locator(`[data-testid="timeline-start"][data-batch-id="${batch.batch_id}"]`);
    await expect(mark).toHaveCount(1);
    await expect(mark).toHaveAttribute("data-priority", "HIGH");
  }
  await expect(page.getByTestId("timeline-summary")).toContainText("the rate allows 120.0");
  await expect(page.locator(".pace-drawing .grid").first()).toBeAttached();
  await expect(page.getByTestId("timeline-depth")).toHaveCount(3);
});

/** Counts the page's snapshot reads (the server functions it calls on events). */
function countReads(page: Page): { counts: Record<string, number> } {
  const seen = { counts: {} as Record<string, number> };
  page.on("request", (r) => {
    const path = new URL(r.url()).pathname;
    if (path.startsWith("/api/")) seen.counts[path] = (seen.counts[path] ?? 0) + 1;
  });
  return seen;
}

test("the dashboard reads nothing while nothing happens, and once per burst of events", async ({ page, request }) => {
  // Quiet: nothing starts and nothing runs.
  await request.post("/admin/pause");
  await expect
    .poll(async () => (await (await request.get("/queue")).json()).in_flight, { timeout: 15_000 })
    .toBeNull();
  await openDashboard(page);
  // Let the first reads after the stream opened settle.
  await page.waitForTimeout(500);
  const reads = countReads(page);
  await page.waitForTimeout(3_000);
  expect(reads.counts, "no request while nothing happens").toEqual({});
  // One event: each snapshot is read exactly once.
  await request.post("/ingest", { data: { ids: [9], priority: "LOW" } });
  await expect.poll(() => reads.counts["/api/queue"] ?? 0).toBe(1);
  await page.waitForTimeout(1_000);
  expect(reads.counts).toEqual({ "/api/queue": 1, "/api/pace": 1, "/api/ingestions": 1 });
  // A burst: twelve submissions at once, twelve events; they are read together (a read per
  // 30 ms window they arrive in, not one per event), each snapshot as often as the others.
  for (const key of Object.keys(reads.counts)) delete reads.counts[key];
  await Promise.all(
    Array.from({ length: 12 }, (_, n) => request.post("/ingest", { data: { ids: [n + 1], priority: "LOW" } })),
  );
  await expect.poll(() => reads.counts["/api/queue"] ?? 0).toBeGreaterThan(0);
  await page.waitForTimeout(1_000);
  console.log(`reads after a burst of 12 events: ${JSON.stringify(reads.counts)}`);
  expect(reads.counts["/api/queue"]).toBeLessThanOrEqual(4);
  expect(reads.counts["/api/pace"]).toBe(reads.counts["/api/queue"]);
  expect(reads.counts["/api/ingestions"]).toBe(reads.counts["/api/queue"]);
});
