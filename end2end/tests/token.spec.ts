import { test, expect } from "@playwright/test";
import { guardedURL, readToken, writeToken } from "../playwright.config";
import { card } from "./helpers";

// A server that needs a token to read and another to write.

test.describe("a server with API tokens", () => {
  test("the dashboard asks for a token, keeps it for the session, and works with it", async ({ page }) => {
    await page.goto(`${guardedURL}/`);
    await expect(page.getByTestId("app")).toHaveAttribute("data-hydrated", "true");
    const form = page.getByTestId("token-form");
    await expect(form).toBeVisible();
    await expect(form).toContainText("needs an API token");

    // A read token: the page loads and streams, and the buttons that write are disabled,
    // saying why, with a way to use another token.
    await page.getByTestId("token-input").fill(readToken);
    await page.getByTestId("token-save").click();
    await expect(page.getByTestId("connection")).toHaveAttribute("data-state", "live");
    await expect(page.getByTestId("no-ingestions")).toBeVisible();
    await expect(form).toBeHidden();
    const notice = page.getByTestId("read-only");
    await expect(notice).toContainText("may only read");
    await page.getByTestId("ids-input").fill("1-4");
    for (const button of ["submit", "pause-toggle", "rate-set"]) {
      await expect(page.getByTestId(button)).toBeDisabled();
      await expect(page.getByTestId(button)).toHaveAttribute("title", /may only read/);
    }
    await page.getByTestId("change-token").click();
    await expect(form).toContainText("may only read. Another API token");

    // A write token: the submission goes through and its cards flip live.
    await page.getByTestId("token-input").fill(writeToken);
    await page.getByTestId("token-save").click();
    await expect(page.getByTestId("connection")).toHaveAttribute("data-state", "live");
    await page.getByTestId("ids-input").fill("1-4");
    await page.getByTestId("priority").selectOption("HIGH");
    await page.getByTestId("submit").click();
    const accepted = page.getByTestId("form-accepted");
    await expect(accepted).toContainText("Accepted as ");
    const short = (await accepted.textContent())!.replace("Accepted as ", "").trim();
    await expect(card(page, short)).toHaveAttribute("data-status", "completed");

    // The token is the tab's: a new browser context starts without it.
    const other = await page.context().browser()!.newPage();
    await other.goto(`${guardedURL}/`);
    await expect(other.getByTestId("token-form")).toBeVisible();
    await other.close();
  });
});
