import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * Whether the client a held answer is for has gone. A request pipelined behind one whose answer is
 * not written yet has a response without a socket (Node hands it over in turn): its connection is
 * the request's, which is no sign of a client that left.
 */
export function clientLeft(res: ServerResponse): boolean {
  const socket = res.socket ?? res.req.socket;
  return res.destroyed || socket === null || socket.destroyed;
}

/**
 * What to call when a connection closes, for the responses pipelined on it that are held: one
 * `close` listener per connection however many wait on it (a listener each would pass Node's
 * listener bound, and warn, from the eleventh pipelined long-poll on).
 */
const pipelinedOn = new WeakMap<Socket, Set<() => void>>();

function onPipelinedClose(this: Socket): void {
  const waiting = pipelinedOn.get(this);
  pipelinedOn.delete(this);
  if (waiting !== undefined) for (const listener of waiting) listener();
}

/**
 * Calls `listener` when the client's connection closes, until `stopWatching`. A response holds its
 * socket's `close` only once it has the socket: a pipelined one is watched on the request's socket
 * too, which is returned for `stopWatching`.
 */
export function watchClient(res: ServerResponse, listener: () => void): Socket | undefined {
  res.on('close', listener);
  if (res.socket !== null) return undefined;
  const socket = res.req.socket;
  let waiting = pipelinedOn.get(socket);
  if (waiting === undefined) {
    waiting = new Set();
    pipelinedOn.set(socket, waiting);
    socket.on('close', onPipelinedClose);
  }
  waiting.add(listener);
  return socket;
}

export function stopWatching(res: ServerResponse, listener: () => void, pipelined: Socket | undefined): void {
  res.off('close', listener);
  if (pipelined === undefined) return;
  const waiting = pipelinedOn.get(pipelined);
  if (waiting === undefined) return;
  waiting.delete(listener);
  if (waiting.size === 0) {
    pipelinedOn.delete(pipelined);
    pipelined.off('close', onPipelinedClose);
  }
}
