// The admin console: reviewers, operators and super admins, each seeing their own work.
// Built only on the public /api/v1; every write is audited by the API itself.
import * as api from '/assets/api.js';
import { t, applyI18n, onLangChange, fmtTime, fmtDate, beijingToday } from '/assets/i18n.js';
import { h, field, select, errorText, alertBox, dialog, reasonDialog, headerTools, signInForm, signInAgain, passwordPage, badge, resetPasswordFlow, confirmDialog } from '/assets/ui.js';

const root = document.getElementById('root');
const TIERS = ['A', 'B', 'C', 'D', 'E'];
const CATEGORIES = ['sci_tech', 'enterprise', 'youth', 'skilled', 'rural', 'social', 'civil'];
const PARTNER_CATEGORIES = ['hospital', 'school', 'apartment', 'scenic', 'transport', 'finance', 'culture', 'sport', 'elderly_care', 'service_center', 'other'];
const DISTRICTS = ['宛城区', '卧龙区', '南召县', '方城县', '西峡县', '镇平县', '内乡县', '淅川县', '社旗县', '唐河县', '新野县', '桐柏县', '邓州市'];
const PERIODS = ['day', 'week', 'month', 'quarter', 'year', 'lifetime', 'unlimited'];
const ADMIN_ROLES = ['reviewer', 'operator', 'super_admin'];

// Which pages each role sees (the API enforces the same; this only hides what would 403).
const PAGES = [
  ['dashboard', 'nav.dashboard', ['reviewer', 'operator', 'super_admin']],
  ['applications', 'nav.applications', ['reviewer', 'super_admin']],
  ['cards', 'nav.cards', ['reviewer', 'super_admin']],
  ['partners', 'nav.partners', ['operator', 'super_admin']],
  ['stats', 'nav.stats', ['operator', 'super_admin']],
  ['audit', 'nav.audit', ['operator', 'super_admin']],
  ['users', 'nav.users', ['super_admin']],
  ['keys', 'nav.keys', ['super_admin']],
];

let me = null;
let content = null;
api.configure({ app: 'console', onAuthNeeded: signInAgain, onPasswordChange: () => passwordPage(root).then(start) });
onLangChange(() => (me ? route() : showSignIn()));
window.addEventListener('hashchange', () => me && route());
document.getElementById('tools').replaceChildren(...headerTools(null).filter(Boolean));

function showSignIn() {
  document.getElementById('who').textContent = '';
  document.getElementById('tools').replaceChildren(...headerTools(null).filter(Boolean));
  root.replaceChildren(h('main', { class: 'center-page' },
    h('section', { class: 'panel narrow', 'aria-labelledby': 'signin-h' },
      h('h1', { id: 'signin-h' }, t('signin.title')), h('p', { class: 'muted' }, t('app.city')), signInForm(start))));
}

async function start() {
  try {
    const m = await api.get('/me');
    if (m.must_change_password) { await passwordPage(root); return start(); }
    if (!ADMIN_ROLES.includes(m.role)) {
      await api.logout();
      showSignIn();
      root.querySelector('form').prepend(alertBox('error', t('signin.wrongapp', { role: t('role.' + m.role) })));
      return;
    }
    me = m;
    route();
  } catch (e) {
    showSignIn();
    root.querySelector('form').prepend(alertBox('error', errorText(e)));
  }
}

async function signOut() {
  await api.logout();
  me = null;
  location.hash = '';
  showSignIn();
}

function pages() { return PAGES.filter(([, , roles]) => roles.includes(me.role)); }

function route() {
  // `#/page/id?filters`: the filters of a list live in the hash, so a reload or a shared
  // link shows the same list.
  const [path, query = ''] = location.hash.replace(/^#\/?/, '').split('?');
  const [page, id] = path.split('/');
  const allowed = pages();
  const current = allowed.find(([p]) => p === page) ? page : 'dashboard';
  document.getElementById('who').textContent = `${me.username} · ${t('role.' + me.role)}`;
  document.getElementById('tools').replaceChildren(...headerTools(signOut).filter(Boolean));
  const nav = h('nav', { class: 'sidenav', 'aria-label': t('app.console') }, h('ul', {}, allowed.map(([p, key]) =>
    h('li', {}, h('a', { href: '#/' + p, 'aria-current': p === current ? 'page' : false, id: 'nav-' + p }, t(key))))));
  content = h('main', { class: 'content', id: 'content' });
  root.replaceChildren(h('div', { class: 'layout' }, nav, content));
  const views = { dashboard, applications, cards, partners, stats, audit, users, keys };
  return views[current](id ? decodeURIComponent(id) : null, new URLSearchParams(query)).catch((e) => content.append(alertBox('error', errorText(e))));
}

function pageHead(title, ...extra) {
  return h('div', { class: 'page-head' }, h('h1', {}, title), h('span', { class: 'grow' }), ...extra);
}

function table(headers, rows, attrs = {}) {
  if (!rows.length) return h('p', { class: 'muted empty' }, t('none'));
  return h('div', { class: 'table-wrap' }, h('table', attrs,
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))), h('tbody', {}, rows)));
}

function statusBadge(prefix, status) {
  const good = ['active', 'approved', 'completed'].includes(status);
  const bad = ['suspended', 'revoked', 'rejected', 'inactive', 'disabled', 'voided', 'expired'].includes(status);
  return badge(good ? 'ok' : bad ? 'bad' : 'info', t(prefix + status));
}

/** Runs an action, showing its error in `where` (or on top of the page). */
async function act(fn, where) {
  try { await fn(); return true; } catch (e) { (where || content).prepend(alertBox('error', errorText(e))); return false; }
}

// ---------- dashboard ----------

async function dashboard() {
  content.append(pageHead(t('nav.dashboard')));
  const tiles = h('div', { class: 'tiles' });
  content.append(tiles);
  const canStats = me.role !== 'reviewer';
  const canReview = me.role !== 'operator';
  if (canReview) {
    const waiting = await api.get('/admin/applications/count?status=submitted');
    tiles.append(tile(t('dash.pending'), waiting.count, '#/applications'));
  }
  if (!canStats) return;
  const today = beijingToday();
  const last30 = fmtDate(new Date(Date.now() - 29 * 86400e3).toISOString());
  const monthStart = today.slice(0, 8) + '01';
  // Three small reports, each grouped only as the page shows it (a page holds up to 1 000
  // groups: days, partners, tiers).
  const report = (by, from) => api.get('/admin/stats' + api.qs({ from, to: today, by, limit: 1000 }));
  const [days, partners, tiers] = await Promise.all([report('day', monthStart < last30 ? monthStart : last30), report('partner', last30), report('tier', last30)]);
  const sum = (rows) => rows.reduce((n, r) => n + r.count, 0);
  tiles.prepend(tile(t('dash.today'), sum(days.rows.filter((r) => r.day === today))), tile(t('dash.month'), sum(days.rows.filter((r) => r.day >= monthStart))));
  const byDay = new Map();
  for (let i = 29; i >= 0; i--) byDay.set(fmtDate(new Date(Date.now() - i * 86400e3).toISOString()), 0);
  for (const r of days.rows) if (byDay.has(r.day)) byDay.set(r.day, byDay.get(r.day) + r.count);
  const chart = h('div', { class: 'chart', role: 'img', 'aria-label': `${t('dash.byday')}: ${[...byDay.values()].join(', ')}` });
  const partnerNames = await partnerNameMap();
  const group = (s, key) => s.rows.map((r) => [r[key], r.count]).sort((a, b) => b[1] - a[1]);
  content.append(h('div', { class: 'grid-2' },
    h('section', { class: 'panel wide', 'aria-labelledby': 'byday-h' }, h('h2', { id: 'byday-h' }, t('dash.byday')), chart),
    h('section', { class: 'panel', 'aria-labelledby': 'bypartner-h' }, h('h2', { id: 'bypartner-h' }, t('dash.bypartner')), bars(group(partners, 'partner_id').slice(0, 10).map(([k, v]) => [partnerNames.get(k) || k.slice(0, 8), v]))),
    h('section', { class: 'panel', 'aria-labelledby': 'bytier-h' }, h('h2', { id: 'bytier-h' }, t('dash.bytier')), bars(TIERS.map((x) => [t('tier.' + x), (group(tiers, 'tier').find(([k]) => k === x) || [0, 0])[1]])))));
  drawChart(chart, [...byDay.keys()], [...byDay.values()]);
}

function tile(label, value, href) {
  const inner = [h('span', { class: 'tile-label' }, label), h('span', { class: 'tile-value' }, String(value))];
  return href ? h('a', { class: 'tile panel', href }, ...inner) : h('div', { class: 'tile panel' }, ...inner);
}

function bars(items) {
  const max = Math.max(1, ...items.map(([, v]) => v));
  if (!items.length) return h('p', { class: 'muted' }, t('none'));
  return h('ul', { class: 'bars' }, items.map(([label, v]) => {
    const fill = h('span', { class: 'bar-fill' });
    fill.style.width = `${(100 * v) / max}%`;
    return h('li', {}, h('span', { class: 'bar-label' }, label), h('span', { class: 'bar-track', 'aria-hidden': 'true' }, fill), h('span', { class: 'bar-value' }, String(v)));
  }));
}

async function drawChart(el, days, counts) {
  const { default: uPlot } = await import('/assets/vendor/uplot-1.6.32/uPlot.esm.js');
  if (!document.querySelector('link[data-uplot]')) document.head.append(h('link', { rel: 'stylesheet', href: '/assets/vendor/uplot-1.6.32/uPlot.min.css', 'data-uplot': true }));
  const xs = days.map((d) => Date.parse(d + 'T00:00:00+08:00') / 1000);
  const width = Math.max(280, el.clientWidth || 600);
  const plot = new uPlot({
    width, height: 220, legend: { show: false }, cursor: { show: true, drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(4, max * 1.15)] } },
    axes: [{ stroke: '#5b6878', grid: { stroke: '#eef1f5' } }, { stroke: '#5b6878', grid: { stroke: '#eef1f5' } }],
    series: [{}, { label: t('stats.count'), stroke: '#0b5394', width: 2, fill: 'rgba(11,83,148,.10)', points: { show: false } }],
  }, [xs, counts], el);
  new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: 220 })).observe(el);
}

let partnerCache = null;
async function partnerNameMap() {
  if (partnerCache) return partnerCache;
  const m = new Map();
  let cursor = null;
  do {
    const page = await api.get('/admin/partners' + api.qs({ limit: 100, cursor }));
    for (const p of page.items) m.set(p.id, p.name);
    cursor = page.next_cursor;
  } while (cursor && m.size < 2000);
  partnerCache = m;
  return m;
}

// ---------- applications ----------

async function applications(id) {
  if (id) return application(id);
  const status = new URLSearchParams(location.search).get('status') || 'submitted';
  const filter = select('status', ['submitted', 'approved', 'rejected', 'withdrawn'], (s) => t('as.' + s), status, { id: 'app-status' });
  const list = h('div');
  content.append(pageHead(t('nav.applications'), field(t('status'), filter)), h('section', { class: 'panel' }, list));
  const load = async () => {
    const page = await api.get('/admin/applications' + api.qs({ status: filter.value, limit: 100 }));
    list.replaceChildren(table([t('app.name'), t('app.idno'), t('app.employer'), t('app.claimed'), t('app.submitted'), t('status')],
      page.items.map((a) => h('tr', {},
        h('td', {}, h('a', { href: `#/applications/${a.id}` }, a.real_name)), h('td', { class: 'mono' }, a.id_number), h('td', {}, a.employer),
        h('td', {}, t('tier.' + a.claimed_tier)), h('td', {}, fmtTime(a.created_at)), h('td', {}, statusBadge('as.', a.status)))), { id: 'applications' }));
  };
  filter.addEventListener('change', load);
  await load();
}

async function application(id) {
  const a = await api.get('/admin/applications/' + id);
  const name = h('dd', { id: 'app-name' }, a.real_name);
  const idno = h('dd', { class: 'mono', id: 'app-idno' }, a.id_number);
  const reveal = h('button', { type: 'button', class: 'btn ghost small', id: 'reveal', onclick: () => act(async () => {
    const pii = await api.get(`/admin/applications/${id}/pii`);
    name.textContent = pii.real_name;
    idno.textContent = pii.id_number;
    reveal.remove();
  }) }, t('app.reveal'));
  const docs = h('div', { class: 'docs' });
  const facts = h('dl', { class: 'facts' },
    h('dt', {}, t('app.name')), name, h('dt', {}, t('app.idno')), idno,
    h('dt', {}, t('app.employer')), h('dd', {}, a.employer), h('dt', {}, t('scan.category')), h('dd', {}, t('cat.' + a.category)),
    h('dt', {}, t('app.claimed')), h('dd', {}, t('tier.' + a.claimed_tier)), h('dt', {}, t('app.education')), h('dd', {}, a.education),
    h('dt', {}, t('app.title')), h('dd', {}, a.title), h('dt', {}, t('app.submitted')), h('dd', {}, fmtTime(a.created_at)),
    h('dt', {}, t('status')), h('dd', {}, statusBadge('as.', a.status), a.reason ? ` ${a.reason}` : ''));
  content.append(pageHead(`${t('nav.applications')} · ${a.real_name}`, h('a', { class: 'btn ghost small', href: '#/applications' }, '← ' + t('nav.applications'))),
    h('div', { class: 'grid-2' },
      h('section', { class: 'panel', 'aria-label': t('nav.applications') }, facts, h('div', { class: 'row' }, reveal)),
      h('section', { class: 'panel', 'aria-labelledby': 'docs-h' }, h('h2', { id: 'docs-h' }, t('app.docs')), docs)));
  if (!a.document_ids.length) docs.append(h('p', { class: 'muted' }, t('app.nodocs')));
  for (const doc of a.document_ids) {
    api.blobWithType('/admin/documents/' + doc, '*/*').then(({ url, type }) => {
      const label = `${t('app.docs')} ${doc.slice(0, 8)}`;
      docs.append(h('figure', { class: 'doc' }, type.startsWith('image/') ? h('img', { src: url, alt: label }) : null,
        h('figcaption', {}, h('a', { href: url, target: '_blank', rel: 'noopener', download: type.startsWith('image/') ? false : `${doc}.pdf` }, label))));
    }).catch((e) => docs.append(alertBox('error', errorText(e))));
  }
  if (a.status !== 'submitted') return;
  const tier = select('tier', TIERS, (x) => t('tier.' + x), a.claimed_tier);
  const cat = select('category', CATEGORIES, (x) => t('cat.' + x), a.category);
  const years = h('input', { name: 'valid_years', type: 'number', min: 1, max: 10, value: 3, required: true });
  const msg = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'decide', id: 'approve' }, field(t('scan.tier'), tier), field(t('scan.category'), cat), field(t('app.years'), years),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'btn ok' }, t('app.approve')),
      h('button', { type: 'button', class: 'btn danger', id: 'reject', onclick: async () => {
        const data = await reasonDialog(t('app.reject'), { danger: true });
        if (data && await act(() => api.post(`/admin/applications/${id}/reject`, { reason: data.reason }), msg)) location.hash = '#/applications';
      } }, t('app.reject'))), msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (await act(() => api.post(`/admin/applications/${id}/approve`, { tier: tier.value, category: cat.value, valid_years: Number(years.value) }), msg)) {
      location.hash = '#/applications';
    }
  });
  content.append(h('section', { class: 'panel', 'aria-labelledby': 'decide-h' }, h('h2', { id: 'decide-h' }, t('app.approve')), form));
}

// ---------- cards ----------

async function cards(id) {
  if (id) return card(id);
  const q = h('input', { name: 'q', id: 'card-q', type: 'search', autocomplete: 'off' });
  const results = h('div');
  const form = h('form', { class: 'search', role: 'search' }, field(t('cards.query'), q), h('button', { type: 'submit', class: 'btn primary' }, t('search')));
  const run = async () => {
    const v = q.value.trim();
    const params = { limit: 50 };
    if (/^ZG\d{11}[\dX]$/i.test(v)) params.card_no = v.toUpperCase();
    else if (/^\d{17}[\dXx]$/.test(v)) params.id_number = v.toUpperCase();
    else if (v) params.name = v;
    const page = await api.get('/admin/cards' + api.qs(params));
    results.replaceChildren(table([t('scan.card'), t('scan.holder'), t('scan.tier'), t('scan.category'), t('status'), t('cards.until')],
      page.items.map((c) => h('tr', {}, h('td', { class: 'mono' }, h('a', { href: `#/cards/${c.id}` }, c.card_no)), h('td', {}, c.holder),
        h('td', {}, c.tier), h('td', {}, t('cat.' + c.category)), h('td', {}, statusBadge('cs.', c.status)), h('td', {}, fmtDate(c.valid_until)))), { id: 'cards' }));
  };
  form.addEventListener('submit', (ev) => { ev.preventDefault(); act(run, results); });
  content.append(pageHead(t('nav.cards')), h('section', { class: 'panel' }, form, results));
  q.focus();
  await run();
}

async function card(id) {
  const c = await api.get('/admin/cards/' + id);
  const msg = h('div', { 'aria-live': 'polite' });
  const action = (verb, label, danger) => h('button', { type: 'button', class: danger ? 'btn danger' : 'btn ghost', id: 'card-' + verb, onclick: async () => {
    const fields = [field(t('reason'), h('textarea', { name: 'reason', required: true, rows: 3, maxlength: 500 }))];
    if (verb === 'renew') fields.push(field(t('app.years'), h('input', { name: 'valid_years', type: 'number', min: 1, max: 10, value: 3, required: true })));
    const data = await dialog(`${label} · ${c.card_no}`, fields, { danger });
    if (!data) return;
    const body = { reason: data.reason };
    if (data.valid_years) body.valid_years = Number(data.valid_years);
    if (await act(() => api.post(`/admin/cards/${id}/${verb}`, body), msg)) route();
  } }, label);
  const actions = [];
  if (c.status === 'active') actions.push(action('suspend', t('cards.suspend')));
  if (c.status === 'suspended') actions.push(action('resume', t('cards.resume')));
  if (c.status !== 'revoked') actions.push(action('renew', t('cards.renew')), action('revoke', t('cards.revoke'), true));
  // The holder's name, ID number and phone in full: for the roles the API lets see them,
  // one audited read, shown only on this page and gone when it is left.
  const pii = h('dl', { class: 'facts', id: 'card-pii', hidden: true });
  const reveal = ['reviewer', 'super_admin'].includes(me.role) ? h('button', { type: 'button', class: 'btn ghost small', id: 'card-reveal', onclick: () => act(async () => {
    const p = await api.get(`/admin/cards/${id}/pii`);
    pii.replaceChildren(h('dt', {}, t('card.name')), h('dd', { id: 'card-name' }, p.holder_name),
      h('dt', {}, t('card.idno')), h('dd', { class: 'mono', id: 'card-idno' }, p.id_number),
      h('dt', {}, t('card.phone')), h('dd', { class: 'mono', id: 'card-phone' }, p.phone || t('card.nophone')));
    pii.hidden = false;
    reveal.remove();
  }, msg) }, t('card.reveal')) : null;
  content.append(pageHead(`${t('nav.cards')} · ${c.card_no}`, h('a', { class: 'btn ghost small', href: '#/cards' }, '← ' + t('nav.cards'))),
    h('div', { class: 'grid-2' },
      h('section', { class: 'panel', 'aria-label': c.card_no }, h('dl', { class: 'facts' },
        h('dt', {}, t('scan.card')), h('dd', { class: 'mono' }, c.card_no), h('dt', {}, t('scan.holder')), h('dd', {}, c.holder),
        h('dt', {}, t('scan.tier')), h('dd', {}, t('tier.' + c.tier)), h('dt', {}, t('scan.category')), h('dd', {}, t('cat.' + c.category)),
        h('dt', {}, t('status')), h('dd', { id: 'card-status', dataset: { status: c.status } }, statusBadge('cs.', c.status)),
        h('dt', {}, t('cards.from')), h('dd', {}, fmtDate(c.valid_from)), h('dt', {}, t('cards.until')), h('dd', {}, fmtDate(c.valid_until))),
      pii, reveal ? h('div', { class: 'row' }, reveal) : null,
      h('div', { class: 'row actions' }, actions), msg),
      h('section', { class: 'panel', 'aria-labelledby': 'events-h' }, h('h2', { id: 'events-h' }, t('cards.events')),
        h('ol', { class: 'timeline' }, [...c.events].reverse().map((e) => h('li', {},
          h('strong', {}, t('ev.' + e.kind)), ' ', h('span', { class: 'muted' }, fmtTime(e.created_at)), e.reason ? h('div', {}, e.reason) : null))))));
}

// ---------- partners, benefits, staff ----------

async function partners(id) {
  if (id) return partner(id);
  const newBtn = h('button', { type: 'button', class: 'btn primary', id: 'partner-new', onclick: async () => {
    const data = await dialog(t('partners.new'), partnerFields({}), { submit: t('save') });
    if (!data) return;
    await act(async () => { const p = await api.post('/admin/partners', partnerBody(data)); partnerCache = null; location.hash = '#/partners/' + p.id; });
  } }, t('partners.new'));
  const all = [];
  let cursor = null;
  do {
    const page = await api.get('/admin/partners' + api.qs({ limit: 100, cursor }));
    all.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && all.length < 1000);
  content.append(pageHead(t('nav.partners'), newBtn), h('section', { class: 'panel' }, table(
    [t('partners.name'), t('partners.category'), t('partners.district'), t('partners.phone'), t('status')],
    all.map((p) => h('tr', {}, h('td', {}, h('a', { href: `#/partners/${p.id}` }, p.name)), h('td', {}, t('pc.' + p.category)), h('td', {}, p.district),
      h('td', {}, p.phone), h('td', {}, statusBadge('st.', p.status)))), { id: 'partners' })));
}

function partnerFields(p) {
  const input = (name, attrs = {}) => h('input', { name, value: p[name] ?? '', ...attrs });
  return [
    field(t('partners.name'), input('name', { required: true, maxlength: 100 })),
    h('div', { class: 'two' }, field(t('partners.category'), select('category', PARTNER_CATEGORIES, (x) => t('pc.' + x), p.category || 'hospital')),
      field(t('partners.district'), select('district', DISTRICTS, (x) => x, p.district || '卧龙区'))),
    field(t('partners.address'), input('address', { required: true })),
    h('div', { class: 'two' }, field(t('partners.lat'), input('lat', { type: 'number', step: 'any', min: 31, max: 34, required: true, value: p.lat ?? 32.99 })),
      field(t('partners.lng'), input('lng', { type: 'number', step: 'any', min: 110, max: 114, required: true, value: p.lng ?? 112.53 }))),
    h('div', { class: 'two' }, field(t('partners.phone'), input('phone', { required: true })), field(t('partners.hours'), input('opening_hours', { required: true, value: p.opening_hours ?? '08:00-17:30' }))),
    field(t('partners.desc'), h('textarea', { name: 'description', rows: 2 }, p.description ?? '')),
  ];
}

function partnerBody(d) {
  return { name: d.name, category: d.category, district: d.district, address: d.address, lat: Number(d.lat), lng: Number(d.lng),
    phone: d.phone, opening_hours: d.opening_hours, description: d.description || '', status: 'active' };
}

async function partner(id) {
  const p = await api.get('/admin/partners/' + id);
  const msg = h('div', { 'aria-live': 'polite' });
  const edit = h('button', { type: 'button', class: 'btn ghost', id: 'partner-edit', onclick: async () => {
    const data = await dialog(`${t('edit')} · ${p.name}`, partnerFields(p), { submit: t('save') });
    if (data && await act(() => api.patch('/admin/partners/' + id, { ...partnerBody(data), status: p.status }), msg)) { partnerCache = null; route(); }
  } }, t('edit'));
  // Deactivation is the API's DELETE (the partner and its history stay), asked first.
  const toggle = p.status === 'active'
    ? h('button', { type: 'button', class: 'btn danger', id: 'partner-deactivate', onclick: async () => {
      if (!await confirmDialog(`${t('partners.deactivate')} · ${p.name}`, t('partners.deactivate.confirm'), t('partners.deactivate'))) return;
      if (await act(() => api.del('/admin/partners/' + id), msg)) { partnerCache = null; route(); }
    } }, t('partners.deactivate'))
    : h('button', { type: 'button', class: 'btn ok', id: 'partner-activate', onclick: async () => {
      if (await act(() => api.patch('/admin/partners/' + id, { status: 'active' }), msg)) route();
    } }, t('partners.activate'));
  content.append(pageHead(p.name, h('a', { class: 'btn ghost small', href: '#/partners' }, '← ' + t('nav.partners'))),
    h('section', { class: 'panel' }, h('dl', { class: 'facts' },
      h('dt', {}, t('partners.category')), h('dd', {}, t('pc.' + p.category)), h('dt', {}, t('partners.district')), h('dd', {}, p.district),
      h('dt', {}, t('partners.address')), h('dd', {}, p.address), h('dt', {}, t('partners.phone')), h('dd', {}, p.phone),
      h('dt', {}, t('partners.hours')), h('dd', {}, p.opening_hours), h('dt', {}, `${t('partners.lat')} / ${t('partners.lng')}`), h('dd', {}, `${p.lat}, ${p.lng}`),
      h('dt', {}, t('status')), h('dd', {}, statusBadge('st.', p.status))), h('div', { class: 'row actions' }, edit, toggle), msg));
  const [benefits, staff] = await Promise.all([api.get(`/admin/partners/${id}/benefits?limit=100`), api.get(`/admin/partners/${id}/staff?limit=100`)]);
  const newBenefit = h('button', { type: 'button', class: 'btn primary small', id: 'benefit-new', onclick: async () => {
    const data = await dialog(t('benefit.new'), benefitFields({}), { submit: t('save') });
    if (data && await act(() => api.post(`/admin/partners/${id}/benefits`, benefitBody(data)), msg)) route();
  } }, t('benefit.new'));
  const newStaff = h('button', { type: 'button', class: 'btn primary small', id: 'staff-new', onclick: async () => {
    const data = await dialog(t('scan.staff.new'), [
      field(t('signin.username'), h('input', { name: 'username', required: true, autocomplete: 'off', pattern: '[a-z0-9._\\-]{3,64}' })),
      field(t('scan.initialpw'), h('input', { name: 'password', type: 'password', required: true, minlength: 10, autocomplete: 'new-password' })),
      field(t('scan.role'), select('role', ['merchant_staff', 'merchant_manager'], (r) => t('role.' + r), 'merchant_staff'))], { submit: t('save') });
    if (data && await act(() => api.post(`/admin/partners/${id}/staff`, data), msg)) route();
  } }, t('scan.staff.new'));
  content.append(h('div', { class: 'grid-2' },
    h('section', { class: 'panel', 'aria-labelledby': 'benefits-h' }, h('div', { class: 'page-head' }, h('h2', { id: 'benefits-h' }, t('partners.benefits')), h('span', { class: 'grow' }), newBenefit),
      table([t('benefit.title'), t('benefit.tiers'), t('benefit.quota'), t('benefit.validity'), t('status'), t('actions')], benefits.items.map((b) => h('tr', {},
        h('td', {}, b.title), h('td', {}, b.tiers.join(' ')), h('td', {}, b.period === 'unlimited' ? t('period.unlimited') : `${b.quota} · ${t('period.' + b.period)}`),
        h('td', { class: 'nowrap' }, `${fmtDate(b.valid_from)} – ${b.valid_until ? lastDay(b.valid_until) : t('benefit.always')}`),
        h('td', {}, statusBadge('st.', b.status)),
        h('td', {}, h('div', { class: 'row' }, h('button', { type: 'button', class: 'btn ghost small', 'aria-label': `${t('edit')} ${b.title}`, onclick: async () => {
          const data = await dialog(`${t('edit')} · ${b.title}`, benefitFields(b), { submit: t('save') });
          if (data && await act(() => api.patch(`/admin/partners/${id}/benefits/${b.id}`, benefitBody(data, b)), msg)) route();
        } }, t('edit')),
        b.status === 'active' ? h('button', { type: 'button', class: 'btn ghost small danger-text', 'aria-label': `${t('partners.deactivate')} ${b.title}`, onclick: async () => {
          if (!await confirmDialog(`${t('partners.deactivate')} · ${b.title}`, t('benefit.deactivate.confirm'), t('partners.deactivate'))) return;
          if (await act(() => api.del(`/admin/partners/${id}/benefits/${b.id}`), msg)) route();
        } }, t('partners.deactivate')) : null)))), { id: 'benefits' })),
    h('section', { class: 'panel', 'aria-labelledby': 'staff-h' }, h('div', { class: 'page-head' }, h('h2', { id: 'staff-h' }, t('partners.staff')), h('span', { class: 'grow' }), newStaff),
      table([t('signin.username'), t('scan.role'), t('status'), t('actions')], staff.items.map((a) => h('tr', {},
        h('td', {}, a.username), h('td', {}, t('role.' + a.role)), h('td', {}, statusBadge('st.', a.status)),
        h('td', {}, h('div', { class: 'row' }, h('button', { type: 'button', class: 'btn ghost small', 'aria-label': `${a.status === 'active' ? t('scan.disable') : t('scan.enable')} ${a.username}`, onclick: async () => {
          if (await act(() => api.patch(`/admin/partners/${id}/staff/${a.id}`, { status: a.status === 'active' ? 'disabled' : 'active' }), msg)) route();
        } }, a.status === 'active' ? t('scan.disable') : t('scan.enable')),
        h('button', { type: 'button', class: 'btn ghost small', 'aria-label': `${t('pw.reset')} ${a.username}`, dataset: { reset: a.username }, onclick: () =>
          resetPasswordFlow(a.username, (password) => api.post(`/admin/partners/${id}/staff/${a.id}/password`, { password }), msg) }, t('pw.reset')))))), { id: 'staff' }))));
}

function checks(legend, name, values, labelOf, chosen) {
  return h('fieldset', {}, h('legend', {}, legend), h('div', { class: 'checks' }, values.map((v) =>
    h('label', {}, h('input', { type: 'checkbox', name, value: v, checked: chosen.includes(v) }), labelOf(v)))));
}

function benefitFields(b) {
  const fs = [
    field(t('benefit.title'), h('input', { name: 'title', required: true, maxlength: 100, value: b.title ?? '' })),
    field(t('partners.desc'), h('textarea', { name: 'description', rows: 2 }, b.description ?? '')),
    checks(t('benefit.tiers'), 'tiers', TIERS, (x) => x, b.tiers || TIERS),
    checks(t('benefit.categories'), 'categories', CATEGORIES, (x) => t('cat.' + x), b.categories || []),
    h('div', { class: 'two' }, field(t('benefit.quota'), h('input', { name: 'quota', type: 'number', min: 1, value: b.quota ?? 1 })),
      field(t('benefit.period'), select('period', PERIODS, (x) => t('period.' + x), b.period || 'year'))),
    h('div', { class: 'two' }, field(t('benefit.validfrom'), h('input', { name: 'valid_from', type: 'date', value: b.valid_from ? fmtDate(b.valid_from) : beijingToday() })),
      field(t('benefit.validuntil'), h('input', { name: 'valid_until', type: 'date', value: b.valid_until ? lastDay(b.valid_until) : '' }))),
    field(t('status'), select('status', ['active', 'inactive'], (x) => t('st.' + x), b.status || 'active')),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'offline_ok', value: 'true', checked: !!b.offline_ok }), t('benefit.offline')),
  ];
  return fs;
}

/** The last Beijing day of a validity that ends (exclusively) at `until`. */
function lastDay(until) {
  return fmtDate(new Date(Date.parse(until) - 1).toISOString());
}

/** Beijing midnight starting `day` (YYYY-MM-DD), or the one after it with `next`. */
function midnight(day, next = false) {
  const at = new Date(Date.parse(day + 'T00:00:00+08:00') + (next ? 86400e3 : 0));
  return fmtDate(at.toISOString()) + 'T00:00:00+08:00';
}

/** The form as the API's body; validity dates are sent only when they changed. */
function benefitBody(d, was = {}) {
  const body = { title: d.title, description: d.description || '', tiers: d.tiers, categories: d.categories,
    quota: d.period === 'unlimited' ? null : Number(d.quota), period: d.period, status: d.status, offline_ok: d.offline_ok === 'true' };
  if (d.valid_from && (!was.valid_from || d.valid_from !== fmtDate(was.valid_from))) body.valid_from = midnight(d.valid_from);
  // The form names the last day; the API's valid_until is the instant the benefit ends.
  if (d.valid_until && (!was.valid_until || d.valid_until !== lastDay(was.valid_until))) body.valid_until = midnight(d.valid_until, true);
  else if (!d.valid_until && was.valid_until) body.valid_until = null; // emptied: valid until further notice
  return body;
}

// ---------- statistics ----------

async function stats() {
  const today = beijingToday();
  const from = h('input', { type: 'date', name: 'from', value: today.slice(0, 8) + '01' });
  const to = h('input', { type: 'date', name: 'to', value: today });
  const out = h('div');
  const csv = h('button', { type: 'button', class: 'btn ghost', id: 'csv' }, t('stats.csv'));
  const form = h('form', { class: 'search' }, field(t('stats.from'), from), field(t('stats.to'), to), h('button', { type: 'submit', class: 'btn primary' }, t('search')), csv);
  const names = await partnerNameMap();
  const query = (cursor) => api.qs({ from: from.value, to: to.value, by: 'day,partner,tier', cursor });
  const row = (r) => h('tr', {}, h('td', {}, r.day), h('td', {}, names.get(r.partner_id) || r.partner_id.slice(0, 8)), h('td', {}, r.tier), h('td', {}, String(r.count)));
  const run = async () => {
    let s = await api.get('/admin/stats' + query());
    const body = table([t('stats.day'), t('nav.partners'), t('scan.tier'), t('stats.count')], s.rows.map(row), { id: 'stats' });
    const more = h('button', { type: 'button', class: 'btn ghost', hidden: !s.next_cursor }, t('more'));
    more.addEventListener('click', () => act(async () => {
      s = await api.get('/admin/stats' + query(s.next_cursor));
      body.querySelector('tbody').append(...s.rows.map(row));
      more.hidden = !s.next_cursor;
    }, out));
    out.replaceChildren(body, more);
  };
  // The export runs the report again: only when asked for.
  csv.addEventListener('click', () => act(async () => {
    const link = h('a', { href: await api.blob('/admin/stats' + api.qs({ from: from.value, to: to.value, by: 'day,partner,tier' }), 'text/csv'), download: 'zhuge-stats.csv' });
    link.click();
  }, out));
  form.addEventListener('submit', (ev) => { ev.preventDefault(); act(run, out); });
  content.append(pageHead(t('nav.stats')), h('section', { class: 'panel' }, form, out));
  await run();
}

// ---------- audit log ----------

const UUID = '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}';
// The filters GET /admin/audit-log takes, and the sources each applies to.
const AUDIT_FILTERS = [
  ['action', ['chain'], {}], ['actor_id', ['chain', 'redemptions', 'verifications'], { pattern: UUID }],
  ['target_type', ['chain'], {}], ['target_id', ['chain'], {}],
  ['partner_id', ['redemptions', 'verifications'], { pattern: UUID }], ['card_id', ['redemptions', 'verifications'], { pattern: UUID }],
];

async function audit(_, params) {
  const result = h('div', { 'aria-live': 'polite' });
  const verify = h('button', { type: 'button', class: 'btn ghost', id: 'audit-verify', onclick: () => act(async () => {
    const c = await api.get('/admin/audit-log/verify');
    result.replaceChildren(c.intact ? alertBox('ok', t('audit.intact', { n: c.entries })) : alertBox('error', t('audit.broken', { n: c.broken_at })));
  }, result) }, t('audit.verify'));
  // The filters come from the hash (#/audit?source=…&action=…) and go back into it.
  const source = select('source', ['chain', 'redemptions', 'verifications'], (x) => t('audit.src.' + x), params.get('source') || 'chain', { id: 'audit-source' });
  const inputs = AUDIT_FILTERS.map(([name, sources, attrs]) => {
    const input = h('input', { name, id: 'audit-' + name, value: params.get(name) || '', autocomplete: 'off', spellcheck: 'false', ...attrs,
      title: attrs.pattern ? t('audit.uuid') : false });
    return { name, sources, wrap: field(t(name === 'action' ? 'audit.action' : 'audit.' + name), input), input };
  });
  const shown = () => { for (const f of inputs) f.wrap.hidden = !f.sources.includes(source.value); };
  source.addEventListener('change', shown);
  shown();
  const filters = () => {
    const q = { source: source.value === 'chain' ? '' : source.value };
    for (const f of inputs) if (!f.wrap.hidden) q[f.name] = f.input.value.trim();
    return q;
  };
  const form = h('form', { class: 'search filters', id: 'audit-filters', role: 'search', 'aria-label': t('audit.filter') },
    field(t('audit.source'), source), ...inputs.map((f) => f.wrap),
    h('div', { class: 'row' }, h('button', { type: 'submit', class: 'btn primary' }, t('audit.filter')),
      h('a', { class: 'btn ghost', href: '#/audit', id: 'audit-clear' }, t('audit.clear'))));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const hash = '#/audit' + api.qs(filters());
    if (location.hash === hash) route(); else location.hash = hash;
  });
  const body = h('tbody');
  const more = h('button', { type: 'button', class: 'btn ghost', id: 'audit-more' }, t('more'));
  const asked = Object.fromEntries(params.entries());
  let cursor = null;
  const load = async () => {
    const page = await api.get('/admin/audit-log' + api.qs({ ...asked, limit: 50, cursor }));
    for (const e of page.items) body.append(h('tr', {}, h('td', {}, e.seq === null ? '—' : String(e.seq)), h('td', { class: 'nowrap' }, fmtTime(e.created_at)),
      h('td', {}, t('role.' + e.actor_role), e.actor_id ? h('div', { class: 'mono muted small', title: e.actor_id }, e.actor_id.slice(0, 8)) : null),
      h('td', { class: 'mono' }, e.action), h('td', {}, `${e.target_type} `, h('span', { class: 'mono', title: e.target_id }, String(e.target_id).slice(0, 8))), h('td', {}, e.ip || '')));
    if (!body.children.length) body.append(h('tr', {}, h('td', { colspan: 6, class: 'muted empty' }, t('none'))));
    cursor = page.next_cursor;
    more.classList.toggle('hidden', !cursor);
  };
  more.addEventListener('click', () => act(load));
  content.append(pageHead(t('nav.audit'), verify), result, h('section', { class: 'panel' }, form),
    h('section', { class: 'panel' }, h('div', { class: 'table-wrap' }, h('table', { id: 'audit' },
      h('thead', {}, h('tr', {}, ['#', t('time'), t('audit.actor'), t('audit.action'), t('audit.target'), 'IP'].map((x) => h('th', { scope: 'col' }, x)))), body)), more));
  await load();
}

// ---------- admin users and keys ----------

async function users() {
  const msg = h('div', { 'aria-live': 'polite' });
  const newBtn = h('button', { type: 'button', class: 'btn primary', id: 'user-new', onclick: async () => {
    const data = await dialog(t('users.new'), [
      field(t('signin.username'), h('input', { name: 'username', required: true, autocomplete: 'off', pattern: '[a-z0-9._\\-]{3,64}' })),
      field(t('scan.initialpw'), h('input', { name: 'password', type: 'password', required: true, minlength: 10, autocomplete: 'new-password' })),
      field(t('users.role'), select('role', ADMIN_ROLES, (r) => t('role.' + r), 'reviewer'))], { submit: t('save') });
    if (data && await act(() => api.post('/admin/users', data), msg)) route();
  } }, t('users.new'));
  const page = await api.get('/admin/users?limit=100');
  content.append(pageHead(t('nav.users'), newBtn), msg, h('section', { class: 'panel' }, table([t('signin.username'), t('users.role'), t('status'), t('actions')],
    page.items.map((a) => h('tr', {}, h('td', {}, a.username), h('td', {}, t('role.' + a.role)), h('td', {}, statusBadge('st.', a.status)),
      h('td', {}, a.id === me.id ? null : h('div', { class: 'row' }, [
        h('button', { type: 'button', class: 'btn ghost small', 'aria-label': `${a.status === 'active' ? t('scan.disable') : t('scan.enable')} ${a.username}`, onclick: async () => {
          if (await act(() => api.patch('/admin/users/' + a.id, { status: a.status === 'active' ? 'disabled' : 'active' }), msg)) route();
        } }, a.status === 'active' ? t('scan.disable') : t('scan.enable')),
        h('button', { type: 'button', class: 'btn ghost small', 'aria-label': `${t('users.changerole')} ${a.username}`, dataset: { role: a.username }, onclick: async () => {
          const data = await dialog(`${t('users.changerole')} · ${a.username}`, [field(t('users.role'), select('role', ADMIN_ROLES, (r) => t('role.' + r), a.role))], { submit: t('save') });
          if (!data || data.role === a.role) return;
          if (await act(() => api.patch('/admin/users/' + a.id, { role: data.role }), msg)) {
            await route();
            content.querySelector('[aria-live]').replaceChildren(alertBox('ok', t('users.role.done', { who: a.username, role: t('role.' + data.role) })));
          }
        } }, t('users.changerole')),
        h('button', { type: 'button', class: 'btn ghost small', 'aria-label': `${t('pw.reset')} ${a.username}`, dataset: { reset: a.username }, onclick: () =>
          resetPasswordFlow(a.username, (password) => api.post(`/admin/users/${a.id}/password`, { password }), msg) }, t('pw.reset'))])))), { id: 'users' })));
}

async function keys() {
  const msg = h('div', { 'aria-live': 'polite' });
  const btn = h('button', { type: 'button', class: 'btn primary', id: 'keys-rotate', onclick: async () => {
    const ok = await dialog(t('keys.rotate'), [], { note: t('keys.explain') });
    if (!ok) return;
    await act(async () => { const r = await api.post('/admin/keys/rotate', {}); msg.replaceChildren(alertBox('ok', t('keys.rotated', { kid: r.kid }))); }, msg);
  } }, t('keys.rotate'));
  content.append(pageHead(t('nav.keys')), h('section', { class: 'panel' }, h('p', {}, t('keys.explain')), btn, msg));
}

applyI18n(document);
if (api.hasSession()) start(); else showSignIn();
