// The merchant scanner: camera (BarcodeDetector, else the vendored jsQR) or a USB
// scanner typing into the focused field → verify → benefits → one tap redeems.
// Every redemption attempt has one Idempotency-Key, reused on every retry: a dropped
// connection after the server committed gets the same redemption back, never a second.
import * as api from '/assets/api.js';
import { t, applyI18n, onLangChange, fmtTime, fmtDate, beijingToday } from '/assets/i18n.js';
import { h, field, select, errorText, alertBox, reasonDialog, headerTools, signInForm, signInAgain, passwordPage, badge, resetPasswordFlow } from '/assets/ui.js';

const root = document.getElementById('root');
const state = { me: null, partner: null, titles: new Map(), tab: 'scan', visit: null, scanning: false, busy: false };
let render = () => {};

api.configure({ app: 'scan', onAuthNeeded: signInAgain, onPasswordChange: () => passwordPage(root).then(start) });
onLangChange(() => render());
document.getElementById('tools').replaceChildren(...headerTools(null).filter(Boolean));

function signOutButton() {
  return h('button', { type: 'button', class: 'btn ghost small', id: 'signout', onclick: signOut }, t('signout'));
}

async function signOut() {
  stopCamera();
  await api.logout();
  state.me = null;
  showSignIn();
}

function showSignIn() {
  document.getElementById('who').textContent = '';
  document.getElementById('tools').replaceChildren(...headerTools(null).filter(Boolean));
  render = showSignIn;
  root.replaceChildren(h('main', { class: 'center-page' },
    h('section', { class: 'panel narrow', 'aria-labelledby': 'signin-h' },
      h('h1', { id: 'signin-h' }, t('signin.title')), signInForm(start))));
}

async function start() {
  try {
    const me = await api.get('/me');
    if (me.must_change_password) {
      await passwordPage(root);
      return start();
    }
    if (me.role !== 'merchant_staff' && me.role !== 'merchant_manager') {
      await api.logout();
      showSignIn();
      root.querySelector('form').prepend(alertBox('error', t('signin.wrongapp', { role: t('role.' + me.role) })));
      return;
    }
    state.me = me;
    const [partner, benefits] = await Promise.all([
      api.get('/partners/' + me.partner_id).catch(() => null),
      api.get('/partners/' + me.partner_id + '/benefits?limit=100').catch(() => ({ items: [] })),
    ]);
    state.partner = partner;
    for (const b of benefits.items) state.titles.set(b.id, b.title);
    main();
  } catch (e) {
    showSignIn();
    root.querySelector('form').prepend(alertBox('error', errorText(e)));
  }
}

// ---------- layout ----------

const els = {};

function main() {
  render = main;
  const me = state.me;
  document.getElementById('who').textContent = `${state.partner ? state.partner.name : ''} · ${me.username}`;
  document.getElementById('tools').replaceChildren(...headerTools(null).filter(Boolean), signOutButton());
  const tabs = [['scan', 'scan.tab.scan'], ['today', 'scan.tab.today']];
  if (me.role === 'merchant_manager') tabs.push(['staff', 'scan.tab.staff'], ['stats', 'scan.tab.stats']);
  const nav = h('nav', { class: 'tabs', 'aria-label': t('app.scan') }, tabs.map(([id, key]) =>
    h('button', { type: 'button', class: 'tab' + (state.tab === id ? ' on' : ''), 'aria-current': state.tab === id ? 'page' : false, id: 'tab-' + id,
      onclick: () => { state.tab = id; main(); } }, t(key))));
  const body = h('main', { class: 'scan-main' });
  root.replaceChildren(nav, body);
  if (state.tab === 'scan') scanTab(body);
  else stopCamera();
  if (state.tab === 'today') todayTab(body);
  if (state.tab === 'staff') staffTab(body);
  if (state.tab === 'stats') statsTab(body);
}

// ---------- scanning ----------

function scanTab(body) {
  els.video = els.video || h('video', { playsinline: true, muted: true, autoplay: true, 'aria-label': t('scan.camera') });
  els.video.muted = true;
  const camBtn = h('button', { type: 'button', class: 'btn ghost small', id: 'camera-toggle', onclick: () => {
    if (!els.stream) return startCamera();
    // Camera off: the desk uses a USB scanner, which types into the focused field.
    stopCamera();
    document.getElementById('qr-input').focus();
  } },
    els.stream ? t('scan.stop') : t('scan.start'));
  els.camBtn = camBtn;
  els.camMsg = h('p', { class: 'muted cam-msg', 'aria-live': 'polite' }, t('scan.aim'));
  const manual = h('input', { id: 'qr-input', name: 'qr', autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', inputmode: 'text' });
  const form = h('form', { class: 'manual', id: 'manual' }, field(t('scan.manual'), manual),
    h('button', { type: 'submit', class: 'btn primary' }, t('scan.manual.go')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = manual.value.trim();
    manual.value = '';
    if (text) verify(text);
  });
  els.result = els.result || h('section', { class: 'result', id: 'result', 'aria-live': 'polite' });
  body.append(h('div', { class: 'scan-grid' },
    h('section', { class: 'panel scanner', 'aria-label': t('scan.camera') },
      h('div', { class: 'viewfinder' }, els.video, h('div', { class: 'frame', 'aria-hidden': 'true' })),
      h('div', { class: 'row cam-row' }, els.camMsg, h('span', { class: 'grow' }), camBtn), form),
    els.result));
  if (!state.visit && !els.result.hasChildNodes()) els.result.replaceChildren(idleCard());
  if (!els.stream) startCamera();
  else decodeLoop();
  if (!matchMedia('(pointer: coarse)').matches) manual.focus();
}

function idleCard() {
  return h('div', { class: 'panel idle' }, h('p', { class: 'muted' }, t('scan.aim')));
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    els.camMsg.textContent = t('scan.nocamera');
    return;
  }
  try {
    els.stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment', width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false });
    els.video.srcObject = els.stream;
    await els.video.play().catch(() => {});
    if (els.camBtn) els.camBtn.textContent = t('scan.stop');
    els.camMsg.textContent = t('scan.aim');
    state.scanning = !state.visit;
    decodeLoop();
  } catch (_) {
    els.stream = null;
    els.camMsg.textContent = t('scan.nocamera');
  }
}

function stopCamera() {
  if (els.stream) for (const track of els.stream.getTracks()) track.stop();
  els.stream = null;
  if (els.video) els.video.srcObject = null;
  if (els.camBtn) els.camBtn.textContent = t('scan.start');
  clearTimeout(els.timer);
}

let detector;
async function decoder() {
  if (detector) return detector;
  if ('BarcodeDetector' in window) {
    try {
      const formats = await window.BarcodeDetector.getSupportedFormats();
      if (formats.includes('qr_code')) {
        const d = new window.BarcodeDetector({ formats: ['qr_code'] });
        detector = async (video) => { const r = await d.detect(video); return r.length ? r[0].rawValue : null; };
        return detector;
      }
    } catch (_) { /* fall back to jsQR */ }
  }
  await new Promise((resolve, reject) => {
    const s = h('script', { src: '/assets/vendor/jsqr-1.4.0/jsQR.js' });
    s.addEventListener('load', resolve);
    s.addEventListener('error', reject);
    document.head.append(s);
  });
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  detector = async (video) => {
    const w = video.videoWidth, hgt = video.videoHeight;
    if (!w || !hgt) return null;
    const scale = Math.min(1, 800 / Math.max(w, hgt));
    canvas.width = Math.round(w * scale);
    canvas.height = Math.round(hgt * scale);
    ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
    const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const code = window.jsQR(img.data, img.width, img.height, { inversionAttempts: 'dontInvert' });
    return code ? code.data : null;
  };
  return detector;
}

async function decodeLoop() {
  clearTimeout(els.timer);
  if (!els.stream || state.tab !== 'scan') return;
  if (state.scanning && !state.busy && els.video.readyState >= 2) {
    try {
      const text = await (await decoder())(els.video);
      if (text && state.scanning) {
        state.scanning = false;
        verify(text.trim());
      }
    } catch (_) { /* a frame that could not be read; try the next */ }
  }
  els.timer = setTimeout(decodeLoop, 120);
}

// ---------- verify and redeem ----------

async function verify(qr) {
  if (state.busy) return;
  state.busy = true;
  state.scanning = false;
  state.visit = null;
  const began = performance.now();
  els.result.replaceChildren(h('div', { class: 'panel' }, h('p', { class: 'big muted' }, t('scan.verifying'))));
  try {
    const v = await api.post('/merchant/verify', { qr });
    state.visit = v;
    for (const b of v.benefits) state.titles.set(b.benefit.id, b.benefit.title);
    showVisit(v);
    // For the figures in the README: time from a decoded code to benefits on screen.
    window.zhugeScanMs = performance.now() - began;
    document.body.dataset.scanMs = String(Math.round(window.zhugeScanMs));
  } catch (e) {
    showRefused(e);
  } finally {
    state.busy = false;
  }
}

function nextButton() {
  return h('button', { type: 'button', class: 'btn ghost', id: 'scan-next', onclick: () => {
    state.visit = null;
    document.body.classList.remove('has-result');
    els.result.replaceChildren(idleCard());
    state.scanning = true;
    if (!els.stream) startCamera();
    const input = document.getElementById('qr-input');
    if (input && !matchMedia('(pointer: coarse)').matches) input.focus();
  } }, t('scan.next'));
}

function showRefused(e) {
  const title = e instanceof api.Problem ? e.title : t('net.error');
  const detail = e instanceof api.Problem && e.detail !== e.title ? e.detail : '';
  els.result.replaceChildren(h('div', { class: 'panel refused', id: 'refused', role: 'alert', dataset: { code: e.code || 'network' } },
    h('p', { class: 'refused-label' }, t('scan.refused')),
    h('p', { class: 'refused-title' }, title), detail ? h('p', {}, detail) : null,
    nextButton()));
  document.body.classList.add('has-result');
  els.result.scrollIntoView({ block: 'start' });
  document.getElementById('scan-next').focus({ preventScroll: true });
}

function statusBadge(status) {
  return badge(status === 'active' ? 'ok' : 'bad', t('cs.' + status));
}

function showVisit(v) {
  const c = v.card;
  const list = h('ul', { class: 'benefits', id: 'benefits' });
  for (const use of v.benefits) list.append(benefitItem(use));
  els.result.replaceChildren(h('div', { class: 'panel visit', id: 'visit' },
    h('div', { class: 'holder-row' },
      h('p', { class: 'holder', id: 'holder' }, c.holder), statusBadge(c.status)),
    h('dl', { class: 'facts' },
      h('dt', {}, t('scan.card')), h('dd', { class: 'mono', id: 'card-no' }, c.card_no),
      h('dt', {}, t('scan.tier')), h('dd', {}, t('tier.' + c.tier)),
      h('dt', {}, t('scan.category')), h('dd', {}, t('cat.' + c.category)),
      h('dt', {}, t('scan.valid')), h('dd', {}, fmtDate(c.valid_until))),
    h('h2', { class: 'benefits-h' }, t('scan.benefits')),
    v.benefits.length ? list : h('p', { class: 'muted' }, t('scan.nobenefits')),
    h('div', { class: 'row end' }, nextButton())));
  // On a phone the result replaces the camera view (scan.css) and comes into view.
  document.body.classList.add('has-result');
  els.result.scrollIntoView({ block: 'start' });
  const first = list.querySelector('button:not(:disabled)');
  if (first) first.focus({ preventScroll: true });
}

function remainingText(use) {
  if (use.remaining === null || use.remaining === undefined) return t('scan.unlimited');
  const left = t('scan.remaining', { n: use.remaining });
  return use.resets_at ? `${left} · ${t('scan.resets', { t: fmtDate(use.resets_at) })}` : left;
}

function benefitItem(use) {
  const b = use.benefit;
  const status = h('div', { class: 'redeem-status', 'aria-live': 'polite' });
  const rem = h('p', { class: 'remaining' }, remainingText(use));
  const btn = h('button', { type: 'button', class: 'btn primary redeem', dataset: { benefit: b.id },
    'aria-label': `${t('scan.redeem')}：${b.title}`, disabled: use.remaining === 0 }, t('scan.redeem'));
  // One key per attempt to redeem this benefit in this visit; every retry reuses it.
  let key = null;
  btn.addEventListener('click', async () => {
    key = key || newKey();
    btn.disabled = true;
    status.replaceChildren();
    const outcome = await redeem(b.id, key, status);
    if (outcome.ok) {
      key = null;
      if (use.remaining !== null && use.remaining !== undefined) use.remaining = Math.max(0, use.remaining - 1);
      rem.textContent = remainingText(use);
      status.replaceChildren(h('div', { class: 'alert ok redeemed', role: 'status', dataset: { redemption: outcome.redemption.id } },
        `✓ ${t('scan.redeemed')} · ${fmtTime(outcome.redemption.created_at, false)}`));
      btn.disabled = use.remaining === 0;
    } else if (outcome.network) {
      // Unknown whether it went through: keep the key, so Retry cannot double it.
      status.replaceChildren(alertBox('warn', t('scan.failed')),
        h('button', { type: 'button', class: 'btn ghost small', onclick: () => btn.click() }, t('scan.retry')));
      btn.disabled = false;
    } else {
      key = null;
      status.replaceChildren(alertBox('error', errorText(outcome.error)));
      btn.disabled = outcome.error.code === 'quota_exhausted' || use.remaining === 0;
    }
  });
  return h('li', { class: 'benefit' },
    h('div', { class: 'benefit-text' }, h('p', { class: 'benefit-title' }, b.title), h('p', { class: 'muted small' }, b.description), rem),
    btn, status);
}

function newKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

const RETRY_DELAYS = [400, 800, 1500, 2500, 4000];

/** Redeems with `key`, retrying network failures and 5xx answers with the same key. */
async function redeem(benefitId, key, status) {
  for (let attempt = 0; ; attempt++) {
    try {
      const r = await api.post('/merchant/redemptions', { visit_id: state.visit.visit_id, benefit_id: benefitId },
        { headers: { 'idempotency-key': key }, timeoutMs: 10000 });
      return { ok: true, redemption: r };
    } catch (e) {
      const transient = e instanceof api.NetworkError || (e instanceof api.Problem && (e.status >= 500 || e.code === 'idempotency_in_flight'));
      if (!transient) return { ok: false, error: e };
      if (attempt >= RETRY_DELAYS.length) return { ok: false, network: true, error: e };
      status.replaceChildren(h('div', { class: 'alert warn retrying', role: 'status' }, t('scan.retrying', { n: attempt + 1 })));
      await new Promise((r) => setTimeout(r, RETRY_DELAYS[attempt]));
    }
  }
}

// ---------- today's redemptions ----------

async function todayTab(body) {
  const panel = h('section', { class: 'panel', 'aria-labelledby': 'today-h' }, h('h1', { id: 'today-h' }, t('scan.today')), h('p', { class: 'muted' }, t('loading')));
  body.append(panel);
  try {
    // This desk's redemptions of today (Beijing), filtered and paged by the API.
    const today = beijingToday();
    const mine = [];
    let cursor = null;
    do {
      const page = await api.get('/merchant/redemptions' + api.qs({ staff: 'mine', from: today, to: today, limit: 100, cursor }));
      mine.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor && mine.length < 1000);
    const items = mine.map((r) => h('li', { class: 'today-item' },
      h('div', { class: 'today-text' },
        h('p', { class: 'today-title' }, r.benefit_title, ' ',
          badge(r.status === 'completed' ? 'ok' : 'bad', t('st.' + r.status))),
        h('p', { class: 'muted small' }, `${fmtTime(r.created_at, false)} · `, h('span', { class: 'mono' }, r.card_no)),
        r.void_reason ? h('p', { class: 'muted small' }, `${t('reason')}：${r.void_reason}`) : null),
      r.status === 'completed' ? h('button', { type: 'button', class: 'btn ghost small', 'aria-label': `${t('scan.void')} ${r.card_no} ${fmtTime(r.created_at, false)}`,
        onclick: async () => {
          const data = await reasonDialog(t('scan.void.reason'), { danger: true });
          if (!data) return;
          try { await api.post(`/merchant/redemptions/${r.id}/void`, { reason: data.reason }); main(); } catch (e) { panel.append(alertBox('error', errorText(e))); }
        } }, t('scan.void')) : null));
    panel.replaceChildren(h('h1', { id: 'today-h' }, t('scan.today')), items.length
      ? h('ul', { class: 'today', id: 'today' }, items)
      : h('p', { class: 'muted' }, t('none')));
  } catch (e) {
    panel.replaceChildren(alertBox('error', errorText(e)));
  }
}

// ---------- manager: staff and statistics ----------

async function staffTab(body) {
  const panel = h('section', { class: 'panel', 'aria-labelledby': 'staff-h' });
  body.append(panel);
  const user = h('input', { name: 'username', required: true, autocomplete: 'off', pattern: '[a-z0-9._-]{3,64}' });
  const pass = h('input', { name: 'password', required: true, type: 'password', autocomplete: 'new-password', minlength: 10 });
  const role = select('role', ['merchant_staff', 'merchant_manager'], (r) => t('role.' + r), 'merchant_staff');
  const msg = h('div', { 'aria-live': 'polite' });
  const done = h('div', { 'aria-live': 'polite', id: 'staff-msg' });
  const form = h('form', { class: 'inline-form' }, field(t('signin.username'), user), field(t('scan.initialpw'), pass), field(t('scan.role'), role),
    h('button', { type: 'submit', class: 'btn primary' }, t('scan.staff.new')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try { await api.post('/merchant/staff', { username: user.value.trim(), password: pass.value, role: role.value }); main(); } catch (e) { msg.replaceChildren(alertBox('error', errorText(e))); }
  });
  try {
    const page = await api.get('/merchant/staff?limit=100');
    const toggle = (a) => h('button', { type: 'button', class: 'btn ghost small',
      'aria-label': `${a.status === 'active' ? t('scan.disable') : t('scan.enable')} ${a.username}`,
      onclick: async () => {
        try { await api.patch('/merchant/staff/' + a.id, { status: a.status === 'active' ? 'disabled' : 'active' }); main(); } catch (e) { msg.replaceChildren(alertBox('error', errorText(e))); }
      } }, a.status === 'active' ? t('scan.disable') : t('scan.enable'));
    const reset = (a) => h('button', { type: 'button', class: 'btn ghost small', 'aria-label': `${t('pw.reset')} ${a.username}`, dataset: { reset: a.username },
      onclick: () => resetPasswordFlow(a.username, (password) => api.post(`/merchant/staff/${a.id}/password`, { password }), done) }, t('pw.reset'));
    const rows = page.items.map((a) => h('tr', {},
      h('td', {}, a.username), h('td', {}, t('role.' + a.role)), h('td', {}, badge(a.status === 'active' ? 'ok' : 'bad', t('st.' + a.status))),
      h('td', {}, a.id === state.me.id ? null : h('div', { class: 'row' }, toggle(a), reset(a)))));
    panel.replaceChildren(h('h1', { id: 'staff-h' }, t('scan.staff')), done, h('div', { class: 'table-wrap' }, h('table', { id: 'staff' },
      h('thead', {}, h('tr', {}, [t('signin.username'), t('scan.role'), t('status'), t('actions')].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows))),
    h('h2', {}, t('scan.staff.new')), form, msg);
  } catch (e) {
    panel.replaceChildren(alertBox('error', errorText(e)));
  }
}

async function statsTab(body) {
  const panel = h('section', { class: 'panel', 'aria-labelledby': 'stats-h' });
  body.append(panel);
  try {
    const s = await api.get('/merchant/stats');
    const ids = new Set([...s.today, ...s.this_month].map((r) => r.benefit_id));
    const count = (list, id) => (list.find((r) => r.benefit_id === id) || { count: 0 }).count;
    panel.replaceChildren(h('h1', { id: 'stats-h' }, t('scan.stats')), ids.size ? h('table', {},
      h('thead', {}, h('tr', {}, [t('scan.benefits'), t('scan.stats.today'), t('scan.stats.month')].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, [...ids].map((id) => h('tr', {}, h('td', {}, state.titles.get(id) || id.slice(0, 8)), h('td', {}, count(s.today, id)), h('td', {}, count(s.this_month, id))))))
      : h('p', { class: 'muted' }, t('none')));
  } catch (e) {
    panel.replaceChildren(alertBox('error', errorText(e)));
  }
}

// ---------- boot ----------

applyI18n(document);
if (api.hasSession()) start(); else showSignIn();
