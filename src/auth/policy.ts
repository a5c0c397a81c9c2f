import type { Logger } from 'pino';
import type { Config } from '../config';
import { MatrixError } from '../http/errors';
import type { VerdictCache } from '../store/types';
import { WhoamiVerifier } from './whoami';

/**
 * Who may create sessions. Only this looks at `Authorization`: session reads, writes and deletes
 * ignore it (some clients send their access token on every call).
 */
export interface CreatePolicy {
  /**
   * Discovery: whether this caller may create. Never refuses a caller without a token. Given the
   * request's raw header lines (Node keeps only the first of several Authorization headers, and a
   * policy that reads the token must see them all) and its request id, for the log lines of a
   * homeserver that could not say.
   */
  createAvailable(rawHeaders: readonly string[], reqId?: string): Promise<boolean>;
  /** Resolves when this caller may create; throws the Matrix error to answer otherwise. */
  authorizeCreate(rawHeaders: readonly string[], reqId?: string): Promise<void>;
}

/** The values of a request's Authorization header lines, in order. */
function authorizationLines(rawHeaders: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 13 && name.toLowerCase() === 'authorization') out.push(rawHeaders[i + 1]!);
  }
  return out;
}

/** Longest access token looked at; anything longer is refused without asking the homeserver. */
const MAX_TOKEN_LENGTH = 4096;
const BEARER = /^Bearer +([\x21-\x7e]+) *$/i;

const unknownToken = (message = 'The access token is not recognised by the homeserver', softLogout = false) =>
  new MatrixError(401, 'M_UNKNOWN_TOKEN', message, { soft_logout: softLogout });

export const openPolicy: CreatePolicy = {
  createAvailable: async () => true,
  authorizeCreate: async () => {},
};

export class AuthenticatedPolicy implements CreatePolicy {
  constructor(private readonly verifier: Pick<WhoamiVerifier, 'verify'>) {}

  /**
   * 'none' when no token was sent; a malformed or oversized header counts as a bad token, and so do
   * several headers (which of them would count is anyone's guess, and one may be a bad token).
   */
  private async verdict(rawHeaders: readonly string[], reqId: string | undefined): Promise<'none' | 'valid'> {
    const lines = authorizationLines(rawHeaders);
    if (lines.length > 1) throw unknownToken('A request carries one Authorization header at most');
    const authorization = lines[0] ?? '';
    if (authorization === '') return 'none';
    const m = BEARER.exec(authorization);
    // Refused without asking the homeserver, and said so.
    if (m === null) throw unknownToken('The Authorization header is not a Bearer access token');
    if (m[1]!.length > MAX_TOKEN_LENGTH)
      throw unknownToken(`The access token is longer than ${MAX_TOKEN_LENGTH} characters`);
    const verdict = await this.verifier.verify(m[1]!, reqId);
    // The homeserver's soft_logout goes to the client: with `false` clients wipe their local data.
    if (verdict !== 'valid') throw unknownToken(undefined, verdict === 'soft_logout');
    return 'valid';
  }

  async createAvailable(rawHeaders: readonly string[], reqId?: string): Promise<boolean> {
    return (await this.verdict(rawHeaders, reqId)) === 'valid';
  }

  async authorizeCreate(rawHeaders: readonly string[], reqId?: string): Promise<void> {
    if ((await this.verdict(rawHeaders, reqId)) === 'none') {
      throw new MatrixError(403, 'M_FORBIDDEN', 'Creating a rendezvous session here needs an access token');
    }
  }
}

export function createPolicy(config: Config, cache: VerdictCache, log: Logger): CreatePolicy {
  if (config.createPolicy === 'open') return openPolicy;
  return new AuthenticatedPolicy(
    new WhoamiVerifier({
      homeserverUrl: config.homeserverUrl!,
      timeoutMs: config.homeserverTimeoutMs,
      cacheMs: config.authCacheSeconds * 1000,
      cache,
      log,
    }),
  );
}
