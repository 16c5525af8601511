// Lambda compatibility: `export const handler = async (event, context) => response`, or
// `exports.handler` in CommonJS, with the event and response shapes Netlify documents for
// Lambda-compatible functions (AWS API Gateway proxy shape).
//
//   request ──► event {rawUrl, rawQuery, path, httpMethod, headers, multiValueHeaders,
//                      queryStringParameters, multiValueQueryStringParameters, body, isBase64Encoded}
//   response ◄── {statusCode, headers, multiValueHeaders, body, isBase64Encoded}
//
// Unlike the Fetch dialects, Lambda events hold the whole body, so it is read before the call.

import { Readable } from 'node:stream';
import { inspect } from 'node:util';
import { userHeaderPairs } from '../control.mjs';
import { isNullBodyStatus, readWholeBody } from '../web.mjs';
import { InvalidResultError, LoadError, describeExports } from './errors.mjs';

/** The handler of a Lambda-style module, or undefined. CommonJS modules expose it on `default`. */
export function findLambdaHandler(ns) {
  if (typeof ns.handler === 'function') return ns.handler;
  if (ns.default && typeof ns.default === 'object' && typeof ns.default.handler === 'function') return ns.default.handler;
  return undefined;
}

export function createLambdaAdapter(ns) {
  const handler = findLambdaHandler(ns);
  if (!handler) throw new LoadError(`expected a Lambda-compatible "handler" export (export const handler / exports.handler); ${describeExports(ns)}`);
  return {
    kind: 'lambda',
    async invoke(call) {
      const body = await readWholeBody(call.req);
      const event = buildLambdaEvent(call, body);
      const result = await callHandler(handler, event, lambdaContext(call));
      return { response: lambdaResultToResponse(result) };
    },
  };
}

// Content types Netlify passes as text; everything else (and no content type) is base64.
// Mirrors Netlify's own proxy so user code decoding bodies behaves the same.
const TEXT_TYPES = new Set([
  'application/csp-report', 'application/graphql', 'application/json', 'application/javascript',
  'application/x-www-form-urlencoded', 'application/x-ndjson', 'application/xml',
]);

export function isTextContentType(contentType) {
  if (!contentType) return false;
  const type = contentType.split(';')[0].trim().toLowerCase();
  return type.startsWith('text/') || type.endsWith('+json') || type.endsWith('+xml') || TEXT_TYPES.has(type);
}

/** Builds the Lambda event (pure given the request's public URL, headers and body). */
export function buildLambdaEvent(call, body) {
  const url = new URL(call.url);
  const multiValueHeaders = {};
  // The platform's headers replace a client's under the same names (see toWebRequest).
  const platform = new Set(call.extraHeaders.map(([name]) => name.toLowerCase()));
  const sent = userHeaderPairs(call.req).filter(([name]) => !platform.has(name.toLowerCase()));
  for (const [name, value] of [...sent, ...call.extraHeaders]) {
    (multiValueHeaders[name] ??= []).push(value);
  }
  const headers = {};
  for (const [name, values] of Object.entries(multiValueHeaders)) headers[name] = values.join(', ');

  const multiValueQueryStringParameters = {};
  for (const [key, value] of url.searchParams) (multiValueQueryStringParameters[key] ??= []).push(value);
  const queryStringParameters = {};
  for (const [key, values] of Object.entries(multiValueQueryStringParameters)) queryStringParameters[key] = values.join(', ');

  const isBase64Encoded = body.length > 0 && !isTextContentType(headers['content-type']);
  return {
    rawUrl: url.href,
    rawQuery: url.search.slice(1),
    path: url.pathname,
    httpMethod: call.req.method,
    headers,
    multiValueHeaders,
    queryStringParameters,
    multiValueQueryStringParameters,
    body: body.length === 0 ? '' : body.toString(isBase64Encoded ? 'base64' : 'utf8'),
    isBase64Encoded,
  };
}

/** The Lambda context object: the AWS fields user code commonly reads. */
function lambdaContext(call) {
  return {
    functionName: call.fn.name,
    functionVersion: '$LATEST',
    invokedFunctionArn: '',
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE ?? '1024',
    awsRequestId: call.control.requestId,
    logGroupName: `/kpages/${call.fn.name}`,
    logStreamName: call.control.requestId,
    callbackWaitsForEmptyEventLoop: true,
    clientContext: {},
    identity: undefined,
    getRemainingTimeInMillis: () => Math.max(0, call.deadline - Date.now()),
  };
}

/**
 * Calls an async handler or a callback-style one (`(event, context, callback)`): whichever of
 * the returned promise or the callback settles first decides the result.
 */
function callHandler(handler, event, context) {
  return new Promise((resolve, reject) => {
    const callback = (err, result) => (err ? reject(err) : resolve(result));
    let returned;
    try {
      returned = handler(event, context, callback);
    } catch (err) {
      reject(err);
      return;
    }
    if (returned && typeof returned.then === 'function') returned.then(resolve, reject);
    else if (handler.length < 3) resolve(returned);
  });
}

/** Converts a Lambda response to a Fetch Response; malformed responses are user errors. */
export function lambdaResultToResponse(result) {
  if (result === undefined || result === null) {
    throw new InvalidResultError('lambda response was undefined: the handler must return (or call back with) an object with a numerical statusCode');
  }
  const status = Number(result.statusCode);
  if (!Number.isInteger(status) || status < 200 || status > 599) {
    throw new InvalidResultError(`Your function response must have a numerical statusCode (200-599). You gave: ${inspect(result.statusCode)}`);
  }
  const headers = new Headers();
  for (const [name, value] of Object.entries(result.headers ?? {})) {
    if (value !== undefined && value !== null) headers.set(name, String(value));
  }
  for (const [name, values] of Object.entries(result.multiValueHeaders ?? {})) {
    headers.delete(name);
    for (const value of [values].flat()) headers.append(name, String(value));
  }
  return new Response(isNullBodyStatus(status) ? null : lambdaBody(result), { status, headers });
}

function lambdaBody({ body, isBase64Encoded }) {
  if (body === undefined || body === null) return null;
  if (typeof body === 'string') return isBase64Encoded ? Buffer.from(body, 'base64') : body;
  if (body instanceof Uint8Array) return body;
  // Netlify's `stream()` helper hands back a stream body; accept Node and web streams.
  if (body instanceof Readable) return Readable.toWeb(body);
  if (typeof body.getReader === 'function') return body;
  throw new InvalidResultError(`Your function response must have a string or a stream body. You gave: ${inspect(body)}`);
}
