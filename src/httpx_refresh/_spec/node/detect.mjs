// httpx-refresh: tell ES module source from CommonJS (shared by runner.mjs and hooks.mjs).
import vm from 'node:vm';

const ESM_SYNTAX = [
  'Cannot use import statement outside a module',
  "Unexpected token 'export'",
  "Cannot use 'import.meta' outside a module",
];

// True when the source only parses as an ES module (it uses import/export).
export function looksLikeModule(source) {
  try {
    new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`);
    return false;
  } catch (error) {
    return error instanceof SyntaxError && ESM_SYNTAX.some((text) => String(error.message).includes(text));
  }
}
