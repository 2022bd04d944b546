// httpx-refresh: module hooks for the runner.
// - An inline `code:` method is served as an ES module whose URL lies in the connector
//   folder, so its imports resolve from the connector's node_modules.
// - A connector .js file written as an ES module (import/export) loads as one even when a
//   package.json says "type": "commonjs" (npm init writes that) or Node.js cannot detect
//   module syntax by itself; the connector's packages in node_modules are left alone.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { looksLikeModule } from './detect.mjs';

let data = {};

export function initialize(given) {
  data = given || {};
}

export async function resolve(specifier, context, nextResolve) {
  if (data.url && specifier === data.url) {
    return { url: data.url, format: 'module', shortCircuit: true };
  }
  return nextResolve(specifier, context);
}

export async function load(url, context, nextLoad) {
  if (data.url && url === data.url) {
    return { format: 'module', source: data.source, shortCircuit: true };
  }
  const result = await nextLoad(url, context);
  if (
    data.root &&
    result.format === 'commonjs' &&
    url.startsWith(data.root) &&
    url.endsWith('.js') &&
    !url.includes('/node_modules/')
  ) {
    const source = result.source == null ? readFileSync(fileURLToPath(url), 'utf8') : String(result.source);
    if (looksLikeModule(source)) return { format: 'module', source, shortCircuit: true };
  }
  return result;
}
