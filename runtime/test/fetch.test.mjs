// The lazy Fetch objects (src/fetch.mjs) against undici's own: every construction and every
// read is done on both, and what user code can observe must be the same — values, errors,
// "already read" state — whether the lazy object answered itself or built undici's.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { inspect } from 'node:util';
import { HostRequest, HostResponse, LAZY_FETCH } from '../src/fetch.mjs';

const NativeResponse = globalThis.Response;
const NativeRequest = globalThis.Request;

/** Everything observable about a Response, body included (which reads it). */
async function observe(response) {
  const seen = {
    status: response.status,
    statusText: response.statusText,
    ok: response.ok,
    type: response.type,
    url: response.url,
    redirected: response.redirected,
    headers: [...response.headers],
    bodyIsNull: response.body === null,
    usedBefore: response.bodyUsed,
  };
  seen.text = await response.text();
  seen.usedAfter = response.bodyUsed;
  seen.again = await response.text().then(() => 'read twice', (err) => `${err.constructor.name}: ${err.message}`);
  return seen;
}

/** The outcome of `make`: what observe() sees, or the error it throws. */
async function outcome(make) {
  let response;
  try {
    response = make();
  } catch (err) {
    return { threw: err.constructor.name };
  }
  return observe(response);
}

const stream = () => new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode('streamed')); c.close(); } });

const CASES = {
  'a string': () => ['hello'],
  'a string and headers': () => ['hello', { headers: { 'X-One': '1', 'content-type': 'text/html' } }],
  'status and statusText': () => ['made', { status: 201, statusText: 'Made It' }],
  'no body': () => [],
  'null body, 204': () => [null, { status: 204 }],
  'empty string': () => [''],
  'bytes': () => [new Uint8Array([104, 105])],
  'an ArrayBuffer': () => [new Uint8Array([111, 107]).buffer],
  'a leading BOM': () => ['\uFEFFbom'],
  'a lone surrogate': () => ['a\uD800b'],
  'a stream': () => [stream()],
  'URLSearchParams': () => [new URLSearchParams({ a: '1' })],
  'a Blob': () => [new Blob(['blob'], { type: 'text/x-blob' })],
  'status as a string': () => ['s', { status: '202' }],
  'Headers init': () => ['h', { headers: new Headers([['x-a', '1'], ['set-cookie', 'a=1'], ['set-cookie', 'b=2']]) }],
  'a body with 204': () => ['x', { status: 204 }],
  'status 99': () => ['x', { status: 99 }],
  'status 600': () => ['x', { status: 600 }],
  'a bad statusText': () => ['x', { statusText: 'line\nbreak' }],
  'a bad header name': () => ['x', { headers: { 'bad name': '1' } }],
  'a bad header value': () => ['x', { headers: { 'x-a': 'a\nb' } }],
  'an init that is not an object': () => ['x', 5],
};

describe('HostResponse', () => {
  test('this Node supports the lazy objects', { skip: !process.version.startsWith('v20.') && 'checked on Node 20 only' }, () => {
    assert.equal(LAZY_FETCH, true);
  });

  for (const [name, args] of Object.entries(CASES)) {
    test(`made from ${name}: observably the same as undici's`, async () => {
      const native = await outcome(() => new NativeResponse(...args()));
      const lazy = await outcome(() => new HostResponse(...args()));
      assert.deepEqual(lazy, native);
    });
  }

  test('json(): content type, body, and undici errors for what cannot be serialised', async () => {
    assert.deepEqual(await outcome(() => HostResponse.json({ a: [1, 'two'] }, { status: 202 })),
      await outcome(() => NativeResponse.json({ a: [1, 'two'] }, { status: 202 })));
    assert.deepEqual(await outcome(() => HostResponse.json('x', { headers: { 'content-type': 'application/vnd.x+json' } })),
      await outcome(() => NativeResponse.json('x', { headers: { 'content-type': 'application/vnd.x+json' } })));
    assert.throws(() => HostResponse.json(undefined), TypeError);
    assert.throws(() => HostResponse.json(1n), TypeError);
    assert.ok(HostResponse.json({}) instanceof HostResponse);
  });

  test('bytes are copied at construction, as undici does', async () => {
    const bytes = new Uint8Array([1, 2, 3]);
    const response = new HostResponse(bytes);
    bytes[0] = 9;
    assert.deepEqual([...new Uint8Array(await response.arrayBuffer())], [1, 2, 3]);
  });

  test('bytes(), arrayBuffer(), json(), blob() and formData() read the body once', async () => {
    assert.deepEqual([...await new HostResponse('hé').bytes()], [...await new NativeResponse('hé').bytes()]);
    assert.equal(new TextDecoder().decode(await new HostResponse('ab').arrayBuffer()), 'ab');
    assert.deepEqual(await new HostResponse('{"a":1}').json(), { a: 1 });
    await assert.rejects(new HostResponse('{nope').json(), SyntaxError);
    const blob = await new HostResponse('blob').blob();
    assert.equal(blob.type, (await new NativeResponse('blob').blob()).type);
    assert.equal(await blob.text(), 'blob');
    const form = await new HostResponse('a=1&b=2', { headers: { 'content-type': 'application/x-www-form-urlencoded' } }).formData();
    assert.equal(form.get('b'), '2');
    const used = new HostResponse('once');
    await used.json().catch(() => {});
    await assert.rejects(used.bytes(), TypeError);
    await assert.rejects(used.arrayBuffer(), TypeError);
  });

  test('body is a stream of the same bytes; reading it marks the response used', async () => {
    const response = new HostResponse('streamed body');
    const { body } = response;
    assert.ok(body instanceof ReadableStream);
    assert.equal(response.bodyUsed, false);
    assert.equal(await new NativeResponse(body).text(), 'streamed body');
    assert.equal(response.bodyUsed, true);
    await assert.rejects(response.text(), TypeError);
  });

  test('clone(): both copies read the body; headers are copies; a used body cannot be cloned', async () => {
    const original = new HostResponse('twice', { status: 203, headers: { 'x-a': '1' } });
    const copy = original.clone();
    copy.headers.set('x-a', '2');
    assert.equal(original.headers.get('x-a'), '1');
    assert.equal(copy.status, 203);
    assert.equal(await original.text(), 'twice');
    assert.equal(await copy.text(), 'twice');
    assert.throws(() => original.clone(), TypeError);
    const streamed = new HostResponse(stream());
    const streamedCopy = streamed.clone();
    assert.equal(await streamed.text(), 'streamed');
    assert.equal(await streamedCopy.text(), 'streamed');
  });

  test('instanceof: every Response is a Response; subclasses keep their own check', () => {
    assert.ok(new HostResponse('x') instanceof NativeResponse);
    assert.ok(new NativeResponse('x') instanceof HostResponse);
    assert.ok(NativeResponse.error() instanceof HostResponse);
    class Mine extends HostResponse {}
    const mine = new Mine('mine', { status: 202 });
    assert.ok(mine instanceof Mine && mine instanceof HostResponse && mine instanceof NativeResponse);
    assert.equal(new NativeResponse('x') instanceof Mine, false);
    assert.equal(mine.status, 202);
    assert.ok(mine.clone() instanceof Mine);
    assert.equal(Object.prototype.toString.call(new HostResponse('x')), '[object Response]');
    assert.equal(HostResponse.name, 'Response');
  });

  test("undici's statics and its own methods work on lazy responses", async () => {
    const redirect = HostResponse.redirect('https://example.com/next', 302);
    assert.equal(redirect.status, 302);
    assert.equal(redirect.headers.get('location'), 'https://example.com/next');
    assert.equal(HostResponse.error().type, 'error');
    const lazy = new HostResponse('via undici', { status: 202, headers: { 'x-a': '1' } });
    assert.equal(NativeResponse.prototype.clone.call(lazy).headers.get('x-a'), '1');
    assert.equal(await NativeResponse.prototype.text.call(lazy), 'via undici');
    assert.equal(lazy.bodyUsed, true);
    assert.match(inspect(new HostResponse('shown')), /Response/);
  });
});

describe('HostRequest', () => {
  const URL_TEXT = 'http://Example.COM/a/../b%20c?q=1';
  const PAIRS = [['accept', 'text/plain'], ['x-multi', 'a'], ['x-multi', 'b']];

  function pair(method, body) {
    const controller = new AbortController();
    const node = body === undefined ? null : Readable.from([Buffer.from(body)]);
    const lazy = new HostRequest(URL_TEXT, method, PAIRS.map((p) => [...p]), node, () => controller.signal);
    const init = { method, headers: PAIRS, signal: controller.signal };
    if (body !== undefined) Object.assign(init, { body: Readable.toWeb(Readable.from([Buffer.from(body)])), duplex: 'half' });
    return { lazy, native: new NativeRequest(URL_TEXT, init), controller };
  }

  async function observeRequest(request) {
    return {
      method: request.method,
      url: request.url,
      headers: [...request.headers],
      bodyIsNull: request.body === null,
      cache: request.cache,
      mode: request.mode,
      redirect: request.redirect,
      usedBefore: request.bodyUsed,
      text: await request.text(),
      usedAfter: request.bodyUsed,
    };
  }

  for (const [method, body] of [['GET', undefined], ['HEAD', undefined], ['POST', 'posted body'], ['DELETE', '']]) {
    test(`${method}: observably the same as undici's`, async () => {
      const { lazy, native } = pair(method, body);
      assert.deepEqual(await observeRequest(lazy), await observeRequest(native));
    });
  }

  test('copies and clones carry URL, headers, body and the abort signal', async () => {
    const { lazy, controller } = pair('POST', 'payload');
    const copy = new NativeRequest(lazy);
    assert.equal(copy.url, 'http://example.com/b%20c?q=1');
    assert.equal(copy.headers.get('x-multi'), 'a, b');
    assert.equal(await copy.text(), 'payload');
    const { lazy: other } = pair('GET');
    const clone = other.clone();
    const rebuilt = new NativeRequest('http://elsewhere.test/', other);
    assert.equal(rebuilt.headers.get('accept'), 'text/plain');
    const reason = new Error('gone');
    controller.abort(reason);
    assert.equal(lazy.signal.aborted, true);
    assert.equal(lazy.signal.reason, reason);
    assert.equal(copy.signal.aborted, true);
    assert.equal(clone.signal.aborted, false, 'a different request, a different client');
  });

  test('headers changed before the body is read are the ones undici sees', async () => {
    const { lazy } = pair('POST', 'x');
    lazy.headers.set('x-added', 'yes');
    assert.equal(new NativeRequest(lazy).headers.get('x-added'), 'yes');
  });

  test('it is a Request to every check user code makes', () => {
    const { lazy } = pair('GET');
    assert.ok(lazy instanceof NativeRequest);
    assert.equal(lazy.constructor, NativeRequest);
    assert.equal(Object.prototype.toString.call(lazy), '[object Request]');
    assert.match(inspect(lazy), /Request/);
  });
});
