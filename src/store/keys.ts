/**
 * Every key and channel of one session shares the `{<id>}` hash tag, so they live in one Redis
 * Cluster slot and one script may touch them all.
 */
/**
 * A session is one string, "<family> <rev> <salt> <created> <modified> <expires> <type>\n<payload>":
 * Redis stores it in one allocation, where a hash costs ~800 bytes more once the payload is large.
 */
export const sessionKey = (id: string): string => `rz:{${id}}`;
export const txnKey = (id: string): string => `rz:{${id}}:txn`;
export const wakeChannel = (id: string): string => `rz:{${id}}:wake`;

/** The session id a wake channel belongs to, or null for any other channel. */
export function idOfWakeChannel(channel: string): string | null {
  return channel.startsWith('rz:{') && channel.endsWith('}:wake') ? channel.slice(4, -6) : null;
}
