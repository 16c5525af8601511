// Start-up configuration: command-line flags, their environment fallbacks, and the
// functions.json file written by `kpages build` / the operator.
//
//   functions.json                      one entry per function of the deploy
//   { "functions": [ { name, file, dialect, catchAll, timeoutMs, backgroundTimeoutMs } ] }
//
// Everything here is pure apart from reading that one file, so mistakes surface before the
// server listens, with a message naming the file and the field.

import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';

export const DIALECTS = ['netlify', 'edgeone', 'lambda'];
export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_BACKGROUND_TIMEOUT_MS = 15 * 60_000;

export class ConfigError extends Error {
  name = 'ConfigError';
}

/** Flags win over environment variables, which win over defaults. */
export function parseHostOptions(argv, env = process.env) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        functions: { type: 'string' },
        port: { type: 'string' },
        host: { type: 'string' },
      },
      strict: true,
    }));
  } catch (err) {
    throw new ConfigError(`${err.message}; usage: host.mjs --functions FILE [--port N] [--host ADDR]`);
  }
  const functionsFile = values.functions ?? env.KPAGES_FUNCTIONS;
  if (!functionsFile) {
    throw new ConfigError('no functions file: pass --functions FILE or set KPAGES_FUNCTIONS');
  }
  const portText = values.port ?? env.PORT ?? '9000';
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`port "${portText}" is not a TCP port (0-65535; 0 picks a free one)`);
  }
  return { functionsFile: resolve(functionsFile), port, host: values.host ?? env.HOST ?? '0.0.0.0' };
}

/** Reads and validates functions.json; `file` entries become absolute paths next to it. */
export async function loadFunctionsFile(path) {
  let text;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read functions file ${path}: ${err.message}`);
  }
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`functions file ${path} is not JSON: ${err.message}`);
  }
  return parseFunctionsDocument(doc, path);
}

/** Validates a parsed functions.json document (pure). */
export function parseFunctionsDocument(doc, path) {
  if (!doc || !Array.isArray(doc.functions)) {
    throw new ConfigError(`${path}: expected an object with a "functions" array`);
  }
  const baseDir = dirname(path);
  const seen = new Set();
  return doc.functions.map((entry, i) => {
    const where = `${path}: functions[${i}]`;
    if (!entry || typeof entry !== 'object') throw new ConfigError(`${where} is not an object`);
    const { name, file, dialect } = entry;
    if (typeof name !== 'string' || name === '') throw new ConfigError(`${where}.name must be a non-empty string`);
    if (seen.has(name)) throw new ConfigError(`${where}.name "${name}" is declared twice`);
    seen.add(name);
    if (typeof file !== 'string' || file === '') throw new ConfigError(`${where}.file must be a non-empty string`);
    if (!DIALECTS.includes(dialect)) {
      throw new ConfigError(`${where}.dialect is ${JSON.stringify(dialect)}; accepted: ${DIALECTS.join(', ')}`);
    }
    const catchAll = entry.catchAll ?? null;
    if (catchAll !== null && (typeof catchAll !== 'string' || catchAll === '')) {
      throw new ConfigError(`${where}.catchAll must be a parameter name or null`);
    }
    return {
      name,
      file: resolve(baseDir, file),
      dialect,
      catchAll,
      timeoutMs: positiveMs(entry.timeoutMs, DEFAULT_TIMEOUT_MS, `${where}.timeoutMs`),
      backgroundTimeoutMs: positiveMs(entry.backgroundTimeoutMs, DEFAULT_BACKGROUND_TIMEOUT_MS, `${where}.backgroundTimeoutMs`),
    };
  });
}

function positiveMs(value, fallback, where) {
  if (value === undefined || value === null) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new ConfigError(`${where} must be a positive number of milliseconds`);
  return value;
}
