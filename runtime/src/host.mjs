#!/usr/bin/env node
// kpages function host: serves every function of one deploy on one port.
//
//   node src/host.mjs --functions FILE [--port N] [--host ADDR]
//   (or KPAGES_FUNCTIONS, PORT, HOST; defaults: port 9000, host 0.0.0.0)
//
// Start-up order matters: console capture and the `Netlify` global exist before any user
// module is imported, the server listens before modules load (readiness says 503 until every
// function has been attempted), and user code can never take the process down.

import { parseHostOptions, loadFunctionsFile, ConfigError } from './config.mjs';
import { installNetlifyGlobal } from './dialects/netlify.mjs';
import { installHostResponse } from './fetch.mjs';
import { captureConsole, logger, errorFields, invocationTags } from './logging.mjs';
import { PendingWork } from './pending.mjs';
import { FunctionRegistry } from './registry.mjs';
import { createHostServer } from './server.mjs';

const SHUTDOWN_GRACE_MS = Number(process.env.KPAGES_SHUTDOWN_GRACE_MS ?? 25_000);

async function main() {
  const options = parseHostOptions(process.argv.slice(2));
  const definitions = await loadFunctionsFile(options.functionsFile);

  captureConsole();
  installNetlifyGlobal();
  installHostResponse();
  // A stray rejection or throw in user code (a timer, an un-awaited promise) is that function's
  // bug, not a reason to drop every other function's in-flight requests.
  process.on('unhandledRejection', (reason) => logger.error('unhandled promise rejection', { ...invocationTags(), ...errorFields(reason) }));
  process.on('uncaughtException', (err) => logger.error('uncaught exception', { ...invocationTags(), ...errorFields(err) }));

  const registry = new FunctionRegistry(definitions);
  const pending = new PendingWork();
  const server = createHostServer({ registry, pending });
  // Imports start before the first connection can arrive, so every request finds its
  // function's load in progress or done; readiness answers 503 until all are settled.
  registry.loadAll();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, resolve);
  });
  logger.info('listening', { port: server.address().port, host: options.host, functions: definitions.length });

  const shutdown = async (signal) => {
    logger.info('shutting down', { signal, pendingWaitUntil: pending.size });
    // In-flight responses (server.close waits for them) and waitUntil work both get the grace period.
    const closed = new Promise((resolve) => server.close(resolve));
    server.closeIdleConnections();
    const grace = new Promise((resolve) => setTimeout(resolve, SHUTDOWN_GRACE_MS).unref());
    await Promise.race([Promise.all([closed, pending.settle(SHUTDOWN_GRACE_MS)]), grace]);
    process.exit(0);
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err) => {
  if (err instanceof ConfigError) logger.error(err.message);
  else logger.error('function host failed to start', errorFields(err));
  process.exit(1);
});
