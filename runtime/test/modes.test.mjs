// Invocation modes: background and schedule run to completion and report ok/failure so the
// queue and scheduler know whether to retry.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fixture, startHost } from './harness.mjs';

describe('background and scheduled invocations', () => {
  let host;
  before(async () => {
    host = await startHost({
      functions: [
        { name: 'background', file: fixture('netlify/background.mjs'), dialect: 'netlify', backgroundTimeoutMs: 400, timeoutMs: 50 },
        { name: 'lambda-background', file: fixture('lambda/background.mjs'), dialect: 'lambda' },
        { name: 'scheduled', file: fixture('netlify/scheduled.mjs'), dialect: 'netlify' },
        { name: 'lambda-scheduled', file: fixture('lambda/event.mjs'), dialect: 'lambda' },
        { name: 'express', file: fixture('edgeone/express/[[default]].mjs'), dialect: 'edgeone', catchAll: 'default' },
        { name: 'release', file: fixture('netlify/release.mjs'), dialect: 'netlify' },
      ],
    });
  });
  after(() => host?.stop());

  const background = (path, init = {}) => host.call('background', path, { method: 'POST', ...init, control: { invocation: 'background', ...init.control } });

  test('success answers 200 {"ok":true} and discards the function\'s own body and status', async () => {
    const res = await background('/?mode=ok', { body: 'job-42', control: { requestId: 'req-bg-ok' } });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ok: true });
    const done = await host.logs.waitFor((l) => l.msg === 'background done job-42');
    assert.equal(done.requestId, 'req-bg-ok');
    const line = await host.invocationLog('req-bg-ok');
    assert.equal(line.invocation, 'background');
    assert.equal(line.status, 200);
  });

  test('the answer comes only after the function has finished', async () => {
    const gateName = `bg-${Date.now()}`;
    let answered = false;
    const pending = background(`/?mode=gate&gate=${gateName}`, { body: 'gated' }).then((res) => {
      answered = true;
      return res;
    });
    // The function is now blocked on the gate, so a host that answers early would have done so.
    await host.logs.waitFor((l) => l.msg === `background waiting ${gateName}`);
    // One more round trip through the host's event loop (an unknown name answers 404 at once).
    assert.equal((await host.call('no-such-function', '/')).status, 404);
    assert.equal(answered, false);
    await (await host.call('release', `/?gate=${gateName}`)).text();
    const res = await pending;
    assert.deepEqual(await res.json(), { ok: true });
  });

  test('a throw is 500 {"ok":false,"error"} so the queue retries', async () => {
    const res = await background('/?mode=throw', { control: { requestId: 'req-bg-throw' } });
    assert.equal(res.status, 500);
    const body = await res.json();
    assert.equal(body.ok, false);
    assert.equal(body.error, 'background job broke');
    const line = await host.logs.waitFor((l) => l.msg === 'background function failed' && l.requestId === 'req-bg-throw');
    assert.match(line.stack, /background\.mjs/);
  });

  test('a rejected promise is 500 {"ok":false}', async () => {
    const res = await background('/?mode=reject');
    assert.equal(res.status, 500);
    assert.equal((await res.json()).error, 'background job rejected');
  });

  test('a returned 5xx Response counts as failure', async () => {
    const res = await background('/?mode=status500');
    assert.equal(res.status, 500);
    assert.match((await res.json()).error, /status 503/);
  });

  test('backgroundTimeoutMs (not timeoutMs) bounds the run; past it the answer is 500', async () => {
    const res = await background('/?mode=hang', { control: { requestId: 'req-bg-hang' } });
    assert.equal(res.status, 500);
    const body = await res.json();
    assert.equal(body.ok, false);
    assert.match(body.error, /within 400 ms/);
    const line = await host.invocationLog('req-bg-hang');
    assert.ok(line.durationMs >= 390, `durationMs ${line.durationMs}`);
  });

  test('Lambda background: statusCode >= 500 is failure, otherwise ok', async () => {
    const ok = await host.call('lambda-background', '/', { method: 'POST', body: 'payload', control: { invocation: 'background' } });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { ok: true });
    await host.logs.waitFor((l) => l.msg === 'lambda background body payload');
    const failed = await host.call('lambda-background', '/?mode=status500', { method: 'POST', control: { invocation: 'background' } });
    assert.equal(failed.status, 500);
    assert.equal((await failed.json()).ok, false);
  });

  test('schedule: a Netlify scheduled function reads {"next_run"} with req.json()', async () => {
    const nextRun = '2030-01-01T00:05:00.000Z';
    const res = await host.call('scheduled', '/.netlify/functions/scheduled', {
      method: 'POST', body: JSON.stringify({ next_run: nextRun }), headers: { 'content-type': 'application/json' },
      control: { invocation: 'schedule', requestId: 'req-sched' },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ok: true });
    const line = await host.logs.waitFor((l) => l.msg === `scheduled run, next at ${nextRun}`);
    assert.equal(line.requestId, 'req-sched');
    assert.equal((await host.invocationLog('req-sched')).invocation, 'schedule');
  });

  test('schedule: a Lambda scheduled function gets the JSON as event.body', async () => {
    const res = await host.call('lambda-scheduled', '/', {
      method: 'POST', body: '{"next_run":"2030-01-01T00:00:00Z"}', headers: { 'content-type': 'application/json' },
      control: { invocation: 'schedule' },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ok: true });
  });

  test('schedule: a failing scheduled function answers 500', async () => {
    const res = await host.call('scheduled', '/', { method: 'POST', body: 'not json', control: { invocation: 'schedule' } });
    assert.equal(res.status, 500);
    assert.equal((await res.json()).ok, false);
  });

  test('framework apps cannot run in the background: 500 with a clear reason', async () => {
    const res = await host.call('express', '/', { method: 'POST', control: { invocation: 'background', params: { default: '' } } });
    assert.equal(res.status, 500);
    assert.match((await res.json()).error, /express app, which can only be invoked synchronously/);
  });
});
