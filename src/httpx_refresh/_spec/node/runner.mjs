// httpx-refresh: run one connector method under Node.js (the Python side is _spec/_node.py).
//
// Protocol, one JSON document per line. The parent writes the call on stdin:
//   {"name", "file" | ("code", "url", "root"), "args", "api": bool}
// and answers the method's apiClient requests there ({"t": "response", "id", ...}).
// This process writes on stdout only protocol lines: {"t": "request", ...},
// {"t": "result", "value"} or {"t": "error", ...}. The connector's own output
// (console.log, process.stdout.write) goes to stderr, which the parent never shows.
// Errors are described by type, code, status and line, never by their message, which
// may hold a token.
import { createRequire } from 'node:module';
import * as nodeModule from 'node:module';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import vm from 'node:vm';

const send = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr);
globalThis.console = new console.Console({ stdout: process.stderr, stderr: process.stderr });

let finished = false;

function emit(message) {
  return new Promise((resolve) => send(`${JSON.stringify(message)}\n`, resolve));
}

async function finish(message) {
  if (finished) return;
  finished = true;
  await emit(message);
  process.exit(0);
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// The line of the innermost stack frame in the method's own file.
function lineIn(error, targets) {
  const stack = error !== null && typeof error === 'object' ? error.stack : undefined;
  if (typeof stack !== 'string') return null;
  for (const target of targets) {
    const match = new RegExp(`${escapeRegExp(target)}:(\\d+)(?::\\d+)?`).exec(stack);
    if (match) return Number(match[1]);
  }
  return null;
}

const SAFE_CODE = /^[A-Za-z0-9_.-]{1,64}$/;
const OAUTH_ERROR = /^[a-z_]{1,64}$/;

function describe(error, targets) {
  const info = { type: typeof error };
  if (error !== null && typeof error === 'object') {
    info.type = (error.constructor && error.constructor.name) || 'Object';
    if (typeof error.name === 'string' && SAFE_CODE.test(error.name)) info.name = error.name;
    if (typeof error.code === 'string' && SAFE_CODE.test(error.code)) info.code = error.code;
    const response = error.response !== null && typeof error.response === 'object' ? error.response : null;
    const status = response ? (response.status ?? response.statusCode) : (error.status ?? error.statusCode);
    if (Number.isInteger(status) && status >= 100 && status <= 599) info.status = status;
    if (response) {
      const headers = response.headers || {};
      const retryAfter = typeof headers.get === 'function' ? headers.get('retry-after') : headers['retry-after'];
      if (typeof retryAfter === 'string' && /^\d{1,6}$/.test(retryAfter.trim())) info.retryAfter = Number(retryAfter.trim());
      const data = response.data;
      if (data !== null && typeof data === 'object' && typeof data.error === 'string' && OAUTH_ERROR.test(data.error)) {
        info.oauthError = data.error; // an RFC 6749 error code, never a description
      }
    }
  }
  info.line = lineIn(error, targets);
  return info;
}

// A module name from "Cannot find module 'x'" / "Cannot find package 'x'" (names only).
function missingModule(error) {
  if (error === null || typeof error !== 'object') return null;
  if (error.code !== 'ERR_MODULE_NOT_FOUND' && error.code !== 'MODULE_NOT_FOUND') return null;
  const match = /Cannot find (?:package|module) '([^']{1,200})'/.exec(String(error.message));
  if (!match) return '?';
  let name = match[1];
  if (path.isAbsolute(name) || name.startsWith('file:')) name = path.basename(name.replace(/^file:\/\//, ''));
  return name;
}

const ESM_SYNTAX = [
  'Cannot use import statement outside a module',
  "Unexpected token 'export'",
  "Cannot use 'import.meta' outside a module",
];

function looksLikeModule(code) {
  try {
    new vm.Script(`(function (exports, require, module, __filename, __dirname) {${code}\n})`);
    return false;
  } catch (error) {
    return error instanceof SyntaxError && ESM_SYNTAX.some((text) => String(error.message).includes(text));
  }
}

class SetupError extends Error {
  constructor(kind, fields = {}) {
    super(kind);
    this.kind = kind;
    this.fields = fields;
  }
}

async function loadInline(call) {
  const filename = fileURLToPath(call.url);
  if (looksLikeModule(call.code)) {
    if (typeof nodeModule.register !== 'function') {
      throw new SetupError('inline-needs-register', { version: process.versions.node });
    }
    nodeModule.register(new URL('./hooks.mjs', import.meta.url), import.meta.url, {
      data: { url: call.url, source: call.code },
    });
    return import(call.url);
  }
  const module = { exports: {} };
  const wrapper = vm.runInThisContext(
    `(function (exports, require, module, __filename, __dirname) {${call.code}\n})`,
    { filename },
  );
  wrapper.call(module.exports, module.exports, createRequire(filename), module, filename, path.dirname(filename));
  return { default: module.exports };
}

function pick(namespace, name) {
  const main = namespace.default;
  const candidates = [main];
  if (main !== null && (typeof main === 'object' || typeof main === 'function')) {
    candidates.push(main.default, main[name]);
  }
  candidates.push(namespace[name]);
  for (const candidate of candidates) {
    if (typeof candidate === 'function') return candidate;
  }
  throw new SetupError('no-function', { found: main === undefined ? 'nothing' : typeof main });
}

let nextId = 0;
const waiting = new Map();

function ask(message) {
  nextId += 1;
  const id = nextId;
  return new Promise((resolve) => {
    waiting.set(id, resolve);
    emit({ ...message, t: 'request', id });
  });
}

function encodeBody(data) {
  if (data === undefined) return undefined;
  if (typeof data === 'string') return { kind: 'text', value: data };
  if (data instanceof URLSearchParams) return { kind: 'form', value: data.toString() };
  if (data instanceof ArrayBuffer) data = new Uint8Array(data);
  if (ArrayBuffer.isView(data)) {
    return { kind: 'bytes', value: Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64') };
  }
  return { kind: 'json', value: data };
}

class ApiError extends Error {
  constructor(response) {
    super(`the API answered HTTP ${response.statusCode}`);
    this.name = 'ApiError';
    this.statusCode = response.statusCode;
    this.status = response.statusCode;
    this.data = response.data;
    this.response = { status: response.statusCode, headers: response.headers, data: response.data };
  }
}

// apiClient: requests go back to Python, through the connection's client (its
// makeApiClient settings, refresh on 401, rate-limit retries).
class ApiClient {
  async request(method, requestPath, options = {}) {
    const reply = await ask({
      method,
      path: String(requestPath),
      query: options.query ?? null,
      headers: options.headers ?? null,
      body: encodeBody(options.data),
    });
    const response = { statusCode: reply.status, headers: reply.headers, data: reply.data };
    if (reply.status >= 300) throw new ApiError(response);
    return options.returnFullResponse ? response : response.data;
  }

  get(requestPath, query, options = {}) {
    return this.request('GET', requestPath, { ...options, query: query ?? options.query });
  }

  delete(requestPath, query, options = {}) {
    return this.request('DELETE', requestPath, { ...options, query: query ?? options.query });
  }

  post(requestPath, data, options = {}) {
    return this.request('POST', requestPath, { ...options, data });
  }

  put(requestPath, data, options = {}) {
    return this.request('PUT', requestPath, { ...options, data });
  }

  patch(requestPath, data, options = {}) {
    return this.request('PATCH', requestPath, { ...options, data });
  }
}

async function run(call) {
  const targets = call.file ? [pathToFileURL(call.file).href, call.file] : [call.url];
  let namespace;
  try {
    namespace = call.file ? await import(pathToFileURL(call.file).href) : await loadInline(call);
  } catch (error) {
    if (error instanceof SetupError) return finish({ t: 'error', kind: error.kind, ...error.fields });
    const module = missingModule(error);
    if (module !== null) return finish({ t: 'error', kind: 'missing-module', module });
    const info = describe(error, targets);
    if (error instanceof SyntaxError) return finish({ t: 'error', kind: 'syntax', ...info });
    return finish({ t: 'error', kind: 'import', ...info });
  }
  let fn;
  try {
    fn = pick(namespace, call.name);
  } catch (error) {
    return finish({ t: 'error', kind: error.kind, ...error.fields });
  }
  const args = { ...call.args };
  if (call.api) {
    const client = new ApiClient();
    args.apiClient = client;
    args.externalApiClient = client;
  }
  let value;
  try {
    value = await fn(args);
  } catch (error) {
    const module = missingModule(error);
    if (module !== null) return finish({ t: 'error', kind: 'missing-module', module });
    return finish({ t: 'error', kind: 'thrown', ...describe(error, targets) });
  }
  let line;
  try {
    line = JSON.stringify(value === undefined ? { t: 'result' } : { t: 'result', value });
  } catch (error) {
    return finish({ t: 'error', kind: 'not-json', type: error && error.constructor ? error.constructor.name : typeof error });
  }
  if (line === undefined) return finish({ t: 'error', kind: 'not-json', type: typeof value });
  if (finished) return undefined;
  finished = true;
  send(`${line}\n`, () => process.exit(0));
  return undefined;
}

process.on('unhandledRejection', (error) => {
  finish({ t: 'error', kind: 'thrown', ...describe(error, []), unhandled: true });
});

let call = null;
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on('line', (text) => {
  const message = JSON.parse(text);
  if (call === null) {
    call = message;
    run(call).catch((error) => finish({ t: 'error', kind: 'internal', type: String(error && error.name) }));
    return;
  }
  const resolve = waiting.get(message.id);
  if (resolve !== undefined) {
    waiting.delete(message.id);
    resolve(message);
  }
});
lines.on('close', () => {
  if (!finished) process.exit(3); // the parent went away
});
