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
// metrics, Host and origin checks, error answers, request ids): nothing here is fit to serve
// clients. Anything but the one answer a floor exists for is a 5xx, so the bench counts it as an
// error (wrk counts statuses from 400 up, and a floor has no /metrics to ask).
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { URL } from 'node:url';
import Koa from 'koa';
import { Pool } from 'undici';
import { COMMON_HEADERS, POLL_HEADERS } from './poll-headers.mjs';
// The forwarder's own header names and list (from the build, which the bench makes first).
import { FORWARDED_BY, FORWARDED_FOR, REGION_SECRET } from '../dist/region/auth.js';
import { HOP_BY_HOP } from '../dist/region/hop-by-hop.js';
// The service's own Redis connection (each event-loop turn's commands in one write), so that a floor
// is made of the same parts.
import { TurnBatchingRedis } from '../dist/store/redis/turn-batching.js';

const POLL = { ...POLL_HEADERS, 'Content-Type': 'application/octet-stream' };
const CREATED = { ...COMMON_HEADERS, 'Content-Type': 'application/json' };
const MAX_BODY = 4096;
const TTL_MS = 300_000;

function fail(res, status = 503) {
  if (!res.headersSent) res.writeHead(status);
  res.end();
}

function pollFloor(redisUrl, key, bareKoa) {
  const client = new TurnBatchingRedis(redisUrl, { maxRetriesPerRequest: 1 });
  if (!bareKoa) {
    return (_req, res) => {
      client.getBuffer(key).then(
        (payload) => {
          if (payload === null) return fail(res, 500);
          res.writeHead(200, { ...POLL, 'Content-Length': payload.length });
          res.end(payload);
        },
        () => fail(res),
      );
    };
  }
  const app = new Koa();
  app.silent = true;
  app.use(async (ctx) => {
    const payload = await client.getBuffer(key);
    if (payload === null) ctx.throw(500);
    ctx.set(POLL);
    ctx.body = payload;
  });
  return app.callback();
}

function createFloor(redisUrl) {
  const client = new TurnBatchingRedis(redisUrl, { maxRetriesPerRequest: 1 });
  const app = new Koa();
  app.silent = true;
  app.use(async (ctx) => {
    const chunks = [];
    let size = 0;
    for await (const chunk of ctx.req) {
      size += chunk.length;
      if (size > MAX_BODY) ctx.throw(500);
      chunks.push(chunk);
    }
    const id = randomBytes(16).toString('base64url');
    if ((await client.set(`rz:{${id}}`, Buffer.concat(chunks), 'PX', TTL_MS, 'NX')) !== 'OK') ctx.throw(500);
    ctx.set(CREATED);
    ctx.status = 201;
    ctx.body = { id };
  });
  return app.callback();
}

function forwardFloor(peerUrl, secret) {
  const pool = new Pool(new URL(peerUrl).origin, { connections: 1024, headersTimeout: 0, bodyTimeout: 0 });
  return (req, res) => {
    const headers = [
      'x-request-id',
      randomUUID(),
      FORWARDED_BY,
      'floor',
      FORWARDED_FOR,
      req.socket.remoteAddress ?? '',
      REGION_SECRET,
      secret,
    ];
    const condition = req.headers['if-none-match'];
    if (condition !== undefined) headers.push('if-none-match', condition);
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
            if (!HOP_BY_HOP.has(raw[i].toLowerCase())) out.push(raw[i], raw[i + 1]);
          }
          res.writeHead(status, out);
          res.end(chunks.length > 0 ? Buffer.concat(chunks) : undefined);
        },
      },
    );
  };
}

const [mode, ...args] = process.argv.slice(2);
const listeners = {
  'http-poll': ([redisUrl, key]) => pollFloor(redisUrl, key, false),
  'koa-poll': ([redisUrl, key]) => pollFloor(redisUrl, key, true),
  'koa-create': ([redisUrl]) => createFloor(redisUrl),
  forward: ([peerUrl, secret]) => forwardFloor(peerUrl, secret),
};
if (!(mode in listeners)) {
  process.stderr.write(`floor.mjs: unknown mode ${mode}\n`);
  process.exit(2);
}
const server = http.createServer({ keepAliveTimeout: 65_000 }, listeners[mode](args));
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port: server.address().port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
