// How returned Responses reach the client: bodies complete when the function returns go out
// in one write with an exact content-length; bodies that arrive over time are streamed; no
// body for HEAD, 204 and 304. Also request.signal through copies of the request, and the
// order of buffered log lines. Checked on the wire with node:http, not fetch, so framing
// headers are visible as sent.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { once } from 'node:events';
import { fixture, startHost } from './harness.mjs';
import { RESPONSE_STATE } from '../src/web.mjs';
import { LAZY_FETCH } from '../src/fetch.mjs';

const fn = (name) => ({ name, file: fixture(`netlify/${name}.mjs`), dialect: 'netlify', catchAll: null });

describe('response bodies', () => {
  let host;
  before(async () => {
    host = await startHost({ functions: [fn('bodies'), fn('signals'), fn('signal-after'), fn('release')] });
  });
  after(() => host?.stop());

  /** One request over a fresh connection; resolves with status, headers and the whole body. */
  async function get(path, { method = 'GET', name = 'bodies' } = {}) {
    const req = http.request({ host: '127.0.0.1', port: host.port, path, method, headers: { 'x-kpages-function': name }, agent: false });
    req.end();
    const [res] = await once(req, 'response');
    const chunks = [];
    for await (const chunk of res) chunks.push(chunk);
    return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
  }

  test('this Node takes the fast paths (the internals they read were found)', { skip: !process.version.startsWith('v20.') && 'checked on Node 20 only' }, () => {
    assert.equal(LAZY_FETCH, true);
    assert.equal(typeof RESPONSE_STATE, 'symbol');
  });

  test('a string body is sent with the content-length of its UTF-8 bytes', async () => {
    const res = await get('/?kind=string');
    const expected = Buffer.from('héllo, wörld ✓\n', 'utf8');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], String(expected.length));
    assert.equal(res.headers['transfer-encoding'], undefined);
    assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
    assert.deepEqual(res.body, expected);
  });

  test('a Uint8Array body (and a view into a larger buffer) is sent byte for byte', async () => {
    const bytes = await get('/?kind=bytes');
    assert.equal(bytes.headers['content-length'], '6');
    assert.deepEqual([...bytes.body], [0, 1, 2, 253, 254, 255]);
    const view = await get('/?kind=bytes-view');
    assert.equal(view.headers['content-length'], '3');
    assert.deepEqual([...view.body], [1, 2, 3]);
  });

  test('empty and null bodies are sent with content-length 0', async () => {
    for (const kind of ['empty-string', 'null']) {
      const res = await get(`/?kind=${kind}`);
      assert.equal(res.status, 200, kind);
      assert.equal(res.headers['content-length'], '0', kind);
      assert.equal(res.body.length, 0, kind);
    }
    assert.equal((await get('/?kind=null')).headers['x-null-body'], 'yes');
  });

  test('204 and 304 have no body and no framing headers', async () => {
    const noContent = await get('/?kind=204');
    assert.equal(noContent.status, 204);
    assert.equal(noContent.headers['x-status'], '204');
    assert.equal(noContent.headers['content-length'], undefined);
    assert.equal(noContent.headers['transfer-encoding'], undefined);
    assert.equal(noContent.body.length, 0);
    const notModified = await get('/?kind=304');
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.etag, '"v1"');
    assert.equal(notModified.headers['transfer-encoding'], undefined);
    assert.equal(notModified.body.length, 0);
  });

  test('HEAD gets the headers of the GET and no body', async () => {
    const res = await get('/?kind=string', { method: 'HEAD' });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(res.body.length, 0);
    // The connection is still usable: a HEAD answer must not carry body bytes.
    const stream = await get('/?kind=stream-now', { method: 'HEAD' });
    assert.equal(stream.body.length, 0);
  });

  test('Response.json, URLSearchParams, Blob and a function-set content-length', async () => {
    const json = await get('/?kind=json');
    assert.equal(json.headers['content-type'], 'application/json');
    assert.equal(json.headers['content-length'], String(json.body.length));
    assert.deepEqual(JSON.parse(json.body), { ok: true, text: 'ünïcode' });
    const form = await get('/?kind=search-params');
    assert.match(form.headers['content-type'], /application\/x-www-form-urlencoded/);
    assert.equal(form.body.toString(), 'a=1&b=two+words');
    const blob = await get('/?kind=blob');
    assert.equal(blob.body.toString(), 'blob body');
    const framed = await get('/?kind=own-length');
    assert.equal(framed.headers['content-length'], '6');
    assert.equal(framed.body.toString(), 'framed');
  });

  test('a cloned Response and a partly read stream send exactly what is left to read', async () => {
    assert.equal((await get('/?kind=clone')).body.toString(), 'cloned body');
    assert.equal((await get('/?kind=partly-read')).body.toString(), 'rest of the body');
  });

  test('a stream whose chunks are all there when the function returns is sent with a content-length', async () => {
    const res = await get('/?kind=stream-now');
    assert.equal(res.body.toString(), 'one|two|three');
    assert.equal(res.headers['content-length'], '13');
    assert.equal(res.headers['transfer-encoding'], undefined);
  });

  test('a large stream available at once is streamed whole (chunked), not cut at the buffer size', async () => {
    const res = await get('/?kind=stream-big');
    assert.equal(res.headers['transfer-encoding'], 'chunked');
    assert.equal(res.body.length, 13 * 16 * 1024);
    for (let i = 0; i < res.body.length; i += 16 * 1024) assert.equal(res.body[i], 97 + ((i / 16384) % 26));
  });

  test('a stream that waits between chunks delivers the first chunk before the second exists', async () => {
    const gate = `later-${Date.now()}`;
    const req = http.request({ host: '127.0.0.1', port: host.port, path: `/?kind=stream-later&gate=${gate}`, headers: { 'x-kpages-function': 'bodies' }, agent: false });
    req.end();
    const [res] = await once(req, 'response');
    assert.equal(res.headers['transfer-encoding'], 'chunked');
    const chunks = res[Symbol.asyncIterator]();
    assert.equal((await chunks.next()).value.toString(), 'now|');
    await host.call('release', `/?gate=${gate}`);
    let rest = '';
    for (let next = await chunks.next(); !next.done; next = await chunks.next()) rest += next.value;
    assert.equal(rest, 'later');
  });

  for (const via of ['clone', 'copy']) {
    test(`a ${via} of the request aborts when the client disconnects`, async () => {
      const controller = new AbortController();
      const pending = host.call('signals', `/?via=${via}`, { control: { requestId: `req-signal-${via}` }, signal: controller.signal });
      await host.logs.waitFor((l) => l.msg === `waiting via ${via}` && l.requestId === `req-signal-${via}`);
      controller.abort();
      await assert.rejects(pending);
      const line = await host.logs.waitFor((l) => l.msg.startsWith(`saw abort via ${via}`));
      assert.equal(line.msg, `saw abort via ${via}: true true client disconnected`);
    });
  }

  test('request.signal read after the response was sent is not aborted', async () => {
    assert.equal(await (await host.call('signal-after', '/')).text(), 'sent');
    const line = await host.logs.waitFor((l) => l.msg.startsWith('signal after response'));
    assert.equal(line.msg, 'signal after response: aborted=false');
  });

  test('console lines and direct stdout writes keep their order', async () => {
    const tag = `order-${Date.now()}`;
    assert.equal((await get(`/?kind=stdout&tag=${tag}`)).body.toString(), 'ok');
    await host.logs.waitFor((l) => l.msg === `third ${tag}`);
    const mine = host.logs.lines.filter((l) => typeof l.msg === 'string' && l.msg.endsWith(tag)).map((l) => l.msg);
    assert.deepEqual(mine, [`first ${tag}`, `second ${tag}`, `third ${tag}`]);
  });
});
