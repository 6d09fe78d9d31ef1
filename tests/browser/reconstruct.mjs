// Real-browser check of the MUSE Gradio demo, driven by playwright-core with Debian's chromium.
//
// usage: node reconstruct.mjs --url URL --image PNG --bad FILE --out DIR [--chromium PATH]
//
// 1. Reconstruct tab: upload an image, click "Reconstruct", wait for the reconstruction and the metrics.
// 2. The same tab: upload a text file renamed .png, click, wait for the error message; then a good image
//    again works (the server keeps serving).
// 3. Structure tab: upload the image, click a point on it, wait for the attention overlay.
// Screenshots go to DIR; a JSON summary is printed on the last line of stdout.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, "")] = argv[i + 1];
  for (const key of ["url", "image", "bad", "out"]) {
    if (!out[key]) throw new Error(`missing --${key}`);
  }
  return out;
}

const FLAGS = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
];
const TIMEOUT = 90_000;

async function waitForImage(page, selector) {
  // An <img> inside the component whose pixels have loaded; returns its natural size.
  const img = page.locator(`${selector} img`).first();
  await img.waitFor({ state: "visible", timeout: TIMEOUT });
  await page.waitForFunction(
    (sel) => {
      const el = document.querySelector(`${sel} img`);
      return el && el.complete && el.naturalWidth > 0;
    },
    selector,
    { timeout: TIMEOUT },
  );
  return img.evaluate((el) => ({ width: el.naturalWidth, height: el.naturalHeight, src: el.src }));
}

async function main() {
  const opts = args();
  const profile = mkdtempSync(join(tmpdir(), "muse-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: opts.chromium || "/usr/bin/chromium",
    headless: true,
    args: FLAGS,
    viewport: { width: 1400, height: 1100 },
  });
  const summary = {};
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(TIMEOUT);
    await page.goto(opts.url, { waitUntil: "domcontentloaded" });
    await page.locator("#reconstruct-input").waitFor({ state: "visible" });

    // 1. Reconstruct a good image.
    await page.locator("#reconstruct-input input[type=file]").setInputFiles(opts.image);
    await waitForImage(page, "#reconstruct-input");
    await page.locator("#reconstruct-button").click();
    summary.reconstruction = await waitForImage(page, "#reconstruct-output");
    const metrics = page.locator("#reconstruct-metrics");
    await metrics.getByText("psnr_db").waitFor({ timeout: TIMEOUT });
    summary.metrics_text = (await metrics.innerText()).replace(/\s+/g, " ").trim();
    await page.screenshot({ path: join(opts.out, "reconstruct.png"), fullPage: true });

    // 2. A text file renamed .png: the page shows the app's error; the server keeps serving.
    await page.locator("#reconstruct-input button[aria-label='Clear']").first().click().catch(() => {});
    await page.locator("#reconstruct-input input[type=file]").setInputFiles(opts.bad);
    await page.locator("#reconstruct-button").click();
    const toast = page.getByText("is not an image that can be decoded").first();
    await toast.waitFor({ state: "visible", timeout: TIMEOUT });
    summary.bad_upload_error = (await toast.innerText()).trim();
    await page.screenshot({ path: join(opts.out, "bad_upload.png"), fullPage: true });

    // 3. Structure: upload, click a point of the picture, wait for the student's attention overlay.
    await page.getByRole("tab", { name: "Structure" }).click();
    await page.locator("#structure-input").waitFor({ state: "visible" });
    await page.locator("#structure-input input[type=file]").setInputFiles(opts.image);
    await waitForImage(page, "#structure-input");
    // Click 75% across and 30% down the *picture*: the <img> box centres it with object-fit: scale-down.
    const target = await page.locator("#structure-input img").first().evaluate((el) => {
      const r = el.getBoundingClientRect();
      const scale = Math.min(r.width / el.naturalWidth, r.height / el.naturalHeight, 1);
      const w = el.naturalWidth * scale, h = el.naturalHeight * scale;
      return { x: r.left + (r.width - w) / 2 + 0.75 * w, y: r.top + (r.height - h) / 2 + 0.3 * h };
    });
    await page.mouse.click(target.x, target.y);
    summary.student = await waitForImage(page, "#structure-student");
    const note = page.locator("#structure-note");
    await note.getByText("Student").first().waitFor({ timeout: TIMEOUT });
    summary.structure_note = (await note.innerText()).replace(/\s+/g, " ").trim();
    summary.clicked = {
      x: Number(await page.locator("#structure-x input[type=number]").inputValue()),
      y: Number(await page.locator("#structure-y input[type=number]").inputValue()),
    };
    await page.screenshot({ path: join(opts.out, "structure.png"), fullPage: true });
    summary.ok = true;
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
  console.log(JSON.stringify(summary));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
