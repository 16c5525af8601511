// /api/users/:id — one path segment, available as params.id.
export default function onRequest({ params, uuid }) {
  return Response.json({ id: params.id, requestUuid: uuid });
}
