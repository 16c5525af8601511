// The host process itself: start-up options, readiness, control-header errors, shutdown.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixture, HOST_SCRIPT, runHostToExit, startHost } from './harness.mjs';

describe('dispatch and readiness', () => {
  let host;
  before(async () => {
    host = await startHost({ functions: [{ name: 'context', file: fixture('netlify/context.mjs'), dialect: 'netlify' }] });
  });
  after(() => host?.stop());

  test('GET /.kpages/ready without control headers answers 200 with per-function status', async () => {
    const res = await fetch(`${host.origin}/.kpages/ready`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ready: true, functions: { context: 'loaded' } });
  });

  test('a request without x-kpages-function on another path is a 400 naming the header', async () => {
    const res = await fetch(`${host.origin}/some/page`);
    assert.equal(res.status, 400);
    assert.match((await res.json()).error, /x-kpages-function/);
  });

  test('an unknown function name is a 404 JSON error', async () => {
    const res = await host.call('nope', '/', { control: { requestId: 'req-404' } });
    assert.equal(res.status, 404);
    assert.match(res.headers.get('content-type'), /application\/json/);
    const body = await res.json();
    assert.match(body.error, /no function named "nope"/);
    assert.equal(body.requestId, 'req-404');
  });

  test('malformed x-kpages-params is a 400', async () => {
    const res = await host.call('context', '/', { headers: { 'x-kpages-params': '{not json' } });
    assert.equal(res.status, 400);
    assert.match((await res.json()).error, /x-kpages-params is not JSON/);
    const arr = await host.call('context', '/', { headers: { 'x-kpages-params': '["a"]' } });
    assert.equal(arr.status, 400);
  });

  test('an unknown x-kpages-invocation is a 400 listing the accepted values', async () => {
    const res = await host.call('context', '/', { control: { invocation: 'sometimes' } });
    assert.equal(res.status, 400);
    assert.match((await res.json()).error, /sync, background, schedule/);
  });

  test('a missing x-kpages-request-id gets a generated one', async () => {
    const res = await host.call('context', '/', { headers: { 'x-kpages-request-id': null } });
    const body = await res.json();
    assert.match(body.requestId, /^[0-9a-f-]{36}$/);
  });

  test('readiness is 503 "pending" while a module is still loading, and calls wait for their function', async () => {
    const slow = await startHost({
      waitReady: false,
      files: { 'slow.mjs': 'await new Promise((r) => setTimeout(r, 400));\nexport default () => new Response("loaded late");\n' },
      functions: [{ name: 'slow', file: 'slow.mjs', dialect: 'netlify' }],
    });
    try {
      const early = await fetch(`${slow.origin}/.kpages/ready`);
      assert.equal(early.status, 503);
      assert.deepEqual(await early.json(), { ready: false, functions: { slow: 'pending' } });
      const res = await slow.call('slow', '/');
      assert.equal(await res.text(), 'loaded late');
      const ready = await fetch(`${slow.origin}/.kpages/ready`);
      assert.equal(ready.status, 200);
    } finally {
      await slow.stop();
    }
  });

  test('the readiness path with x-kpages-function set is routed to the function', async () => {
    const res = await host.call('context', '/.kpages/ready');
    const body = await res.json();
    assert.equal(body.url, `http://127.0.0.1:${host.port}/.kpages/ready`);
  });
});

describe('start-up', () => {
  let dir;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kpages-startup-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('KPAGES_FUNCTIONS, PORT and HOST configure the host when flags are absent', async () => {
    const file = join(dir, 'env-functions.json');
    await writeFile(file, JSON.stringify({ functions: [{ name: 'context', file: fixture('netlify/context.mjs'), dialect: 'netlify' }] }));
    const child = spawn(process.execPath, [HOST_SCRIPT], { env: { ...process.env, KPAGES_FUNCTIONS: file, PORT: '0', HOST: '127.0.0.1' }, stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      let out = '';
      child.stdout.setEncoding('utf8');
      let port;
      for await (const chunk of child.stdout) {
        out += chunk;
        const m = out.match(/"msg":"listening","port":(\d+),"host":"127\.0\.0\.1"/);
        if (m) {
          port = Number(m[1]);
          break;
        }
      }
      assert.ok(port > 0);
      let res;
      do {
        res = await fetch(`http://127.0.0.1:${port}/.kpages/ready`);
      } while (res.status === 503 && (await res.json()).ready === false);
      assert.equal(res.status, 200);
      assert.deepEqual((await res.json()).functions, { context: 'loaded' });
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('a missing functions file argument exits non-zero with a message', async () => {
    const env = { ...process.env };
    delete env.KPAGES_FUNCTIONS;
    const { code, stdout } = await runHostToExit([], { KPAGES_FUNCTIONS: '' });
    assert.equal(code, 1);
    assert.match(stdout, /no functions file: pass --functions FILE or set KPAGES_FUNCTIONS/);
  });

  test('an invalid functions.json exits non-zero naming the file and field', async () => {
    const file = join(dir, 'bad.json');
    await writeFile(file, JSON.stringify({ functions: [{ name: 'x', file: 'x.mjs', dialect: 'vercel' }] }));
    const { code, stdout } = await runHostToExit(['--functions', file, '--port', '0', '--host', '127.0.0.1']);
    assert.equal(code, 1);
    const line = JSON.parse(stdout.trim().split('\n').at(-1));
    assert.equal(line.level, 'error');
    assert.match(line.msg, /bad\.json: functions\[0\]\.dialect is "vercel"; accepted: netlify, edgeone, lambda/);
  });

  test('a functions file that is not JSON exits non-zero', async () => {
    const file = join(dir, 'notjson.json');
    await writeFile(file, '{');
    const { code, stdout } = await runHostToExit(['--functions', file]);
    assert.equal(code, 1);
    assert.match(stdout, /is not JSON/);
  });

  test('function files resolve relative to the functions file directory', async () => {
    const host = await startHost({
      files: { 'bundles/hi.mjs': 'export default () => new Response("relative ok");\n' },
      functions: [{ name: 'hi', file: 'bundles/hi.mjs', dialect: 'netlify' }],
    });
    try {
      assert.equal(await (await host.call('hi', '/')).text(), 'relative ok');
    } finally {
      await host.stop();
    }
  });
});

describe('shutdown', () => {
  test('SIGTERM lets waitUntil work finish before the process exits', async () => {
    const host = await startHost({ functions: [{ name: 'late', file: fixture('netlify/waituntil-timer.mjs'), dialect: 'netlify' }] });
    try {
      assert.equal(await (await host.call('late', '/')).text(), 'ok');
      host.child.kill('SIGTERM');
      const [code] = await host.exited;
      assert.equal(code, 0);
      assert.equal(host.logs.find((l) => l.msg === 'late work done').length, 1);
    } finally {
      await host.stop();
    }
  });
});
