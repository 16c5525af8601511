// The functions of this deploy: each one's definition, and once loaded, its adapter or the
// reason it failed to load.
//
//   functions.json entry ──import()──► module namespace ──dialect──► adapter {invoke(call)}
//                                            │ throws / wrong exports
//                                            ▼
//                                  failed: "<file>: <why>"  (calls answer 500, others unaffected)

import { pathToFileURL } from 'node:url';
import { logger, errorFields } from './logging.mjs';
import { createEdgeOneAdapter } from './dialects/edgeone.mjs';
import { createLambdaAdapter } from './dialects/lambda.mjs';
import { createNetlifyAdapter } from './dialects/netlify.mjs';

const ADAPTERS = {
  edgeone: createEdgeOneAdapter,
  netlify: createNetlifyAdapter,
  lambda: createLambdaAdapter,
};

/**
 * CommonJS modules imported from ESM expose `module.exports` as `default`, and only the
 * names Node's static analysis finds as named exports; merging makes `exports.onRequest`
 * assigned dynamically visible too.
 */
function exportsOf(ns, file) {
  if (file.endsWith('.cjs') && ns.default && typeof ns.default === 'object') return { ...ns.default, ...ns };
  return ns;
}

export class FunctionRegistry {
  #entries = new Map();

  constructor(definitions) {
    for (const def of definitions) {
      this.#entries.set(def.name, { def, state: 'pending', adapter: null, error: null, loaded: null });
    }
  }

  get(name) {
    return this.#entries.get(name);
  }

  /** Imports every function; never rejects: a failure is recorded on its entry. */
  loadAll() {
    const loads = [...this.#entries.values()].map((entry) => {
      entry.loaded = this.#load(entry);
      return entry.loaded;
    });
    this.ready = Promise.all(loads).then(() => undefined);
    return this.ready;
  }

  async #load(entry) {
    const { def } = entry;
    try {
      const ns = await import(pathToFileURL(def.file).href);
      entry.adapter = ADAPTERS[def.dialect](exportsOf(ns, def.file), def);
      entry.state = 'loaded';
      logger.info('function loaded', { function: def.name, file: def.file, dialect: def.dialect, kind: entry.adapter.kind });
    } catch (err) {
      entry.state = 'failed';
      entry.error = err instanceof Error ? err.message : String(err);
      logger.error('function failed to load', { function: def.name, file: def.file, dialect: def.dialect, ...errorFields(err) });
    }
  }

  /** True once every function has been attempted, loaded or not. */
  get settled() {
    return [...this.#entries.values()].every((e) => e.state !== 'pending');
  }

  /** name → "loaded" | "failed: <why>" | "pending", as the readiness endpoint reports it. */
  statuses() {
    const out = {};
    for (const [name, e] of this.#entries) out[name] = e.state === 'failed' ? `failed: ${e.error}` : e.state;
    return out;
  }
}
