// name/name.mts is the entry of the "products" function; catalog.ts beside it is a helper.
import type { Config, Context } from '@netlify/functions';
import { findProduct } from './catalog.ts';

export default async (_req: Request, context: Context) => {
  const product = findProduct(context.params.id);
  return product ? Response.json(product) : new Response('no such product', { status: 404 });
};

export const config: Config = {
  path: ['/products/:id', '/shop/:id'],
  excludedPath: '/products/internal',
  preferStatic: true,
};
