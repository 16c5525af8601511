// Structured logs: every line on stdout is one JSON object.
//
// Host events (listening, load failures, invocations) and the user's own console output share
// one stream so a log collector sees one format. Console calls made while an invocation runs are
// tagged with that invocation's request id and function name through AsyncLocalStorage, which
// keeps concurrent invocations apart.

import { format, inspect } from 'node:util';
import { currentInvocation } from './context.mjs';

// Lines are collected and written together once per turn of the event loop (or sooner when
// many pile up), not one write per line: under load a write per invocation line was a
// syscall per request. Order is kept: everything goes through this one buffer, anything else
// written to stdout first flushes it, and it is flushed when the process exits.
const FLUSH_AT_BYTES = 64 * 1024;
const stdout = process.stdout;
const stdoutWrite = stdout.write;
let buffered = '';
let flushScheduled = false;

function write(line) {
  append(`${JSON.stringify(line)}\n`);
}

function append(text) {
  buffered += text;
  if (buffered.length >= FLUSH_AT_BYTES) flushLogs();
  else if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushLogs);
  }
}

/** Writes the buffered lines now. Pipes and files are synchronous on Linux, so this is too. */
export function flushLogs() {
  flushScheduled = false;
  if (buffered === '') return;
  const text = buffered;
  buffered = '';
  stdoutWrite.call(stdout, text);
}

// Direct writes to stdout (user code, console methods that are not captured) stay in order
// with the lines before them.
stdout.write = function writeAfterLogs(...args) {
  if (buffered !== '') flushLogs();
  return stdoutWrite.apply(this, args);
};
process.on('exit', flushLogs);

// Lines written within the same millisecond share one formatted timestamp.
let lastMs = -1;
let lastIso = '';
function now() {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

/** Writes one log line with a timestamp, a level and a message. */
export function log(level, msg, fields = {}) {
  write({ time: now(), level, msg, ...fields });
}

/**
 * The line every invocation ends with, as `log('info', 'invocation', {...})` would write it,
 * without building the intermediate objects (it is written once per request).
 */
export function logInvocation(requestId, functionName, invocation, status, durationMs, traceparent) {
  if (typeof status !== 'number' || !Number.isFinite(durationMs)) {
    log('info', 'invocation', { requestId, function: functionName, invocation, status, durationMs, ...(traceparent ? { traceparent } : {}) });
    return;
  }
  append(`{"time":"${now()}","level":"info","msg":"invocation","requestId":${JSON.stringify(requestId)},"function":${JSON.stringify(functionName)},"invocation":${JSON.stringify(invocation)},"status":${status},"durationMs":${durationMs}${traceparent ? `,"traceparent":${JSON.stringify(traceparent)}` : ''}}\n`);
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
      write({ time: now(), level, msg: format(...args), source: 'console', ...invocationTags() });
    };
  }
  // console.dir writes to the stream directly instead of going through console.log.
  target.dir = (value, options) => {
    write({ time: now(), level: 'info', msg: inspect(value, options), source: 'console', ...invocationTags() });
  };
  target.dirxml = (...args) => target.log(...args);
}
