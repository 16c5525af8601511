// Netlify Functions v2 dialect over real HTTP against a spawned host.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { fixture, readChunk, startHost } from './harness.mjs';

const fn = (name, file = `netlify/${name}.mjs`, extra = {}) => ({ name, file: fixture(file), dialect: 'netlify', catchAll: null, ...extra });

describe('netlify dialect', () => {
  let host;
  before(async () => {
    host = await startHost({
      functions: [
        fn('context'), fn('empty'), fn('cookies'), fn('env'), fn('next'), fn('stream'), fn('release'),
        fn('duplex'), fn('waituntil'), fn('bad-return'), fn('fetch-object'), fn('legacy'),
        fn('module-exports', 'netlify/module-exports.cjs'), fn('abortable'),
      ],
    });
  });
  after(() => host?.stop());

  test('passes a standard Request with the public URL and sends the returned Response', async () => {
    const res = await host.call('context', '/api/items/42?sort=asc&tag=a&tag=b', {
      headers: { 'x-forwarded-host': 'shop.example.com', 'x-forwarded-proto': 'https', 'x-custom': 'yes' },
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /application\/json/);
    const body = await res.json();
    assert.equal(body.method, 'GET');
    assert.equal(body.url, 'https://shop.example.com/api/items/42?sort=asc&tag=a&tag=b');
    assert.equal(body.contextUrl, body.url);
    assert.equal(body.headers['x-custom'], 'yes');
  });

  test('strips every x-kpages-* control header before user code sees the request', async () => {
    const res = await host.call('context', '/', { control: { geo: { city: 'Berlin' }, extra: { 'x-kpages-anything': 'secret' } } });
    const body = await res.json();
    const leaked = Object.keys(body.headers).filter((h) => h.startsWith('x-kpages-'));
    assert.deepEqual(leaked, []);
  });

  test('falls back to the Host header and http when no x-forwarded-* headers are sent', async () => {
    const body = await (await host.call('context', '/plain?q=1')).json();
    assert.equal(body.url, `http://127.0.0.1:${host.port}/plain?q=1`);
  });

  test('context carries account, deploy, site, server, ip, params and requestId', async () => {
    const res = await host.call('context', '/x', { control: { requestId: 'req-ctx-1', params: { id: '42', slug: 'a/b' }, clientIp: '198.51.100.9' } });
    const body = await res.json();
    assert.deepEqual(body.account, { id: 'acct-789' });
    assert.deepEqual(body.deploy, { context: 'production', id: 'deploy-456', published: true });
    assert.deepEqual(body.site, { id: 'site-123', name: 'kpages-test-site', url: 'https://site.example.test' });
    assert.deepEqual(body.server, { region: 'local' });
    assert.equal(body.ip, '198.51.100.9');
    assert.deepEqual(body.params, { id: '42', slug: 'a/b' });
    assert.equal(body.requestId, 'req-ctx-1');
    assert.equal(body.hasWaitUntil, true);
    assert.equal(body.userEnv, 'user value');
  });

  test('context.geo is decoded from the base64 x-kpages-geo header', async () => {
    const geo = {
      country: { code: 'DE', name: 'Germany' }, city: 'Berlin', subdivision: { code: 'BE', name: 'Berlin' },
      latitude: 52.52, longitude: 13.4, timezone: 'Europe/Berlin', postalCode: '10115',
    };
    const body = await (await host.call('context', '/', { control: { geo } })).json();
    assert.deepEqual(body.geo, geo);
  });

  test('absent or undecodable geo yields an empty geo, not an error', async () => {
    const res = await host.call('context', '/', { control: { extra: { 'x-kpages-geo': '%%%not-base64-json' } } });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.geo.city, undefined);
    assert.equal(body.geo.country, undefined);
  });

  test('adds the platform headers Netlify code reads (x-nf-client-connection-ip, x-nf-request-id)', async () => {
    const body = await (await host.call('context', '/', { control: { clientIp: '192.0.2.44', requestId: 'req-nf-hdr' } })).json();
    assert.equal(body.headers['x-nf-client-connection-ip'], '192.0.2.44');
    assert.equal(body.headers['x-nf-request-id'], 'req-nf-hdr');
  });

  test('a client cannot choose the client IP or request id a function sees', async () => {
    const spoofed = { 'x-nf-client-connection-ip': '10.0.0.1', 'Client-IP': '10.0.0.2', 'x-nf-request-id': 'forged' };
    const res = await host.call('context', '/', { control: { clientIp: '192.0.2.45', requestId: 'req-nf-real' }, headers: spoofed });
    const body = await res.json();
    assert.equal(body.headers['x-nf-client-connection-ip'], '192.0.2.45');
    assert.equal(body.headers['client-ip'], '192.0.2.45');
    assert.equal(body.headers['x-nf-request-id'], 'req-nf-real');
  });

  test('Netlify.context is the current invocation context inside a function', async () => {
    const body = await (await host.call('context', '/')).json();
    assert.equal(body.sameAsGlobal, true);
  });

  test('a POST body reaches req.text()', async () => {
    const res = await host.call('context', '/submit', { method: 'POST', body: 'name=kpages', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    const body = await res.json();
    assert.equal(body.method, 'POST');
    assert.equal(body.body, 'name=kpages');
  });

  test('returning undefined answers 204 with no body', async () => {
    const res = await host.call('empty', '/');
    assert.equal(res.status, 204);
    assert.equal(await res.text(), '');
  });

  test('a large request body the function never reads does not stall the keep-alive connection', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const post = (size) => new Promise((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1', port: host.port, method: 'POST', path: '/', agent,
        headers: { 'x-kpages-function': 'empty', 'content-length': size },
      }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode, reused: req.reusedSocket }));
      });
      req.on('error', reject);
      req.end(Buffer.alloc(size, 97));
    });
    try {
      assert.deepEqual(await post(2_000_000), { status: 204, reused: false });
      assert.deepEqual(await post(10), { status: 204, reused: true });
    } finally {
      agent.destroy();
    }
  });

  test('a HEAD request gets the headers but no body', async () => {
    const res = await host.call('context', '/', { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /json/);
    assert.equal(await res.text(), '');
  });

  test('context.cookies reads request cookies and set/delete add Set-Cookie headers', async () => {
    const res = await host.call('cookies', '/', { headers: { cookie: 'session=abc%20123; other=x' } });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { session: 'abc 123', missing: null });
    const cookies = res.headers.getSetCookie();
    assert.equal(cookies.length, 2);
    assert.equal(cookies[0], 'theme=dark%20mode; Max-Age=3600; Path=/app; Secure; HttpOnly; SameSite=Lax');
    assert.match(cookies[1], /^old=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=\//);
  });

  test('Netlify.env get/has/toObject read the process environment', async () => {
    const body = await (await host.call('env', '/')).json();
    assert.equal(body.get, 'user value');
    assert.equal(body.has, true);
    assert.equal(body.hasMissing, false);
    assert.equal(body.toObjectHasSetting, 'user value');
    assert.equal(body.toObjectIsPlain, true);
  });

  test('Netlify.env.set and delete change process.env for later invocations (documented choice)', async () => {
    const set = await (await host.call('env', '/?op=set')).json();
    assert.equal(set.setValue, 'was set');
    assert.equal(set.processEnvSetValue, 'was set');
    const later = await (await host.call('env', '/')).json();
    assert.equal(later.setValue, 'was set');
    const deleted = await (await host.call('env', '/?op=delete')).json();
    assert.equal(deleted.setValue, null);
    assert.equal(deleted.processEnvSetValue, null);
  });

  test('context.next() throws a clear error saying it is only for edge functions', async () => {
    const body = await (await host.call('next', '/')).json();
    assert.match(body.message, /only available in Netlify Edge Functions/);
  });

  test('context.json() builds a JSON Response', async () => {
    const res = await host.call('cookies', '/');
    assert.match(res.headers.get('content-type'), /application\/json/);
  });

  test('a ReadableStream body reaches the client chunk by chunk as it is produced', async () => {
    const gateName = `stream-${Date.now()}`;
    const res = await host.call('stream', `/?gate=${gateName}`);
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    // The second chunk cannot exist yet: the function waits for the gate we have not opened.
    assert.equal(await readChunk(reader), 'first|');
    const released = await host.call('release', `/?gate=${gateName}`);
    assert.equal(await released.text(), `released ${gateName}`);
    let rest = '';
    for (let chunk = await readChunk(reader); chunk !== null; chunk = await readChunk(reader)) rest += chunk;
    assert.equal(rest, 'second');
  });

  test('a request body streams into req.body while the client is still sending', async () => {
    const req = host.rawRequest({ method: 'POST', path: '/', headers: { 'x-kpages-function': 'duplex', 'x-kpages-params': '{}', 'transfer-encoding': 'chunked' } });
    const response = new Promise((resolve) => req.once('response', resolve));
    req.write('hello ');
    const res = await response;
    res.setEncoding('utf8');
    const chunks = res[Symbol.asyncIterator]();
    // The function echoed part one before the request body was complete.
    assert.equal((await chunks.next()).value, 'HELLO ');
    req.end('world');
    let rest = '';
    for (let next = await chunks.next(); !next.done; next = await chunks.next()) rest += next.value;
    assert.equal(rest, 'WORLD');
  });

  test('req.signal aborts when the client disconnects mid-invocation', async () => {
    const controller = new AbortController();
    const pending = host.call('abortable', '/', { control: { requestId: 'req-abort' }, signal: controller.signal });
    await host.logs.waitFor((l) => l.msg === 'waiting for the client to leave' && l.requestId === 'req-abort');
    controller.abort();
    await assert.rejects(pending);
    const line = await host.logs.waitFor((l) => l.msg.startsWith('saw abort') && l.requestId === 'req-abort');
    assert.equal(line.msg, 'saw abort: true');
  });

  test('waitUntil: the response is sent first, the promise is kept alive and its failure logged', async () => {
    const gateName = `wu-${Date.now()}`;
    const res = await host.call('waituntil', `/?gate=${gateName}`, { control: { requestId: 'req-waituntil' } });
    assert.equal(await res.text(), 'sent before waitUntil work');
    assert.equal(host.logs.find((l) => l.msg === `waitUntil finished ${gateName}`).length, 0);
    await host.call('release', `/?gate=${gateName}`);
    const done = await host.logs.waitFor((l) => l.msg === `waitUntil finished ${gateName}`);
    assert.equal(done.requestId, 'req-waituntil');
    const failed = await host.logs.waitFor((l) => l.msg === 'waitUntil promise rejected' && l.requestId === 'req-waituntil');
    assert.equal(failed.error, `waitUntil failed ${gateName}`);
    assert.equal(failed.function, 'waituntil');
  });

  test('returning something other than a Response or undefined is a 500 naming the accepted types', async () => {
    const res = await host.call('bad-return', '/', { control: { requestId: 'req-bad-return' } });
    assert.equal(res.status, 500);
    const body = await res.json();
    assert.equal(body.requestId, 'req-bad-return');
    const line = await host.logs.waitFor((l) => l.msg === 'function threw' && l.requestId === 'req-bad-return');
    assert.match(line.error, /Accepted types are 'Response' or 'undefined'/);
  });

  test('a default-exported object with fetch() is a v2 function', async () => {
    const res = await host.call('fetch-object', '/', { control: { params: { name: 'ada' } } });
    assert.equal(await res.text(), 'hello from fetch() ada');
  });

  test('a module exporting only `handler` runs in Lambda compatibility mode', async () => {
    const res = await host.call('legacy', '/.netlify/functions/legacy', { method: 'PUT', body: 'x' });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'legacy PUT /.netlify/functions/legacy');
  });

  test('a CommonJS module.exports = { handler } runs in Lambda compatibility mode', async () => {
    const res = await host.call('module-exports', '/?q=works');
    assert.equal(await res.text(), 'cjs module.exports works');
  });
});
