// Netlify's `context.cookies`: read cookies from the request, queue Set-Cookie headers for
// the response. Option names follow the CookieStore web standard that Netlify documents.

/** Parses a Cookie request header into a Map (first occurrence of a name wins). */
export function parseCookieHeader(header) {
  const cookies = new Map();
  if (!header) return cookies;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    if (!cookies.has(name)) cookies.set(name, safeDecode(value));
  }
  return cookies;
}

function safeDecode(value) {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

const SAME_SITE = { strict: 'Strict', lax: 'Lax', none: 'None' };

/** Serialises CookieStore-style options into a Set-Cookie header value. */
export function serializeCookie(options) {
  const { name, value = '' } = options;
  if (typeof name !== 'string' || name === '' || /[\s;,=]/.test(name)) {
    throw new TypeError(`cookie name ${JSON.stringify(name)} is not a valid cookie name`);
  }
  const parts = [`${name}=${encodeURIComponent(String(value))}`];
  if (options.expires !== undefined && options.expires !== null) {
    parts.push(`Expires=${new Date(options.expires).toUTCString()}`);
  }
  if (options.maxAge !== undefined) parts.push(`Max-Age=${Math.trunc(options.maxAge)}`);
  if (options.domain) parts.push(`Domain=${options.domain}`);
  parts.push(`Path=${options.path ?? '/'}`);
  if (options.secure) parts.push('Secure');
  if (options.httpOnly) parts.push('HttpOnly');
  if (options.sameSite) {
    const sameSite = SAME_SITE[String(options.sameSite).toLowerCase()];
    if (!sameSite) throw new TypeError(`cookie sameSite ${JSON.stringify(options.sameSite)}; accepted: strict, lax, none`);
    parts.push(`SameSite=${sameSite}`);
  }
  return parts.join('; ');
}

/** The `cookies` object of one invocation. `setCookieHeaders` are added to its response. */
export class CookieJar {
  #incoming;
  setCookieHeaders = [];

  constructor(cookieHeader) {
    this.#incoming = parseCookieHeader(cookieHeader);
  }

  get(name) {
    return this.#incoming.get(name);
  }

  /** set({name, value, ...}) as in CookieStore.set, or set(name, value). */
  set(nameOrOptions, value) {
    const options = typeof nameOrOptions === 'string' ? { name: nameOrOptions, value } : nameOrOptions;
    this.setCookieHeaders.push(serializeCookie(options));
  }

  /** delete(name) or delete({name, domain, path}) as in CookieStore.delete. */
  delete(nameOrOptions) {
    const options = typeof nameOrOptions === 'string' ? { name: nameOrOptions } : nameOrOptions;
    this.setCookieHeaders.push(serializeCookie({ ...options, value: '', expires: 0 }));
  }

  /** The response with the queued Set-Cookie headers (a copy: user headers may be immutable). */
  applyTo(response) {
    if (this.setCookieHeaders.length === 0) return response;
    const headers = new Headers(response.headers);
    for (const cookie of this.setCookieHeaders) headers.append('set-cookie', cookie);
    return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
  }
}
