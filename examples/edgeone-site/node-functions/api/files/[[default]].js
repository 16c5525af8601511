// /api/files and everything below it: params.default is the rest of the path.
export function onRequest({ params, request }) {
  return Response.json({ method: request.method, path: params.default });
}
