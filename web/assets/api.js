// The public REST API, as both web clients use it.
//
// Tokens: the access token lives only in this module's memory. The refresh token is kept
// in sessionStorage (this tab only, gone when it closes) so that a reload does not sign
// the desk out; neither ever goes to localStorage. On 401 the client refreshes once; when
// that fails it asks `authNeeded` (a sign-in dialog over the page, so nothing typed is
// lost) and repeats the request.
import { getLang } from './i18n.js';

const BASE = '/api/v1';
let access = null;
let accessUntil = 0;
let storeKey = 'zhuge.session';
let authNeeded = null;
let passwordNeeded = null;
let refreshing = null;

export class Problem extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.code) || 'http_' + status;
    this.title = (body && body.title) || '';
    this.detail = (body && body.detail) || '';
    this.errors = (body && body.errors) || [];
  }
}

/** The request never got an answer (connection dropped, offline, timeout). */
export class NetworkError extends Error {}

export function configure({ app, onAuthNeeded, onPasswordChange }) {
  storeKey = 'zhuge.' + app + '.refresh';
  authNeeded = onAuthNeeded;
  passwordNeeded = onPasswordChange;
}

export function hasSession() {
  return access !== null || sessionStorage.getItem(storeKey) !== null;
}

function keep(pair) {
  access = pair.access_token;
  accessUntil = Date.now() + (pair.expires_in - 30) * 1000;
  sessionStorage.setItem(storeKey, pair.refresh_token);
}

export function forget() {
  access = null;
  accessUntil = 0;
  sessionStorage.removeItem(storeKey);
}

export async function login(username, password) {
  const pair = await raw('POST', '/auth/password/login', { body: { username, password } });
  keep(pair);
}

export async function logout() {
  try {
    if (access) await raw('POST', '/auth/logout', { auth: true });
  } catch (_) {
    // Signing out locally is what matters to the person at the desk.
  }
  forget();
}

async function refresh() {
  const token = sessionStorage.getItem(storeKey);
  if (!token) return false;
  if (!refreshing) {
    refreshing = raw('POST', '/auth/refresh', { body: { refresh_token: token } })
      .then((pair) => { keep(pair); return true; })
      .catch((e) => { if (e instanceof Problem) forget(); return false; })
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

async function raw(method, path, { body, headers = {}, auth = false, accept = 'application/json', timeoutMs = 15000, as } = {}) {
  const h = { accept, 'accept-language': getLang(), ...headers };
  if (body !== undefined) h['content-type'] = 'application/json';
  if (auth && access) h.authorization = 'Bearer ' + access;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  let res;
  try {
    res = await fetch(BASE + path, {
      method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
      signal: ctl.signal, cache: 'no-store', credentials: 'omit',
    });
  } catch (e) {
    throw new NetworkError(String(e && e.message));
  } finally {
    clearTimeout(timer);
  }
  if (res.ok && as === 'blob') {
    const b = await res.blob();
    return { url: URL.createObjectURL(b), type: b.type };
  }
  const type = res.headers.get('content-type') || '';
  let data = null;
  try {
    if (type.includes('json')) data = await res.json();
    else data = await res.text();
  } catch (e) {
    throw new NetworkError(String(e && e.message));
  }
  if (!res.ok) throw new Problem(res.status, typeof data === 'object' ? data : null);
  return data;
}

const SESSION_CODES = new Set(['unauthorized', 'token_invalid', 'token_expired', 'session_revoked']);

/** An authenticated request; resolves to the parsed body. */
export async function api(method, path, opts = {}) {
  for (let attempt = 0; ; attempt++) {
    if ((!access || Date.now() > accessUntil) && sessionStorage.getItem(storeKey)) await refresh();
    try {
      return await raw(method, path, { ...opts, auth: true });
    } catch (e) {
      if (!(e instanceof Problem) || attempt > 2) throw e;
      if (e.status === 401 && SESSION_CODES.has(e.code)) {
        access = null;
        if (await refresh()) continue;
        if (!authNeeded) throw e;
        await authNeeded();
        continue;
      }
      if (e.code === 'password_change_required' && passwordNeeded) {
        await passwordNeeded();
        continue;
      }
      throw e;
    }
  }
}

export const get = (path, opts) => api('GET', path, opts);
export const post = (path, body, opts = {}) => api('POST', path, { ...opts, body });
export const patch = (path, body, opts = {}) => api('PATCH', path, { ...opts, body });
export const del = (path, opts) => api('DELETE', path, opts);

/** A file from the API as a blob URL (documents, CSV): needs the bearer token. */
export async function blob(path, accept) {
  return (await blobWithType(path, accept)).url;
}

/** `{url, type}` of a file from the API. */
export function blobWithType(path, accept) {
  // Through api(): the same timeout, token refresh and sign-in prompt as every request.
  return api('GET', path, { accept, as: 'blob', timeoutMs: 60000 });
}

/** Query string from an object, leaving out empty values. */
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? '?' + s : '';
}
