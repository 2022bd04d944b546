// httpx-refresh: module hooks that serve an inline `code:` method as an ES module whose URL
// lies in the connector folder, so its imports resolve from the connector's node_modules.
let inline = null;

export function initialize(data) {
  inline = data;
}

export async function resolve(specifier, context, nextResolve) {
  if (inline !== null && specifier === inline.url) {
    return { url: inline.url, format: 'module', shortCircuit: true };
  }
  return nextResolve(specifier, context);
}

export async function load(url, context, nextLoad) {
  if (inline !== null && url === inline.url) {
    return { format: 'module', source: inline.source, shortCircuit: true };
  }
  return nextLoad(url, context);
}
