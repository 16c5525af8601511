// Pure pieces, table-driven: no process, no sockets.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFunctionsDocument, parseHostOptions, ConfigError } from '../src/config.mjs';
import { readControl, parseGeo, isHiddenHeader, ControlError } from '../src/control.mjs';
import { serializeCookie, parseCookieHeader } from '../src/cookies.mjs';
import { mountedPath, asFrameworkApp } from '../src/dialects/frameworks.mjs';
import { isTextContentType, lambdaResultToResponse } from '../src/dialects/lambda.mjs';

describe('mountedPath (framework mode)', () => {
  const cases = [
    ['/koa', '', '/'],
    ['/koa/', '', '/'],
    ['/koa/users', 'users', '/users'],
    ['/koa/a/b/', 'a/b/', '/a/b/'],
    ['/koa/a%2Fb', 'a/b', '/a%2Fb'],
    ['/koa/caf%C3%A9', 'café', '/caf%C3%A9'],
    ['/elsewhere', 'x y', '/x%20y'],
  ];
  for (const [rawPath, rest, expected] of cases) {
    test(`${rawPath} with rest ${JSON.stringify(rest)} → ${expected}`, () => {
      assert.equal(mountedPath(rawPath, rest), expected);
    });
  }
});

describe('control headers', () => {
  test('readControl parses every header and defaults invocation to sync', () => {
    const geo = Buffer.from(JSON.stringify({ city: 'Paris' })).toString('base64');
    const control = readControl({
      'x-kpages-function': 'f', 'x-kpages-params': '{"id":"1"}', 'x-kpages-request-id': 'r1',
      'x-kpages-client-ip': '192.0.2.1', 'x-kpages-geo': geo, traceparent: 'tp',
    });
    assert.deepEqual(control, {
      functionName: 'f', params: { id: '1' }, invocation: 'sync', requestId: 'r1',
      clientIp: '192.0.2.1', geo: { city: 'Paris' }, traceparent: 'tp',
    });
  });

  test('readControl rejects a missing function name with a 400', () => {
    assert.throws(() => readControl({}), (err) => err instanceof ControlError && err.status === 400);
  });

  test('parseGeo tolerates empty, non-base64 and non-object values', () => {
    assert.deepEqual(parseGeo(''), {});
    assert.deepEqual(parseGeo(undefined), {});
    assert.deepEqual(parseGeo('@@@'), {});
    assert.deepEqual(parseGeo(Buffer.from('[1,2]').toString('base64')), {});
  });

  test('control and hop-by-hop headers are hidden from user code, others are not', () => {
    assert.equal(isHiddenHeader('X-KPages-Function'), true);
    assert.equal(isHiddenHeader('connection'), true);
    assert.equal(isHiddenHeader('transfer-encoding'), true);
    assert.equal(isHiddenHeader('x-forwarded-host'), false);
    assert.equal(isHiddenHeader('traceparent'), false);
  });
});

describe('cookies', () => {
  test('serializeCookie follows CookieStore option names', () => {
    assert.equal(serializeCookie({ name: 'a', value: 'b' }), 'a=b; Path=/');
    assert.equal(
      serializeCookie({ name: 'a', value: 'x;y', domain: 'example.com', path: '/p', expires: Date.UTC(2030, 0, 1), sameSite: 'strict', secure: true }),
      'a=x%3By; Expires=Tue, 01 Jan 2030 00:00:00 GMT; Domain=example.com; Path=/p; Secure; SameSite=Strict',
    );
  });

  test('serializeCookie rejects bad names and sameSite values', () => {
    assert.throws(() => serializeCookie({ name: 'a b', value: '1' }), /not a valid cookie name/);
    assert.throws(() => serializeCookie({ name: 'a', value: '1', sameSite: 'sometimes' }), /accepted: strict, lax, none/);
  });

  test('parseCookieHeader decodes values and keeps the first of duplicate names', () => {
    const jar = parseCookieHeader('a=1; b="quoted"; a=2; c=%E2%9C%93; broken');
    assert.equal(jar.get('a'), '1');
    assert.equal(jar.get('b'), 'quoted');
    assert.equal(jar.get('c'), '✓');
    assert.equal(jar.has('broken'), false);
  });
});

describe('lambda conversions', () => {
  const table = [
    ['text/html; charset=utf-8', true], ['application/json', true], ['application/ld+json', true],
    ['image/svg+xml', true], ['application/x-www-form-urlencoded', true],
    ['application/octet-stream', false], ['image/png', false], [undefined, false],
  ];
  for (const [type, text] of table) {
    test(`content type ${type} is ${text ? 'text' : 'base64'}`, () => assert.equal(isTextContentType(type), text));
  }

  test('lambdaResultToResponse rejects statusCodes outside 200-599', () => {
    assert.throws(() => lambdaResultToResponse({ statusCode: '200x' }), /numerical statusCode/);
    assert.throws(() => lambdaResultToResponse({ statusCode: 700 }), /numerical statusCode/);
    assert.equal(lambdaResultToResponse({ statusCode: '201' }).status, 201);
  });

  test('lambdaResultToResponse rejects object bodies', () => {
    assert.throws(() => lambdaResultToResponse({ statusCode: 200, body: { a: 1 } }), /string or a stream body/);
  });
});

describe('configuration', () => {
  test('functions.json entries get defaults and absolute files', () => {
    const [entry] = parseFunctionsDocument({ functions: [{ name: 'f', file: 'a/f.mjs', dialect: 'lambda' }] }, '/deploy/functions.json');
    assert.deepEqual(entry, { name: 'f', file: '/deploy/a/f.mjs', dialect: 'lambda', catchAll: null, timeoutMs: 30000, backgroundTimeoutMs: 900000 });
  });

  test('duplicate names, bad timeouts and missing fields are ConfigErrors naming the field', () => {
    const doc = (fns) => ({ functions: fns });
    assert.throws(() => parseFunctionsDocument(doc([{ name: 'f', file: 'f.mjs', dialect: 'netlify' }, { name: 'f', file: 'g.mjs', dialect: 'netlify' }]), 'x.json'), /functions\[1\]\.name "f" is declared twice/);
    assert.throws(() => parseFunctionsDocument(doc([{ name: 'f', file: 'f.mjs', dialect: 'netlify', timeoutMs: -1 }]), 'x.json'), /functions\[0\]\.timeoutMs/);
    assert.throws(() => parseFunctionsDocument(doc([{ name: 'f', dialect: 'netlify' }]), 'x.json'), /functions\[0\]\.file/);
    assert.throws(() => parseFunctionsDocument({}, 'x.json'), ConfigError);
  });

  test('flags win over environment; defaults are 0.0.0.0:9000', () => {
    assert.deepEqual(parseHostOptions(['--functions', '/f.json'], {}), { functionsFile: '/f.json', port: 9000, host: '0.0.0.0' });
    assert.deepEqual(
      parseHostOptions(['--port', '0'], { KPAGES_FUNCTIONS: '/e.json', PORT: '8080', HOST: '127.0.0.1' }),
      { functionsFile: '/e.json', port: 0, host: '127.0.0.1' },
    );
    assert.throws(() => parseHostOptions(['--functions', 'f', '--port', 'http'], {}), /not a TCP port/);
  });
});

describe('framework detection', () => {
  test('Express-like functions and Koa-like objects are apps; plain handlers are not', () => {
    const express = Object.assign(() => {}, { handle() {}, use() {}, listen() {} });
    const koa = { use() {}, callback: () => () => {} };
    assert.equal(asFrameworkApp(express).framework, 'express');
    assert.equal(asFrameworkApp(koa).framework, 'koa');
    assert.equal(asFrameworkApp(() => new Response('x')), null);
    assert.equal(asFrameworkApp(undefined), null);
  });
});
