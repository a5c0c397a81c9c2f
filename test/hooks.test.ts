import { stopSharedRedis } from './helpers/redis';
import { stopSharedTopologies } from './helpers/topologies';

/** Root hooks: whatever the run started for everyone is stopped at the end. */
after(async () => {
  await Promise.all([stopSharedRedis(), stopSharedTopologies()]);
});
