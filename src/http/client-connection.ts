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
 * Calls `listener` when the client's connection closes, until `stopWatching`. A response holds its
 * socket's `close` only once it has the socket: a pipelined one is watched on the request's socket
 * too, which is returned for `stopWatching`.
 */
export function watchClient(res: ServerResponse, listener: () => void): Socket | undefined {
  res.on('close', listener);
  if (res.socket !== null) return undefined;
  const socket = res.req.socket;
  socket.on('close', listener);
  return socket;
}

export function stopWatching(res: ServerResponse, listener: () => void, pipelined: Socket | undefined): void {
  res.off('close', listener);
  pipelined?.off('close', listener);
}
