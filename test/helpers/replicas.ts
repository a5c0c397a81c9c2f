import { Replica } from './replica';
import { freePort } from './ports';

/** Starts `n` replicas on one Redis, each on its own port and advertising its own address. */
export async function startReplicas(n: number, env: Record<string, string>): Promise<Replica[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const port = await freePort();
      return Replica.start({ PORT: String(port), RZ_PUBLIC_BASE_URL: `http://127.0.0.1:${port}`, ...env });
    }),
  );
}

/** The same session URL as seen through another replica (what a load balancer does). */
export function via(replica: Replica, url: string): string {
  const u = new URL(url);
  return `${replica.url}${u.pathname}${u.search}`;
}
