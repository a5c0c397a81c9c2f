import { expect } from 'chai';
import type { Redis } from 'ioredis';
import { RedisSessions, scriptSource } from '../src/store/redis';
import { createHash } from 'node:crypto';
import { RedisServer } from './helpers/redis';

/**
 * The store's scripts go out as EVALSHA (defineCommand); a Redis that lost its script cache (restart, failover,
 * SCRIPT FLUSH) must still run every operation, through one EVAL that caches the script again.
 */
describe('Redis sessions after Redis lost its script cache', () => {
  let redis: RedisServer;
  let client: Redis;
  let store: RedisSessions;

  before(async () => {
    redis = await RedisServer.start();
    client = redis.client();
    store = new RedisSessions(client, {
      caps: { global: 0, perAddress: 0 },
      maxTxnsPerSession: 4,
      commandTimeoutMs: 2000,
    });
  });
  after(async () => {
    client.disconnect();
    await redis.destroy();
  });

  it('creates, updates and deletes after SCRIPT FLUSH', async () => {
    const base = { tag: 'salt', family: 'msc3886' as const, contentType: 'text/plain', ttlMs: 60_000, owner: '' };
    await client.script('FLUSH');
    const created = await store.create({ ...base, id: 'noscript-a', data: Buffer.from('one') });
    expect(created.status).to.equal('created');

    await client.script('FLUSH');
    const updated = await store.update('noscript-a', {
      family: 'msc3886',
      condition: { kind: 'any' },
      contentType: 'text/plain',
      data: Buffer.from('two'),
    });
    expect(updated.status).to.equal('updated');
    expect((await store.get('noscript-a', 'msc3886'))!.data.toString()).to.equal('two');
    // The EVAL cached the script again, so the next write is an EVALSHA.
    expect(
      await client.script('EXISTS', createHash('sha1').update(scriptSource('updateSession-2.lua')).digest('hex')),
    ).to.deep.equal([1]);

    await client.script('FLUSH');
    expect(await store.delete('noscript-a', 'msc3886')).to.equal(true);
    expect(await store.get('noscript-a', 'msc3886')).to.equal(null);
  });
});
