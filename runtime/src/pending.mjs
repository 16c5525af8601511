// Work that outlives its response: Netlify `context.waitUntil` promises. The host keeps them
// referenced, logs their failures, and waits for them (bounded) before shutting down.

import { logger, errorFields } from './logging.mjs';

export class PendingWork {
  #promises = new Set();

  /** Tracks `promise`; a rejection is logged with `tags`, never left unhandled. */
  add(promise, tags = {}) {
    const tracked = Promise.resolve(promise)
      .then(
        () => {},
        (err) => logger.error('waitUntil promise rejected', { ...tags, ...errorFields(err) }),
      )
      .finally(() => this.#promises.delete(tracked));
    this.#promises.add(tracked);
  }

  get size() {
    return this.#promises.size;
  }

  /** Resolves when all tracked work has settled, or after `timeoutMs`, whichever is first. */
  async settle(timeoutMs) {
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([Promise.all([...this.#promises]), timeout]);
    clearTimeout(timer);
  }
}
