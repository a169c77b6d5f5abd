// Small DOM helpers shared by the console and the scanner. No inline styles or handlers:
// the pages run under a CSP without 'unsafe-inline'.
import { t, applyI18n, toggleLang } from './i18n.js';
import * as api from './api.js';

/** h('button', {class: 'x', onclick: fn}, 'text', child…) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let uid = 0;
/** A labelled form field; returns the wrapper, with `.input` the control. */
export function field(label, control, hint) {
  const id = control.id || 'f' + (++uid);
  control.id = id;
  const wrap = h('div', { class: 'field' }, h('label', { for: id }, label), control, hint ? h('small', { class: 'hint' }, hint) : null);
  wrap.input = control;
  return wrap;
}

export function select(name, values, labelOf, current, attrs = {}) {
  return h('select', { name, ...attrs }, values.map((v) => h('option', { value: v, selected: v === current }, labelOf(v))));
}

/** The problem (or network error) as a line the person can act on. */
export function errorText(e) {
  if (e instanceof api.Problem) {
    const fields = e.errors.map((f) => `${f.field}: ${f.message}`).join('；');
    const main = e.detail && e.detail !== e.title ? `${e.title}：${e.detail}` : (e.title || e.message);
    return fields ? `${main}（${fields}）` : main;
  }
  if (e instanceof api.NetworkError) return t('net.error');
  return String((e && e.message) || e);
}

export function alertBox(kind, text) {
  return h('div', { class: 'alert ' + kind, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** A modal dialog; resolves with the submitted form's data, or null when cancelled. */
export function dialog(title, fields, { submit = t('confirm'), danger = false, note } = {}) {
  return new Promise((resolve) => {
    const err = h('div', { class: 'dialog-error', 'aria-live': 'polite' });
    const form = h('form', { method: 'dialog', class: 'stack' },
      h('h2', {}, title), note ? h('p', { class: 'muted' }, note) : null, ...fields, err,
      h('div', { class: 'row end' },
        h('button', { type: 'button', class: 'btn ghost', value: 'cancel', onclick: () => { dlg.close(); resolve(null); } }, t('cancel')),
        h('button', { type: 'submit', class: danger ? 'btn danger' : 'btn primary' }, submit)));
    const dlg = h('dialog', { class: 'modal', 'aria-label': title }, form);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (!form.reportValidity()) return;
      const fd = new FormData(form);
      const data = Object.fromEntries(fd.entries());
      // A group of checkboxes sharing a name is a list (empty when none is checked).
      const boxes = [...form.querySelectorAll('input[type=checkbox]')].map((c) => c.name);
      for (const name of new Set(boxes)) if (boxes.filter((n) => n === name).length > 1) data[name] = fd.getAll(name);
      dlg.close();
      resolve(data);
    });
    dlg.addEventListener('cancel', () => resolve(null));
    dlg.addEventListener('close', () => dlg.remove());
    document.body.append(dlg);
    dlg.showModal();
  });
}

export function reasonDialog(title, { danger = false } = {}) {
  const input = h('textarea', { name: 'reason', required: true, rows: 3, maxlength: 500 });
  return dialog(title, [field(t('reason'), input)], { danger });
}

/** The header's language switch and sign-out. */
export function headerTools(onSignOut) {
  const lang = h('button', { type: 'button', class: 'btn ghost small', id: 'lang', 'data-i18n': 'lang.switch', 'data-i18n-label': 'lang.label', onclick: toggleLang }, t('lang.switch'));
  lang.setAttribute('aria-label', t('lang.label'));
  const out = onSignOut ? h('button', { type: 'button', class: 'btn ghost small', id: 'signout', 'data-i18n': 'signout', onclick: onSignOut }, t('signout')) : null;
  return [lang, out];
}

/** The sign-in form (full page or dialog). `done` runs after a successful sign-in. */
export function signInForm(done, { note } = {}) {
  const user = h('input', { name: 'username', autocomplete: 'username', required: true, autocapitalize: 'off', spellcheck: 'false' });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const err = h('div', { 'aria-live': 'assertive' });
  const btn = h('button', { type: 'submit', class: 'btn primary block', 'data-i18n': 'signin.submit' }, t('signin.submit'));
  const form = h('form', { class: 'stack', id: 'signin' },
    note ? h('p', { class: 'alert info' }, note) : null,
    field(t('signin.username'), user), field(t('signin.password'), pass), err, btn);
  form.querySelectorAll('label')[0].dataset.i18n = 'signin.username';
  form.querySelectorAll('label')[1].dataset.i18n = 'signin.password';
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    btn.disabled = true;
    err.replaceChildren();
    try {
      await api.login(user.value.trim(), pass.value);
      pass.value = '';
      await done();
    } catch (e) {
      err.replaceChildren(alertBox('error', errorText(e)));
      pass.select();
    } finally {
      btn.disabled = false;
    }
  });
  setTimeout(() => user.focus(), 0);
  return form;
}

/** Asked by api.js when the session is gone: a dialog over the page keeps what was typed. */
export function signInAgain() {
  return new Promise((resolve) => {
    const dlg = h('dialog', { class: 'modal', 'aria-label': t('signin.title') });
    dlg.append(h('h2', {}, t('signin.title')), signInForm(async () => { dlg.close(); resolve(); }, { note: t('signin.again') }));
    dlg.addEventListener('cancel', (ev) => ev.preventDefault());
    dlg.addEventListener('close', () => dlg.remove());
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** The forced change of an initial password, as its own page in `root`. */
export function passwordPage(root) {
  return new Promise((resolve) => {
    const cur = h('input', { name: 'current', type: 'password', autocomplete: 'current-password', required: true });
    const nw = h('input', { name: 'new', type: 'password', autocomplete: 'new-password', required: true, minlength: 10 });
    const rep = h('input', { name: 'repeat', type: 'password', autocomplete: 'new-password', required: true, minlength: 10 });
    const err = h('div', { 'aria-live': 'assertive' });
    const form = h('form', { class: 'stack', id: 'change-password' },
      field(t('pw.current'), cur), field(t('pw.new'), nw, t('pw.hint')), field(t('pw.repeat'), rep), err,
      h('button', { type: 'submit', class: 'btn primary block' }, t('pw.submit')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      err.replaceChildren();
      if (nw.value !== rep.value) { err.append(alertBox('error', t('pw.mismatch'))); return; }
      try {
        await api.post('/me/password', { current_password: cur.value, new_password: nw.value });
        resolve();
      } catch (e) {
        err.append(alertBox('error', errorText(e)));
      }
    });
    root.replaceChildren(h('main', { class: 'center-page' }, h('section', { class: 'panel narrow' }, h('h1', {}, t('pw.title')), form)));
    applyI18n(root);
    cur.focus();
  });
}

export function badge(kind, text) {
  return h('span', { class: 'badge ' + kind }, text);
}

/** A fresh initial password: 4 groups of 4 unambiguous letters and digits, with both. */
export function newPassword() {
  const abc = 'abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  for (;;) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    const pw = [0, 4, 8, 12].map((i) => [...bytes.slice(i, i + 4)].map((b) => abc[b % abc.length]).join('')).join('-');
    if (/\d/.test(pw) && /[a-z]/i.test(pw)) return pw;
  }
}

/**
 * Resets `who`'s password to a new initial one (the account must change it at its next
 * sign-in) through `send(password)`. The password is shown once, to be handed over.
 * Resolves with the password, or null when cancelled or refused.
 */
export async function resetPasswordFlow(who, send, where) {
  const input = h('input', { name: 'password', type: 'text', required: true, minlength: 10, maxlength: 128, autocomplete: 'off', spellcheck: 'false', class: 'mono', value: newPassword() });
  const data = await dialog(`${t('pw.reset')} · ${who}`, [field(t('scan.initialpw'), input, t('pw.reset.hint'))], { submit: t('pw.reset') });
  if (!data) return null;
  try {
    await send(data.password);
  } catch (e) {
    where.replaceChildren(alertBox('error', errorText(e)));
    return null;
  }
  where.replaceChildren(h('div', { class: 'alert ok onetime', role: 'status' },
    t('pw.reset.done', { who }), ' ', h('strong', { class: 'mono', id: 'onetime-password' }, data.password)));
  return data.password;
}

/** Asks before something that cannot simply be typed back (a deactivation). */
export async function confirmDialog(title, note, submit) {
  return (await dialog(title, [], { note, submit, danger: true })) !== null;
}
