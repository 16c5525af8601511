// EdgeOne Pages Node Functions dialect, including Express/Koa framework mode.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fixture, readChunk, startHost } from './harness.mjs';

const fn = (name, file, catchAll = null) => ({ name, file: fixture(`edgeone/${file}`), dialect: 'edgeone', catchAll });

describe('edgeone dialect', () => {
  let host;
  before(async () => {
    host = await startHost({
      functions: [
        fn('methods', 'methods.mjs'), fn('only-get', 'only-get.mjs'), fn('context', 'context.mjs'),
        fn('post-body', 'post-body.mjs'), fn('bad-return', 'bad-return.mjs'), fn('app-cjs', 'app-cjs.cjs'),
        fn('express', 'express/[[default]].mjs', 'default'), fn('koa', 'koa/[[default]].mjs', 'default'),
        { name: 'release', file: fixture('netlify/release.mjs'), dialect: 'netlify' },
      ],
    });
  });
  after(() => host?.stop());

  test('onRequest handles methods without a specific export', async () => {
    assert.equal(await (await host.call('methods', '/', { method: 'GET' })).text(), 'onRequest GET');
    assert.equal(await (await host.call('methods', '/', { method: 'PATCH' })).text(), 'onRequest PATCH');
  });

  test('a method-specific export wins over onRequest', async () => {
    assert.equal(await (await host.call('methods', '/', { method: 'POST', body: 'x' })).text(), 'onRequestPost');
    assert.equal(await (await host.call('methods', '/', { method: 'DELETE' })).text(), 'onRequestDelete');
  });

  test('no matching handler and no onRequest answers 405 with Allow', async () => {
    assert.equal(await (await host.call('only-get', '/')).text(), 'only GET');
    assert.equal(await (await host.call('only-get', '/', { method: 'PUT' })).text(), 'only PUT');
    const res = await host.call('only-get', '/', { method: 'POST', body: 'x' });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'GET, PUT');
  });

  test('`export default function onRequest(context)` gets request, params, env, uuid, clientIp, server, geo', async () => {
    const geo = { country: { code: 'CN', name: 'China' }, subdivision: { code: 'GD', name: 'Guangdong' }, city: 'Shenzhen', latitude: 22.5, longitude: 114.1, timezone: 'Asia/Shanghai' };
    const res = await host.call('context', '/users/9?full=1', {
      control: { params: { id: '9' }, clientIp: '198.51.100.20', requestId: 'req-eo-ctx', geo },
      headers: { 'x-forwarded-host': 'pages.example.cn', 'x-forwarded-proto': 'https' },
    });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.url, 'https://pages.example.cn/users/9?full=1');
    assert.deepEqual(body.params, { id: '9' });
    assert.equal(body.envSetting, 'user value');
    assert.equal(body.envSiteId, 'site-123');
    assert.match(body.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(body.clientIp, '198.51.100.20');
    assert.deepEqual(body.server, { region: 'local', requestId: 'req-eo-ctx' });
    assert.deepEqual(body.geo, {
      countryName: 'China', countryCodeAlpha2: 'CN', regionName: 'Guangdong', regionCode: 'GD',
      cityName: 'Shenzhen', latitude: 22.5, longitude: 114.1, timezone: 'Asia/Shanghai',
    });
    assert.equal(Object.keys(body.headers).some((h) => h.startsWith('x-kpages-')), false);
  });

  test('each invocation gets a fresh uuid', async () => {
    const a = (await (await host.call('context', '/')).json()).uuid;
    const b = (await (await host.call('context', '/')).json()).uuid;
    assert.notEqual(a, b);
  });

  test('context.request streams a JSON POST body', async () => {
    const res = await host.call('post-body', '/', { method: 'POST', body: JSON.stringify({ n: 5 }), headers: { 'content-type': 'application/json' } });
    assert.deepEqual(await res.json(), { received: { n: 5 } });
  });

  test('a handler returning a non-Response is a 500', async () => {
    const res = await host.call('bad-return', '/', { control: { requestId: 'req-eo-bad' } });
    assert.equal(res.status, 500);
    const line = await host.logs.waitFor((l) => l.msg === 'function threw' && l.requestId === 'req-eo-bad');
    assert.match(line.error, /must return a Response/);
  });

  test('CommonJS modules with exports.onRequestGet work', async () => {
    assert.equal(await (await host.call('app-cjs', '/')).text(), 'cjs onRequestGet');
  });

  describe('Express app in [[default]] (framework mode)', () => {
    test('the mount point itself is "/" to the app', async () => {
      const res = await host.call('express', '/express', { control: { params: { default: '' } } });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { route: 'root', url: '/', query: {} });
    });

    test('the rest of the path and the query string reach the app', async () => {
      const res = await host.call('express', '/express/users/77?expand=yes', { control: { params: { default: 'users/77' } } });
      assert.deepEqual(await res.json(), { route: 'user', id: '77', url: '/users/77?expand=yes', query: { expand: 'yes' } });
    });

    test('percent-encoded segments stay encoded for the app', async () => {
      const res = await host.call('express', '/express/users/a%20b', { control: { params: { default: 'users/a b' } } });
      const body = await res.json();
      assert.equal(body.url, '/users/a%20b');
      assert.equal(body.id, 'a b');
    });

    test('request bodies and statuses pass through the app', async () => {
      const res = await host.call('express', '/express/echo', {
        method: 'POST', control: { params: { default: 'echo' } },
        body: JSON.stringify({ hello: 'express' }), headers: { 'content-type': 'application/json' },
      });
      assert.equal(res.status, 201);
      assert.deepEqual(await res.json(), { body: { hello: 'express' } });
    });

    test('control headers are stripped from req.headers and req.rawHeaders', async () => {
      const res = await host.call('express', '/express/headers', { control: { params: { default: 'headers' } }, headers: { 'x-user': 'kept' } });
      const { headers, rawHeaders } = await res.json();
      assert.equal(headers['x-user'], 'kept');
      assert.equal(Object.keys(headers).some((h) => h.startsWith('x-kpages-')), false);
      assert.equal(rawHeaders.some((h) => h.toLowerCase().startsWith('x-kpages-')), false);
    });

    test('the app streams its response directly (first write arrives before the app ends)', async () => {
      const gateName = `express-${Date.now()}`;
      const res = await host.call('express', `/express/stream?gate=${gateName}`, { control: { params: { default: 'stream' } } });
      const reader = res.body.getReader();
      assert.equal(await readChunk(reader), 'express-first|');
      await host.call('release', `/?gate=${gateName}`);
      let rest = '';
      for (let chunk = await readChunk(reader); chunk !== null; chunk = await readChunk(reader)) rest += chunk;
      assert.equal(rest, 'express-second');
    });

    test('an unknown route gets the app\'s own 404, and a route error its own 500', async () => {
      const missing = await host.call('express', '/express/nope', { control: { params: { default: 'nope' } } });
      assert.equal(missing.status, 404);
      assert.match(await missing.text(), /Cannot GET \/nope/);
      const boom = await host.call('express', '/express/boom', { control: { params: { default: 'boom' } } });
      assert.equal(boom.status, 500);
    });

    test('the invocation is logged with the status the app sent', async () => {
      await host.call('express', '/express/nope', { control: { params: { default: 'nope' }, requestId: 'req-express-404' } });
      const line = await host.invocationLog('req-express-404');
      assert.equal(line.status, 404);
    });
  });

  describe('Koa app in [[default]] (framework mode)', () => {
    test('the mount point is "/" and the rest of the path follows', async () => {
      const root = await (await host.call('koa', '/koa', { control: { params: { default: '' } } })).json();
      assert.deepEqual(root, { framework: 'koa', path: '/', querystring: '', hasControlHeader: false });
      const nested = await (await host.call('koa', '/koa/a/b?x=1', { control: { params: { default: 'a/b' } } })).json();
      assert.deepEqual(nested, { framework: 'koa', path: '/a/b', querystring: 'x=1', hasControlHeader: false });
    });

    test('statuses set by Koa middleware reach the client', async () => {
      const res = await host.call('koa', '/koa/teapot', { control: { params: { default: 'teapot' } } });
      assert.equal(res.status, 418);
      assert.equal(await res.text(), 'short and stout');
    });
  });
});
