import { stopSharedRedis } from './helpers/redis';

/** Root hooks: whatever the run started for everyone is stopped at the end. */
after(async () => {
  await stopSharedRedis();
});
