// Failure rules: user errors become statuses, load failures are isolated and reported,
// and nothing user code does takes the process down.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fixture, startHost } from './harness.mjs';

const netlify = (name, extra = {}) => ({ name, file: fixture(`netlify/${name}.mjs`), dialect: 'netlify', ...extra });

// Broken modules are written at test time (not committed as .mjs files) so no test runner
// ever imports them by accident.
const BROKEN_FILES = {
  'broken/syntax.mjs': 'export default async () => { return new Response("unclosed";\n',
  'broken/throws-at-load.mjs': 'throw new Error("configuration missing at import time");\nexport default () => new Response("never");\n',
  'broken/no-handler.mjs': 'export const somethingElse = 1;\n',
  'broken/edgeone-nothing.mjs': 'export const notAHandler = true;\n',
};

describe('failures', () => {
  let host;
  before(async () => {
    host = await startHost({
      files: BROKEN_FILES,
      functions: [
        netlify('throws'), netlify('rejects'), netlify('crashy'), netlify('context'),
        netlify('hang', { timeoutMs: 300 }), netlify('stream-error'), netlify('hang-stream', { timeoutMs: 300 }),
        { name: 'syntax', file: 'broken/syntax.mjs', dialect: 'netlify' },
        { name: 'throws-at-load', file: 'broken/throws-at-load.mjs', dialect: 'netlify' },
        { name: 'no-handler', file: 'broken/no-handler.mjs', dialect: 'lambda' },
        { name: 'edgeone-nothing', file: 'broken/edgeone-nothing.mjs', dialect: 'edgeone' },
        { name: 'missing-file', file: 'broken/does-not-exist.mjs', dialect: 'netlify' },
      ],
    });
  });
  after(() => host?.stop());

  test('a thrown error is a 500 with the request id in the body and the stack in the logs', async () => {
    const res = await host.call('throws', '/', { control: { requestId: 'req-throw-1' } });
    assert.equal(res.status, 500);
    const body = await res.json();
    assert.equal(body.requestId, 'req-throw-1');
    assert.match(body.error, /req-throw-1/);
    const line = await host.logs.waitFor((l) => l.msg === 'function threw' && l.requestId === 'req-throw-1');
    assert.equal(line.level, 'error');
    assert.equal(line.function, 'throws');
    assert.equal(line.error, 'kaboom from a netlify function');
    assert.match(line.stack, /throws\.mjs:\d+/);
  });

  test('in production the error message stays in the logs, not in the response body', async () => {
    const res = await host.call('throws', '/');
    const text = await res.text();
    assert.doesNotMatch(text, /kaboom/);
  });

  test('a rejected promise is a 500 with the request id', async () => {
    const res = await host.call('rejects', '/', { control: { requestId: 'req-reject-1' } });
    assert.equal(res.status, 500);
    assert.equal((await res.json()).requestId, 'req-reject-1');
    const line = await host.logs.waitFor((l) => l.msg === 'function threw' && l.requestId === 'req-reject-1');
    assert.equal(line.error, 'rejected from a netlify function');
  });

  test('uncaught exceptions and unhandled rejections from user code are logged, and the process keeps serving', async () => {
    const res = await host.call('crashy', '/?tag=c1');
    assert.equal(await res.text(), 'still answered');
    const uncaught = await host.logs.waitFor((l) => l.msg === 'uncaught exception' && l.error === 'uncaught in timer c1');
    assert.match(uncaught.stack, /crashy\.mjs/);
    await host.logs.waitFor((l) => l.msg === 'unhandled promise rejection' && l.error === 'unhandled rejection c1');
    const after = await host.call('context', '/');
    assert.equal(after.status, 200);
    assert.equal(host.child.exitCode, null);
  });

  test('readiness reports every function, loaded or failed with its reason, and is still ready', async () => {
    const ready = await host.waitReady();
    assert.equal(ready.ready, true);
    assert.equal(ready.functions.throws, 'loaded');
    assert.equal(ready.functions.context, 'loaded');
    assert.match(ready.functions.syntax, /^failed: .*SyntaxError|^failed: .*missing \) after argument list|^failed: /);
    assert.match(ready.functions['throws-at-load'], /^failed: configuration missing at import time$/);
    assert.match(ready.functions['no-handler'], /^failed: expected a Lambda-compatible "handler" export.*found exports: somethingElse/);
    assert.match(ready.functions['edgeone-nothing'], /^failed: expected an EdgeOne handler.*found exports: notAHandler/);
    assert.match(ready.functions['missing-file'], /^failed: .*(Cannot find module|ERR_MODULE_NOT_FOUND|does-not-exist)/);
  });

  test('a load failure is logged naming the file and why', async () => {
    const line = await host.logs.waitFor((l) => l.msg === 'function failed to load' && l.function === 'throws-at-load');
    assert.equal(line.level, 'error');
    assert.match(line.file, /broken\/throws-at-load\.mjs$/);
    assert.equal(line.error, 'configuration missing at import time');
    const syntax = await host.logs.waitFor((l) => l.msg === 'function failed to load' && l.function === 'syntax');
    assert.match(syntax.file, /broken\/syntax\.mjs$/);
    assert.ok(syntax.error.length > 0);
  });

  test('calling a function that failed to load is a 500 naming the file and the reason', async () => {
    const res = await host.call('throws-at-load', '/', { control: { requestId: 'req-load-fail' } });
    assert.equal(res.status, 500);
    const body = await res.json();
    assert.match(body.error, /broken\/throws-at-load\.mjs/);
    assert.match(body.error, /configuration missing at import time/);
    assert.equal(body.requestId, 'req-load-fail');
    const line = await host.invocationLog('req-load-fail');
    assert.equal(line.status, 500);
  });

  test('one broken function does not affect the others', async () => {
    const [broken, healthy] = await Promise.all([host.call('syntax', '/'), host.call('context', '/')]);
    assert.equal(broken.status, 500);
    assert.equal(healthy.status, 200);
  });

  test('a body stream that errors after the headers cuts the connection and logs the error', async () => {
    const res = await host.call('stream-error', '/', { control: { requestId: 'req-stream-error' } });
    assert.equal(res.status, 200);
    await assert.rejects(res.text());
    const line = await host.logs.waitFor((l) => l.msg === 'function threw' && l.requestId === 'req-stream-error');
    assert.equal(line.error, 'stream broke midway');
    assert.equal((await host.invocationLog('req-stream-error')).status, 500);
  });

  test('a sync invocation past timeoutMs is a 504 with the request id', async () => {
    const res = await host.call('hang', '/', { control: { requestId: 'req-timeout-1' } });
    assert.equal(res.status, 504);
    const body = await res.json();
    assert.equal(body.requestId, 'req-timeout-1');
    assert.match(body.error, /did not finish within 300 ms/);
    const line = await host.invocationLog('req-timeout-1');
    assert.equal(line.status, 504);
    assert.ok(line.durationMs >= 290, `durationMs ${line.durationMs}`);
  });

  test('a streamed response still running at timeoutMs is cut off, not left hanging', async () => {
    const res = await host.call('hang-stream', '/', { control: { requestId: 'req-timeout-stream' } });
    assert.equal(res.status, 200);
    await assert.rejects(res.text());
    const line = await host.invocationLog('req-timeout-stream');
    assert.equal(line.status, 504);
  });
});

describe('failure details in kpages dev', () => {
  let host;
  before(async () => {
    host = await startHost({ functions: [netlify('throws')], env: { CONTEXT: 'dev' } });
  });
  after(() => host?.stop());

  test('CONTEXT=dev adds the error message to the 500 body for the developer', async () => {
    const body = await (await host.call('throws', '/')).json();
    assert.equal(body.detail, 'kaboom from a netlify function');
  });
});
