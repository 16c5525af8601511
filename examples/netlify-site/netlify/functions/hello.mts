// A Netlify v2 function in TypeScript with its route in the in-source config.
import type { Config, Context } from '@netlify/functions';

export default async (req: Request, context: Context): Promise<Response> => {
  const name = new URL(req.url).searchParams.get('name') ?? 'world';
  return new Response(`hello, ${name} from ${context.geo?.country?.name ?? 'somewhere'}\n`, {
    headers: { 'content-type': 'text/plain; charset=utf-8' },
  });
};

export const config: Config = {
  path: '/api/hello',
  method: ['GET', 'HEAD'],
  rateLimit: { windowLimit: 60, windowSize: 60, aggregateBy: ['ip', 'domain'] },
};
