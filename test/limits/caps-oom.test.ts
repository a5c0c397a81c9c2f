import { expect } from 'chai';
import type { Redis } from 'ioredis';
import { CAPS_BY_ADDRESS_KEY, CAPS_JOURNAL_DETAILS_KEY, CAPS_JOURNAL_KEY, CAPS_KEY } from '../../src/store/format';
import { defineScripts, type ScriptedClient } from '../../src/store/redis/scripts';
import { RedisServer } from '../helpers/redis';

const CAPS = [CAPS_KEY, CAPS_BY_ADDRESS_KEY];
const JOURNAL = [...CAPS, CAPS_JOURNAL_KEY, CAPS_JOURNAL_DETAILS_KEY];

/**
 * The scripts that take cap slots run on a Redis that refuses writes needing memory: each must be
 * refused before it changes anything (its first write a command Redis refuses then), whatever else
 * the caps' keys hold, or it would count a slot (and on Cluster leave a tombstone to settle) while
 * Redis is full.
 */
describe('cap scripts on a Redis at its maxmemory (noeviction)', function () {
  this.timeout(30_000);
  let redis: RedisServer;
  let client: Redis;
  let scripts: ScriptedClient;

  before(async () => {
    redis = await RedisServer.start(['--maxmemory-policy', 'noeviction']);
    client = redis.client();
    scripts = defineScripts(client);
  });
  after(async () => {
    client?.disconnect();
    await redis?.destroy();
  });
  afterEach(async () => {
    await client.config('SET', 'maxmemory', '0');
    await client.flushall();
  });

  async function fill(): Promise<void> {
    for (let i = 0; i < 16; i++) await client.set(`filler:${i}`, 'f'.repeat(64 * 1024));
    const used = Number(/used_memory:(\d+)/.exec(await client.info('memory'))![1]);
    await client.config('SET', 'maxmemory', String(Math.floor(used / 2)));
  }

  /** Everything the caps and their journal hold. */
  async function state(): Promise<unknown> {
    return {
      caps: await client.hgetall(CAPS_KEY),
      owners: await client.hgetall(CAPS_BY_ADDRESS_KEY),
      journal: await client.zrange(CAPS_JOURNAL_KEY, 0, -1, 'WITHSCORES'),
      details: await client.hgetall(CAPS_JOURNAL_DETAILS_KEY),
    };
  }

  /**
   * Runs `step` once on a Redis whose caps' pruned second is put ahead (so that nothing is pruned)
   * and which is then filled past its maxmemory: it must fail out of memory with nothing changed.
   */
  async function refusedUnchanged(step: () => Promise<unknown>): Promise<void> {
    const [seconds] = await client.time();
    await client.hset(CAPS_KEY, 'p', String(Number(seconds) + 3600));
    await fill();
    const before = await state();
    const error = await step().then(
      () => undefined,
      (err: Error) => err,
    );
    expect(error?.message).to.match(/OOM/);
    expect(await state()).to.deep.equal(before);
  }

  const claim = (id: string) => scripts.rzClaimSlot(...JOURNAL, id, '192.0.2.1', 60_000, 100, 50, 120_000);

  for (const expired of [false, true]) {
    it(`refuses a claim (Cluster) and changes nothing, ${expired ? 'with' : 'without'} journal entries to forget`, async () => {
      await claim('first');
      if (expired) {
        await client.zadd(CAPS_JOURNAL_KEY, 1, 'c:old');
        await client.hset(CAPS_JOURNAL_DETAILS_KEY, 'c:old', '192.0.2.9 0 1');
      }
      await refusedUnchanged(() => claim('second'));
    });
  }

  it('refuses a create and changes nothing', async () => {
    const create = (id: string) =>
      scripts.rzCreateSession(
        `rz:{${id}}`,
        ...CAPS,
        'msc3886',
        'text/plain',
        'x',
        60_000,
        'salt',
        '192.0.2.1',
        100,
        50,
      );
    await create('first');
    await refusedUnchanged(() => create('second'));
    expect(await client.exists('rz:{second}')).to.equal(0);
  });
});
