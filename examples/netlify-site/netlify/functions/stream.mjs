// A streamed response: each chunk reaches the client as it is produced.
export default async () => {
  const encoder = new TextEncoder();
  let n = 0;
  const body = new ReadableStream({
    async pull(controller) {
      if (n === 5) {
        controller.close();
        return;
      }
      n += 1;
      controller.enqueue(encoder.encode(`chunk ${n}\n`));
      await new Promise((resolve) => setTimeout(resolve, 100));
    },
  });
  return new Response(body, { headers: { 'content-type': 'text/plain; charset=utf-8' } });
};

export const config = { path: '/stream' };
