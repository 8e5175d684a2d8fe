// The browser page, used as an analyst would, in Debian's Chromium against a real stack.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { artifacts, card, corpus, launchBrowser, nessusFile, startStack, token, until } from './harness.mjs';

// Large enough that the import streams progress for several seconds, so a click meant for a
// running import lands before it ends (a 40 MiB import can end within two seconds).
const LONG_IMPORT_BYTES = 120 << 20;

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/**
 * A fresh stack and a page on it; both closed by the returned `close`. Every dialog is accepted
 * and its type kept in `dialogs`; `csp` keeps what Chromium's console says the page's
 * Content-Security-Policy refused (an inline style or script would show up there).
 */
async function open(name, { query = '', viewport = { width: 1280, height: 900 } } = {}) {
  const stack = await startStack(name);
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  const dialogs = [];
  const csp = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) csp.push(m.text()); });
  page.on('dialog', (d) => { dialogs.push(d.type()); d.accept(); });
  await page.goto(`${stack.url}/${query}`);
  await page.locator('#app').waitFor({ state: 'visible' });
  return {
    stack, page, context, errors, dialogs, csp,
    async close() { await context.close(); await stack.stop(); },
  };
}

async function choose(page, ...files) {
  await page.locator('#files').setInputFiles(files);
}

async function summaryValue(c, field) {
  return Number((await c.locator(`[data-field="${field}"] b`).textContent()).replaceAll(',', ''));
}

/**
 * Starts recording, in the page, each distinct text of the card's progress line (`progress`) and
 * of its status region (`announced`). The observer watches the list of cards and looks the card
 * up again on each change, so it counts updates whether or not the card keeps its nodes.
 */
async function recordCard(c) {
  await c.evaluate((card) => {
    const list = card.parentElement;
    const key = card.dataset.key;
    const text = (testid) => list.querySelector(`[data-key="${key}"] [data-testid="${testid}"]`)?.textContent ?? null;
    const seen = { progress: [text('message')], announced: [text('announcement')] };
    const note = (texts, value) => { if (texts.at(-1) !== value) texts.push(value); };
    new MutationObserver(() => { note(seen.progress, text('message')); note(seen.announced, text('announcement')); })
      .observe(list, { subtree: true, childList: true, characterData: true });
    // How many progress texts had been shown when a press began and when it ended.
    document.addEventListener('pointerdown', () => { seen.atDown = seen.progress.length; }, true);
    document.addEventListener('pointerup', () => { seen.atUp = seen.progress.length; }, true);
    window.hexflowRecord = seen;
  });
  return {
    progress: () => c.page().evaluate(() => window.hexflowRecord.progress.length),
    announced: () => c.page().evaluate(() => [...window.hexflowRecord.announced]),
    press: () => c.page().evaluate(() => ({ atDown: window.hexflowRecord.atDown, atUp: window.hexflowRecord.atUp })),
  };
}

/** Whether two element handles name the same node. */
function same(page, a, b) {
  return page.evaluate(([x, y]) => x === y, [a, b]);
}

describe('the import page', { concurrency: false }, () => {
  test('an uploaded corpus file reaches 100 % with the right summary', async () => {
    const t = await open('upload');
    try {
      await choose(t.page, path.join(corpus, 'nessus/nessus_many_vuln2-default.csv'));
      const c = card(t.page, 'nessus_many_vuln2-default.csv');
      await c.locator('[data-testid="summary"]').waitFor({ timeout: 60000 });
      assert.equal(await c.getByRole('progressbar').getAttribute('aria-valuenow'), '100');
      assert.equal(await c.locator('[data-testid="status"]').textContent(), 'completed');
      assert.equal(await summaryValue(c, 'new'), 29);
      assert.equal(await summaryValue(c, 'skipped'), 1);
      assert.equal(await summaryValue(c, 'invalid rows'), 0);
      await until(async () => (await t.page.locator('[data-testid="finding"]').count()) === 29, 10000, 'the findings view to refresh');
      await until(async () => (await t.page.locator('#history tbody tr[data-session]').count()) === 1, 10000, 'the history row');
      assert.deepEqual(t.errors, []);
      assert.deepEqual(t.csp, []);
    } finally { await t.close(); }
  });

  test('a large import cancelled mid-way says cancelled and leaves no findings', async () => {
    const t = await open('cancel');
    const file = nessusFile('cancel.csv', LONG_IMPORT_BYTES);
    try {
      await choose(t.page, file);
      const c = card(t.page, 'cancel.csv');
      await until(async () => Number(await c.getByRole('progressbar').getAttribute('aria-valuenow')) >= 10
        && (await c.locator('[data-testid="status"]').textContent()) === 'processing', 60000, 'the import to be loading');
      await c.locator('[data-testid="cancel"]').click();
      await until(async () => (await c.locator('[data-testid="status"]').textContent()) === 'cancelled', 20000, 'the card to say cancelled');
      await t.page.locator('#f-state').selectOption('all');
      await t.page.locator('[data-testid="no-findings"]').waitFor({ timeout: 10000 });
    } finally { await t.close(); fs.rmSync(file, { force: true }); }
  });

  test('a focused Cancel button keeps its focus, and the status region its identity, across ten progress updates', async (ctx) => {
    const t = await open('focus');
    const file = nessusFile('focus.csv', LONG_IMPORT_BYTES);
    try {
      await choose(t.page, file);
      const c = card(t.page, 'focus.csv');
      await until(async () => (await c.locator('[data-testid="status"]').textContent()) === 'processing', 60000, 'processing');
      const record = await recordCard(c);
      const cancel = await c.locator('[data-testid="cancel"]').elementHandle();
      const region = await c.locator('[data-testid="announcement"]').elementHandle();
      await cancel.focus();
      const focused = await t.page.evaluateHandle(() => document.activeElement);
      assert.ok(await same(t.page, focused, cancel), 'the Cancel button has the focus');
      const start = await record.progress();

      await until(async () => (await record.progress()) >= start + 10, 30000, 'ten progress updates');
      await c.screenshot({ path: path.join(artifacts, 'card-mid-import.png') });

      assert.equal(await c.locator('[data-testid="status"]').textContent(), 'processing', 'the import is still running');
      assert.ok(await same(t.page, await t.page.evaluateHandle(() => document.activeElement), focused), 'the focus stayed on the Cancel button');
      assert.ok(await same(t.page, await c.locator('[data-testid="cancel"]').elementHandle(), cancel), 'the Cancel button is the same element');
      assert.ok(await same(t.page, await c.locator('[data-testid="announcement"]').elementHandle(), region), 'the status region is the same element');
      const announced = await record.announced();
      assert.ok(announced.length <= 3, `the status region spoke on phase changes only: ${JSON.stringify(announced)}`);

      // The focused button still works from the keyboard.
      await t.page.keyboard.press('Enter');
      await until(() => t.dialogs.length === 1, 10000, 'the confirm dialog');
      await until(async () => (await c.locator('[data-testid="status"]').textContent()) === 'cancelled', 20000, 'the card to say cancelled');
      assert.deepEqual(t.dialogs, ['confirm']);
      const all = await record.announced();
      ctx.diagnostic(`${await record.progress()} progress texts shown; the status region said ${JSON.stringify(all)}`);
      assert.match(all.at(-1), /focus\.csv: import cancelled/);
      assert.deepEqual(t.errors, []);
      assert.deepEqual(t.csp, []);
    } finally { await t.close(); fs.rmSync(file, { force: true }); }
  });

  test('a Cancel click held 150 ms while progress streams opens the confirm dialog on the first try', async () => {
    const t = await open('held-click');
    const file = nessusFile('held-click.csv', LONG_IMPORT_BYTES);
    try {
      await choose(t.page, file);
      const c = card(t.page, 'held-click.csv');
      await until(async () => (await c.locator('[data-testid="status"]').textContent()) === 'processing', 60000, 'processing');
      const record = await recordCard(c);
      await until(async () => (await record.progress()) >= 3, 30000, 'progress to stream');
      const box = await c.locator('[data-testid="cancel"]').boundingBox();

      await t.page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
      await t.page.mouse.down();
      const pressed = await record.press();
      await new Promise((r) => setTimeout(r, 150)); // the hold itself, as long as a person's click
      // Held on (bounded) until an update has landed, so that the press always spans one.
      await until(async () => (await record.progress()) > pressed.atDown, 5000, 'an update while the button is held');
      await t.page.mouse.up();

      await until(() => t.dialogs.length >= 1, 10000, 'the confirm dialog');
      const { atDown, atUp } = await record.press();
      assert.ok(atUp > atDown, `progress updates landed while the button was held (${atDown} -> ${atUp})`);
      assert.deepEqual(t.dialogs, ['confirm']);
      await until(async () => (await c.locator('[data-testid="status"]').textContent()) === 'cancelled', 20000, 'the card to say cancelled');
      assert.deepEqual(t.errors, []);
      assert.deepEqual(t.csp, []);
    } finally { await t.close(); fs.rmSync(file, { force: true }); }
  });

  test('a cut connection shows reconnecting, then resumes to the end', async () => {
    const t = await open('reconnect');
    const file = nessusFile('reconnect.csv', 60 << 20);
    try {
      await until(async () => (await t.page.locator('#conn').getAttribute('data-state')) === 'connected', 15000, 'connected');
      await choose(t.page, file);
      const c = card(t.page, 'reconnect.csv');
      await until(async () => (await c.locator('[data-testid="status"]').textContent()) === 'processing', 60000, 'processing');
      const cdp = await t.context.newCDPSession(t.page);
      await cdp.send('Network.enable');
      await cdp.send('Network.emulateNetworkConditions', { offline: true, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
      await until(async () => (await t.page.locator('#conn').getAttribute('data-state')) === 'reconnecting', 30000, 'reconnecting');
      await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
      await until(async () => (await t.page.locator('#conn').getAttribute('data-state')) === 'connected', 30000, 'connected again');
      await c.locator('[data-testid="summary"]').waitFor({ timeout: 120000 });
      assert.equal(await c.getByRole('progressbar').getAttribute('aria-valuenow'), '100');
    } finally { await t.close(); fs.rmSync(file, { force: true }); }
  });

  test('with websockets blocked the import still completes over polling', async () => {
    const t = await open('polling', { query: '?transport=polling' });
    try {
      await t.page.route('**/socket.io/?*transport=websocket*', (route) => route.abort());
      await choose(t.page, path.join(corpus, 'openvas/report_using_openVAS.csv'));
      const c = card(t.page, 'report_using_openVAS.csv');
      await c.locator('[data-testid="summary"]').waitFor({ timeout: 60000 });
      assert.equal(await summaryValue(c, 'new'), 13);
      const transport = await t.page.evaluate(() => window.hexflow.live.socket.io.engine?.transport?.name);
      assert.equal(transport, 'polling');
    } finally { await t.close(); }
  });

  test('two files at once each get their own progress', async () => {
    const t = await open('two-files');
    try {
      await choose(t.page, path.join(corpus, 'tenable_io/nessus_new.csv'), path.join(corpus, 'openvas/report_using_CVE.csv'));
      const a = card(t.page, 'nessus_new.csv');
      const b = card(t.page, 'report_using_CVE.csv');
      await a.locator('[data-testid="summary"]').waitFor({ timeout: 60000 });
      await b.locator('[data-testid="summary"]').waitFor({ timeout: 60000 });
      assert.equal(await summaryValue(a, 'new'), 99);
      assert.equal(await summaryValue(b, 'new'), 43);
      assert.equal(await t.page.locator('[data-testid="import-card"]').count(), 2);
    } finally { await t.close(); }
  });

  test('a reload mid-import brings the card back and it finishes', async () => {
    const t = await open('reload');
    const file = nessusFile('reload.csv', 60 << 20);
    try {
      await choose(t.page, file);
      const c = card(t.page, 'reload.csv');
      await until(async () => (await c.locator('[data-testid="status"]').textContent()) === 'processing', 60000, 'processing');
      await t.page.reload();
      await t.page.locator('#app').waitFor({ state: 'visible' });
      await card(t.page, 'reload.csv').locator('[data-testid="summary"]').waitFor({ timeout: 120000 });
    } finally { await t.close(); fs.rmSync(file, { force: true }); }
  });

  test('markup in a file name and in its cells is shown as text and never runs', async () => {
    const t = await open('xss');
    const name = '<img src=x onerror=window.__xss=1>.csv';
    const file = path.join(artifacts, 'xss-input.csv');
    fs.writeFileSync(file, 'asset,check_id,title,severity\n"<img src=x onerror=window.__xss=2>",C1,"<script>window.__xss=3</script>",high\n');
    try {
      await t.page.locator('#files').setInputFiles({ name, mimeType: 'text/csv', buffer: fs.readFileSync(file) });
      const c = card(t.page, '<img src=x');
      await c.locator('[data-testid="summary"]').waitFor({ timeout: 60000 });
      await until(async () => (await t.page.locator('[data-testid="finding"]').count()) === 1, 10000, 'the finding');
      assert.match(await c.locator('.card-title').textContent(), /<img src=x onerror=window.__xss=1>/);
      assert.match(await t.page.locator('[data-testid="finding"]').textContent(), /<script>window.__xss=3<\/script>/);
      assert.equal(await t.page.evaluate(() => window.__xss), undefined);
      assert.equal(await t.page.locator('#cards img, #findings img, #findings script').count(), 0);
    } finally { await t.close(); }
  });

  test('on a 375 px phone nothing overflows; screenshots of the modal and the summary', async () => {
    const t = await open('phone', { viewport: { width: 375, height: 812 } });
    const file = nessusFile('phone.csv', LONG_IMPORT_BYTES);
    try {
      await choose(t.page, file);
      const c = card(t.page, 'phone.csv');
      await until(async () => Number(await c.getByRole('progressbar').getAttribute('aria-valuenow')) >= 15, 60000, 'loading under way');
      await c.getByRole('button', { name: 'Details' }).click();
      await t.page.locator('#modal').waitFor({ state: 'visible' });
      await t.page.screenshot({ path: path.join(artifacts, 'modal-mid-import.png') });
      const detail = await t.page.locator('#modal [data-testid="import-detail"]').elementHandle();
      const shown = await t.page.locator('#modal [data-testid="message"]').textContent();
      await until(async () => (await t.page.locator('#modal [data-testid="message"]').textContent()) !== shown, 30000, 'the detail to update');
      assert.ok(await same(t.page, await t.page.locator('#modal [data-testid="import-detail"]').elementHandle(), detail), 'the detail is updated in place');
      await t.page.locator('#modal-close').click();
      await c.locator('[data-testid="summary"]').waitFor({ timeout: 120000 });
      const overflow = await t.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `the page is ${overflow} px wider than the viewport`);
      await c.scrollIntoViewIfNeeded();
      // The bar is the same element all along and eases to its width: wait until it is full.
      await until(() => c.locator('.bar > span').evaluate((fill) => fill.getBoundingClientRect().width >= fill.parentElement.clientWidth - 0.5),
        5000, 'the bar to fill');
      await t.page.screenshot({ path: path.join(artifacts, 'summary.png') });
      assert.deepEqual(t.csp, []);
    } finally { await t.close(); fs.rmSync(file, { force: true }); }
  });

  test('in multi-user mode the page asks for a token and works with it', async () => {
    const secret = 'e2e-secret-that-signs-the-test-tokens';
    const stack = await startStack('auth', { HEXFLOW_AUTH_SECRET: secret });
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await page.goto(stack.url);
      await page.locator('#login').waitFor({ state: 'visible' });
      assert.equal(await page.locator('#app').isVisible(), false);
      await page.locator('#token').fill('not-a-token');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await until(async () => (await page.locator('#login-error').textContent()).includes('refused'), 15000, 'the refusal');
      const alice = token(secret, { sub: 'alice', tenant: 'acme', exp: Math.floor(Date.now() / 1000) + 3600 });
      await page.locator('#token').fill(alice);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.locator('#app').waitFor({ state: 'visible', timeout: 15000 });
      await until(async () => (await page.locator('#conn').getAttribute('data-state')) === 'connected', 15000, 'the socket to accept the token');
      await choose(page, path.join(corpus, 'openvas/many_vuln.csv'));
      const c = card(page, 'many_vuln.csv');
      await c.locator('[data-testid="summary"]').waitFor({ timeout: 60000 });
      assert.equal(await summaryValue(c, 'new'), 4);
    } finally { await context.close(); await stack.stop(); }
  });
});
