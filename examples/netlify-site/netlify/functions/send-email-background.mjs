// The -background suffix makes this a background function: the caller gets 202 at once and
// the function runs from the queue, with retries.
export default async (req) => {
  const { to } = await req.json();
  console.log(`sending a slow email to ${to}`);
  await new Promise((resolve) => setTimeout(resolve, 1000));
};
