// A scheduled function (UTC cron); the scheduler POSTs {"next_run": "…"}.
import type { Config } from '@netlify/functions';

export default async (req: Request) => {
  const { next_run } = (await req.json()) as { next_run: string };
  console.log(`nightly report done; next run ${next_run}`);
};

export const config: Config = {
  schedule: '0 3 * * *',
};
