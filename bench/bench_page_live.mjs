#!/usr/bin/env node
// bench_page_live.mjs — how long from a device's push to the supervisor page's live event.
//
// Starts a real fieldsyncd (port 0, temp store, --rate-limit 0) with a township made by the
// admin commands, logs in as its supervisor over HTTP (like the page), opens the live
// WebSocket (/live, fieldsync.live.v1, session cookie), and connects as a device speaking
// fieldsync.v1 (hello, push) over a raw socket. Then, N times, one change per push, one push
// in flight: t0 just before the push frame is written; t_result when push_result arrives
// (the server committed); t_live when the live event naming that record arrives at the
// page's socket. Prints p50 / p90 / p99 / max of both, with the command and the machine.
// The target (DESIGN.md §6, the issue): p99 of push → live event under 1 s on loopback.
//
// What it does not measure: the page's refetch and render after the event (the browser test
// prints that once: "visit visible N ms after the sync command returned").
//
// Usage: node bench/bench_page_live.mjs [--pushes N] [--fieldsyncd PATH] [--warmup N]
// Record types and fields come from the server's /api/schema and ledger config: nothing
// here names a field.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import crypto from 'node:crypto';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : dflt; };
const N = Number(opt('--pushes', 2000));
const WARMUP = Number(opt('--warmup', 50));
const SRV = opt('--fieldsyncd', join(root, 'build/server/fieldsyncd'));
const SCHEMA = process.env.FIELDSYNC_SCHEMA || join(root, 'schema/fieldsync.yaml');
const env = { ...process.env, FIELDSYNC_SCHEMA: SCHEMA };

// ---- MessagePack: the subset fieldsync.v1 uses ------------------------------------------

function mpEncode(v, out) {
  if (v === null || v === undefined) out.push(0xc0);
  else if (v === true) out.push(0xc3);
  else if (v === false) out.push(0xc2);
  else if (typeof v === 'bigint' || typeof v === 'number') {
    let n = BigInt(v);
    if (n < 0n) throw new Error('negative not needed');
    if (n < 128n) out.push(Number(n));
    else if (n < 1n << 32n) { out.push(0xce); for (let s = 24n; s >= 0n; s -= 8n) out.push(Number((n >> s) & 255n)); }
    else { out.push(0xcf); for (let s = 56n; s >= 0n; s -= 8n) out.push(Number((n >> s) & 255n)); }
  } else if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    if (b.length < 32) out.push(0xa0 | b.length); else { out.push(0xd9, b.length); }
    for (const x of b) out.push(x);
  } else if (Buffer.isBuffer(v)) { out.push(0xc4, v.length); for (const x of v) out.push(x); }
  else if (Array.isArray(v)) { if (v.length >= 16) throw new Error('array too long'); out.push(0x90 | v.length); for (const x of v) mpEncode(x, out); }
  else if (v instanceof Map) { out.push(0x80 | v.size); for (const [k, x] of v) { mpEncode(k, out); mpEncode(x, out); } }
  else throw new Error('cannot encode ' + typeof v);
  return out;
}

function mpDecode(buf) {
  let i = 0;
  const u = (n) => { let x = 0n; for (let k = 0; k < n; k++) x = (x << 8n) | BigInt(buf[i++]); return x; };
  function one() {
    const b = buf[i++];
    if (b < 0x80) return b;
    if (b >= 0xe0) return b - 256;
    if ((b & 0xf0) === 0x90) return arr(b & 15);
    if ((b & 0xf0) === 0x80) return map(b & 15);
    if ((b & 0xe0) === 0xa0) return str(b & 31);
    switch (b) {
      case 0xc0: return null; case 0xc2: return false; case 0xc3: return true;
      case 0xc4: { const n = buf[i++]; const s = buf.subarray(i, i + n); i += n; return s; }
      case 0xcc: return Number(u(1)); case 0xcd: return Number(u(2)); case 0xce: return Number(u(4)); case 0xcf: return u(8);
      case 0xd0: return buf.readInt8(i++); case 0xd1: { const x = buf.readInt16BE(i); i += 2; return x; }
      case 0xd2: { const x = buf.readInt32BE(i); i += 4; return x; } case 0xd3: { const x = buf.readBigInt64BE(i); i += 8; return x; }
      case 0xd9: return str(Number(u(1))); case 0xda: return str(Number(u(2)));
      case 0xdc: return arr(Number(u(2))); case 0xde: return map(Number(u(2)));
      default: throw new Error('msgpack byte ' + b.toString(16));
    }
  }
  function arr(n) { const a = []; for (let k = 0; k < n; k++) a.push(one()); return a; }
  function map(n) { const m = new Map(); for (let k = 0; k < n; k++) m.set(one(), one()); return m; }
  function str(n) { const s = buf.toString('utf8', i, i + n); i += n; return s; }
  return one();
}

// ---- a minimal WebSocket client on a raw socket ----------------------------------------

function wsConnect(port, path, proto, headers) {
  return new Promise((ok, fail) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.setNoDelay(true);
    const key = crypto.randomBytes(16).toString('base64');
    let buf = Buffer.alloc(0), open = false;
    const c = { sock, onmessage: null, send };
    function send(payload, op = 2) {
      const mask = crypto.randomBytes(4);
      const n = payload.length;
      const head = n < 126 ? Buffer.from([0x80 | op, 0x80 | n])
        : Buffer.from([0x80 | op, 0x80 | 126, n >> 8, n & 255]);
      const body = Buffer.alloc(n);
      for (let k = 0; k < n; k++) body[k] = payload[k] ^ mask[k & 3];
      sock.write(Buffer.concat([head, mask, body]));
    }

    sock.on('connect', () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${proto}\r\n` +
        Object.entries(headers || {}).map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n');
    });
    sock.on('error', fail);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!open) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.toString('latin1', 0, end);
        if (!/^HTTP\/1\.1 101/.test(head)) return fail(new Error('upgrade refused: ' + head.split('\r\n')[0]));
        open = true;
        buf = buf.subarray(end + 4);
        ok(c);
      }
      for (;;) {
        if (buf.length < 2) return;
        let len = buf[1] & 127, off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + len) return;
        const op = buf[0] & 15, payload = buf.subarray(off, off + len);
        buf = buf.subarray(off + len);
        if (op === 9) send(payload, 10); // ping -> pong
        else if ((op === 1 || op === 2) && c.onmessage) c.onmessage(payload, op);
      }
    });
  });
}

// ---- helpers ----------------------------------------------------------------------------

function newId() {
  const b = crypto.randomBytes(16);
  const ms = BigInt(Date.now());
  for (let k = 0; k < 6; k++) b[k] = Number((ms >> BigInt(8 * (5 - k))) & 255n);
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  return b;
}
const idText = (b) => { const h = b.toString('hex'); return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`; };
let counter = 0;
const hlc = () => (BigInt(Date.now()) << 16n) | BigInt(counter++ & 0xffff);
const pct = (a, p) => a[Math.min(a.length - 1, Math.floor(p / 100 * a.length))];

// A value for a required field, by kind (bench data only).
function fill(f, refId, village) {
  switch (f.kind) {
    case 'ref': return refId;
    case 'scope': return village;
    case 'enum': return 0;
    case 'time': return Math.floor(Date.now() / 1000);
    case 'date': { const d = new Date(); return d.getFullYear() * 10000 + (d.getMonth() + 1) * 100 + d.getDate(); }
    case 'bool': return false;
    case 'int': return 1;
    default: return 'bench';
  }
}

// ---- run --------------------------------------------------------------------------------

const dir = mkdtempSync(join(os.tmpdir(), 'fieldsync-bench-live-'));
const db = join(dir, 'server.db');
const admin = (...a) => execFileSync(SRV, ['admin', '--db', db, ...a], { env, encoding: 'utf8', input: a.includes('password') ? 'bench-password\n' : '' });
const srv = spawn(SRV, ['--db', db, '--listen', '127.0.0.1:0', '--rate-limit', '0', '--log-level', 'warning'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
const port = await new Promise((ok, fail) => {
  let out = '';
  srv.stdout.on('data', (d) => { out += d; const m = out.match(/listening on [^:]+:(\d+)/); if (m) ok(Number(m[1])); });
  srv.on('exit', (c) => fail(new Error('fieldsyncd exited ' + c)));
});
try {
  admin('township', 'add', 'bt', '基准镇');
  admin('village', 'add', 'bt-01', '--township', 'bt', '基准村');
  admin('user', 'add', 'dev', '--role', 'visitor', '--villages', 'bt-01');
  admin('user', 'add', 'sup', '--role', 'supervisor', '--township', 'bt');
  admin('user', 'password', 'sup');
  const enrol = JSON.parse(admin('--json', 'device', 'enrol', 'dev'));
  await new Promise((ok) => setTimeout(ok, 1200)); // the daemon notices admin writes within 1 s

  const base = `http://127.0.0.1:${port}`;
  const login = await fetch(base + '/api/login', { method: 'POST', headers: { Origin: base, 'Content-Type': 'application/json' },
    body: JSON.stringify({ user: 'sup', password: 'bench-password' }) });
  if (login.status !== 200) throw new Error('login: ' + login.status);
  const cookie = login.headers.get('set-cookie').split(';')[0];
  const schema = await (await fetch(base + '/api/schema', { headers: { Cookie: cookie } })).json();
  const types = Object.fromEntries(schema.types.map((t) => [t.name, t]));
  const subj = types[schema.ledger.subject.type], visit = types[schema.ledger.visits.type];

  const live = await wsConnect(port, '/live', 'fieldsync.live.v1', { Cookie: cookie, Origin: base });
  const dev = await wsConnect(port, '/sync', 'fieldsync.v1');
  const frame = (msg) => Buffer.concat([Buffer.from([0, 0]), Buffer.from(mpEncode(msg, []))]);
  const unframe = (b) => { if (b[0] !== 0) throw new Error('compressed frame: bench asks dict 0'); return mpDecode(b.subarray(2)); };
  let onDev = null;
  dev.onmessage = (p) => onDev && onDev(unframe(p));
  const next = () => new Promise((ok) => { onDev = ok; });

  dev.send(frame([1, Buffer.from(enrol.device.replace(/-/g, ''), 'hex'), enrol.token, schema.version, hlc(), 0, 0, 0, 'bench_live', 0]));
  const welcome = await next();
  if (welcome[0] !== 2) throw new Error('no welcome: ' + JSON.stringify(welcome, (k, v) => typeof v === 'bigint' ? String(v) : v));
  let dseq = Number(welcome[2]);

  const change = (type, fields, refId) => {
    const m = new Map();
    for (const f of type.fields) if (f.required || fields[f.name] !== undefined)
      m.set(f.num, fields[f.name] !== undefined ? fields[f.name] : fill(f, refId, 'bt-01'));
    return [type.id, newId(), hlc(), 0, ++dseq, new Map([...m.entries()].sort((a, b) => a[0] - b[0]))];
  };
  const child = change(subj, {});
  dev.send(frame([3, 1, [child]]));
  const r0 = await next();
  if (r0[0] !== 4 || r0[2][0][1] !== 0) throw new Error('child create refused: ' + JSON.stringify(r0[2], (k, v) => typeof v === 'bigint' ? String(v) : v));

  const pending = new Map(); // record uuid -> resolve
  live.onmessage = (p) => {
    const m = JSON.parse(p.toString('utf8'));
    if (m.kind === 'change' && pending.has(m.record)) pending.get(m.record)(process.hrtime.bigint());
  };
  const tLive = [], tResult = [];
  for (let k = 0; k < WARMUP + N; k++) {
    const c = change(visit, {}, child[1]);
    const id = idText(c[1]);
    const gotLive = new Promise((ok) => pending.set(id, ok));
    const t0 = process.hrtime.bigint();
    dev.send(frame([3, k + 2, [c]]));
    const res = await next();
    const t1 = process.hrtime.bigint();
    if (res[0] !== 4 || res[2][0][1] !== 0) throw new Error('push refused: ' + JSON.stringify(res, (x, v) => typeof v === 'bigint' ? String(v) : v));
    const t2 = await Promise.race([gotLive, new Promise((ok) => setTimeout(() => ok(null), 5000))]);
    pending.delete(id);
    if (t2 === null) throw new Error('no live event within 5 s for ' + id);
    if (k >= WARMUP) { tResult.push(Number(t1 - t0) / 1e6); tLive.push(Number(t2 - t0) / 1e6); }
  }
  tLive.sort((a, b) => a - b);
  tResult.sort((a, b) => a - b);
  const f = (x) => x.toFixed(2).padStart(8);
  console.log(`== node bench/bench_page_live.mjs ${argv.join(' ')}`.trim());
  console.log(`machine: ${os.cpus().length} x ${os.cpus()[0].model}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ` +
    `load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}, ${os.type()} ${os.release()}, node ${process.version}`);
  console.log(`date: ${new Date().toISOString()}; store in ${os.tmpdir()} (tmpfs or disk as the machine has it)`);
  console.log(`${N} pushes of one visit each, one in flight, after ${WARMUP} warm-up pushes; loopback`);
  console.log('                          p50      p90      p99      max   (ms)');
  console.log(`push -> push_result  ${f(pct(tResult, 50))} ${f(pct(tResult, 90))} ${f(pct(tResult, 99))} ${f(tResult[tResult.length - 1])}`);
  console.log(`push -> live event   ${f(pct(tLive, 50))} ${f(pct(tLive, 90))} ${f(pct(tLive, 99))} ${f(tLive[tLive.length - 1])}`);
  console.log(`target: p99 push -> live event < 1000 ms: ${pct(tLive, 99) < 1000 ? 'met' : 'NOT met'}`);
  live.sock.destroy();
  dev.sock.destroy();
} finally {
  srv.kill('SIGTERM');
  await new Promise((ok) => srv.on('exit', ok));
  rmSync(dir, { recursive: true, force: true });
}
