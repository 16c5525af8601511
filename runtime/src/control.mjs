// The router → host control headers (see docs/host-protocol.md).
//
// The router resolves which function a request is for and what the user must see; it sends
// that as x-kpages-* headers. This module reads them into one plain object and computes the
// public view of the request (absolute URL, headers without control headers). Pure apart from
// reading the IncomingMessage's fields.

import { randomUUID } from 'node:crypto';

export const CONTROL_PREFIX = 'x-kpages-';
export const INVOCATION_KINDS = ['sync', 'background', 'schedule'];

// Connection-level headers describe the hop between router and host, not the user's request.
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer',
]);

export class ControlError extends Error {
  name = 'ControlError';
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/**
 * Reads the control headers of one request.
 * Throws ControlError(400) when a header is present but unusable: a silent default would run
 * user code with the wrong params or mode.
 */
export function readControl(headers) {
  const functionName = first(headers['x-kpages-function']);
  if (!functionName) throw new ControlError(400, 'missing x-kpages-function header: the router must name the function to run');

  const params = parseParams(first(headers['x-kpages-params']));
  const invocation = first(headers['x-kpages-invocation']) || 'sync';
  if (!INVOCATION_KINDS.includes(invocation)) {
    throw new ControlError(400, `x-kpages-invocation is "${invocation}"; accepted: ${INVOCATION_KINDS.join(', ')}`);
  }
  return {
    functionName,
    params,
    invocation,
    requestId: first(headers['x-kpages-request-id']) || randomUUID(),
    clientIp: first(headers['x-kpages-client-ip']) || '',
    geo: parseGeo(first(headers['x-kpages-geo'])),
    traceparent: first(headers.traceparent) || undefined,
  };
}

function parseParams(text) {
  if (!text) return {};
  let value;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ControlError(400, `x-kpages-params is not JSON: ${err.message}`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new ControlError(400, 'x-kpages-params must be a JSON object of route parameters');
  }
  return value;
}

/**
 * Geo is best effort: the router may have no database, so absent, empty or undecodable values
 * all mean "unknown" rather than failing the request.
 */
export function parseGeo(text) {
  if (!text) return {};
  try {
    const value = JSON.parse(Buffer.from(text, 'base64').toString('utf8'));
    return value && typeof value === 'object' && !Array.isArray(value) ? value : {};
  } catch {
    return {};
  }
}

/** The absolute public URL of a request: the router forwards the original path and query. */
export function publicUrl(req) {
  const proto = firstListItem(req.headers['x-forwarded-proto']) || 'http';
  const host = firstListItem(req.headers['x-forwarded-host']) || req.headers.host || 'localhost';
  return `${proto}://${host}${req.url.startsWith('/') ? req.url : `/${req.url}`}`;
}

/** Whether a header name is for the router↔host hop only and must never reach user code. */
export function isHiddenHeader(name) {
  const lower = name.toLowerCase();
  return lower.startsWith(CONTROL_PREFIX) || HOP_BY_HOP.has(lower);
}

/** The request headers user code sees, as [name, value] pairs in arrival order. */
export function userHeaderPairs(req) {
  const pairs = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    if (!isHiddenHeader(raw[i])) pairs.push([raw[i].toLowerCase(), raw[i + 1]]);
  }
  return pairs;
}

/**
 * Removes control headers from the IncomingMessage itself, for framework apps (Express/Koa)
 * that read `req.headers` directly.
 */
export function stripControlHeaders(req) {
  for (const name of Object.keys(req.headers)) {
    if (name.startsWith(CONTROL_PREFIX)) delete req.headers[name];
  }
  const raw = req.rawHeaders;
  const kept = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (!raw[i].toLowerCase().startsWith(CONTROL_PREFIX)) kept.push(raw[i], raw[i + 1]);
  }
  raw.splice(0, raw.length, ...kept);
}

function first(value) {
  return Array.isArray(value) ? value[0] : value;
}

function firstListItem(value) {
  const text = first(value);
  return text ? text.split(',')[0].trim() : '';
}
