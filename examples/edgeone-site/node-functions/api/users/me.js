// /api/users/me — a literal route beats the [id] route next to it.
export function onRequest() {
  return Response.json({ id: 'me', name: 'The current user' });
}
