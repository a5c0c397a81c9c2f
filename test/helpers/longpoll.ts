import http from 'node:http';
import type { LongPoll } from '../../src/longpoll';

export interface HeldResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface HeldGet {
  response: Promise<HeldResponse>;
  /** Hangs up before the answer, as a client that goes away mid-wait. */
  abort(): void;
}

/**
 * A GET on its own connection that asks to be held (`Prefer: wait`), answering with status, headers
 * and body; `localAddress` picks another loopback address (another client as the server sees it).
 */
export function heldGet(
  url: string,
  etag: string,
  waitSeconds: number,
  options: { localAddress?: string } = {},
): HeldGet {
  let req!: http.ClientRequest;
  const response = new Promise<HeldResponse>((resolve, reject) => {
    req = http.request(
      url,
      {
        headers: { 'If-None-Match': etag, Prefer: `wait=${waitSeconds}` },
        agent: false,
        localAddress: options.localAddress,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
  return { response, abort: () => req.destroy() };
}

/** Resolves once `n` more waiters of this replica are subscribed and re-checked (truly waiting). */
export function waiting(longPoll: LongPoll, n = 1): Promise<void> {
  return countEvents(longPoll, 'waiting', n);
}

/** Resolves once `n` more waiters of this replica have been released. */
export function released(longPoll: LongPoll, n = 1): Promise<void> {
  return countEvents(longPoll, 'released', n);
}

function countEvents(longPoll: LongPoll, event: string, n: number): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0;
    const on = () => {
      if (++seen === n) {
        longPoll.off(event, on);
        resolve();
      }
    };
    longPoll.on(event, on);
  });
}
