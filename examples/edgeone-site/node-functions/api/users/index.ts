// /api/users — TypeScript works without any configuration.
interface User {
  id: string;
  name: string;
}

const users: User[] = [
  { id: '1', name: 'Ada' },
  { id: '2', name: 'Grace' },
];

export function onRequestGet(): Response {
  return Response.json(users);
}

export async function onRequestPost({ request }: { request: Request }): Promise<Response> {
  const user = (await request.json()) as User;
  return Response.json(user, { status: 201 });
}
