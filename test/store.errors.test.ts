import { expect } from 'chai';
import { createRedisClient } from '../src/store/redis';
import { unavailable } from '../src/store/redis/errors';
import { loadConfig } from '../src/config';

describe('why a Redis call failed, as the metrics and /ready say it', () => {
  it("counts a Cluster client that is not ready (no node known yet) as a cluster condition, not a connection's", async () => {
    // Nothing listens on port 1: the client never learns a slot map, and refuses every command.
    const client = createRedisClient(
      loadConfig({ RZ_REDIS_CLUSTER_NODES: '127.0.0.1:1', RZ_REDIS_COMMAND_TIMEOUT_MS: '500' }),
    );
    client.on('error', () => undefined);
    try {
      const err = await client.get('x').then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err?.message).to.match(/^Cluster isn't ready/);
      expect(unavailable(err).reason).to.equal('cluster');
    } finally {
      client.disconnect();
    }
  });

  it('keeps the other reasons it reads from the message', () => {
    expect(unavailable(new Error('Too many Cluster redirections. Last error: TRYAGAIN')).reason).to.equal('cluster');
    expect(unavailable(new Error('Command timed out')).reason).to.equal('timeout');
    expect(unavailable(new Error('connect ECONNREFUSED 127.0.0.1:1')).reason).to.equal('connection');
    expect(unavailable(new Error('None of startup nodes is available')).reason).to.equal('connection');
  });
});
