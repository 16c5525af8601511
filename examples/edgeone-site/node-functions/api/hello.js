// GET /api/hello — a method-specific handler; other methods get 405.
export function onRequestGet({ request, clientIp, geo }) {
  const name = new URL(request.url).searchParams.get('name') ?? 'world';
  return new Response(`hello, ${name} (from ${clientIp ?? 'somewhere'}, ${geo?.countryName ?? 'unknown country'})\n`, {
    headers: { 'content-type': 'text/plain; charset=utf-8' },
  });
}
