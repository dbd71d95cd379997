// ledger.test.mjs — the supervisor page in a real browser (docs/supervisor.md).
//
// A real fieldsyncd (port 0, temp store) with a township made by the admin commands; data
// from real command-line devices (fieldsync) syncing over WebSocket; Debian's chromium,
// headless, driven by playwright-core with executablePath set (no browser download). The
// page is checked as a supervisor uses it:
//   login (a wrong password refused), per-village counts equal to the store's own export,
//   a record of another township never shown, overdue and past-deadline rows highlighted,
//   a visit synced from a device appearing without reload (and how long it took), a review
//   item resolved with one click reaching a device at its next sync, CSV exports (BOM,
//   rows, the same as `fieldsyncd admin export-overdue`), a child named
//   <script>alert(1)</script> shown as text, the child's file with its history, the phone
//   layout, English, logout, and every data endpoint refusing requests without a session,
//   without the CSRF token, or from another origin.
// Screenshots of the main views go to $FS_ARTIFACTS (build/browser-artifacts/).
//
// Run through tests/browser/run.sh (CTest: browser.ledger). Everything fails loudly; nothing
// is skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const SRV = process.env.FIELDSYNCD || join(root, 'build/server/fieldsyncd');
const CLI = process.env.FIELDSYNC_CLI || join(root, 'build/client-sdk/fieldsync');
const CHROMIUM = process.env.FS_CHROMIUM || '/usr/bin/chromium';
const ART = process.env.FS_ARTIFACTS || join(root, 'build/browser-artifacts');
const SCHEMA = process.env.FIELDSYNC_SCHEMA || join(root, 'schema/fieldsync.yaml');
const PASSWORD = 'township-supervisor-1';
const XSS = '<script>alert(1)</script>';
const DAY = 86400000;

const dir = mkdtempSync(join(tmpdir(), 'fieldsync-browser-'));
const env = { ...process.env, FIELDSYNC_SCHEMA: SCHEMA };
let server = null;
let base = '';
let browser = null;

function log(...a) { console.log('#', ...a); }

function admin(...args) {
  return execFileSync(SRV, ['admin', '--db', join(dir, 'server.db'), ...args],
    { env, encoding: 'utf8', input: args.includes('password') ? PASSWORD + '\n' : '' });
}

function cli(dev, ...args) {
  return execFileSync(CLI, ['--db', join(dir, `dev-${dev}.db`), ...args], { env, encoding: 'utf8' });
}

function cliJson(dev, ...args) { return JSON.parse(cli(dev, '--json', ...args)); }

function localTime(msAgo) {
  const d = new Date(Date.now() - msAgo);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function startServer() {
  return new Promise((ok, fail) => {
    const p = spawn(SRV, ['--db', join(dir, 'server.db'), '--listen', '127.0.0.1:0',
      '--web', join(root, 'server/web'), '--ledger', join(root, 'schema/ledger.yaml')],
      { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    const timer = setTimeout(() => fail(new Error('fieldsyncd did not start:\n' + err)), 10000);
    p.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/fieldsyncd listening on (\S+)/);
      if (m) { clearTimeout(timer); ok({ p, addr: m[1], log: () => err }); }
    });
    p.stderr.on('data', (d) => { err += d; });
    p.on('exit', (code) => fail(new Error(`fieldsyncd exited ${code}:\n${err}`)));
  });
}

function stopServer() {
  return new Promise((ok) => {
    if (!server) return ok(null);
    server.p.removeAllListeners('exit');
    server.p.on('exit', (code, sig) => ok(code ?? sig));
    server.p.kill('SIGTERM');
  });
}

// Expected per-village counts from the store's own export (admin export: the merged state
// read through store_field_get, not through the ledger code), with the labels it prints.
function expectedCounts(csv, schema) {
  const rows = parseCsv(csv.replace(/^\uFEFF/, ''));
  const head = rows.shift();
  const col = (n) => head.indexOf(n);
  const child = schema.types.find((t) => t.name === schema.ledger.subject.type);
  const f = (n) => child.fields.find((x) => x.name === n);
  const byVillage = {};
  for (const r of rows) {
    if (r.length < head.length) continue;
    const v = r[col(schema.ledger.subject.village)];
    const status = r[col(schema.ledger.subject.status)];
    const onFileLabels = schema.ledger.subject.on_file.map((c) => f(schema.ledger.subject.status).values.find((x) => x.code === c).zh);
    if (status && !onFileLabels.includes(status)) continue;
    const e = byVillage[v] || (byVillage[v] = { on_file: 0 });
    e.on_file++;
    for (const c of schema.ledger.subject.counts) {
      const [name, code] = c.key.split(':');
      const fd = f(name);
      const cell = r[col(name)];
      const hit = code ? cell === fd.values.find((x) => x.code === code).zh : cell === '是';
      e[c.key] = (e[c.key] || 0) + (hit ? 1 : 0);
    }
  }
  return byVillage;
}

function parseCsv(text) {
  const rows = [];
  let row = [], cell = '', q = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (q) {
      if (ch === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (ch === '"') q = false; else cell += ch;
    } else if (ch === '"') q = true;
    else if (ch === ',') { row.push(cell); cell = ''; } else if (ch === '\r') { /* CRLF */ } else if (ch === '\n') { row.push(cell); rows.push(row); row = []; cell = ''; } else cell += ch;
  }
  if (cell || row.length) { row.push(cell); rows.push(row); }
  return rows;
}

async function login(page, user, password) {
  await page.goto(base + '/');
  await page.waitForSelector('#login-form', { state: 'visible' });
  await page.fill('#login-user', user);
  await page.fill('#login-password', password);
  await page.click('#login-submit');
}

const ids = {};

test('supervisor live ledger in a real browser', { timeout: 240000 }, async (t) => {
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM}: run scripts/deps.sh test`);
  assert.ok(existsSync(SRV), `no fieldsyncd at ${SRV}: build first`);
  assert.ok(existsSync(CLI), `no fieldsync at ${CLI}: build first`);
  mkdirSync(ART, { recursive: true });

  // ---- a township with two villages, and one of another township ------------------------
  server = await startServer();
  base = 'http://' + server.addr;
  log('fieldsyncd on', base, 'store', dir);
  admin('township', 'add', 'hx', '红星镇');
  admin('village', 'add', 'hx-01', '--township', 'hx', '石门村');
  admin('village', 'add', 'hx-02', '--township', 'hx', '青山村');
  admin('township', 'add', 'qt', '其他镇');
  admin('village', 'add', 'qt-01', '--township', 'qt', '外村');
  admin('user', 'add', 'v1', '--role', 'visitor', '--villages', 'hx-01');
  admin('user', 'add', 'v2', '--role', 'visitor', '--villages', 'hx-02');
  admin('user', 'add', 'sw', '--role', 'volunteer', '--villages', 'hx-01');
  admin('user', 'add', 'o1', '--role', 'visitor', '--villages', 'qt-01');
  admin('user', 'add', 'sup', '--role', 'supervisor', '--township', 'hx');
  admin('user', 'password', 'sup');
  for (const u of ['v1', 'v2', 'sw', 'o1']) {
    const e = JSON.parse(admin('--json', 'device', 'enrol', u, '--label', `平板 ${u}`));
    cli(u, 'enrol', '--server', 'ws://' + server.addr, '--device', e.device, '--token', e.token);
  }

  // the daemon notices the admin's writes within a second (operations.md §1)
  await new Promise((ok) => setTimeout(ok, 1500));

  // ---- children, visits, reports from the devices ----------------------------------------
  const add = (dev, village, name, ...fields) => cliJson(dev, 'child', 'add', '--village', village, '--name', name,
    ...fields.flatMap((f) => ['--field', f])).id;
  ids.a = add('v1', 'hx-01', '王小明', 'gender=female', 'risk_level=high', 'category=both_parents_away', 'in_difficulty=true');
  ids.b = add('v1', 'hx-01', '李小红', 'gender=male', 'risk_level=medium', 'category=one_away_other_incapable', 'disabled=true');
  ids.x = add('v1', 'hx-01', XSS, 'gender=female', 'risk_level=low', 'dropped_out=true');
  ids.d = add('v2', 'hx-02', '张小花', 'gender=female', 'risk_level=high', 'category=both_parents_away');
  ids.e = add('v2', 'hx-02', '刘小军', 'gender=male', 'risk_level=low', 'status=parents_returned');
  ids.o = add('o1', 'qt-01', '外乡儿童', 'gender=male');
  cli('v1', 'visit', 'add', '--child', ids.a, '--at', localTime(45 * DAY), '--field', 'visitor_name=周干部');
  cli('v1', 'visit', 'add', '--child', ids.b, '--at', localTime(10 * DAY), '--field', 'visitor_name=周干部');
  // found two days ago, entered now: past the 24 h deadline of status `reported`
  ids.r1 = cliJson('v2', 'report', 'add', '--child', ids.d, '--category', 'living_alone',
    '--observed', '独自在家两天', '--at', localTime(2 * DAY)).id;
  ids.r2 = cliJson('v1', 'report', 'add', '--child', ids.b, '--category', 'neglect', '--observed', '放学后无人照看').id;
  for (const u of ['v1', 'v2', 'o1']) cli(u, 'sync');
  // a review item: the visitor and the social worker rename the same child concurrently
  cli('sw', 'sync');
  cli('v1', 'child', 'edit', ids.a, '--field', 'name=王晓明');
  cli('sw', 'child', 'edit', ids.a, '--field', 'name=王小敏');
  cli('v1', 'sync');
  cli('sw', 'sync');

  const schema = await (async () => {
    // the schema as the page sees it, fetched after login below; read once here through a
    // throw-away login so expectations use the same labels
    const r = await fetch(base + '/api/login', { method: 'POST', headers: { Origin: base, 'Content-Type': 'application/json' },
      body: JSON.stringify({ user: 'sup', password: PASSWORD }) });
    assert.equal(r.status, 200);
    const cookie = r.headers.get('set-cookie');
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Strict/);
    assert.match(cookie, /Path=\//);
    const s = await fetch(base + '/api/schema', { headers: { Cookie: cookie.split(';')[0] } });
    return s.json();
  })();
  const expected = expectedCounts(admin('export', 'hx'), schema);
  log('expected counts from the store:', JSON.stringify(expected));
  assert.equal(expected['hx-01'].on_file, 3);
  assert.equal(expected['hx-02'].on_file, 1);

  // playwright-core gives each launch a fresh, temporary --user-data-dir of its own
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run'],
  });
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true, locale: 'zh-CN' });
  const page = await ctx.newPage();
  const pageErrors = [];
  const dialogs = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });

  await t.test('login: a wrong password is refused, the right one opens the ledger', async () => {
    await login(page, 'sup', 'not-the-password');
    await page.waitForFunction(() => document.getElementById('login-error').textContent.length > 0);
    assert.equal(await page.textContent('#login-error'), '用户名或密码错误');
    await page.fill('#login-password', PASSWORD);
    await page.click('#login-submit');
    await page.waitForSelector('#village-counts');
    await page.waitForSelector('#live[data-state="live"]', { timeout: 10000 });
    assert.equal(await page.textContent('#live-text'), '实时');
    assert.equal(await page.textContent('#scope-name'), '红星镇');
  });

  await t.test('per-village counts equal the store', async () => {
    for (const [village, exp] of Object.entries(expected)) {
      const row = page.locator(`#village-counts tr[data-village="${village}"]`);
      assert.equal(await row.locator('[data-key="on_file"]').textContent(), String(exp.on_file), `${village} on file`);
      for (const c of schema.ledger.subject.counts) {
        const got = await row.locator(`[data-key="${c.key}"]`).textContent();
        assert.equal(got, String(exp[c.key]), `${village} ${c.key}`);
      }
    }
    assert.equal(await page.textContent('[data-stat="on_file"] .stat-value'), '4');
    assert.equal(await page.locator('#village-counts tbody tr').count(), 2, 'only the two villages of 红星镇');
    const text = await page.textContent('body');
    assert.ok(!text.includes('外乡儿童') && !text.includes('外村'), 'nothing of another township');
    await page.screenshot({ path: join(ART, 'ledger-1280x800.png') });
  });

  await t.test('overdue visits and past-deadline reports are highlighted', async () => {
    await page.goto(base + '/#/overdue');
    await page.waitForSelector('#overdue');
    const rows = page.locator('#overdue tbody tr');
    assert.equal(await rows.count(), 1, 'one child overdue (high risk, visited 45 days ago)');
    assert.equal(await rows.first().getAttribute('data-id'), ids.a);
    assert.match(await rows.first().getAttribute('class'), /overdue/);
    await page.screenshot({ path: join(ART, 'overdue.png') });
    await page.goto(base + '/#/reports');
    await page.waitForSelector('#reports');
    assert.equal(await page.locator('#reports tbody tr').count(), 2);
    assert.equal(await page.getAttribute(`#reports tr[data-id="${ids.r1}"]`, 'data-past-deadline'), 'true');
    assert.match(await page.getAttribute(`#reports tr[data-id="${ids.r1}"]`, 'class'), /late/);
    assert.equal(await page.getAttribute(`#reports tr[data-id="${ids.r2}"]`, 'data-past-deadline'), 'false');
    await page.screenshot({ path: join(ART, 'reports.png') });
  });

  await t.test('a child named <script>alert(1)</script> is shown as text', async () => {
    await page.goto(base + '/#/children');
    await page.waitForSelector('#children');
    const cell = page.locator(`#children tr[data-id="${ids.x}"] td.name`);
    assert.equal(await cell.textContent(), XSS);
    assert.equal(await page.locator('#children script').count(), 0);
    await page.goto(base + '/#/child/' + ids.x);
    await page.waitForSelector('#child-name');
    assert.equal(await page.textContent('#child-name'), XSS);
    assert.deepEqual(dialogs, [], 'no script ran');
    await page.goto(base + '/#/children');
    await page.waitForSelector('#children');
    await page.screenshot({ path: join(ART, 'children.png') });
  });

  await t.test('a visit synced from a device appears without reload', async () => {
    await page.evaluate(() => { window.__sameDocument = true; });
    const cell = page.locator(`#children tr[data-id="${ids.d}"] [data-col="last_visit"]`);
    assert.equal(await cell.textContent(), '从未走访');
    cli('v2', 'visit', 'add', '--child', ids.d, '--at', 'now', '--field', 'visitor_name=吴社工');
    const t0 = Date.now();
    cli('v2', 'sync');
    const pushed = Date.now();
    await page.waitForFunction((id) => {
      const c = document.querySelector(`#children tr[data-id="${id}"] [data-col="visitor"]`);
      return c && c.textContent === '吴社工';
    }, ids.d, { timeout: 5000 });
    const seen = Date.now();
    log(`visit visible ${seen - pushed} ms after the sync command returned (${seen - t0} ms after it started)`);
    assert.ok(await page.evaluate(() => window.__sameDocument === true), 'the page was not reloaded');
    assert.notEqual(await cell.textContent(), '从未走访');
    assert.equal(await page.getAttribute('#live', 'data-state'), 'live');
  });

  await t.test('the child file shows every field with its author and the history', async () => {
    await page.goto(base + '/#/child/' + ids.a);
    await page.waitForSelector('#child-fields');
    const nameRow = page.locator('#child-fields tr[data-field="name"]');
    assert.match(await nameRow.locator('[data-col="value"]').textContent(), /王晓明|王小敏/);
    assert.ok(await page.locator('#child-history tbody tr').count() >= 3, 'create and two renames');
    assert.equal(await page.locator('[data-related="visits"] .card').count(), 1);
    const hist = await page.textContent('#child-history');
    assert.ok(hist.includes('王小明') && hist.includes('王晓明') && hist.includes('王小敏'), 'every name in the audit trail');
    assert.ok(hist.includes('v1') && hist.includes('sw'), 'authors in the audit trail');
    await page.screenshot({ path: join(ART, 'child-file.png'), fullPage: true });
  });

  await t.test('a review item resolved with one click reaches a device at its next sync', async () => {
    await page.goto(base + '/#/reviews');
    await page.waitForSelector('#view-reviews .review');
    assert.equal(await page.locator('.review').count(), 1);
    const card = page.locator('#view-reviews .review').first();
    assert.equal(await card.locator('[data-value="a"]').textContent(), '王晓明');
    assert.equal(await card.locator('[data-value="b"]').textContent(), '王小敏');
    assert.match(await card.textContent(), /平板 v1/);
    assert.match(await card.textContent(), /平板 sw/);
    await page.screenshot({ path: join(ART, 'reviews.png') });
    await card.locator('button[data-side="b"]').click();
    await page.waitForSelector('.review', { state: 'detached', timeout: 5000 });
    assert.equal(await page.textContent('#badge-reviews'), '');
    const before = cliJson('v1', 'show', ids.a);
    assert.equal(before.fields.name, '王晓明', 'the device has not synced yet');
    cli('v1', 'sync');
    const after = cliJson('v1', 'show', ids.a);
    assert.equal(after.fields.name, '王小敏', 'the resolution reached the device');
    const hist = JSON.parse(await (await page.request.get(base + '/api/child/' + ids.a)).text()).history;
    const last = hist[hist.length - 1];
    assert.equal(last.author, 'sup');
    assert.equal(last.role, 'supervisor');
    assert.equal(last.fields.name, '王小敏');
  });

  await t.test('CSV exports: UTF-8 with BOM, the rows of the store, same as the admin command', async () => {
    await page.goto(base + '/#/overdue');
    await page.waitForSelector('[data-export="overdue"]');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-export="overdue"]')]);
    const file = join(dir, 'overdue-page.csv');
    await download.saveAs(file);
    const bytes = readFileSync(file);
    assert.deepEqual([...bytes.subarray(0, 3)], [0xef, 0xbb, 0xbf], 'UTF-8 byte-order mark');
    const rows = parseCsv(bytes.toString('utf8').slice(1));
    assert.equal(rows.length, 2, 'header and one overdue child');
    assert.ok(rows[1].includes(ids.a) && rows[1].includes('石门村'));
    execFileSync(SRV, ['admin', '--db', join(dir, 'server.db'), 'export-overdue', 'hx', '--out', join(dir, 'overdue-admin.csv'),
      '--ledger', join(root, 'schema/ledger.yaml')], { env });
    assert.equal(readFileSync(join(dir, 'overdue-admin.csv'), 'utf8'), bytes.toString('utf8'), 'one implementation');
    const ledger = await page.request.get(base + '/api/export/ledger.csv');
    assert.equal(ledger.status(), 200);
    assert.match(ledger.headers()['content-type'], /text\/csv/);
    assert.match(ledger.headers()['content-disposition'], /attachment/);
    const lbytes = await ledger.body();
    assert.deepEqual([...lbytes.subarray(0, 3)], [0xef, 0xbb, 0xbf]);
    const lrows = parseCsv(lbytes.toString('utf8').slice(1));
    assert.equal(lrows.length, 1 + 5, 'header and the five children of 红星镇');
    const idsInCsv = lrows.slice(1).map((r) => r[0]).sort();
    assert.deepEqual(idsInCsv, [ids.a, ids.b, ids.x, ids.d, ids.e].sort());
    assert.ok(lrows.some((r) => r.includes(XSS)), 'names exported as they are');
  });

  await t.test('data endpoints refuse requests without a session, without CSRF, from elsewhere', async () => {
    const anon = await browser.newContext();
    for (const path of ['/api/me', '/api/ledger', '/api/schema', '/api/child/' + ids.a, '/api/export/ledger.csv', '/api/export/overdue.csv']) {
      const r = await anon.request.get(base + path);
      assert.equal(r.status(), 401, path);
    }
    const r1 = await anon.request.post(base + '/api/reviews/1/resolve', { data: { value: 'a' }, headers: { Origin: base } });
    assert.equal(r1.status(), 401);
    // the live channel refuses a socket without a session
    const anonPage = await anon.newPage();
    await anonPage.goto(base + '/');
    const wsResult = await anonPage.evaluate((url) => new Promise((ok) => {
      const ws = new WebSocket(url, 'fieldsync.live.v1');
      ws.onopen = () => ok('open');
      ws.onclose = () => ok('closed');
    }), base.replace('http', 'ws') + '/live');
    assert.equal(wsResult, 'closed');
    await anon.close();
    // with the session: a POST without the CSRF token, or from another origin, is refused
    const r2 = await page.request.post(base + '/api/logout', { data: {}, headers: { Origin: base } });
    assert.equal(r2.status(), 403, 'no X-CSRF-Token');
    const me = await (await page.request.get(base + '/api/me')).json();
    const r3 = await page.request.post(base + '/api/logout', { data: {}, headers: { Origin: 'http://evil.example', 'X-CSRF-Token': me.csrf } });
    assert.equal(r3.status(), 403, 'foreign Origin');
    const r4 = await page.request.post(base + '/api/login', { data: { user: 'sup', password: PASSWORD }, headers: { Origin: 'http://evil.example' } });
    assert.equal(r4.status(), 403, 'login from another origin');
    assert.equal((await page.request.get(base + '/api/me')).status(), 200, 'the session still stands');
  });

  await t.test('phone-sized screen and English', async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const p = await phone.newPage();
    p.on('pageerror', (e) => pageErrors.push(e.message));
    await login(p, 'sup', PASSWORD);
    await p.waitForSelector('#village-counts');
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `no sideways scrolling of the page (${overflow} px)`);
    await p.screenshot({ path: join(ART, 'phone-390x844.png') });
    await p.goto(base + '/#/children');
    await p.waitForSelector('#children');
    await p.screenshot({ path: join(ART, 'phone-children.png') });
    await p.click('header .lang-toggle');
    await p.waitForFunction(() => document.querySelector('#tabs a[data-view="overview"]').textContent === 'Overview');
    assert.equal(await p.textContent('#live-text'), 'Live');
    await p.goto(base + '/#/overview');
    await p.screenshot({ path: join(ART, 'phone-english.png') });
    await phone.close();
  });

  await t.test('devices: last sync, pending, refused', async () => {
    await page.goto(base + '/#/devices');
    await page.waitForSelector('#devices');
    assert.equal(await page.locator('#devices tbody tr').count(), 3, 'the devices of 红星镇 (not o1)');
    for (const r of await page.locator('#devices tbody tr').all())
      assert.equal(await r.locator('[data-col="pending"]').textContent(), '0');
    await page.screenshot({ path: join(ART, 'devices.png') });
  });

  await t.test('logout ends the session', async () => {
    await page.click('#logout');
    await page.waitForSelector('#login-form', { state: 'visible' });
    assert.equal((await page.request.get(base + '/api/ledger')).status(), 401);
  });

  assert.deepEqual(pageErrors, [], 'no script errors in the page');
  await ctx.close();
});

test.after(async () => {
  if (browser) await browser.close();
  if (server) {
    const code = await stopServer();
    if (code !== 0) console.log(server.log());
    assert.equal(code, 0, 'fieldsyncd stops cleanly on SIGTERM');
  }
  rmSync(dir, { recursive: true, force: true });
});
