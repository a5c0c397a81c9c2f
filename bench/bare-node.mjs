// The runtime's per-process ceiling: a bare Node http server answering a fixed 304 with the
// headers a rendezvous 304 carries (the validators, no Content-Type and no Content-Length: a 304
// has no body). Nothing the service does can answer faster than this on one core.
import http from 'node:http';
import { POLL_HEADERS } from './poll-headers.mjs';

const server = http.createServer((_req, res) => {
  res.writeHead(304, POLL_HEADERS);
  res.end();
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: server.address().port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
