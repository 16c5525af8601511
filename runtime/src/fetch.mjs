// Fetch objects that cost nothing until they are used.
//
// Building this Node's (undici's) Request and Response is most of what a hello-world
// invocation costs: ~8 µs for a Request (it makes an AbortSignal), ~17 µs for a Response (it
// makes a ReadableStream for the body), plus the garbage. Most functions read a request's
// method, URL and headers and answer with a string, so the host hands them objects that hold
// exactly that and build the real undici object only when something needs it:
//
//   HostRequest   what user code gets as its request. method, url, headers and (for GET/HEAD)
//                 body/bodyUsed come from the Node request; anything else — the body stream,
//                 signal, clone(), new Request(req), fetch(req), text() — builds the undici
//                 Request it stands for, once, and answers from it.
//   HostResponse  the global `Response` while the host runs. A Response made from a string,
//                 bytes or nothing keeps that value, status, statusText and a Headers object;
//                 text()/json()/arrayBuffer()/bytes()/clone() answer from them, and the host
//                 writes the value to the socket without a stream. Any other body (a stream, a
//                 Blob, FormData, URLSearchParams), or reading `body`, builds the undici
//                 Response. `instanceof Response` holds for these, undici's and fetch()'s.
//
// Both are instances of undici's classes as far as JavaScript can tell: their prototypes
// inherit from undici's, and every internal slot undici reads (its own symbol-keyed
// properties) is an accessor that builds the real object and reads it from there, so undici's
// own getters, methods and constructors (`new Request(hostRequest)`, `fetch(hostRequest)`)
// work on them unchanged. That depends on how this Node's undici is built, so it is checked
// once at start-up on probe objects (LAZY_FETCH); where the check fails the host makes plain
// undici objects, as it did before.
//
// Known difference: a HostResponse's `headers` is one Headers object for its whole life, also
// after the undici Response was built from a copy of it; what the client gets is always that
// object's contents.

import { Readable } from 'node:stream';
import { inspect } from 'node:util';

const NativeRequest = globalThis.Request;
const NativeResponse = globalThis.Response;
const BODYLESS_METHODS = new Set(['GET', 'HEAD']);
// The Fetch spec refuses these in a Request; the eager path lets undici say so.
const FORBIDDEN_METHODS = new Set(['CONNECT', 'TRACE', 'TRACK']);

/** Whether a request with this method can be a HostRequest (else: undici's, made now). */
export function canDeferRequest(method) {
  return LAZY_FETCH && !FORBIDDEN_METHODS.has(method);
}
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);
const REASON_PHRASE = /^[\t\x20-\x7e\x80-\xff]*$/;
const utf8 = new TextDecoder();
// Passed by the static factories to get an empty object they fill in themselves.
const BARE = Symbol('bare');

/** Symbol-keyed own properties an undici object of `make()` carries (its internal slots). */
function internalSlots(make) {
  try {
    return Object.getOwnPropertySymbols(make());
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------------------------
// Requests

export class HostRequest {
  #url;
  #method;
  #pairs;
  #nodeRequest;
  #signal;
  #headers = null;
  #native = null;
  #parsedUrl = null;

  /**
   * `url` is the absolute public URL, `pairs` the headers user code sees ([name, value]),
   * `nodeRequest` the IncomingMessage the body streams from, `signal()` makes the AbortSignal
   * that aborts when the client goes away.
   */
  constructor(url, method, pairs, nodeRequest, signal) {
    this.#url = url;
    this.#method = method;
    this.#pairs = pairs;
    this.#nodeRequest = nodeRequest;
    this.#signal = signal;
  }

  /** The undici Request this one stands for, built on first need. */
  static native(request) {
    if (request.#native === null) {
      const init = { method: request.#method, headers: request.#headers ?? request.#pairs };
      if (!BODYLESS_METHODS.has(request.#method)) {
        init.body = Readable.toWeb(request.#nodeRequest);
        // Required by the Fetch spec for streaming request bodies.
        init.duplex = 'half';
      }
      if (request.#signal) init.signal = request.#signal();
      request.#native = new NativeRequest(request.#url, init);
    }
    return request.#native;
  }

  get method() {
    return this.#method;
  }

  get url() {
    // undici serialises the parsed URL (lower-case host, resolved dots, escapes).
    return (this.#parsedUrl ??= new URL(this.#url).href);
  }

  get headers() {
    if (this.#native !== null) return this.#native.headers;
    return (this.#headers ??= new Headers(this.#pairs));
  }

  get body() {
    if (this.#native === null && BODYLESS_METHODS.has(this.#method)) return null;
    return HostRequest.native(this).body;
  }

  get bodyUsed() {
    if (this.#native === null && BODYLESS_METHODS.has(this.#method)) return false;
    return HostRequest.native(this).bodyUsed;
  }

  [inspect.custom](depth, options) {
    return inspect(HostRequest.native(this), options);
  }
}

// ---------------------------------------------------------------------------------------------
// Responses

export class HostResponse {
  // null when built by undici: then every member answers from #native.
  #headers = null;
  #source = null; // string | Uint8Array | null
  #status = 200;
  #statusText = '';
  #used = false;
  #native = null;

  constructor(body = null, init = undefined) {
    if (body === BARE) return; // filled in by a static factory
    if (!HostResponse.#fast(this, body, init, 'text/plain;charset=UTF-8')) this.#native = new NativeResponse(body, init);
  }

  /**
   * Takes `body` and `init` without undici when both are plain: a string, bytes or nothing,
   * and an init whose status and statusText are valid as given. False leaves the object for
   * undici to build (and to reject, with its own errors, what it rejects).
   */
  static #fast(response, body, init, contentType) {
    let source;
    if (body === null || body === undefined) source = null;
    else if (typeof body === 'string') {
      if (!body.isWellFormed()) return false;
      source = body;
    } else if (body instanceof Uint8Array && !(body.buffer instanceof SharedArrayBuffer)) {
      // The Fetch spec keeps a copy: later writes to the caller's array do not change the body.
      source = new Uint8Array(body);
    } else if (body instanceof ArrayBuffer) {
      source = new Uint8Array(body.slice(0));
    } else return false;
    let status = 200;
    let statusText = '';
    let headers;
    if (init !== undefined && init !== null) {
      if (typeof init !== 'object') return false;
      if (init.status !== undefined) {
        status = init.status;
        if (!Number.isInteger(status) || status < 200 || status > 599) return false;
      }
      if (init.statusText !== undefined) {
        statusText = init.statusText;
        if (typeof statusText !== 'string' || !REASON_PHRASE.test(statusText)) return false;
      }
      headers = init.headers;
    }
    if (source !== null && NULL_BODY_STATUSES.has(status)) return false;
    // Invalid header names or values throw here, as undici's constructor would.
    const list = headers === undefined ? new Headers() : new Headers(headers);
    if (source !== null && typeof source === 'string' && !list.has('content-type')) list.set('content-type', contentType);
    response.#headers = list;
    response.#source = source;
    response.#status = status;
    response.#statusText = statusText;
    return true;
  }

  /** The undici Response this one stands for, built on first need. */
  static native(response) {
    if (response.#native === null) {
      const native = new NativeResponse(response.#source, { status: response.#status, statusText: response.#statusText, headers: response.#headers });
      if (response.#used) {
        // Keep "already read" true of the undici object too.
        native.body?.getReader();
      }
      response.#native = native;
    }
    return response.#native;
  }

  /**
   * The complete body of a HostResponse nobody has read or streamed — a string, bytes, or
   * null — which the host writes as is; it counts as read from then on. Undefined for any
   * other Response, or when the body is (or may be) a stream: then the host reads `body`.
   */
  static takeSource(response) {
    if (!(#native in response) || response.#native !== null || response.#used) return undefined;
    if (response.#source !== null) response.#used = true;
    return response.#source;
  }

  static json(data, init = undefined) {
    const text = JSON.stringify(data);
    if (text !== undefined) {
      const response = Reflect.construct(HostResponse, [BARE], this);
      if (HostResponse.#fast(response, text, init, 'application/json')) return response;
    }
    // undici rejects what it rejects (undefined data, a bad init) with its own errors.
    return HostResponse.#wrap(NativeResponse.json(data, init), this);
  }

  static #wrap(native, target = HostResponse) {
    const response = Reflect.construct(HostResponse, [BARE], target);
    response.#native = native;
    return response;
  }

  static [Symbol.hasInstance](value) {
    // `x instanceof Response` is true of every Response, whoever built it; a user subclass
    // keeps the ordinary prototype check.
    if (this === HostResponse) return value instanceof NativeResponse;
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }

  get status() {
    return this.#native === null ? this.#status : this.#native.status;
  }

  get statusText() {
    return this.#native === null ? this.#statusText : this.#native.statusText;
  }

  get ok() {
    const status = this.status;
    return status >= 200 && status <= 299;
  }

  get headers() {
    return this.#headers ?? this.#native.headers;
  }

  get type() {
    return this.#headers === null ? this.#native.type : 'default';
  }

  get url() {
    return this.#headers === null ? this.#native.url : '';
  }

  get redirected() {
    return this.#headers === null ? this.#native.redirected : false;
  }

  get body() {
    if (this.#native === null && this.#source === null) return null;
    return HostResponse.native(this).body;
  }

  get bodyUsed() {
    return this.#native === null ? this.#used : this.#native.bodyUsed;
  }

  /** Marks the body read and returns it ({source}); undefined when undici holds it. */
  #take() {
    if (this.#native !== null) return undefined;
    // No body is never "used": every read answers empty.
    if (this.#source === null) return { source: null };
    if (this.#used) throw new TypeError('Body is unusable: Body has already been read');
    this.#used = true;
    return { source: this.#source };
  }

  text() {
    try {
      const taken = this.#take();
      if (!taken) return this.#native.text();
      const { source } = taken;
      // Bytes are decoded as UTF-8 and a leading BOM dropped, as undici does.
      if (source === null) return Promise.resolve('');
      if (typeof source === 'string') return Promise.resolve(source.charCodeAt(0) === 0xfeff ? source.slice(1) : source);
      return Promise.resolve(utf8.decode(source));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  json() {
    if (this.#native !== null) return this.#native.json();
    return this.text().then(JSON.parse);
  }

  bytes() {
    try {
      const taken = this.#take();
      if (!taken) return this.#native.bytes();
      return Promise.resolve(toBytes(taken.source));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  arrayBuffer() {
    if (this.#native !== null) return this.#native.arrayBuffer();
    return this.bytes().then((bytes) => bytes.buffer);
  }

  blob() {
    return HostResponse.native(this).blob();
  }

  formData() {
    return HostResponse.native(this).formData();
  }

  clone() {
    if (this.#native !== null) return HostResponse.#wrap(this.#native.clone(), this.constructor);
    if (this.#used) throw new TypeError('Response.clone: Body has already been consumed.');
    const copy = Reflect.construct(HostResponse, [BARE], this.constructor);
    copy.#headers = new Headers(this.#headers);
    copy.#source = this.#source;
    copy.#status = this.#status;
    copy.#statusText = this.#statusText;
    return copy;
  }

  [inspect.custom](depth, options) {
    return inspect(HostResponse.native(this), options);
  }
}

function toBytes(source) {
  if (source === null) return new Uint8Array(0);
  if (typeof source === 'string') return new TextEncoder().encode(source);
  return new Uint8Array(source);
}

/**
 * Wires a lazy class to the undici class it stands for: its prototype inherits undici's (so
 * `instanceof`, toStringTag and undici's own getters and methods apply), and every internal
 * slot of undici's objects is an accessor on the lazy object's undici twin.
 */
function wire(Lazy, Native, slots, native) {
  Object.setPrototypeOf(Lazy.prototype, Native.prototype);
  for (const slot of slots) {
    Object.defineProperty(Lazy.prototype, slot, {
      get() {
        return native(this)[slot];
      },
      set(value) {
        native(this)[slot] = value;
      },
      configurable: true,
    });
  }
}

const requestSlots = internalSlots(() => new NativeRequest('http://probe.invalid/'));
const responseSlots = internalSlots(() => new NativeResponse('probe'));
wire(HostRequest, NativeRequest, requestSlots, (r) => HostRequest.native(r));
Object.defineProperty(HostRequest.prototype, 'constructor', { value: NativeRequest, writable: true, configurable: true });
wire(HostResponse, NativeResponse, responseSlots, (r) => HostResponse.native(r));
// Response.error() and Response.redirect() are undici's.
Object.setPrototypeOf(HostResponse, NativeResponse);
Object.defineProperty(HostResponse, 'name', { value: 'Response' });

/**
 * Whether this Node's undici works with the lazy objects: probes every path user code may
 * take through undici itself (its getters, `new Request(request)`, clone(), the signal, body
 * reads) and compares with what undici's own objects answer. Checked once, at import.
 */
function probe() {
  if (requestSlots.length === 0 || responseSlots.length === 0) return false;
  try {
    const controller = new AbortController();
    const lazy = new HostRequest('http://Probe.invalid/a/../b?q=1', 'GET', [['x-probe', '1']], null, () => controller.signal);
    if (lazy.url !== 'http://probe.invalid/b?q=1' || lazy.headers.get('x-probe') !== '1') return false;
    if (lazy.cache !== 'default' || lazy.redirect !== 'follow') return false;
    const copy = new NativeRequest(lazy, { headers: { 'x-added': '1' } });
    const clone = lazy.clone();
    const reason = new Error('probe');
    controller.abort(reason);
    if (!(lazy.signal.aborted && lazy.signal.reason === reason && copy.signal.aborted && clone.signal.aborted)) return false;
    if (copy.url !== lazy.url || copy.headers.get('x-added') !== '1' || !(lazy instanceof NativeRequest)) return false;
    if (new NativeRequest(lazy).headers.get('x-probe') !== '1') return false;

    const response = new HostResponse('probe', { status: 201, headers: { 'x-probe': '1' } });
    if (!(response instanceof NativeResponse) || !(new NativeResponse('x') instanceof HostResponse)) return false;
    const undiciClone = NativeResponse.prototype.clone.call(response);
    if (undiciClone.status !== 201 || undiciClone.headers.get('content-type') !== 'text/plain;charset=UTF-8') return false;
    if (Object.prototype.toString.call(response) !== '[object Response]') return false;
    return true;
  } catch {
    return false;
  }
}

/** True when the lazy objects are in use (see the module comment). */
export const LAZY_FETCH = probe();

/**
 * Makes HostResponse the global `Response`, before user modules load. Nothing changes when
 * this Node's undici failed the probe.
 */
export function installHostResponse(target = globalThis) {
  if (!LAZY_FETCH) return false;
  Object.defineProperty(target, 'Response', { value: HostResponse, writable: true, configurable: true, enumerable: false });
  return true;
}
