// Structured logs: one line per invocation, and user console output tagged with the
// invocation it came from, even when invocations overlap.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fixture, startHost } from './harness.mjs';

describe('logs', () => {
  let host;
  before(async () => {
    host = await startHost({
      functions: [
        { name: 'logs', file: fixture('netlify/logs.mjs'), dialect: 'netlify' },
        { name: 'toplevel', file: fixture('netlify/toplevel-log.mjs'), dialect: 'netlify' },
        { name: 'release', file: fixture('netlify/release.mjs'), dialect: 'netlify' },
      ],
    });
  });
  after(() => host?.stop());

  test('every stdout line is JSON', () => {
    assert.ok(host.logs.lines.length > 0);
    assert.deepEqual(host.logs.lines.filter((l) => l.unparsed !== undefined), []);
  });

  test('one invocation line with requestId, function, invocation, status and durationMs', async () => {
    await (await host.call('logs', '/?tag=inv', { control: { requestId: 'req-log-inv' }, headers: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } })).text();
    const line = await host.invocationLog('req-log-inv');
    assert.equal(line.level, 'info');
    assert.equal(line.function, 'logs');
    assert.equal(line.invocation, 'sync');
    assert.equal(line.status, 200);
    assert.equal(typeof line.durationMs, 'number');
    assert.ok(line.durationMs >= 0);
    assert.equal(line.traceparent, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    assert.equal(host.logs.find((l) => l.msg === 'invocation' && l.requestId === 'req-log-inv').length, 1);
  });

  test('console.log/info/warn/error/debug and context.log become tagged JSON lines with levels', async () => {
    await (await host.call('logs', '/?tag=lv', { control: { requestId: 'req-log-levels' } })).text();
    await host.invocationLog('req-log-levels');
    const mine = host.logs.find((l) => l.requestId === 'req-log-levels' && l.msg !== 'invocation');
    const byMsg = Object.fromEntries(mine.map((l) => [l.msg, l]));
    assert.equal(byMsg['log line lv'].level, 'info');
    assert.equal(byMsg['info line lv'].level, 'info');
    assert.equal(byMsg['warn line lv'].level, 'warn');
    assert.equal(byMsg['error line lv'].level, 'error');
    assert.equal(byMsg['debug line lv'].level, 'debug');
    assert.equal(byMsg['context.log line lv'].level, 'info');
    assert.equal(byMsg[`{ dir: 'lv' }`].level, 'info');
    assert.ok(mine.some((l) => l.msg.includes('table') && l.msg.includes('lv')), 'console.table output is captured');
    for (const line of mine) assert.equal(line.function, 'logs');
  });

  test('concurrent invocations keep their own tags across awaits', async () => {
    const a = `a-${Date.now()}`;
    const b = `b-${Date.now()}`;
    const ra = host.call('logs', `/?tag=${a}&gate=${a}`, { control: { requestId: `req-${a}` } });
    const rb = host.call('logs', `/?tag=${b}&gate=${b}`, { control: { requestId: `req-${b}` } });
    // Both are now suspended mid-invocation.
    await host.logs.waitFor((l) => l.msg === `log line ${a}`);
    await host.logs.waitFor((l) => l.msg === `log line ${b}`);
    await host.call('release', `/?gate=${b}`);
    await host.call('release', `/?gate=${a}`);
    assert.equal(await (await ra).text(), a);
    assert.equal(await (await rb).text(), b);
    const afterA = await host.logs.waitFor((l) => l.msg === `after gate ${a}`);
    const afterB = await host.logs.waitFor((l) => l.msg === `after gate ${b}`);
    assert.equal(afterA.requestId, `req-${a}`);
    assert.equal(afterB.requestId, `req-${b}`);
  });

  test('console output outside any invocation (module top level) is logged untagged', async () => {
    const line = await host.logs.waitFor((l) => l.msg === 'module top-level log');
    assert.equal(line.requestId, undefined);
    assert.equal(line.source, 'console');
  });

  test('a listening line carries the actual port', () => {
    const line = host.logs.find((l) => l.msg === 'listening')[0];
    assert.equal(line.port, host.port);
    assert.ok(line.port > 0);
  });
});
