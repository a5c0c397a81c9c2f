import { readFileSync } from 'node:fs';
import net from 'node:net';

/**
 * The first port of the system's ephemeral range, which it hands to outgoing connections (Redis
 * clients, fetch) as their local port: a port handed to a test below it cannot be taken by one of
 * those between the moment it was found free and the moment a server listens on it.
 */
function ephemeralStart(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 1024 ? low : 0;
  } catch {
    return 0;
  }
}

const BELOW = ephemeralStart();
/** Ports already handed out by this process: two tests starting at once never get the same one. */
const handedOut = new Set<number>();

function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(undefined));
    srv.listen(port, '127.0.0.1', () => {
      const bound = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(bound));
    });
  });
}

/**
 * A TCP port that was free a moment ago on loopback: below the ephemeral range when there is room
 * (the upper 12,000 ports under it), else one the system picks.
 */
export async function freePort(): Promise<number> {
  const low = Math.max(1025, BELOW - 12_000);
  for (let attempt = 0; BELOW > low && attempt < 50; attempt++) {
    const port = low + Math.floor(Math.random() * (BELOW - low));
    if (handedOut.has(port)) continue;
    // Reserved before the try: a concurrent call may pick it while this one's probe is closing.
    handedOut.add(port);
    if ((await tryListen(port)) !== undefined) return port;
    handedOut.delete(port);
  }
  for (;;) {
    const port = await tryListen(0);
    if (port !== undefined && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}
