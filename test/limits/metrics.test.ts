import { expect } from 'chai';
import { send } from '../helpers/send';
import { startServer } from '../helpers/server';
import { roomInWindow } from '../helpers/windows';

describe('limit refusals in the metrics', () => {
  it('counts each refusal under its budget in rendezvous_rate_limited_total', async () => {
    const server = await startServer({
      RZ_CREATE_RATE: '2',
      RZ_REQUEST_RATE: '1',
      RZ_REQUEST_RATE_WINDOW_SECONDS: '60',
      RZ_MAX_SESSIONS: '1',
      RZ_MAX_SESSIONS_PER_ADDRESS: '0',
    });
    const port = server.port;
    try {
      // Both budgets are per minute: every request below falls in one window.
      await roomInWindow(60_000, 10_000);
      const post = () => send(port, { method: 'POST', path: '/', body: 'x' });
      expect((await post()).status).to.equal(200);
      expect((await post()).status).to.equal(429); // the server holds its one session
      expect((await post()).status).to.equal(429); // create budget (2 a minute) spent
      const statuses = [];
      for (let i = 0; i < 62; i++) statuses.push((await send(port, { path: '/nothing' })).status);
      expect(statuses.filter((s) => s === 429).length).to.equal(2);
      const counts = Object.fromEntries(
        (await server.metrics.rateLimited.get()).values.map((v) => [v.labels.budget as string, v.value]),
      );
      expect(counts).to.deep.equal({ sessions_global: 1, create: 1, request: 2 });
    } finally {
      await server.stop();
    }
  });
});
