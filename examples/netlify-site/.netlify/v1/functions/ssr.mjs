// Written by a framework adapter through the Netlify Frameworks API.
export default async (req) => new Response(`<h1>rendered ${new URL(req.url).pathname}</h1>`, {
  headers: { 'content-type': 'text/html; charset=utf-8' },
});

export const config = { path: '/ssr/*', preferStatic: true };
