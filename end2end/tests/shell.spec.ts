import { test, expect } from "@playwright/test";

test.describe("the page at /", () => {
  test("hydrates in the browser without errors", async ({ page }) => {
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(m.text());
    });

    await page.goto("/");
    await expect(page).toHaveTitle("sluice");
    // Set by an effect, so only true once the wasm bundle has taken over the page.
    await expect(page.getByTestId("app")).toHaveAttribute("data-hydrated", "true");
    await expect(page.getByRole("heading", { level: 1 })).toHaveText("sluice");
    expect(errors).toEqual([]);
  });

  test("is served with its stylesheet", async ({ request }) => {
    const css = await request.get("/pkg/sluice.css");
    expect(css.status()).toBe(200);
    expect(await css.text()).toContain("prefers-color-scheme");
  });
});
