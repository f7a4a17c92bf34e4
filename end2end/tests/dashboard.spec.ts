import { test, expect } from "@playwright/test";
import { card, openDashboard, submit } from "./helpers";

// The server runs with a 500 ms interval and 200 ms of simulated work per batch.

test.describe("the dashboard", () => {
  test("a submission through the form appears at once and its cards reach completed", async ({ page }) => {
    await openDashboard(page);
    const ingestion = await submit(page, "1-7", "HIGH");
    await expect(ingestion).toBeVisible();
    await expect(ingestion).toHaveAttribute("data-priority", "HIGH");
    const batches = ingestion.getByTestId("batch");
    await expect(batches).toHaveCount(3);
    await expect(batches.first()).toContainText("1, 2, 3");
    await expect(batches.last()).toContainText("7");
    // Each batch card holds what the downstream returned for its IDs; opened while the other
    // batches still run, the list stays open through the refreshes their events bring.
    const results = batches.first().getByTestId("batch-results");
    await expect(results.locator("summary")).toHaveText("3 results");
    await results.locator("summary").click();
    await expect(ingestion).toHaveAttribute("data-status", "completed");
    await expect(ingestion.locator('[data-testid="batch"][data-status="completed"]')).toHaveCount(3);
    await expect(ingestion.getByTestId("progress")).toContainText("3 of 3 batches completed");
    await expect(ingestion.getByTestId("eta")).toContainText("Completed at");
    await expect(results).toHaveAttribute("open", "");
    await expect(results).toContainText('1 "processed"');
    // The form is ready for the next submission.
    await expect(page.getByTestId("ids-input")).toHaveValue("");
  });

  test("cancelling an ingestion stops the batches that have not started", async ({ page }) => {
    await openDashboard(page);
    // 20 batches at 500 ms: plenty still waiting when the button is pressed.
    const ingestion = await submit(page, "1-60", "LOW");
    await expect(ingestion.locator('[data-testid="batch"][data-status="yet_to_start"]').first()).toBeVisible();
    // It asks first; "Keep" keeps everything. (Dispatch is held meanwhile, so the card is not
    // redrawn under the clicks; the batch in flight finishes.)
    const waiting = ingestion.locator('[data-testid="batch"][data-status="yet_to_start"]');
    await page.request.post("/admin/pause");
    try {
      await ingestion.getByTestId("cancel").click();
      await expect(ingestion.getByTestId("cancel-question")).toContainText("waiting batches?");
      await ingestion.getByTestId("cancel-keep").click();
      await expect(ingestion.getByTestId("cancel-question")).toHaveCount(0);
      const id = await ingestion.getAttribute("data-ingestion-id");
      const kept = await (await page.request.get(`/status/${id}`)).json();
      expect(kept.batches.filter((b: { status: string }) => b.status === "cancelled")).toEqual([]);
      await expect(waiting.first()).toBeVisible();
      await ingestion.getByTestId("cancel").click();
      await ingestion.getByTestId("cancel-confirm").click();
      await expect(ingestion).toHaveAttribute("data-status", "cancelled");
    } finally {
      await page.request.post("/admin/resume");
    }
    await expect(ingestion.locator('[data-testid="batch"][data-status="cancelled"]').first()).toBeVisible();
    await expect(ingestion.locator('[data-testid="batch"][data-status="yet_to_start"]')).toHaveCount(0);
    await expect(ingestion.getByTestId("eta")).toContainText("Cancelled at");
    await expect(ingestion.getByTestId("progress")).toContainText("cancelled");
    await expect(ingestion.getByTestId("cancel")).toHaveCount(0);
  });

  test("an invalid entry shows an inline error and sends nothing", async ({ page }) => {
    await openDashboard(page);
    const sent: string[] = [];
    page.on("request", (r) => {
      if (r.method() === "POST" && new URL(r.url()).pathname === "/api/ingest") sent.push(r.url());
    });
    const input = page.getByTestId("ids-input");
    const error = page.getByTestId("form-error");

    await input.fill("1, 2, abc");
    await expect(error).toContainText('"abc" is not an ID');
    await expect(input).toHaveAttribute("aria-invalid", "true");
    await page.getByTestId("submit").click();
    await expect(error).toContainText('"abc" is not an ID');

    for (const [text, message] of [
      ["0", "out of range"],
      ["1000000008", "out of range"],
      ["20-10", "goes down"],
      ["1-1000000007", "limit"],
      ["   ", "at least one ID"],
    ]) {
      await input.fill(text);
      await input.press("Control+Enter");
      await expect(error).toContainText(message);
    }
    expect(sent).toEqual([]);
    await expect(page.getByTestId("form-accepted")).toHaveText("");

    await input.fill("5, 6");
    await expect(error).toHaveText("");
    await expect(input).toHaveAttribute("aria-invalid", "false");
    await expect(page.getByTestId("form-summary")).toHaveText("2 IDs in 1 batch");
  });

  test("a HIGH submission overtakes an earlier LOW one on screen", async ({ page }) => {
    await openDashboard(page);
    const low = await submit(page, "201-218", "LOW");
    const high = await submit(page, "301-303", "HIGH");
    await expect(high).toHaveAttribute("data-status", "completed");
    // When the later HIGH work is done, the earlier LOW work is still waiting.
    const lowWaiting = low.locator('[data-testid="batch"][data-status="yet_to_start"]');
    expect(await lowWaiting.count()).toBeGreaterThan(0);
    // The newest is listed first.
    const ids = await page.getByTestId("ingestion").evaluateAll((els) =>
      els.map((e) => e.getAttribute("data-ingestion-id")),
    );
    expect(ids.indexOf(await high.getAttribute("data-ingestion-id"))).toBeLessThan(
      ids.indexOf(await low.getAttribute("data-ingestion-id")),
    );
    await expect(low).toHaveAttribute("data-status", "completed", { timeout: 15_000 });
  });

  test("a reload keeps the list, because it comes from the server", async ({ page }) => {
    await openDashboard(page);
    const ingestion = await submit(page, "401, 402", "MEDIUM");
    const id = await ingestion.getAttribute("data-ingestion-id");
    await page.reload();
    await expect(page.getByTestId("app")).toHaveAttribute("data-hydrated", "true");
    await expect(card(page, id!)).toBeVisible();
    await expect(card(page, id!).getByTestId("batch")).toContainText(["401, 402"]);
  });

  test("a second browser sees the first one's submission appear and progress live", async ({ browser }) => {
    const [first, second] = await Promise.all([browser.newContext(), browser.newContext()]);
    const [a, b] = await Promise.all([first.newPage(), second.newPage()]);
    await openDashboard(a);
    await openDashboard(b);
    const requestsBefore: string[] = [];
    b.on("request", (r) => requestsBefore.push(r.url()));

    const mine = await submit(a, "501-506", "MEDIUM");
    const id = await mine.getAttribute("data-ingestion-id");
    const theirs = card(b, id!);
    await expect(theirs).toBeVisible();
    await expect(theirs).toHaveAttribute("data-status", "completed");
    await expect(theirs.locator('[data-testid="batch"][data-status="completed"]')).toHaveCount(2);
    // Live, not reloaded: the second page never navigated.
    expect(requestsBefore.filter((u) => new URL(u).pathname === "/")).toEqual([]);
    await Promise.all([first.close(), second.close()]);
  });

  test("the queue panel shows depth, the next slot and recent dispatches", async ({ page }) => {
    await openDashboard(page);
    await submit(page, "601-630", "LOW");
    const queue = page.getByTestId("queue");
    await expect(queue.getByTestId("depth-LOW").locator("dd")).not.toHaveText(/^0 /);
    await expect(queue.getByTestId("next-slot")).toContainText(/UTC · in \d/);
    await expect(queue.getByTestId("recent-dispatches").locator("li").first()).toBeVisible();
    await expect(queue).toContainText("One batch every 0.5 s");
  });

  test("work submitted for a tenant shows its tenant, in the queue too, and the list filters by it", async ({ page }) => {
    await openDashboard(page);
    // Long enough to still be waiting while it is looked at.
    const theirs = await submit(page, "701-760", "LOW", "acme-e2e");
    await expect(theirs.getByTestId("ingestion-tenant")).toHaveText("acme-e2e");
    await expect(page.getByTestId("queue").getByTestId("tenants-LOW")).toContainText("acme-e2e");
    const unnamed = await submit(page, "761", "LOW");
    await expect(unnamed.getByTestId("ingestion-tenant")).toHaveText("default");
    await page.getByTestId("tenant-filter").fill("acme");
    await expect(unnamed).toBeHidden();
    await expect(theirs).toBeVisible();
    await page.getByTestId("tenant-filter").fill("");
    await expect(unnamed).toBeVisible();
    await page.request.post("/admin/pause");
    try {
      await theirs.getByTestId("cancel").click();
      await theirs.getByTestId("cancel-confirm").click();
      await expect(theirs).toHaveAttribute("data-status", "cancelled");
    } finally {
      await page.request.post("/admin/resume");
    }
  });
});
