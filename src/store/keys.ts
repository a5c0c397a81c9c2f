/**
 * Every key and channel of one session shares the `{<id>}` hash tag, so they live in one Redis
 * Cluster slot and one script may touch them all.
 */
export const sessionKey = (id: string): string => `rz:{${id}}`;
export const txnKey = (id: string): string => `rz:{${id}}:txn`;
export const wakeChannel = (id: string): string => `rz:{${id}}:wake`;

/** The session id a wake channel belongs to, or null for any other channel. */
export function idOfWakeChannel(channel: string): string | null {
  return channel.startsWith('rz:{') && channel.endsWith('}:wake') ? channel.slice(4, -6) : null;
}
