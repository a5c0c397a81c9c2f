import { loadConfig } from '../../src/config';
import { start, type RunningServer } from '../../src/main';
import { freePort } from './ports';

/** Limits off unless a test turns them on: loopback is one address for every test in the run. */
export const NO_LIMITS = {
  RZ_CREATE_RATE: '0',
  RZ_REQUEST_RATE: '0',
  RZ_MAX_SESSIONS: '0',
  RZ_MAX_SESSIONS_PER_ADDRESS: '0',
  RZ_MAX_CONNECTIONS_PER_ADDRESS: '0',
};

export interface TestServer extends RunningServer {
  url: string;
}

/**
 * A real server on a real loopback port, in this process. Its public base URL is its own address
 * unless `env` says otherwise; `env` overrides any default.
 */
export async function startServer(env: Record<string, string> = {}): Promise<TestServer> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const config = loadConfig({
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    PORT: String(port),
    RZ_PUBLIC_BASE_URL: url,
    ...NO_LIMITS,
    ...env,
  });
  return { ...(await start(config)), url };
}
