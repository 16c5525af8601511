// A .js file is an ES module here because package.json says "type": "module".
// data/quotes.json is shipped with the function (netlify.toml included_files).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export default async () => {
  const quotes = JSON.parse(await readFile(join(process.cwd(), 'data/quotes.json'), 'utf8'));
  return Response.json({ quote: quotes[Math.floor(Math.random() * quotes.length)] });
};

export const config = { path: '/api/quote' };
