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
  /** Discovery: whether this caller may create. Never refuses a caller without a token. */
  createAvailable(authorization: string): Promise<boolean>;
  /** Resolves when this caller may create; throws the Matrix error to answer otherwise. */
  authorizeCreate(authorization: string): Promise<void>;
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

  /** 'none' when no token was sent; a malformed or oversized header counts as a bad token. */
  private async verdict(authorization: string): Promise<'none' | 'valid'> {
    if (authorization === '') return 'none';
    const m = BEARER.exec(authorization);
    // Refused without asking the homeserver, and said so.
    if (m === null) throw unknownToken('The Authorization header is not a Bearer access token');
    if (m[1]!.length > MAX_TOKEN_LENGTH)
      throw unknownToken(`The access token is longer than ${MAX_TOKEN_LENGTH} characters`);
    const verdict = await this.verifier.verify(m[1]!);
    // The homeserver's soft_logout goes to the client: with `false` clients wipe their local data.
    if (verdict !== 'valid') throw unknownToken(undefined, verdict === 'soft_logout');
    return 'valid';
  }

  async createAvailable(authorization: string): Promise<boolean> {
    return (await this.verdict(authorization)) === 'valid';
  }

  async authorizeCreate(authorization: string): Promise<void> {
    if ((await this.verdict(authorization)) === 'none') {
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
