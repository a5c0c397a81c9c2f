import { loadConfig } from '../../src/config';
import { start, type RunningServer } from '../../src/main';
import { freePort } from './ports';

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
    ...env,
  });
  return { ...(await start(config)), url };
}
