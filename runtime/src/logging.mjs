// Structured logs: every line on stdout is one JSON object.
//
// Host events (listening, load failures, invocations) and the user's own console output share
// one stream so a log collector sees one format. Console calls made while an invocation runs are
// tagged with that invocation's request id and function name through AsyncLocalStorage, which
// keeps concurrent invocations apart.

import { format, inspect } from 'node:util';
import { currentInvocation } from './context.mjs';

function write(line) {
  // Pipes and files are synchronous on Linux, so lines from concurrent invocations never interleave.
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** Writes one log line with a timestamp, a level and a message. */
export function log(level, msg, fields = {}) {
  write({ time: new Date().toISOString(), level, msg, ...fields });
}

export const logger = {
  debug: (msg, fields) => log('debug', msg, fields),
  info: (msg, fields) => log('info', msg, fields),
  warn: (msg, fields) => log('warn', msg, fields),
  error: (msg, fields) => log('error', msg, fields),
};

/** Fields describing an error: its message for humans and its stack for debugging. */
export function errorFields(err) {
  if (err instanceof Error) return { error: err.message, stack: err.stack };
  return { error: typeof err === 'string' ? err : format('%o', err) };
}

/** Tags that tie a line to the invocation running now, if any. */
export function invocationTags() {
  const inv = currentInvocation();
  return inv ? { requestId: inv.requestId, function: inv.functionName } : {};
}

const CONSOLE_LEVELS = { log: 'info', info: 'info', warn: 'warn', error: 'error', debug: 'debug', trace: 'debug' };

/**
 * Replaces console.log/info/warn/error/debug/trace with JSON-line writers.
 * Called once at start-up, before any user module is imported, so top-level console calls in
 * user modules are captured too.
 */
export function captureConsole(target = console) {
  for (const [method, level] of Object.entries(CONSOLE_LEVELS)) {
    target[method] = (...args) => {
      write({ time: new Date().toISOString(), level, msg: format(...args), source: 'console', ...invocationTags() });
    };
  }
  // console.dir writes to the stream directly instead of going through console.log.
  target.dir = (value, options) => {
    write({ time: new Date().toISOString(), level: 'info', msg: inspect(value, options), source: 'console', ...invocationTags() });
  };
  target.dirxml = (...args) => target.log(...args);
}
