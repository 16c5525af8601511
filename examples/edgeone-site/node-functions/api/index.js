// GET /api — the index.js of a directory serves the directory's path.
export function onRequest(context) {
  return Response.json({ routes: ['/api/hello', '/api/users', '/api/users/:id', '/api/files/*', '/express/*'] });
}
