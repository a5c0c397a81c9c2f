import { expect } from 'chai';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { loadConfig } from '../../src/config';
import { createApp } from '../../src/http/app';
import { Lifecycle } from '../../src/http/health';
import { createHttpServer } from '../../src/http/server';
import { createLongPoll } from '../../src/longpoll';
import { Metrics } from '../../src/metrics';
import { MemoryStore } from '../../src/store';
import { send } from '../helpers/send';

describe('limit refusals in the metrics', () => {
  it('counts each refusal under its budget in rendezvous_rate_limited_total', async () => {
    const config = loadConfig({
      RZ_CREATE_RATE: '2',
      RZ_REQUEST_RATE: '1',
      RZ_REQUEST_RATE_WINDOW_SECONDS: '60',
      RZ_MAX_SESSIONS: '1',
      RZ_MAX_SESSIONS_PER_ADDRESS: '0',
    });
    const metrics = new Metrics({ processMetrics: false });
    const store = new MemoryStore();
    const log = pino({ level: 'silent' });
    const longPoll = await createLongPoll(config, store, log, metrics);
    const app = createApp({ config, store, log, lifecycle: new Lifecycle(), metrics, longPoll });
    const server = createHttpServer(app, config, metrics);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    try {
      const post = () => send(port, { method: 'POST', path: '/', body: 'x' });
      expect((await post()).status).to.equal(200);
      expect((await post()).status).to.equal(429); // the server holds its one session
      expect((await post()).status).to.equal(429); // create budget (2 a minute) spent
      const statuses = [];
      for (let i = 0; i < 62; i++) statuses.push((await send(port, { path: '/nothing' })).status);
      expect(statuses.filter((s) => s === 429).length).to.equal(2);
      const counts = Object.fromEntries(
        (await metrics.rateLimited.get()).values.map((v) => [v.labels.budget as string, v.value]),
      );
      expect(counts).to.deep.equal({ sessions_global: 1, create: 1, request: 2 });
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await store.close();
    }
  });
});
