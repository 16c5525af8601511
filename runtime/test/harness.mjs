// Test harness: starts a real host process on a loopback port with a temporary
// functions.json, and talks to it over real HTTP. Waits are on events (a log line, the
// readiness endpoint), never on fixed sleeps.

import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import { once } from 'node:events';

const HERE = dirname(fileURLToPath(import.meta.url));
export const HOST_SCRIPT = join(HERE, '..', 'src', 'host.mjs');
export const FIXTURES = join(HERE, 'fixtures');

/** Absolute path of a committed fixture. */
export const fixture = (path) => join(FIXTURES, path);

export const IDENTITY_ENV = {
  SITE_ID: 'site-123',
  SITE_NAME: 'kpages-test-site',
  URL: 'https://site.example.test',
  DEPLOY_ID: 'deploy-456',
  CONTEXT: 'production',
  ACCOUNT_ID: 'acct-789',
  MY_SETTING: 'user value',
};

// Hosts still running when the test process ends (a cancelled or crashed test file) would be
// orphaned; kill them on exit and on the signals a test runner uses to stop a file.
const liveChildren = new Set();
const liveDirs = new Set();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => {
    for (const child of liveChildren) child.kill('SIGKILL');
    process.exit(130);
  });
}

/** Collects a child's stdout as parsed JSON lines and lets tests wait for one. */
class LogCollector {
  lines = [];
  raw = '';
  #waiters = [];

  push(text) {
    this.raw += text;
    let nl;
    while ((nl = this.raw.indexOf('\n')) !== -1) {
      const line = this.raw.slice(0, nl);
      this.raw = this.raw.slice(nl + 1);
      let parsed;
      try {
        parsed = JSON.parse(line);
      } catch {
        parsed = { unparsed: line };
      }
      this.lines.push(parsed);
      this.#waiters = this.#waiters.filter((w) => !(w.predicate(parsed) && (w.resolve(parsed), true)));
    }
  }

  /** Resolves with the first line (past or future) matching `predicate`. */
  waitFor(predicate, what = 'log line') {
    const found = this.lines.find(predicate);
    if (found) return Promise.resolve(found);
    if (this.closed) return Promise.reject(new Error(`host exited before ${what}`));
    return new Promise((resolve, reject) => {
      this.#waiters.push({ predicate, resolve, reject, what });
    });
  }

  /** The host exited: nothing more will arrive, so fail every pending wait. */
  close() {
    this.closed = true;
    for (const w of this.#waiters) w.reject(new Error(`host exited before ${w.what}; logs:\n${JSON.stringify(this.lines, null, 1)}`));
    this.#waiters = [];
  }

  find(predicate) {
    return this.lines.filter(predicate);
  }
}

/**
 * Starts a host. `functions` are functions.json entries (files may be absolute);
 * `files` maps relative paths to contents written next to functions.json (for broken modules
 * that must not live in the repository as importable files).
 */
export async function startHost({ functions, files = {}, env = {}, args = [], waitReady = true }) {
  const dir = await mkdtemp(join(tmpdir(), 'kpages-host-test-'));
  liveDirs.add(dir);
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  const functionsFile = join(dir, 'functions.json');
  await writeFile(functionsFile, JSON.stringify({ functions }));
  const child = spawn(process.execPath, [HOST_SCRIPT, '--functions', functionsFile, '--port', '0', '--host', '127.0.0.1', ...args], {
    env: { ...process.env, ...IDENTITY_ENV, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  const logs = new LogCollector();
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => logs.push(d));
  child.stderr.setEncoding('utf8').on('data', (d) => {
    stderr += d;
  });
  const exited = once(child, 'exit');
  exited.then(() => logs.close());

  const listening = await Promise.race([
    logs.waitFor((l) => l.msg === 'listening', 'listening'),
    exited.then(([code]) => {
      throw new Error(`host exited with ${code} before listening: ${stderr}\n${JSON.stringify(logs.lines)}`);
    }),
  ]);
  const host = new HostProcess({ child, logs, port: listening.port, dir, exited, getStderr: () => stderr });
  if (waitReady) await host.waitReady();
  return host;
}

class HostProcess {
  constructor({ child, logs, port, dir, exited, getStderr }) {
    Object.assign(this, { child, logs, port, dir, exited, getStderr });
    this.origin = `http://127.0.0.1:${port}`;
  }

  /** Polls the readiness endpoint until it says ready (the condition the router waits on). */
  async waitReady() {
    for (let attempt = 0; attempt < 500; attempt += 1) {
      const res = await fetch(`${this.origin}/.kpages/ready`);
      const body = await res.json();
      if (res.status === 200 && body.ready) return body;
      await new Promise((resolve) => setImmediate(resolve));
    }
    throw new Error('host never became ready');
  }

  /**
   * Calls a function through fetch with the control headers the router would send.
   * `control` overrides/extends them; a null value removes a header.
   */
  call(name, path = '/', { control = {}, headers = {}, ...init } = {}) {
    const all = {
      'x-kpages-function': name,
      'x-kpages-request-id': control.requestId ?? `req-${name}-${Math.random().toString(16).slice(2)}`,
      'x-kpages-invocation': control.invocation ?? 'sync',
      'x-kpages-client-ip': control.clientIp ?? '203.0.113.7',
      'x-kpages-params': JSON.stringify(control.params ?? {}),
      ...(control.geo ? { 'x-kpages-geo': Buffer.from(JSON.stringify(control.geo)).toString('base64') } : {}),
      ...control.extra,
      ...headers,
    };
    for (const [k, v] of Object.entries(all)) if (v === null) delete all[k];
    return fetch(`${this.origin}${path}`, { ...init, headers: all });
  }

  /** A raw http.request for cases fetch cannot express (streamed uploads, exact headers). */
  rawRequest({ path = '/', method = 'GET', headers = {} }) {
    return http.request({ host: '127.0.0.1', port: this.port, path, method, headers });
  }

  invocationLog(requestId) {
    return this.logs.waitFor((l) => l.msg === 'invocation' && l.requestId === requestId, `invocation log of ${requestId}`);
  }

  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    await rm(this.dir, { recursive: true, force: true });
    liveDirs.delete(this.dir);
  }
}

/** Runs the host script with arbitrary arguments/env and waits for it to exit (start-up errors). */
export async function runHostToExit(args, env = {}) {
  const child = spawn(process.execPath, [HOST_SCRIPT, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (d) => {
    stdout += d;
  });
  const [code] = await once(child, 'exit');
  return { code, stdout };
}

/** Reads a response body chunk by chunk, as the client receives it. */
export async function readChunk(reader) {
  const { value, done } = await reader.read();
  return done ? null : new TextDecoder().decode(value);
}
