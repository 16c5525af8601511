// Errors raised while preparing a user module, reported by name of file and reason.

/** A module that imported fine but does not export what its dialect needs. */
export class LoadError extends Error {
  name = 'LoadError';
}

/** User code returned something its dialect does not accept: a 500 with this message. */
export class InvalidResultError extends Error {
  name = 'InvalidResultError';
}

/** Lists a module's exports for error messages ("found exports: a, b" or "found no exports"). */
export function describeExports(ns) {
  const names = Object.keys(ns);
  return names.length ? `found exports: ${names.join(', ')}` : 'found no exports';
}
