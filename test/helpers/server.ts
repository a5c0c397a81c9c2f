import { loadConfig } from '../../src/config';
import { start, type RunningServer } from '../../src/main';

/** A replica in this process on a free loopback port, configured like the environment would. */
export async function startServer(env: Record<string, string>): Promise<RunningServer & { url: string }> {
  const running = await start(loadConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', ...env }));
  return { ...running, url: `http://127.0.0.1:${running.port}` };
}
