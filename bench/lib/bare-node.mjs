// The peer of row 3: the smallest useful node:http server, answering what the benchmark's
// hello-world function answers.
import http from 'node:http';

const port = Number(process.argv[2] ?? 0);
const body = 'hello, world\n';
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
server.listen(port, '127.0.0.1', () => {
  console.log(JSON.stringify({ msg: 'listening', port: server.address().port }));
});
process.once('SIGTERM', () => server.close(() => process.exit(0)));
