import { test, expect } from "@playwright/test";
import { openDashboard } from "./helpers";

// Operating from the dashboard: a pause from one window shows in every other one, pushed.

test.afterEach(async ({ request }) => {
  // Whatever happened, leave the shared server dispatching for the specs after this one.
  await request.post("/admin/resume");
  await request.put("/admin/rate", { data: { rate_interval: null } });
});

test("a pause from one window shows in another, and so does the resume", async ({ browser }) => {
  const [first, second] = await Promise.all([browser.newContext(), browser.newContext()]);
  const [one, other] = await Promise.all([first.newPage(), second.newPage()]);
  await openDashboard(one);
  await openDashboard(other);
  const toggle = one.getByTestId("pause-toggle");
  await expect(toggle).toHaveText("Pause dispatch");
  await toggle.click();
  await expect(other.getByTestId("next-slot")).toContainText("paused by an operator");
  await expect(other.getByTestId("pause-toggle")).toHaveText("Resume dispatch");
  await other.getByTestId("pause-toggle").click();
  await expect(one.getByTestId("next-slot")).not.toContainText("paused");
  await expect(one.getByTestId("pause-toggle")).toHaveText("Pause dispatch");
  await Promise.all([first.close(), second.close()]);
});

test("a rate set from one window shows in another, and so does going back to the configured one", async ({ browser }) => {
  const [first, second] = await Promise.all([browser.newContext(), browser.newContext()]);
  const [one, other] = await Promise.all([first.newPage(), second.newPage()]);
  await openDashboard(one);
  await openDashboard(other);
  await expect(other.getByTestId("queue")).toContainText("One batch every 0.5 s ·");
  await one.getByTestId("rate-input").fill("nonsense");
  await one.getByTestId("rate-set").click();
  await expect(one.getByTestId("rate-form")).toContainText("examples: 250ms, 5s, 1m");
  await one.getByTestId("rate-input").fill("2s");
  await one.getByTestId("rate-set").click();
  await expect(other.getByTestId("queue")).toContainText("One batch every 2.0 s (set at run time)");
  await expect(one.getByTestId("rate-input")).toHaveValue("");
  await other.getByTestId("rate-clear").click();
  await expect(one.getByTestId("queue")).toContainText("One batch every 0.5 s ·");
  await expect(one.getByTestId("rate-clear")).toHaveCount(0);
  await Promise.all([first.close(), second.close()]);
});
