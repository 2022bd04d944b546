// httpx-refresh: run one connector method under Node.js (the Python side is _spec/_node.py).
//
// Protocol, one JSON document per line. This process first writes {"t": "hello", "node"}.
// The parent writes the call on stdin:
//   {"name", "root", "file" | ("code", "url"), "args", "api": bool, "check": bool}
// ("check": load the module and find the function, without calling it)
// and answers the method's apiClient requests there ({"t": "response", "id", ...}).
// This process writes on stdout only protocol lines: {"t": "request", ...},
// {"t": "result", "value"} or {"t": "error", ...}. The connector's own output
// (console.log, process.stdout.write) goes to stderr, which the parent never shows.
// Errors are described by type, code, status and line, never by their message, which
// may hold a token.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as nodeModule from 'node:module';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import vm from 'node:vm';
import { looksLikeModule } from './detect.mjs';

const send = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr);
globalThis.console = new console.Console({ stdout: process.stderr, stderr: process.stderr });

let finished = false;
let nonce = null; // from the call: marks this runner's lines among whatever reaches stdout

// One protocol line. It starts on a line of its own, in case something wrote to the real
// stdout (fd 1) without a line break.
function line(message) {
  return `\n${JSON.stringify({ ...message, n: nonce })}\n`;
}

function emit(message) {
  return new Promise((resolve) => send(line(message), resolve));
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

// Error codes as Node.js and its HTTP clients spell them (ECONNREFUSED, ERR_BAD_REQUEST,
// UND_ERR_SOCKET): anything else could be data (a token) and is left out.
const SAFE_CODE = /^(E[A-Z]{2,20}|ERR_[A-Z0-9_]{1,48}|UND_ERR_[A-Z_]{1,40})$/;
const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]{0,63}$/;
const OAUTH_ERROR = /^[a-z_]{1,40}$/;

function describe(error, targets) {
  const info = { type: typeof error };
  if (error !== null && typeof error === 'object') {
    // The class name comes from code; a "constructor" key of parsed data is not a function.
    const maker = error.constructor;
    const name = typeof maker === 'function' ? maker.name : '';
    info.type = typeof name === 'string' && IDENTIFIER.test(name) ? name : 'Object';
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

// What "Cannot find module 'x'" / "Cannot find package 'x'" is about: a package (its
// name), or a file (its path relative to the connector folder); null for other errors.
function missingModule(error, root) {
  if (error === null || typeof error !== 'object') return null;
  if (error.code !== 'ERR_MODULE_NOT_FOUND' && error.code !== 'MODULE_NOT_FOUND') return null;
  const match = /Cannot find (?:package|module) '([^']{1,400})'/.exec(String(error.message));
  if (!match) return { kind: 'missing-module', module: '?' };
  let name = match[1];
  if (name.startsWith('file:')) name = fileURLToPath(name);
  if (path.isAbsolute(name)) {
    const relative = path.relative(root, name);
    if (relative.includes('node_modules')) {
      // a package's own file: name the package
      const parts = relative.split(path.sep);
      const at = parts.lastIndexOf('node_modules');
      const scoped = parts[at + 1] && parts[at + 1].startsWith('@');
      return { kind: 'missing-module', module: parts.slice(at + 1, at + (scoped ? 3 : 2)).join('/') };
    }
    return { kind: 'missing-file', file: relative.startsWith('..') ? path.basename(name) : relative };
  }
  if (name.startsWith('.')) return { kind: 'missing-file', file: name };
  return { kind: 'missing-module', module: name };
}

// The line (and Node's description) of a syntax error in `source`, from `node --check`
// on stdin: an ES module's SyntaxError carries no location of its own. Nothing runs.
function syntaxProblem(source) {
  const type = looksLikeModule(source) ? 'module' : 'commonjs';
  const done = spawnSync(process.execPath, [`--input-type=${type}`, '--check'], {
    input: source,
    encoding: 'utf8',
    timeout: 10000,
  });
  const output = String(done.stderr || '');
  const where = /\[stdin\]:(\d+)/.exec(output);
  if (!where) return null;
  const what = /^SyntaxError: (.{1,160})$/m.exec(output);
  return { line: Number(where[1]), detail: what ? what[1] : null };
}

// The nearest package.json's "type" for a file ("module", "commonjs" or null).
function packageType(file) {
  let directory = path.dirname(file);
  for (;;) {
    const candidate = path.join(directory, 'package.json');
    if (existsSync(candidate)) {
      try {
        const type = JSON.parse(readFileSync(candidate, 'utf8')).type;
        return type === 'module' || type === 'commonjs' ? type : null;
      } catch {
        return null;
      }
    }
    const parent = path.dirname(directory);
    if (parent === directory) return null;
    directory = parent;
  }
}

// Node.js detects module syntax in a typeless .js file from 20.19 and 22.7 on.
function detectsModules() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  return major > 22 || (major === 22 && minor >= 7) || (major === 20 && minor >= 19);
}

let hooks = null;

function registerHooks(data) {
  if (hooks !== null) return true;
  if (typeof nodeModule.register !== 'function') return false;
  hooks = data;
  nodeModule.register(new URL('./hooks.mjs', import.meta.url), import.meta.url, { data });
  return true;
}

async function loadFile(call) {
  if (call.file.endsWith('.js')) {
    const type = packageType(call.file);
    if (type !== 'module' && (type === 'commonjs' || !detectsModules())) {
      const source = readFileSync(call.file, 'utf8');
      if (looksLikeModule(source)) registerHooks({ root: pathToFileURL(call.root).href + '/' });
    }
  }
  return import(pathToFileURL(call.file).href);
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
    if (!registerHooks({ url: call.url, source: call.code })) {
      throw new SetupError('inline-needs-register', { version: process.versions.node });
    }
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
    namespace = call.file ? await loadFile(call) : await loadInline(call);
  } catch (error) {
    if (error instanceof SetupError) return finish({ t: 'error', kind: error.kind, ...error.fields });
    const missing = missingModule(error, call.root);
    if (missing !== null) return finish({ t: 'error', ...missing });
    const info = describe(error, targets);
    if (error instanceof SyntaxError) {
      let source = null;
      try {
        source = call.file ? readFileSync(call.file, 'utf8') : call.code;
      } catch {
        source = null;
      }
      const problem = source === null ? null : syntaxProblem(source);
      if (problem === null) {
        // The file itself parses: a module it imports does not, or its top-level code
        // threw a SyntaxError (JSON.parse, new RegExp, ...).
        return finish({ t: 'error', kind: info.line === null ? 'syntax-elsewhere' : 'import', ...info });
      }
      return finish({ t: 'error', kind: 'syntax', line: problem.line, detail: problem.detail });
    }
    return finish({ t: 'error', kind: 'import', ...info });
  }
  let fn;
  try {
    fn = pick(namespace, call.name);
  } catch (error) {
    return finish({ t: 'error', kind: error.kind, ...error.fields });
  }
  if (call.check) return finish({ t: 'result', value: true });
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
    const missing = missingModule(error, call.root);
    if (missing !== null) return finish({ t: 'error', ...missing });
    return finish({ t: 'error', kind: 'thrown', ...describe(error, targets) });
  }
  let text;
  try {
    text = line(value === undefined ? { t: 'result' } : { t: 'result', value });
  } catch (error) {
    return finish({ t: 'error', kind: 'not-json', type: error && error.constructor ? error.constructor.name : typeof error });
  }
  if (finished) return undefined;
  finished = true;
  send(text, () => process.exit(0));
  return undefined;
}

process.on('unhandledRejection', (error) => {
  finish({ t: 'error', kind: 'thrown', ...describe(error, []), unhandled: true });
});

send(`${JSON.stringify({ t: 'hello', node: process.versions.node })}\n`);

let call = null;
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on('line', (text) => {
  const message = JSON.parse(text);
  if (call === null) {
    call = message;
    nonce = call.nonce;
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
