import { expect } from 'chai';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import Koa from 'koa';
import { appHandler } from '../src/http/handle';
import { rawExchange } from './helpers/raw';

type Listener = (req: http.IncomingMessage, res: http.ServerResponse) => unknown;

async function listen(listener: Listener): Promise<{ port: number; close: () => Promise<void> }> {
  const server = http.createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** What a server sent for one request on its own connection, its Date header left out. */
async function answer(port: number, method: string, path: string): Promise<string> {
  const { text } = await rawExchange(port, `${method} ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  return text.replace(/^Date: .*\r\n/m, '');
}

/** Each path sets one kind of answer, as middleware and routes can leave it in ctx. */
function answers(): Koa {
  const app = new Koa();
  app.silent = true;
  app.use((ctx) => {
    switch (ctx.path) {
      case '/string':
        ctx.set('ETag', '"1"');
        ctx.body = 'some text';
        return;
      case '/buffer':
        ctx.type = 'application/octet-stream';
        ctx.body = Buffer.from([0, 1, 2, 255]);
        return;
      case '/json-text':
        ctx.type = 'application/json';
        ctx.body = JSON.stringify({ a: 'é' });
        return;
      case '/object':
        ctx.body = { b: [1, 2] };
        return;
      case '/not-modified':
        ctx.status = 304;
        ctx.set('ETag', '"2"');
        return;
      case '/body-after-304':
        ctx.status = 304;
        ctx.body = 'late';
        return;
      case '/no-content':
        ctx.body = 'dropped';
        ctx.status = 204;
        return;
      case '/status-only':
        ctx.status = 418;
        return;
      case '/null':
        ctx.body = null;
        return;
      case '/throws':
        throw Object.assign(new Error('refused'), { status: 409, expose: true });
      default:
      // Nothing set: 404, as Koa answers.
    }
  });
  return app;
}

describe('the app handler (Koa without per-request on-finished listeners)', function () {
  it("answers every kind of body byte for byte as Koa's own handler does", async () => {
    const app = answers();
    const ours = await listen(appHandler(app));
    const koas = await listen(app.callback());
    try {
      const paths = [
        '/string',
        '/buffer',
        '/json-text',
        '/object',
        '/not-modified',
        '/body-after-304',
        '/no-content',
        '/status-only',
        '/null',
        '/throws',
        '/nowhere',
      ];
      for (const method of ['GET', 'HEAD', 'POST']) {
        for (const path of paths) {
          const expected = await answer(koas.port, method, path);
          expect(expected, `${method} ${path}`).to.match(/^HTTP\/1\.1 \d{3} /);
          expect(await answer(ours.port, method, path), `${method} ${path}`).to.equal(expected);
        }
      }
    } finally {
      await Promise.all([ours.close(), koas.close()]);
    }
  });

  it('adds no listener to the response or its connection while a request is served', async () => {
    const counts = (res: http.ServerResponse) =>
      ['finish', 'end', 'close', 'error'].map((e) => [res.listenerCount(e), res.socket!.listenerCount(e)]).flat();
    let seen: number[] = [];
    const app = new Koa();
    app.use((ctx) => {
      seen = counts(ctx.res);
      ctx.body = 'x';
    });
    const ours = await listen(appHandler(app));
    let plain: number[] = [];
    const bare = await listen((_req, res) => {
      plain = counts(res);
      res.end('x');
    });
    try {
      await answer(bare.port, 'GET', '/');
      await answer(ours.port, 'GET', '/');
      expect(seen).to.deep.equal(plain);
      // Koa's own handler, for contrast: the check can tell.
      const koas = await listen(app.callback());
      await answer(koas.port, 'GET', '/');
      await koas.close();
      expect(seen).to.not.deep.equal(plain);
    } finally {
      await Promise.all([ours.close(), bare.close()]);
    }
  });

  it('answers a streamed body 500 instead of sending it with its errors unreported', async () => {
    const app = new Koa();
    app.silent = true;
    app.use((ctx) => {
      ctx.body = Readable.from(['a', 'b']);
    });
    const ours = await listen(appHandler(app));
    try {
      expect(await answer(ours.port, 'GET', '/')).to.match(/^HTTP\/1\.1 500 /);
    } finally {
      await ours.close();
    }
  });
});
