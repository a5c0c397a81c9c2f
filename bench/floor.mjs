// Floors: the least a server built from the same parts can cost per request on this machine, measured
// in the same run as the service so that a target can be read against what the parts allow.
//
//   node floor.mjs http-poll <redis-url> <key>   node `http` + ioredis: one GET, 200 with the payload
//   node floor.mjs koa-poll <redis-url> <key>    the same as one middleware of a bare Koa app
//   node floor.mjs koa-create <redis-url>        bare Koa: reads the body, one SET NX PX of a random id, 201
//   node floor.mjs forward <peer-url> <secret>   node `http` + an undici Pool: each request sent on to the
//                                                peer as a region forward, its answer relayed
//
// Each is what the service does on that path minus everything else it does (routing, limits,
// metrics, CORS checks, errors, request ids): nothing here is fit to serve clients.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { URL } from 'node:url';
import Koa from 'koa';
import { Redis } from 'ioredis';
import { Pool } from 'undici';

// The headers a rendezvous poll answer carries (as bare-node.mjs sends them).
const HEADERS = {
  'Cache-Control': 'no-store, no-transform',
  Pragma: 'no-cache',
  'X-Content-Type-Options': 'nosniff',
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': 'ETag, Location, Expires, Last-Modified',
  ETag: '"AAAAAAAA.1"',
  Expires: 'Thu, 01 Jan 2026 00:05:00 GMT',
  'Last-Modified': 'Thu, 01 Jan 2026 00:00:00 GMT',
  'Content-Type': 'application/octet-stream',
};
const MAX_BODY = 4096;
const TTL_MS = 300_000;

const [mode, a1, a2] = process.argv.slice(2);
const redis = () => new Redis(a1, { enableAutoPipelining: true, maxRetriesPerRequest: 1 });

function fail(res) {
  res.writeHead(503);
  res.end();
}

let listener;
if (mode === 'http-poll') {
  const client = redis();
  listener = (_req, res) => {
    client.getBuffer(a2).then(
      (payload) => {
        res.writeHead(200, HEADERS);
        res.end(payload);
      },
      () => fail(res),
    );
  };
} else if (mode === 'koa-poll' || mode === 'koa-create') {
  const client = redis();
  const app = new Koa();
  app.silent = true;
  app.use(
    mode === 'koa-poll'
      ? async (ctx) => {
          ctx.set(HEADERS);
          ctx.body = await client.getBuffer(a2);
        }
      : async (ctx) => {
          const chunks = [];
          let size = 0;
          for await (const chunk of ctx.req) {
            size += chunk.length;
            if (size > MAX_BODY) ctx.throw(413);
            chunks.push(chunk);
          }
          const id = randomBytes(16).toString('base64url');
          await client.set(`rz:{${id}}`, Buffer.concat(chunks), 'PX', TTL_MS, 'NX');
          ctx.set(HEADERS);
          ctx.status = 201;
          ctx.body = { id };
        },
  );
  listener = app.callback();
} else if (mode === 'forward') {
  const peer = new URL(a1);
  const pool = new Pool(peer.origin, { connections: 1024, headersTimeout: 0, bodyTimeout: 0 });
  listener = (req, res) => {
    const headers = [
      'x-rendezvous-forwarded-by',
      'floor',
      'x-rendezvous-forwarded-for',
      req.socket.remoteAddress ?? '',
      'x-rendezvous-region-secret',
      a2,
    ];
    const inm = req.headers['if-none-match'];
    if (inm !== undefined) headers.push('if-none-match', inm);
    let status = 0;
    let raw = [];
    const chunks = [];
    pool.dispatch(
      { path: req.url, method: req.method, headers },
      {
        onConnect() {},
        onError: () => fail(res),
        onHeaders(code, rawHeaders) {
          status = code;
          raw = rawHeaders.map((v) => v.toString('latin1'));
          return true;
        },
        onData(chunk) {
          chunks.push(chunk);
          return true;
        },
        onComplete() {
          const out = [];
          for (let i = 0; i < raw.length; i += 2) {
            const name = raw[i].toLowerCase();
            if (name !== 'connection' && name !== 'keep-alive') out.push(raw[i], raw[i + 1]);
          }
          res.writeHead(status, out);
          res.end(chunks.length > 0 ? Buffer.concat(chunks) : undefined);
        },
      },
    );
  };
} else {
  process.stderr.write(`floor.mjs: unknown mode ${mode}\n`);
  process.exit(2);
}

const server = http.createServer({ keepAliveTimeout: 65_000 }, listener);
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: server.address().port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
