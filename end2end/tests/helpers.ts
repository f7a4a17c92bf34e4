import { expect, type Locator, type Page } from "@playwright/test";

/** Open the dashboard and wait until the wasm bundle runs it and the event stream is open. */
export async function openDashboard(page: Page): Promise<void> {
  await page.goto("/");
  await expect(page.getByTestId("app")).toHaveAttribute("data-hydrated", "true");
  await expect(page.getByTestId("connection")).toHaveAttribute("data-state", "live");
}

/** Submit IDs through the form; returns the new ingestion's card. */
export async function submit(page: Page, ids: string, priority: "HIGH" | "MEDIUM" | "LOW", tenant = ""): Promise<Locator> {
  await page.getByTestId("ids-input").fill(ids);
  await page.getByTestId("priority").selectOption(priority);
  await page.getByTestId("tenant").fill(tenant);
  await page.getByTestId("submit").click();
  const accepted = page.getByTestId("form-accepted");
  await expect(accepted).toContainText("Accepted as ");
  const short = (await accepted.textContent())!.replace("Accepted as ", "").trim();
  return card(page, short);
}

/** The card of the ingestion whose id ends with `short` (the dashboard's short id). */
export function card(page: Page, short: string): Locator {
  return page.locator(`[data-testid="ingestion"][data-ingestion-id$="${short}"]`);
}
