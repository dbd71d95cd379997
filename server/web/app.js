/*
 * app.js — the supervisor page (docs/supervisor.md): what a township supervisor opens every
 * morning. Plain JavaScript, no framework, no build step, no network but this server.
 *
 * Data: the JSON API under /api (login, me, schema, ledger, child, reviews, exports), with
 * the session cookie (HttpOnly, set by the server) and the CSRF token from /api/me on every
 * POST. Labels of record types, fields and values come from /api/schema (Chinese and
 * English); the page's own words are in STRINGS below. Live: a WebSocket to /live
 * (sub-protocol fieldsync.live.v1) announces every committed change in the user's scope;
 * the page then refetches the ledger (and the open child file) after a short debounce, and
 * shows 实时 / Live or 重连中 / Reconnecting, reconnecting with back-off.
 *
 * Safety: every value that comes from data (names, notes, places) is put into the page with
 * textContent (the el() helper below), never as markup; the server's Content-Security-Policy
 * allows scripts and styles from this server only.
 */
'use strict';

const STRINGS = {
  zh: {
    app_title: '留守儿童信息台账', login_hint: '乡镇（街道）督导员登录', user: '用户名',
    password: '密码', login: '登录', logout: '退出', lang_switch: 'English',
    login_failed: '用户名或密码错误', rate_limited: '登录失败次数过多，请稍后再试',
    network_error: '无法连接服务器', tab_overview: '总览', tab_children: '儿童名册',
    tab_overdue: '逾期走访', tab_reports: '强制报告', tab_reviews: '待复核',
    tab_devices: '设备状态', live: '实时', reconnecting: '重连中…', connecting: '连接中…',
    on_file: '在册儿童', overdue_visits: '逾期未走访', open_reports: '未结强制报告',
    past_deadline: '超过处置时限', reviews_open: '待复核事项', devices_online: '设备在线',
    per_village: '各村(居)底数', village: '村(居)', total: '合计', children_on_file: '在册',
    search: '按姓名查找', all_villages: '全部村(居)', only_overdue: '只看逾期',
    last_visit: '最近走访', visitor: '走访人', due: '应访日期', never: '从未走访',
    overdue_days: '逾期{n}天', due_in: '{n}天后到期', status_ok: '正常',
    export_ledger: '导出台账 CSV', export_overdue: '导出逾期名单 CSV',
    overdue_title: '逾期未走访儿童', overdue_note: '走访间隔：高风险{high}天，中风险{medium}天，其他{other}天',
    interval: '间隔', days_overdue: '逾期天数', reports_title: '未结强制报告',
    reports_note: '超过当前处置环节时限的报告以红色标出',
    child: '儿童', category: '报告情形', status: '处置状态', observed: '发现时间',
    age: '已过时长', deadline: '本环节时限', overdue_flag: '已超时', in_time: '未超时',
    reviews_title: '待复核事项', reviews_note: '两台设备同时填写了不同的值。请核实后采用其中一个；结果将同步到所有设备。',
    value_a: '原值', value_b: '新值', use_this: '采用此值', resolved: '已采用“{v}”，设备下次同步时收到',
    by: '{who} · {dev}', at: '时间', devices_title: '设备状态', device: '设备', role: '角色',
    last_sync: '最近同步', pending: '待上传', refused: '被拒绝', online: '在线',
    offline: '离线', agent: '软件版本', back: '← 返回', fields: '档案信息', field: '项目',
    value: '当前值', set_by: '最后修改', history: '修改记录（审计）', visits: '走访记录',
    reports: '强制报告', assessments: '评估帮扶', none: '暂无', created: '新建',
    changed: '修改', updated: '更新于 {t}', no_overdue: '没有逾期未走访的儿童',
    no_reports: '没有未结的强制报告', no_reviews: '没有待复核事项', no_devices: '没有设备',
    no_children: '没有儿童档案', error_load: '数据加载失败：{m}', yes: '是', no: '否',
    days: '{n}天', hours: '{n}小时', minutes: '{n}分钟', child_file: '儿童档案',
    open_reviews_here: '此档案有待复核事项', risk: '风险', who_when: '修改人 · 设备 · 时间',
    web_device: '网页', changes: '修改内容', user_col: '用户',
    role_visitor: '走访员', role_volunteer: '志愿者/社工', role_supervisor: '督导员', role_admin: '管理员',
  },
  en: {
    app_title: 'Left-behind children ledger', login_hint: 'Township supervisor sign-in',
    user: 'User name', password: 'Password', login: 'Sign in', logout: 'Sign out',
    lang_switch: '中文', login_failed: 'Wrong user name or password',
    rate_limited: 'Too many failed sign-ins; try again later',
    network_error: 'Cannot reach the server', tab_overview: 'Overview',
    tab_children: 'Children', tab_overdue: 'Overdue visits', tab_reports: 'Reports',
    tab_reviews: 'Reviews', tab_devices: 'Devices', live: 'Live',
    reconnecting: 'Reconnecting…', connecting: 'Connecting…', on_file: 'Children on file',
    overdue_visits: 'Overdue visits', open_reports: 'Open reports',
    past_deadline: 'Past deadline', reviews_open: 'Reviews to resolve',
    devices_online: 'Devices online', per_village: 'Base numbers by village',
    village: 'Village', total: 'Total', children_on_file: 'On file',
    search: 'Search by name', all_villages: 'All villages', only_overdue: 'Overdue only',
    last_visit: 'Last visit', visitor: 'Visitor', due: 'Due', never: 'Never visited',
    overdue_days: '{n} d overdue', due_in: 'due in {n} d', status_ok: 'OK',
    export_ledger: 'Export ledger CSV', export_overdue: 'Export overdue CSV',
    overdue_title: 'Children overdue for a visit',
    overdue_note: 'Visit interval: high risk {high} d, medium {medium} d, others {other} d',
    interval: 'Interval', days_overdue: 'Days overdue', reports_title: 'Open mandatory reports',
    reports_note: 'Reports past the deadline of their current step are marked red',
    child: 'Child', category: 'Category', status: 'Status', observed: 'Observed',
    age: 'Age', deadline: 'Step deadline', overdue_flag: 'Past deadline', in_time: 'In time',
    reviews_title: 'Reviews to resolve',
    reviews_note: 'Two devices entered different values at the same time. Check, then keep one; the choice syncs to every device.',
    value_a: 'Current', value_b: 'Incoming', use_this: 'Keep this value',
    resolved: 'Kept “{v}”; devices receive it at their next sync', by: '{who} · {dev}',
    at: 'Time', devices_title: 'Device health', device: 'Device', role: 'Role',
    last_sync: 'Last sync', pending: 'Pending', refused: 'Refused', online: 'Online',
    offline: 'Offline', agent: 'Software', back: '← Back', fields: 'File', field: 'Field',
    value: 'Value', set_by: 'Last set by', history: 'History (audit trail)',
    visits: 'Visits', reports: 'Mandatory reports', assessments: 'Assessments',
    none: 'None', created: 'Created', changed: 'Changed', updated: 'Updated {t}',
    no_overdue: 'No child is overdue for a visit', no_reports: 'No open mandatory reports',
    no_reviews: 'Nothing to review', no_devices: 'No devices', no_children: 'No child files',
    error_load: 'Loading failed: {m}', yes: 'Yes', no: 'No', days: '{n} d', hours: '{n} h',
    minutes: '{n} min', child_file: 'Child file', open_reviews_here: 'This file has open reviews',
    risk: 'Risk', who_when: 'By · device · time', web_device: 'web', changes: 'Changes',
    user_col: 'User', role_visitor: 'Visitor', role_volunteer: 'Volunteer / social worker',
    role_supervisor: 'Supervisor', role_admin: 'Administrator',
  },
};

const state = {
  lang: localStorage.getItem('fieldsync.lang') === 'en' ? 'en' : 'zh',
  me: null,
  schema: null,
  types: {},        // name -> type (with fieldsByName)
  ledger: null,
  child: null,      // the open child file (JSON)
  childId: null,
  filter: { village: '', q: '', overdue: false },
  ws: null, wsRetry: 0, wsTimer: null, refreshTimer: null, liveState: 'connecting',
};

// ---- small helpers -------------------------------------------------------------------

function t(key, vars) {
  let s = (STRINGS[state.lang] && STRINGS[state.lang][key]) || STRINGS.zh[key] || key;
  if (vars) for (const k of Object.keys(vars)) s = s.split('{' + k + '}').join(String(vars[k]));
  return s;
}

// Creates an element. attrs: class, data-*, href, ... (never innerHTML); children: strings
// (inserted as text) or nodes.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return e;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function label(obj) {
  if (!obj) return '';
  return obj[state.lang] || obj.zh || obj.en || '';
}

function pad(n) { return n < 10 ? '0' + n : '' + n; }

function fmtTime(ms) {
  if (!ms) return '—';
  const d = new Date(ms);
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
    pad(d.getHours()) + ':' + pad(d.getMinutes());
}

function fmtDay(ms) {
  if (!ms) return '—';
  const d = new Date(ms);
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate());
}

function fmtAge(ms) {
  if (ms < 0) ms = 0;
  const min = Math.floor(ms / 60000), h = Math.floor(min / 60), d = Math.floor(h / 24);
  if (d >= 1) return t('days', { n: d }) + (h % 24 ? ' ' + t('hours', { n: h % 24 }) : '');
  if (h >= 1) return t('hours', { n: h }) + (min % 60 ? ' ' + t('minutes', { n: min % 60 }) : '');
  return t('minutes', { n: min });
}

function field(typeName, fieldName) {
  const ty = state.types[typeName];
  return ty ? ty.fieldsByName[fieldName] : null;
}

function fieldLabel(typeName, fieldName) {
  const f = field(typeName, fieldName);
  return f ? label(f.label) || f.name : fieldName;
}

function enumLabel(f, code) {
  if (!f || !f.values) return code;
  const v = f.values.find((x) => x.code === code);
  return v ? (v[state.lang] || v.zh || v.code) : code;
}

// A value as text for people, by the field's kind (schema).
function fmtValue(f, v) {
  if (v === null || v === undefined) return '—';
  if (!f) return typeof v === 'object' ? JSON.stringify(v) : String(v);
  switch (f.kind) {
    case 'enum': return enumLabel(f, v);
    case 'set': return v.length ? v.map((c) => enumLabel(f, c)).join(state.lang === 'zh' ? '、' : ', ') : '—';
    case 'bool': return v ? t('yes') : t('no');
    case 'time': return fmtTime(v);
    case 'scope': return villageName(v);
    case 'ref': {
      const c = state.ledger && state.ledger.children.find((x) => x.id === v);
      return c ? c.name : String(v).slice(0, 8) + '…';
    }
    default: return String(v);
  }
}

function roleName(code) {
  if (!code) return '';
  const s = t('role_' + code);
  return s === 'role_' + code ? code : s;
}

function villageName(code) {
  const v = state.me && state.me.villages.find((x) => x.code === code);
  return v ? v.name : code;
}

function riskBadge(code) {
  const cfg = state.schema.ledger.subject;
  if (!code) return el('span', { class: 'risk risk-none' }, '—');
  return el('span', { class: 'risk risk-' + code, 'data-risk': code }, enumLabel(field(cfg.type, cfg.risk), code));
}

function toast(msg, bad) {
  const n = document.getElementById('toast');
  n.textContent = msg;
  n.className = 'toast' + (bad ? ' bad' : '');
  n.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { n.hidden = true; }, 5000);
}

// ---- API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || ('HTTP ' + status));
    this.status = status;
    this.body = body;
  }
}

async function api(path, opts) {
  const o = { method: 'GET', credentials: 'same-origin', headers: {} };
  if (opts && opts.body !== undefined) {
    o.method = 'POST';
    o.headers['Content-Type'] = 'application/json';
    o.body = JSON.stringify(opts.body);
    if (state.me) o.headers['X-CSRF-Token'] = state.me.csrf;
  }
  const r = await fetch(path, o);
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (r.status === 401 && path !== '/api/login') {
    showLogin();
    throw new ApiError(401, body);
  }
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

// ---- language ----------------------------------------------------------------------------

function applyLang() {
  document.documentElement.lang = state.lang === 'zh' ? 'zh-CN' : 'en';
  document.title = t('app_title') + ' · fieldsync';
  for (const n of document.querySelectorAll('[data-i18n]')) n.textContent = t(n.getAttribute('data-i18n'));
  setLive(state.liveState);
  if (state.ledger) render();
}

function toggleLang() {
  state.lang = state.lang === 'zh' ? 'en' : 'zh';
  localStorage.setItem('fieldsync.lang', state.lang);
  applyLang();
}

// ---- login -------------------------------------------------------------------------------

function showLogin() {
  stopLive();
  state.me = null;
  document.getElementById('app-view').hidden = true;
  document.getElementById('login-view').hidden = false;
  document.getElementById('login-user').focus();
}

async function doLogin(ev) {
  ev.preventDefault();
  const err = document.getElementById('login-error');
  err.textContent = '';
  const user = document.getElementById('login-user').value.trim();
  const password = document.getElementById('login-password').value;
  try {
    state.me = await api('/api/login', { body: { user, password } });
    document.getElementById('login-password').value = '';
    await start();
  } catch (e) {
    err.textContent = e.status === 429 ? t('rate_limited') : e.status === 401 ? t('login_failed')
      : e.status ? e.message : t('network_error');
  }
}

async function doLogout() {
  try { await api('/api/logout', { body: {} }); } catch (e) { /* the session is gone anyway */ }
  state.ledger = null;
  showLogin();
}

// ---- live --------------------------------------------------------------------------------

function setLive(s) {
  state.liveState = s;
  const n = document.getElementById('live');
  if (!n) return;
  n.setAttribute('data-state', s);
  document.getElementById('live-text').textContent = t(s === 'live' ? 'live' : s === 'connecting' ? 'connecting' : 'reconnecting');
}

function startLive() {
  stopLive();
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/live';
  let ws;
  try { ws = new WebSocket(url, 'fieldsync.live.v1'); } catch (e) { scheduleReconnect(); return; }
  state.ws = ws;
  ws.onopen = () => { state.wsRetry = 0; setLive('live'); scheduleRefresh(0); };
  ws.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch (e) { return; }
    if (m.kind === 'hello') return;
    const touchesChild = state.childId && (m.record === state.childId ||
      (m.refs || []).indexOf(state.childId) >= 0);
    scheduleRefresh(100, touchesChild || m.kind === 'resync');
  };
  ws.onclose = (ev) => {
    if (state.ws !== ws) return;
    state.ws = null;
    if (!state.me) return;
    setLive('reconnecting');
    if (ev.code === 4401) { api('/api/me').catch(() => {}); return; }
    scheduleReconnect();
  };
}

function stopLive() {
  clearTimeout(state.wsTimer);
  if (state.ws) { const ws = state.ws; state.ws = null; ws.close(); }
}

function scheduleReconnect() {
  clearTimeout(state.wsTimer);
  const delay = Math.min(30000, 1000 * Math.pow(2, state.wsRetry++)) * (0.75 + Math.random() * 0.5);
  state.wsTimer = setTimeout(async () => {
    // a refused handshake looks like any failure: ask whether the session still stands
    try { await api('/api/me'); } catch (e) { if (e.status === 401) return; }
    if (state.me) startLive();
  }, delay);
}

function scheduleRefresh(ms, child) {
  if (child) state.refreshChild = true;
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(async () => {
    state.refreshTimer = null;
    const withChild = state.refreshChild;
    state.refreshChild = false;
    await loadLedger();
    if (withChild && state.childId) await loadChild(state.childId, true);
  }, ms);
}

// ---- loading -----------------------------------------------------------------------------

async function start() {
  document.getElementById('login-view').hidden = true;
  document.getElementById('app-view').hidden = false;
  if (!state.schema) {
    state.schema = await api('/api/schema');
    for (const ty of state.schema.types) {
      ty.fieldsByName = {};
      for (const f of ty.fields) ty.fieldsByName[f.name] = f;
      state.types[ty.name] = ty;
    }
  }
  const scope = state.me.scope;
  document.getElementById('scope-name').textContent = scope.name || (state.me.villages.map((v) => v.name).join('、'));
  document.getElementById('who').textContent = state.me.user;
  applyLang();
  await loadLedger();
  startLive();
  route();
}

async function loadLedger() {
  try {
    state.ledger = await api('/api/ledger');
    state.loadError = null;
  } catch (e) {
    if (e.status === 401) return;
    state.loadError = e.message;
  }
  render();
}

async function loadChild(id, quiet) {
  state.childId = id;
  try {
    state.child = await api('/api/child/' + encodeURIComponent(id));
  } catch (e) {
    if (e.status === 401) return;
    state.child = { error: e.message };
  }
  if (!quiet || currentView() === 'child') render();
}

// ---- routing -----------------------------------------------------------------------------

function currentView() {
  const h = location.hash.replace(/^#\//, '');
  if (h.startsWith('child/')) return 'child';
  return ['overview', 'children', 'overdue', 'reports', 'reviews', 'devices'].includes(h) ? h : 'overview';
}

function route() {
  const h = location.hash.replace(/^#\//, '');
  if (h.startsWith('child/')) {
    const id = decodeURIComponent(h.slice(6));
    if (id !== state.childId || !state.child) { state.child = null; loadChild(id); }
  } else {
    state.childId = null;
    state.child = null;
  }
  render();
  window.scrollTo(0, 0);
}

// ---- rendering ---------------------------------------------------------------------------

function render() {
  if (!state.me || !state.schema) return;
  const view = currentView();
  for (const a of document.querySelectorAll('#tabs a')) a.classList.toggle('active', a.getAttribute('data-view') === view);
  for (const s of document.querySelectorAll('.view')) {
    s.hidden = s.id !== 'view-' + view;
    if (s.hidden) clear(s); // a hidden view keeps no stale rows or buttons
  }
  const L = state.ledger;
  if (L) {
    setBadge('badge-overdue', L.summary.overdue);
    setBadge('badge-reports', L.summary.reports_open, L.summary.past_deadline > 0);
    setBadge('badge-reviews', L.summary.reviews_open);
    document.getElementById('updated').textContent = t('updated', { t: fmtTime(L.now_ms) }) + ' · seq ' + L.log_seq;
  }
  const root = document.getElementById('view-' + view);
  clear(root);
  if (state.loadError) root.appendChild(el('p', { class: 'error' }, t('error_load', { m: state.loadError })));
  if (!L) return;
  ({ overview: renderOverview, children: renderChildren, overdue: renderOverdue, reports: renderReports,
    reviews: renderReviews, devices: renderDevices, child: renderChild })[view](root, L);
}

function setBadge(id, n, alarm) {
  const b = document.getElementById(id);
  b.textContent = n ? String(n) : '';
  b.hidden = !n;
  b.classList.toggle('alarm', !!alarm);
}

function stat(key, value, cls, href, testid) {
  return el('a', { class: 'stat ' + (cls || ''), href: href || null, 'data-stat': testid },
    el('span', { class: 'stat-value' }, String(value)), el('span', { class: 'stat-label' }, t(key)));
}

function tableWrap(table) { return el('div', { class: 'table-wrap' }, table); }

function renderOverview(root, L) {
  const s = L.summary;
  const online = L.devices.filter((d) => d.online).length;
  root.appendChild(el('div', { class: 'stats' },
    stat('on_file', s.on_file, '', '#/children', 'on_file'),
    stat('overdue_visits', s.overdue, s.overdue ? 'warn' : 'good', '#/overdue', 'overdue'),
    stat('open_reports', s.reports_open, s.reports_open ? 'warn' : 'good', '#/reports', 'reports_open'),
    stat('past_deadline', s.past_deadline, s.past_deadline ? 'alarm' : 'good', '#/reports', 'past_deadline'),
    stat('reviews_open', s.reviews_open, s.reviews_open ? 'warn' : 'good', '#/reviews', 'reviews_open'),
    stat('devices_online', online + ' / ' + L.devices.length, '', '#/devices', 'devices')));

  // per-village counts, grouped header from the ledger file's count columns
  const cols = state.schema.ledger.subject.counts;
  const head1 = el('tr', null, el('th', { rowspan: 2, class: 'sticky' }, t('village')),
    el('th', { rowspan: 2, class: 'num' }, t('children_on_file')));
  const head2 = el('tr');
  for (let i = 0; i < cols.length;) {
    const g = cols[i].group;
    if (g) {
      let j = i;
      while (j < cols.length && cols[j].group && label(cols[j].group) === label(g)) j++;
      head1.appendChild(el('th', { colspan: j - i, class: 'group' }, label(g)));
      for (let k = i; k < j; k++) head2.appendChild(el('th', { class: 'num sub' }, label(cols[k].label)));
      i = j;
    } else {
      head1.appendChild(el('th', { rowspan: 2, class: 'num' }, label(cols[i].label)));
      i++;
    }
  }
  const body = el('tbody');
  const totals = new Array(cols.length).fill(0);
  let totalOnFile = 0;
  for (const v of L.villages) {
    const tr = el('tr', { 'data-village': v.code },
      el('th', { class: 'sticky', scope: 'row' }, v.name || v.code),
      el('td', { class: 'num strong', 'data-key': 'on_file' }, String(v.on_file)));
    v.counts.forEach((n, k) => {
      totals[k] += n;
      tr.appendChild(el('td', { class: 'num' + (n ? '' : ' zero'), 'data-key': cols[k].key }, String(n)));
    });
    totalOnFile += v.on_file;
    body.appendChild(tr);
  }
  const foot = el('tfoot', null, el('tr', { 'data-village': '_total' },
    el('th', { class: 'sticky', scope: 'row' }, t('total')),
    el('td', { class: 'num strong', 'data-key': 'on_file' }, String(totalOnFile)),
    totals.map((n, k) => el('td', { class: 'num', 'data-key': cols[k].key }, String(n)))));
  root.appendChild(el('div', { class: 'panel' },
    el('div', { class: 'panel-head' }, el('h2', null, t('per_village')),
      el('a', { class: 'button', href: '/api/export/ledger.csv', download: '', 'data-export': 'ledger' }, t('export_ledger'))),
    tableWrap(el('table', { class: 'grid counts', id: 'village-counts' }, el('thead', null, head1, head2), body, foot))));

  // the most urgent items, side by side on a wide screen
  const urgent = el('div', { class: 'two' });
  const od = L.children.filter((c) => c.overdue).sort((a, b) => a.due_ms - b.due_ms).slice(0, 8);
  urgent.appendChild(el('div', { class: 'panel' },
    el('div', { class: 'panel-head' }, el('h2', null, t('overdue_title')), el('a', { href: '#/overdue' }, '→')),
    od.length ? listChildren(od, L) : el('p', { class: 'muted' }, t('no_overdue'))));
  const rp = L.reports.slice(0, 8);
  urgent.appendChild(el('div', { class: 'panel' },
    el('div', { class: 'panel-head' }, el('h2', null, t('reports_title')), el('a', { href: '#/reports' }, '→')),
    rp.length ? el('ul', { class: 'mini' }, rp.map((r) => el('li', { class: r.past_deadline ? 'late' : '' },
      childLink(r.child, r.child_name), ' · ', reportCategory(r.category), ' · ',
      el('span', { class: 'pill ' + (r.past_deadline ? 'pill-bad' : 'pill-ok') },
        reportStatus(r.status) + ' · ' + (r.past_deadline ? t('overdue_flag') : t('in_time'))))))
      : el('p', { class: 'muted' }, t('no_reports'))));
  root.appendChild(urgent);
}

function listChildren(list, L) {
  return el('ul', { class: 'mini' }, list.map((c) => el('li', { class: 'late' },
    childLink(c.id, c.name), ' · ', villageName(c.village), ' · ', riskBadge(c.risk), ' ',
    el('span', { class: 'pill pill-bad' }, c.last_visit_ms ? t('overdue_days', { n: Math.floor((L.now_ms - c.due_ms) / 86400000) }) : t('never')))));
}

function childLink(id, name) {
  if (!id) return el('span', null, name || '—');
  return el('a', { href: '#/child/' + encodeURIComponent(id), class: 'child-link', 'data-child': id }, name || '—');
}

function reportCategory(code) {
  const c = state.schema.ledger.reports;
  return enumLabel(field(c.type, c.category), code);
}

function reportStatus(code) {
  const c = state.schema.ledger.reports;
  return enumLabel(field(c.type, c.status), code);
}

function visitCell(c, L) {
  if (!c.on_file) return el('span', { class: 'muted' }, '—');
  if (c.overdue) {
    return el('span', { class: 'pill pill-bad' }, c.last_visit_ms
      ? t('overdue_days', { n: Math.floor((L.now_ms - c.due_ms) / 86400000) }) : t('never'));
  }
  return el('span', { class: 'pill pill-ok' }, t('due_in', { n: Math.max(0, Math.ceil((c.due_ms - L.now_ms) / 86400000)) }));
}

function renderChildren(root, L) {
  const cfg = state.schema.ledger.subject;
  const sel = el('select', { id: 'filter-village', 'aria-label': t('village') },
    el('option', { value: '' }, t('all_villages')),
    L.villages.map((v) => el('option', { value: v.code, selected: state.filter.village === v.code }, v.name || v.code)));
  sel.addEventListener('change', () => { state.filter.village = sel.value; render(); });
  const q = el('input', { id: 'filter-q', type: 'search', placeholder: t('search'), value: state.filter.q });
  q.addEventListener('input', () => { state.filter.q = q.value; renderChildRows(); });
  const only = el('input', { type: 'checkbox', id: 'filter-overdue', checked: state.filter.overdue });
  only.addEventListener('change', () => { state.filter.overdue = only.checked; render(); });
  root.appendChild(el('div', { class: 'panel' },
    el('div', { class: 'panel-head' }, el('h2', null, t('tab_children')),
      el('a', { class: 'button', href: '/api/export/ledger.csv', download: '', 'data-export': 'ledger' }, t('export_ledger'))),
    el('div', { class: 'filters' }, sel, q, el('label', { class: 'check' }, only, t('only_overdue'))),
    el('div', { id: 'children-table' })));
  renderChildRows();

  function renderChildRows() {
    const box = clear(document.getElementById('children-table'));
    const f = state.filter;
    const rows = L.children.filter((c) => (!f.village || c.village === f.village) &&
      (!f.overdue || c.overdue) && (!f.q || c.name.indexOf(f.q) >= 0));
    if (!rows.length) { box.appendChild(el('p', { class: 'muted' }, t('no_children'))); return; }
    const head = el('tr', null, el('th', null, fieldLabel(cfg.type, cfg.name)), el('th', null, t('village')),
      cfg.columns.map((c) => el('th', { class: 'opt' }, fieldLabel(cfg.type, c))),
      el('th', null, fieldLabel(cfg.type, cfg.risk)), el('th', { class: 'opt' }, fieldLabel(cfg.type, cfg.status)),
      el('th', null, t('last_visit')), el('th', { class: 'opt' }, t('visitor')), el('th', null, t('due')));
    const body = el('tbody', null, rows.map((c) => el('tr', { 'data-id': c.id, class: c.overdue ? 'overdue' : (c.on_file ? '' : 'inactive') },
      el('td', { class: 'name' }, childLink(c.id, c.name)),
      el('td', { class: 'nowrap' }, villageName(c.village)),
      cfg.columns.map((col) => el('td', { class: 'opt' }, fmtValue(field(cfg.type, col), c.cols[col]))),
      el('td', null, riskBadge(c.risk)),
      el('td', { class: 'opt' }, c.status ? enumLabel(field(cfg.type, cfg.status), c.status) : '—'),
      el('td', { class: 'nowrap', 'data-col': 'last_visit' }, c.last_visit_ms ? fmtDay(c.last_visit_ms) : t('never')),
      el('td', { class: 'opt', 'data-col': 'visitor' }, c.last_visitor || '—'),
      el('td', { class: 'nowrap' }, visitCell(c, L)))));
    box.appendChild(tableWrap(el('table', { class: 'grid', id: 'children' }, el('thead', null, head), body)));
  }
}

function renderOverdue(root, L) {
  const cfg = state.schema.ledger;
  const days = cfg.visits.overdue_days;
  const rows = L.children.filter((c) => c.overdue).sort((a, b) => a.due_ms - b.due_ms);
  const panel = el('div', { class: 'panel' },
    el('div', { class: 'panel-head' }, el('h2', null, t('overdue_title')),
      el('a', { class: 'button', href: '/api/export/overdue.csv', download: '', 'data-export': 'overdue' }, t('export_overdue'))),
    el('p', { class: 'muted' }, t('overdue_note', { high: days.high || cfg.visits.default_days, medium: days.medium || cfg.visits.default_days, other: cfg.visits.default_days })));
  if (!rows.length) {
    panel.appendChild(el('p', { class: 'empty good' }, t('no_overdue')));
  } else {
    const s = cfg.subject;
    panel.appendChild(tableWrap(el('table', { class: 'grid', id: 'overdue' },
      el('thead', null, el('tr', null, el('th', null, fieldLabel(s.type, s.name)), el('th', null, t('village')),
        el('th', null, fieldLabel(s.type, s.risk)), el('th', null, t('last_visit')), el('th', { class: 'opt' }, t('visitor')),
        el('th', { class: 'num opt' }, t('interval')), el('th', null, t('due')), el('th', { class: 'num' }, t('days_overdue')))),
      el('tbody', null, rows.map((c) => el('tr', { class: 'overdue', 'data-id': c.id },
        el('td', { class: 'name' }, childLink(c.id, c.name)), el('td', { class: 'nowrap' }, villageName(c.village)),
        el('td', null, riskBadge(c.risk)),
        el('td', { class: 'nowrap' }, c.last_visit_ms ? fmtDay(c.last_visit_ms) : t('never')),
        el('td', { class: 'opt' }, c.last_visitor || '—'),
        el('td', { class: 'num opt' }, t('days', { n: c.interval_days })),
        el('td', { class: 'nowrap' }, fmtDay(c.due_ms)),
        el('td', { class: 'num strong bad' }, String(Math.floor((L.now_ms - c.due_ms) / 86400000)))))))));
  }
  root.appendChild(panel);
}

function renderReports(root, L) {
  const panel = el('div', { class: 'panel' }, el('div', { class: 'panel-head' }, el('h2', null, t('reports_title'))),
    el('p', { class: 'muted' }, t('reports_note')));
  if (!L.reports.length) {
    panel.appendChild(el('p', { class: 'empty good' }, t('no_reports')));
  } else {
    panel.appendChild(tableWrap(el('table', { class: 'grid', id: 'reports' },
      el('thead', null, el('tr', null, el('th', null, t('child')), el('th', { class: 'opt' }, t('village')),
        el('th', null, t('category')), el('th', null, t('status')), el('th', { class: 'opt' }, t('observed')),
        el('th', null, t('age')), el('th', null, t('deadline')))),
      el('tbody', null, L.reports.map((r) => el('tr', { class: r.past_deadline ? 'late' : '', 'data-id': r.id, 'data-past-deadline': r.past_deadline ? 'true' : 'false' },
        el('td', { class: 'name' }, childLink(r.child, r.child_name)),
        el('td', { class: 'opt nowrap' }, villageName(r.village)),
        el('td', null, reportCategory(r.category)),
        el('td', null, reportStatus(r.status)),
        el('td', { class: 'nowrap opt' }, fmtTime(r.time_ms)),
        el('td', { class: 'nowrap' }, fmtAge(L.now_ms - (r.time_ms || r.status_since_ms))),
        el('td', { class: 'nowrap' }, el('span', { class: 'pill ' + (r.past_deadline ? 'pill-bad' : 'pill-ok') },
          (r.past_deadline ? t('overdue_flag') : t('in_time')) + ' · ' + fmtTime(r.deadline_ms)))))))));
  }
  root.appendChild(panel);
}

function reviewSide(item, side, f) {
  const s = item[side];
  const btn = el('button', { class: 'primary', 'data-resolve': item.id, 'data-side': side }, t('use_this'));
  btn.addEventListener('click', async () => {
    for (const b of document.querySelectorAll('[data-resolve="' + item.id + '"]')) b.disabled = true;
    try {
      await api('/api/reviews/' + item.id + '/resolve', { body: { value: side } });
      toast(t('resolved', { v: fmtValue(f, s.value) }));
      await loadLedger();
      if (state.childId) await loadChild(state.childId, true);
    } catch (e) {
      toast(e.message, true);
      for (const b of document.querySelectorAll('[data-resolve="' + item.id + '"]')) b.disabled = false;
    }
  });
  return el('div', { class: 'side side-' + side },
    el('div', { class: 'side-label' }, t(side === 'a' ? 'value_a' : 'value_b')),
    el('div', { class: 'side-value', 'data-value': side }, fmtValue(f, s.value)),
    el('div', { class: 'side-meta' }, t('by', { who: s.author, dev: s.device_label || s.device.slice(0, 8) })),
    el('div', { class: 'side-meta' }, fmtTime(s.time_ms)),
    btn);
}

function reviewCards(items) {
  return el('div', { class: 'reviews' }, items.map((it) => {
    const f = field(it.type, it.field);
    return el('div', { class: 'review', 'data-review': it.id },
      el('div', { class: 'review-head' },
        it.type === state.schema.ledger.subject.type ? childLink(it.record, it.subject_name) : el('span', null, label(state.types[it.type] && state.types[it.type].label)),
        el('span', { class: 'muted' }, ' · ' + villageName(it.village) + ' · '),
        el('strong', null, fieldLabel(it.type, it.field))),
      el('div', { class: 'sides' }, reviewSide(it, 'a', f), reviewSide(it, 'b', f)));
  }));
}

function renderReviews(root, L) {
  const panel = el('div', { class: 'panel' }, el('div', { class: 'panel-head' }, el('h2', null, t('reviews_title'))),
    el('p', { class: 'muted' }, t('reviews_note')));
  panel.appendChild(L.reviews.length ? reviewCards(L.reviews) : el('p', { class: 'empty good' }, t('no_reviews')));
  root.appendChild(panel);
}

function renderDevices(root, L) {
  const panel = el('div', { class: 'panel' }, el('div', { class: 'panel-head' }, el('h2', null, t('devices_title'))));
  if (!L.devices.length) {
    panel.appendChild(el('p', { class: 'muted' }, t('no_devices')));
  } else {
    panel.appendChild(tableWrap(el('table', { class: 'grid', id: 'devices' },
      el('thead', null, el('tr', null, el('th', null, t('device')), el('th', null, t('user_col')), el('th', { class: 'opt' }, t('role')),
        el('th', null, t('last_sync')), el('th', { class: 'num' }, t('pending')), el('th', { class: 'num' }, t('refused')),
        el('th', null, t('online')), el('th', { class: 'opt' }, t('agent')))),
      el('tbody', null, L.devices.map((d) => el('tr', { 'data-device': d.id, class: d.refused ? 'late' : '' },
        el('td', null, d.label || d.id.slice(0, 8)), el('td', null, d.user), el('td', { class: 'opt' }, roleName(d.role)),
        el('td', { class: 'nowrap' }, d.last_sync_ms ? fmtTime(d.last_sync_ms) : '—'),
        el('td', { class: 'num', 'data-col': 'pending' }, d.pending === null ? '—' : String(d.pending)),
        el('td', { class: 'num' + (d.refused ? ' strong bad' : ''), 'data-col': 'refused' }, String(d.refused)),
        el('td', null, el('span', { class: 'pill ' + (d.online ? 'pill-ok' : 'pill-muted') }, t(d.online ? 'online' : 'offline'))),
        el('td', { class: 'opt small' }, d.agent || '—')))))));
  }
  root.appendChild(panel);
}

function relatedList(title, typeName, list, timeField, testid) {
  const ty = state.types[typeName];
  const sorted = list.slice().sort((a, b) => {
    const ta = timeOf(ty, a, timeField), tb = timeOf(ty, b, timeField);
    return tb - ta;
  });
  const box = el('div', { class: 'panel', 'data-related': testid }, el('div', { class: 'panel-head' }, el('h2', null, title + ' (' + list.length + ')')));
  if (!list.length) { box.appendChild(el('p', { class: 'muted' }, t('none'))); return box; }
  for (const r of sorted) {
    const items = ty.fields.filter((f) => f.kind !== 'ref' && r.fields[f.name] !== undefined && r.fields[f.name] !== null);
    box.appendChild(el('div', { class: 'card', 'data-record': r.id },
      el('dl', { class: 'kv' }, items.map((f) => [el('dt', null, label(f.label) || f.name), el('dd', null, fmtValue(f, r.fields[f.name]))]))));
  }
  return box;
}

function timeOf(ty, r, timeField) {
  const v = timeField ? r.fields[timeField] : null;
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return Date.parse(v) || r.created_ms;
  return r.created_ms;
}

function renderChild(root) {
  root.appendChild(el('p', null, el('a', { href: '#/children', class: 'back' }, t('back'))));
  const c = state.child;
  if (!c) return;
  if (c.error) { root.appendChild(el('p', { class: 'error' }, c.error)); return; }
  const cfg = state.schema.ledger;
  const ty = state.types[c.type];
  const byName = {};
  for (const f of c.fields) byName[f.name] = f;
  const name = byName[cfg.subject.name] ? byName[cfg.subject.name].value : '';
  const row = state.ledger && state.ledger.children.find((x) => x.id === c.id);
  root.appendChild(el('div', { class: 'child-head' },
    el('h2', { id: 'child-name' }, name || c.id),
    el('span', { class: 'muted' }, villageName(c.village)),
    byName[cfg.subject.risk] ? riskBadge(byName[cfg.subject.risk].value) : null,
    row ? visitCell(row, state.ledger) : null));
  if (c.reviews.length) {
    root.appendChild(el('div', { class: 'panel attention' }, el('h2', null, t('open_reviews_here')), reviewCards(c.reviews)));
  }
  const grid = el('div', { class: 'two' });
  grid.appendChild(el('div', { class: 'panel' }, el('h2', null, (label(ty.label) || t('fields'))),
    tableWrap(el('table', { class: 'grid fields', id: 'child-fields' },
      el('thead', null, el('tr', null, el('th', null, t('field')), el('th', null, t('value')), el('th', null, t('who_when')))),
      el('tbody', null, c.fields.map((f) => {
        const fd = ty.fieldsByName[f.name];
        return el('tr', { 'data-field': f.name },
          el('th', { scope: 'row' }, fd ? label(fd.label) || f.name : f.name),
          el('td', { 'data-col': 'value' }, fmtValue(fd, f.value)),
          el('td', { class: 'small muted' }, f.author + ' · ' + (f.device_label || f.device.slice(0, 8)) + ' · ' + fmtTime(f.time_ms)));
    }))))));
  const side = el('div');
  if (c.related.visits) side.appendChild(relatedList(t('visits'), cfg.visits.type, c.related.visits, cfg.visits.time, 'visits'));
  if (c.related.reports) side.appendChild(relatedList(t('reports'), cfg.reports.type, c.related.reports, cfg.reports.time, 'reports'));
  if (c.related.assessments) side.appendChild(relatedList(t('assessments'), cfg.assessments.type, c.related.assessments, cfg.assessments.time, 'assessments'));
  grid.appendChild(side);
  root.appendChild(grid);
  const hist = c.history.slice().reverse();
  root.appendChild(el('div', { class: 'panel' }, el('h2', null, t('history')),
    tableWrap(el('table', { class: 'grid history', id: 'child-history' },
      el('thead', null, el('tr', null, el('th', null, t('at')), el('th', null, t('who_when')), el('th', null, t('changes')))),
      el('tbody', null, hist.map((h) => el('tr', { 'data-seq': h.seq },
        el('td', { class: 'nowrap' }, fmtTime(h.time_ms), el('br'), el('span', { class: 'small muted' }, h.create ? t('created') : t('changed'))),
        el('td', null, h.author, el('br'), el('span', { class: 'small muted' }, (h.device_label || h.device.slice(0, 8)) + ' · ' + roleName(h.role))),
        el('td', null, el('dl', { class: 'kv compact' }, Object.entries(h.fields).map(([k, v]) =>
          [el('dt', null, fieldLabel(c.type, k)), el('dd', null, fmtValue(ty.fieldsByName[k], v))]))))))))));
}

// ---- boot ----------------------------------------------------------------------------------

async function boot() {
  for (const b of document.querySelectorAll('.lang-toggle')) b.addEventListener('click', toggleLang);
  document.getElementById('login-form').addEventListener('submit', doLogin);
  document.getElementById('logout').addEventListener('click', doLogout);
  window.addEventListener('hashchange', route);
  applyLang();
  try {
    state.me = await api('/api/me');
  } catch (e) {
    showLogin();
    return;
  }
  try { await start(); } catch (e) { toast(e.message, true); }
}

document.addEventListener('DOMContentLoaded', boot);
