// Lambda compatibility dialect (`handler(event, context)`) over real HTTP.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fixture, startHost } from './harness.mjs';

const fn = (name, file, dialect = 'lambda') => ({ name, file: fixture(file), dialect, catchAll: null, timeoutMs: 5000 });

describe('lambda dialect', () => {
  let host;
  before(async () => {
    host = await startHost({
      functions: [
        fn('event', 'lambda/event.mjs'), fn('respond', 'lambda/respond.mjs'),
        fn('commonjs', 'lambda/commonjs.cjs'), fn('callback', 'lambda/callback.cjs'),
        fn('event-via-netlify', 'lambda/event.mjs', 'netlify'),
      ],
    });
  });
  after(() => host?.stop());

  const eventOf = async (res) => (await res.json()).event;

  test('event has rawUrl, rawQuery, path and httpMethod from the public URL', async () => {
    const event = await eventOf(await host.call('event', '/api/things/7?x=1&y=two', {
      headers: { 'x-forwarded-host': 'www.example.org', 'x-forwarded-proto': 'https' },
    }));
    assert.equal(event.rawUrl, 'https://www.example.org/api/things/7?x=1&y=two');
    assert.equal(event.rawQuery, 'x=1&y=two');
    assert.equal(event.path, '/api/things/7');
    assert.equal(event.httpMethod, 'GET');
  });

  test('a client cannot choose the client IP a Lambda-style function sees', async () => {
    const event = await eventOf(await host.call('event-via-netlify', '/', {
      control: { clientIp: '192.0.2.46' },
      headers: { 'x-nf-client-connection-ip': '10.0.0.1', 'client-ip': '10.0.0.2' },
    }));
    assert.equal(event.headers['x-nf-client-connection-ip'], '192.0.2.46');
    assert.equal(event.headers['client-ip'], '192.0.2.46');
    assert.deepEqual(event.multiValueHeaders['client-ip'], ['192.0.2.46']);
  });

  test('query parameters: single values joined with ", ", every value in the multi-value map', async () => {
    const event = await eventOf(await host.call('event', '/?tag=a&tag=b&solo=1'));
    assert.deepEqual(event.queryStringParameters, { tag: 'a, b', solo: '1' });
    assert.deepEqual(event.multiValueQueryStringParameters, { tag: ['a', 'b'], solo: ['1'] });
  });

  test('headers are lower-cased and comma-joined; multiValueHeaders keep each value; control headers are gone', async () => {
    const req = host.rawRequest({ path: '/', headers: { 'x-kpages-function': 'event', 'X-Repeat': ['one', 'two'], 'X-Mixed-Case': 'v' } });
    req.end();
    const [res] = await new Promise((resolve) => req.once('response', (r) => resolve([r])));
    let text = '';
    for await (const chunk of res) text += chunk;
    const { event } = JSON.parse(text);
    assert.equal(event.headers['x-repeat'], 'one, two');
    assert.deepEqual(event.multiValueHeaders['x-repeat'], ['one', 'two']);
    assert.equal(event.headers['x-mixed-case'], 'v');
    assert.equal(Object.keys(event.headers).some((h) => h.startsWith('x-kpages-')), false);
    assert.equal(Object.keys(event.multiValueHeaders).some((h) => h.startsWith('x-kpages-')), false);
  });

  test('a text body arrives as a plain string with isBase64Encoded false', async () => {
    const event = await eventOf(await host.call('event', '/', { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } }));
    assert.equal(event.body, '{"a":1}');
    assert.equal(event.isBase64Encoded, false);
  });

  test('a binary body arrives base64-encoded with isBase64Encoded true', async () => {
    const bytes = Buffer.from([0, 1, 2, 200, 255]);
    const event = await eventOf(await host.call('event', '/', { method: 'POST', body: bytes, headers: { 'content-type': 'application/octet-stream' } }));
    assert.equal(event.isBase64Encoded, true);
    assert.deepEqual(Buffer.from(event.body, 'base64'), bytes);
  });

  test('a request without a body has an empty string body', async () => {
    const event = await eventOf(await host.call('event', '/'));
    assert.equal(event.body, '');
    assert.equal(event.isBase64Encoded, false);
  });

  test('context has functionName, awsRequestId and getRemainingTimeInMillis within timeoutMs', async () => {
    const { context } = await (await host.call('event', '/', { control: { requestId: 'req-lambda-ctx' } })).json();
    assert.equal(context.functionName, 'event');
    assert.equal(context.awsRequestId, 'req-lambda-ctx');
    assert.ok(context.remainingMs > 0 && context.remainingMs <= 5000, `remaining ${context.remainingMs}`);
  });

  test('response statusCode, headers and multiValueHeaders are sent (numbers stringified, several Set-Cookie)', async () => {
    const res = await host.call('respond', '/?kind=headers');
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('x-single'), 'one');
    assert.equal(res.headers.get('x-number'), '42');
    assert.equal(res.headers.get('x-multi'), 'p, q');
    assert.deepEqual(res.headers.getSetCookie(), ['a=1; Path=/', 'b=2; Path=/']);
    assert.equal(await res.text(), 'with headers');
  });

  test('isBase64Encoded responses are decoded to bytes', async () => {
    const res = await host.call('respond', '/?kind=base64');
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), Buffer.from([0, 1, 2, 254, 255]));
  });

  test('a stream body (as Netlify\'s stream() helper returns) is piped to the client', async () => {
    const res = await host.call('respond', '/?kind=stream');
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'streamed lambda body');
  });

  test('a response without a numerical statusCode is a 500, logged with the reason', async () => {
    const res = await host.call('respond', '/?kind=nostatus', { control: { requestId: 'req-nostatus' } });
    assert.equal(res.status, 500);
    assert.equal((await res.json()).requestId, 'req-nostatus');
    const line = await host.logs.waitFor((l) => l.msg === 'function threw' && l.requestId === 'req-nostatus');
    assert.match(line.error, /must have a numerical statusCode/);
  });

  test('returning undefined is a 500', async () => {
    const res = await host.call('respond', '/?kind=undefined');
    assert.equal(res.status, 500);
  });

  test('statusCode 204 without a body is sent as 204', async () => {
    const res = await host.call('respond', '/?kind=nobody');
    assert.equal(res.status, 204);
    assert.equal(await res.text(), '');
  });

  test('CommonJS exports.handler is loaded through dynamic import', async () => {
    const res = await host.call('commonjs', '/cjs/path', { method: 'DELETE' });
    assert.equal(res.status, 201);
    assert.equal(await res.text(), 'cjs DELETE /cjs/path');
  });

  test('callback-style handlers answer through the callback, and callback errors are 500s', async () => {
    const ok = await host.call('callback', '/');
    assert.equal(await ok.text(), 'via callback');
    const failed = await host.call('callback', '/?fail=1');
    assert.equal(failed.status, 500);
  });

  test('netlify-dialect modules with only `handler` get the same full event', async () => {
    const event = await eventOf(await host.call('event-via-netlify', '/n?a=1'));
    assert.equal(event.path, '/n');
    assert.deepEqual(event.queryStringParameters, { a: '1' });
  });
});
