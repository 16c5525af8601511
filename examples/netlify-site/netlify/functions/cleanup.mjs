// Netlify's older scheduled-function helper: the cron is read from the schedule() call.
import { schedule } from '@netlify/functions';

export const handler = schedule('@hourly', async () => {
  console.log('cleaned up');
  return { statusCode: 200 };
});
