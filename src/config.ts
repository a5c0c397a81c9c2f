import { isIP } from 'node:net';
import { z } from 'zod';
import { normaliseCidr } from './limits/cidr';
import { peerList, regionProblems, type RegionPeer } from './region/settings';
import { certificateFileProblem, keyPairProblem, privateKeyFileProblem } from './readable-file';

/**
 * Every setting comes from one table, so validation, defaults and `--help` can never drift apart.
 * Each entry says what it expects in words; that phrase is the one-line error an operator sees.
 */
interface Setting {
  name: string;
  key: keyof Config;
  expect: string;
  help: string;
  /** Default as the operator would type it; a function when it depends on other settings. */
  default?: string | ((env: NodeJS.ProcessEnv) => string);
  /** How --help shows a computed default. */
  defaultText?: string;
  schema: z.ZodType;
  /** How a bad value is shown in the error: secrets never are (default: the value, quoted). */
  show?: (raw: string) => string;
}

/** A secret is never echoed, not even a malformed one: it may be a real password with a typo. */
const hidden = (): string => '(value hidden)';

/**
 * A URL as an error may show it: the password of its userinfo masked (`redis://user:***@host`).
 * Works on malformed URLs too, masking more rather than less: everything up to the last `@`.
 */
export function redactUrl(text: string): string {
  const at = text.lastIndexOf('@');
  if (at < 0) return text;
  const scheme = text.indexOf('://');
  const from = scheme >= 0 && scheme < at ? scheme + 3 : 0;
  const colon = text.indexOf(':', from);
  const user = colon >= 0 && colon < at ? `${text.slice(from, colon)}:` : '';
  return `${text.slice(0, from)}${user}***${text.slice(at)}`;
}

const showUrl = (raw: string): string => JSON.stringify(redactUrl(raw));
/** A `host:port` list as an error shows it: an item pasted as a URL with a password is masked like one. */
const showHostPorts = (raw: string): string => JSON.stringify(raw.split(',').map(redactUrl).join(','));

/** Says what exactly is wrong with a value; the error line shows it after the value. */
function explain(ctx: z.RefinementCtx, message: string): void {
  ctx.addIssue({ code: 'custom', message, params: { explains: true } });
}

/** Integer settings are read as given, untrimmed: see `int`. */
const integers = new WeakSet<z.ZodType>();

/**
 * An integer setting: digits only, within its range. No sign, decimal point, exponent, hex or
 * whitespace, since a number parser reads too much as a number (`" "` as 0, which turned a rate
 * limit off; `0x1f90` as 8080). The issue says what was wrong.
 */
function int(min: number, max: number) {
  const schema = z.string().transform((text, ctx) => {
    let problem: string | undefined;
    if (text.trim() !== text) problem = 'whitespace around the value is not accepted';
    else if (!/^\d+$/.test(text)) problem = 'only digits are accepted, no sign, decimal point, exponent or hex';
    else if (Number(text) < min || Number(text) > max) problem = 'out of range';
    if (problem === undefined) return Number(text);
    explain(ctx, problem);
    return z.NEVER;
  });
  integers.add(schema);
  return schema;
}

function optionalInt(min: number, max: number) {
  const schema = int(min, max).optional();
  integers.add(schema);
  return schema;
}
const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => ['true', '1', 'yes'].includes(v));
const httpUrl = z
  .string()
  .url()
  .refine((u) => /^https?:\/\//i.test(u))
  .transform((u) => u.replace(/\/+$/, ''));
/** A user name or password in an http(s) URL. */
const CREDENTIALS = /^https?:\/\/[^/]*@/i;
/** White space a URL parser would percent-encode, but that is written out to clients as it stands. */
const WHITE_SPACE = /\s/;
/** A URL handed to clients: credentials in it would be shown to every one. */
const clientUrl = httpUrl.superRefine((u, ctx) => {
  if (CREDENTIALS.test(u)) explain(ctx, 'no user name or password in it');
  else if (WHITE_SPACE.test(u)) explain(ctx, 'no white space: it reaches clients as it is written');
});
/** A URL that paths are appended to: a query or fragment would swallow them, credentials would be shown to clients. */
const baseUrl = httpUrl.superRefine((u, ctx) => {
  if (u.includes('?') || u.includes('#')) explain(ctx, 'no query or fragment: paths are appended to it');
  else if (CREDENTIALS.test(u)) explain(ctx, 'no user name or password in it');
  else if (WHITE_SPACE.test(u)) explain(ctx, 'no white space: it reaches clients as it is written');
});
/** `host:port,host:port`: the seed list of a Sentinel set or a Cluster. */
const hostPorts = z
  .string()
  .transform((v) =>
    v
      .split(',')
      .map((x) => x.trim())
      .filter((x) => x !== ''),
  )
  .pipe(
    z
      .array(
        z
          .string()
          .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):\d{1,5}$/)
          // Five digits say nothing of the range: 99999 would only fail at connect.
          .refine((hp) => {
            const port = Number(hp.slice(hp.lastIndexOf(':') + 1));
            return port >= 1 && port <= 65535;
          }),
      )
      .min(1),
  )
  .transform((list) =>
    list.map((hp) => {
      const i = hp.lastIndexOf(':');
      return { host: hp.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(hp.slice(i + 1)) };
    }),
  );
/**
 * A host name (RFC 1123 labels, underscores allowed as container runtimes name services), for an
 * address to bind that is not an IP literal.
 */
const HOST_NAME = /^(?=.{1,253}$)\w(?:[\w-]{0,61}\w)?(?:\.\w(?:[\w-]{0,61}\w)?)*\.?$/;

const redisUrl = z
  .string()
  .url()
  .refine((u) => /^rediss?:\/\//i.test(u))
  .superRefine((u, ctx) => {
    // The client SELECTs whatever the path says: anything but a number failed only once Redis answered.
    // Runs after a failed check too: a value that is no URL at all is reported as such already.
    if (!URL.canParse(u)) return;
    if (!/^(\/\d{1,9})?\/?$/.test(new URL(u).pathname)) {
      explain(ctx, 'its path is the database number, e.g. redis://host:6379/0, or nothing');
    }
  });

/** Comma-separated IPs or CIDRs; each is normalised to CIDR form so the parser runs once at start. */
const cidrList = z.string().transform((v, ctx) => {
  const out: string[] = [];
  const bad: string[] = [];
  for (const item of v
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '')) {
    const cidr = normaliseCidr(item);
    if (cidr === null) bad.push(item);
    else out.push(cidr);
  }
  // Every bad entry at once: fixing them one start at a time is slow.
  if (bad.length > 0) {
    explain(
      ctx,
      `not ${bad.length === 1 ? 'an IP address or CIDR range' : 'IP addresses or CIDR ranges'}: ${bad.join(', ')}`,
    );
    return z.NEVER;
  }
  return out;
});

export const SETTINGS: readonly Setting[] = [
  {
    name: 'PORT',
    key: 'port',
    expect: 'a port number from 0 to 65535',
    help: 'TCP port to listen on',
    default: '8080',
    schema: int(0, 65535),
  },
  {
    name: 'HOST',
    key: 'host',
    expect: 'a host name or IP address',
    help: 'Address to bind; unset: every address the machine has (:: dual-stack where the kernel allows IPv6, else 0.0.0.0)',
    defaultText: 'unset (all addresses, IPv6 and IPv4)',
    schema: z
      .string()
      .refine((v) => isIP(v) !== 0 || HOST_NAME.test(v))
      .optional(),
  },
  {
    name: 'REDIS_URL',
    key: 'redisUrl',
    expect: 'a redis:// or rediss:// URL',
    help: 'Single Redis node holding the sessions, shared by all replicas (password and ACL user may be in the URL). No Redis setting at all: in-memory store, single process only',
    schema: redisUrl.optional(),
    show: showUrl,
  },
  {
    name: 'RZ_REDIS_SENTINELS',
    key: 'redisSentinels',
    expect: 'a comma-separated list of host:port',
    help: 'Redis Sentinels to ask for the current master (instead of REDIS_URL)',
    schema: hostPorts.optional(),
    show: showHostPorts,
  },
  {
    name: 'RZ_REDIS_SENTINEL_MASTER',
    key: 'redisSentinelMaster',
    expect: 'a Sentinel master name',
    help: 'Name the Sentinels monitor the master under',
    default: 'mymaster',
    schema: z.string().min(1).max(200),
  },
  {
    name: 'RZ_REDIS_SENTINEL_PASSWORD',
    key: 'redisSentinelPassword',
    expect: 'a password',
    help: 'Password of the Sentinels themselves, when they require one',
    schema: z.string().min(1).optional(),
    show: hidden,
  },
  {
    name: 'RZ_REDIS_CLUSTER_NODES',
    key: 'redisClusterNodes',
    expect: 'a comma-separated list of host:port',
    help: 'Some nodes of a Redis Cluster (the rest are discovered) instead of REDIS_URL',
    schema: hostPorts.optional(),
    show: showHostPorts,
  },
  {
    name: 'RZ_REDIS_USERNAME',
    key: 'redisUsername',
    expect: 'an ACL user name',
    help: 'Redis ACL user; overrides the one in REDIS_URL',
    schema: z.string().min(1).optional(),
  },
  {
    name: 'RZ_REDIS_PASSWORD',
    key: 'redisPassword',
    expect: 'a password',
    help: 'Redis password; overrides the one in REDIS_URL (keeps the secret out of the URL)',
    schema: z.string().min(1).optional(),
    show: hidden,
  },
  {
    name: 'RZ_REDIS_TLS',
    key: 'redisTls',
    expect: 'true or false (or 1/0, yes/no; lower case)',
    help: 'Talk TLS to Redis (implied by a rediss:// URL; for Sentinel the Sentinels use it too)',
    default: 'false',
    schema: bool,
  },
  {
    name: 'RZ_REDIS_TLS_CA_FILE',
    key: 'redisTlsCaFile',
    expect: 'a path to a PEM file',
    help: 'Certificate authorities that sign the Redis server certificate (default: the system ones)',
    schema: z.string().min(1).optional(),
  },
  {
    name: 'RZ_REDIS_TLS_CERT_FILE',
    key: 'redisTlsCertFile',
    expect: 'a path to a PEM file',
    help: 'Client certificate, when Redis asks for one (with RZ_REDIS_TLS_KEY_FILE)',
    schema: z.string().min(1).optional(),
  },
  {
    name: 'RZ_REDIS_TLS_KEY_FILE',
    key: 'redisTlsKeyFile',
    expect: 'a path to a PEM file',
    help: 'Private key of the client certificate',
    schema: z.string().min(1).optional(),
  },
  {
    name: 'RZ_REDIS_TLS_SERVERNAME',
    key: 'redisTlsServername',
    expect: 'a host name',
    help: 'Name the Redis certificate must carry, when it differs from the host connected to',
    schema: z.string().min(1).optional(),
  },
  {
    name: 'RZ_REDIS_TLS_REJECT_UNAUTHORIZED',
    key: 'redisTlsRejectUnauthorized',
    expect: 'true or false (or 1/0, yes/no; lower case)',
    help: 'Refuse a Redis certificate that does not verify (false only for testing)',
    default: 'true',
    schema: bool,
  },
  {
    name: 'RZ_PUBLIC_BASE_URL',
    key: 'publicBaseUrl',
    expect: 'an absolute http(s) URL',
    help: 'Externally visible base URL used to build session URLs (Location, url); never taken from Host',
    default: (env) => `http://localhost:${env.PORT || '8080'}`,
    defaultText: 'http://localhost:$PORT',
    schema: baseUrl,
    show: showUrl,
  },
  {
    name: 'RZ_TTL_SECONDS',
    key: 'ttlSeconds',
    expect: 'an integer from 1 to 86400',
    help: 'Session lifetime, fixed at creation',
    default: '300',
    schema: int(1, 86400),
  },
  {
    name: 'RZ_MAX_BYTES',
    key: 'maxBytes',
    expect: 'an integer from 1 to 1048576',
    help: 'Largest payload a session may hold, in bytes',
    default: '4096',
    schema: int(1, 1048576),
  },
  {
    name: 'RZ_MAX_TXNS_PER_SESSION',
    key: 'maxTxnsPerSession',
    expect: 'an integer from 1 to 10000',
    // Each is up to 255 bytes, kept for the session's life: 32 of them are at most twice a 4 KiB
    // payload (256 made the global cap's worst case 2 GB). A login uses a handful.
    help: 'Transaction ids remembered per MSC4388 session (idempotent retries)',
    default: '32',
    schema: int(1, 10000),
  },
  {
    name: 'RZ_MSC4108_DELEGATE_URL',
    key: 'msc4108DelegateUrl',
    expect: 'an absolute http(s) URL',
    help: 'When set, MSC4108 creates (POST) answer 307 Temporary Redirect to this rendezvous endpoint',
    // Sent to every client in Location.
    schema: clientUrl.optional(),
    show: showUrl,
  },
  {
    name: 'RZ_MSC4388_ENABLED',
    key: 'msc4388Enabled',
    expect: 'true or false (or 1/0, yes/no; lower case)',
    help: 'Serve the MSC4388 rendezvous API (unstable and /v1 paths); false: they answer 404 M_UNRECOGNIZED',
    default: 'true',
    schema: bool,
  },
  {
    name: 'RZ_CREATE_POLICY',
    key: 'createPolicy',
    expect: 'open or authenticated',
    help: 'Who may create MSC4388 sessions: anyone, or holders of an access token the homeserver accepts',
    default: 'open',
    schema: z.enum(['open', 'authenticated']),
  },
  {
    name: 'RZ_HOMESERVER_URL',
    key: 'homeserverUrl',
    expect: 'an absolute http(s) URL',
    help: 'Homeserver that verifies access tokens (GET /_matrix/client/v3/account/whoami); required when RZ_CREATE_POLICY=authenticated',
    schema: baseUrl.optional(),
    show: showUrl,
  },
  {
    name: 'RZ_AUTH_CACHE_SECONDS',
    key: 'authCacheSeconds',
    expect: 'an integer from 0 to 3600',
    help: 'How long a verdict on an access token is remembered (shared through Redis when configured; 0: never)',
    default: '30',
    schema: int(0, 3600),
  },
  {
    name: 'RZ_HOMESERVER_TIMEOUT_MS',
    key: 'homeserverTimeoutMs',
    expect: 'an integer from 100 to 60000',
    help: 'A token check the homeserver has not answered within this time fails the request with 504',
    default: '5000',
    schema: int(100, 60000),
  },
  {
    name: 'RZ_REDIS_COMMAND_TIMEOUT_MS',
    key: 'redisCommandTimeoutMs',
    expect: 'an integer from 50 to 60000',
    help: 'A Redis command not answered within this time fails the request with 503',
    default: '1000',
    schema: int(50, 60000),
  },
  {
    name: 'RZ_REDIS_ALLOW_EVICTION',
    key: 'redisAllowEviction',
    expect: 'true or false (or 1/0, yes/no; lower case)',
    help: 'Serve from a Redis whose maxmemory-policy evicts keys (sessions may then vanish before they expire); by default such a Redis makes /ready answer 503',
    default: 'false',
    schema: bool,
  },
  {
    name: 'RZ_READINESS',
    key: 'readiness',
    expect: 'startup or store',
    help: 'startup: /ready is 200 once the store has answered, and stays so through a store outage (clients get JSON 503s with Retry-After from the replica); store: /ready is 503 whenever the store does not answer. Either way a misconfigured store (an evicting Redis) is 503',
    default: 'startup',
    schema: z.enum(['startup', 'store']),
  },
  {
    name: 'RZ_SHUTDOWN_GRACE_SECONDS',
    key: 'shutdownGraceSeconds',
    expect: 'an integer from 0 to 3600',
    help: 'On SIGTERM, how long in-flight requests may take before connections are cut',
    default: '10',
    schema: int(0, 3600),
  },
  {
    name: 'RZ_HEADERS_TIMEOUT_MS',
    key: 'headersTimeoutMs',
    expect: 'an integer from 100 to 600000',
    help: 'Time allowed to receive the request headers (slow clients are cut off); at most RZ_REQUEST_TIMEOUT_MS',
    default: '10000',
    schema: int(100, 600000),
  },
  {
    name: 'RZ_REQUEST_TIMEOUT_MS',
    key: 'requestTimeoutMs',
    expect: 'an integer from 100 to 600000',
    help: 'Time allowed to receive a whole request, body included',
    default: '30000',
    schema: int(100, 600000),
  },
  {
    name: 'RZ_KEEPALIVE_TIMEOUT_MS',
    key: 'keepAliveTimeoutMs',
    expect: 'an integer from 0 to 600000',
    help: 'Idle keep-alive connections are closed after this time; 0: no keep-alive, every answer closes its connection',
    default: '65000',
    schema: int(0, 600000),
  },
  {
    name: 'RZ_MAX_HEADER_BYTES',
    key: 'maxHeaderBytes',
    expect: 'an integer from 1024 to 65536',
    help: 'Largest total size of request headers',
    default: '16384',
    schema: int(1024, 65536),
  },
  {
    name: 'RZ_MAX_HEADERS_COUNT',
    key: 'maxHeadersCount',
    expect: 'an integer from 10 to 2000',
    help: 'Most header lines a request may carry; a request with more is refused (431)',
    default: '100',
    schema: int(10, 2000),
  },
  {
    name: 'RZ_MAX_CONNECTIONS',
    key: 'maxConnections',
    expect: 'an integer from 0 to 1000000',
    help: 'Most concurrent connections per replica (0: no limit)',
    default: '10000',
    schema: int(0, 1000000),
  },
  {
    name: 'RZ_MAX_CONNECTIONS_PER_ADDRESS',
    key: 'maxConnectionsPerAddress',
    expect: 'an integer from 0 to 1000000',
    help: 'Most concurrent connections from one client address (socket peer; IPv6 per RZ_IPV6_PREFIX network) per replica, so one address cannot take every connection; trusted proxies are exempt (0: no limit)',
    default: '256',
    schema: int(0, 1000000),
  },
  {
    name: 'RZ_SHUTDOWN_DELAY_SECONDS',
    key: 'shutdownDelaySeconds',
    expect: 'an integer from 0 to 300',
    help: 'On SIGTERM, how long to keep serving with /ready false before closing the listener, so load balancers stop routing here first',
    default: '0',
    schema: int(0, 300),
  },
  {
    name: 'RZ_METRICS_PORT',
    key: 'metricsPort',
    expect: 'a port number from 0 to 65535',
    help: 'Serve /metrics on this port only (default: on the main port)',
    schema: optionalInt(0, 65535),
  },
  {
    name: 'RZ_MAX_URL_BYTES',
    key: 'maxUrlBytes',
    expect: 'an integer from 256 to 65536',
    help: 'Longest request target (path and query) accepted; longer ones get 414',
    default: '2048',
    schema: int(256, 65536),
  },
  {
    name: 'RZ_CREATE_RATE',
    key: 'createRate',
    expect: 'an integer from 0 to 1000000',
    help: 'Session creates per minute per client address, shared by all replicas (0: no limit)',
    default: '30',
    schema: int(0, 1000000),
  },
  {
    name: 'RZ_REQUEST_RATE',
    key: 'requestRate',
    expect: 'an integer from 0 to 1000000',
    help: 'Other requests per second per client address, averaged over RZ_REQUEST_RATE_WINDOW_SECONDS and shared by all replicas (0: no limit)',
    default: '30',
    schema: int(0, 1000000),
  },
  {
    name: 'RZ_REQUEST_RATE_WINDOW_SECONDS',
    key: 'requestRateWindowSeconds',
    expect: 'an integer from 1 to 3600',
    help: 'Window of the request budget: an address may send RZ_REQUEST_RATE times this many requests per window, so bursts are absorbed',
    default: '10',
    schema: int(1, 3600),
  },
  {
    name: 'RZ_MAX_SESSIONS',
    key: 'maxSessions',
    expect: 'an integer from 0 to 100000000',
    help: 'Live sessions held at once, all replicas together; a full server refuses creates and never evicts (0: no limit)',
    default: '20000',
    schema: int(0, 100_000_000),
  },
  {
    name: 'RZ_MAX_SESSIONS_PER_ADDRESS',
    key: 'maxSessionsPerAddress',
    expect: 'an integer from 0 to 1000000',
    help: 'Live sessions one client address may have created, all replicas together (0: no limit)',
    default: '50',
    schema: int(0, 1000000),
  },
  {
    name: 'RZ_TRUSTED_PROXIES',
    key: 'trustedProxies',
    expect: 'a comma-separated list of IP addresses or CIDR ranges',
    help: 'Reverse proxies whose forwarding header names the client address; empty: trust none and use the socket address',
    default: '',
    defaultText: 'empty (trust none)',
    schema: cidrList,
  },
  {
    name: 'RZ_FORWARDED_HEADER',
    key: 'forwardedHeader',
    expect: 'x-forwarded-for or forwarded',
    help: 'Which header the trusted proxies set: X-Forwarded-For, or Forwarded (RFC 7239). The other is ignored',
    default: 'x-forwarded-for',
    schema: z
      .string()
      .transform((v) => v.toLowerCase())
      .pipe(z.enum(['x-forwarded-for', 'forwarded'])),
  },
  {
    name: 'RZ_IPV6_PREFIX',
    key: 'ipv6Prefix',
    expect: 'an integer from 1 to 128',
    help: 'IPv6 clients are counted per network of this prefix length (one subscriber usually holds a whole /64)',
    default: '64',
    schema: int(1, 128),
  },
  {
    name: 'RZ_LONGPOLL_MAX_WAIT_SECONDS',
    key: 'longPollMaxWaitSeconds',
    expect: 'an integer from 0 to 300',
    help: 'Longest a long-poll GET is held (Prefer: wait, timeout_ms), never beyond the session expiry; 0 turns long-poll off',
    default: '30',
    schema: int(0, 300),
  },
  {
    name: 'RZ_LONGPOLL_MAX_WAITERS',
    key: 'longPollMaxWaiters',
    expect: 'an integer from 0 to 1000000',
    help: 'Most long-poll GETs held at once per replica; beyond it they are answered at once like plain GETs (0: none is held)',
    default: '10000',
    schema: int(0, 1000000),
  },
  {
    name: 'RZ_LONGPOLL_MAX_WAITERS_PER_ADDRESS',
    key: 'longPollMaxWaitersPerAddress',
    expect: 'an integer from 0 to 1000000',
    help: 'Most long-poll GETs held at once per client address per replica; beyond it they are answered at once',
    default: '100',
    schema: int(0, 1000000),
  },
  // Multi-region (src/region): all unset is a single-region deployment, exactly as before.
  {
    name: 'RZ_REGION',
    key: 'region',
    expect: 'a region name: 1 to 16 of a-z and 0-9',
    help: "This replica's region: every session id it creates names it, and requests for other regions' sessions are forwarded to them. Unset: single region, ids as before",
    schema: z
      .string()
      .regex(/^[a-z0-9]{1,16}$/)
      .optional(),
  },
  {
    name: 'RZ_REGION_PEERS',
    key: 'regionPeers',
    expect:
      'a comma-separated list of name=URL (region names of a-z and 0-9; http(s) URLs without query, fragment, user name or password)',
    help: "The other regions and the base URL each one's replicas are reached at (usually an internal balancer), e.g. us=https://rz-us.internal",
    default: '',
    defaultText: 'empty (no other region)',
    schema: peerList,
    show: (raw) =>
      JSON.stringify(
        raw
          .split(',')
          .map((item) =>
            item.includes('=') ? item.replace(/=(.*)$/s, (_, url: string) => `=${redactUrl(url)}`) : item,
          )
          .join(','),
      ),
  },
  {
    name: 'RZ_REGION_SECRET',
    key: 'regionSecret',
    // Any non-empty value parses, so the generic error (which quotes the value) never shows it.
    expect: 'a secret of at least 16 characters',
    help: 'Secret shared by every region: forwarded requests carry it, and a request claiming to be forwarded without it is refused. Required with RZ_REGION_PEERS',
    schema: z.string().min(1).optional(),
  },
  {
    name: 'RZ_REGION_SECRET_FILE',
    key: 'regionSecretFile',
    expect: 'a path to a file holding the secret',
    help: 'Read RZ_REGION_SECRET from this file at start instead (a mounted Kubernetes Secret); a trailing newline is ignored',
    schema: z.string().min(1).optional(),
  },
  {
    name: 'RZ_REGION_ACCEPTED_SECRET',
    key: 'regionAcceptedSecret',
    expect: 'a secret of at least 16 characters',
    help: 'A second secret accepted from the other regions, never sent: set while the shared secret changes region by region, so that no forward is refused meanwhile (README, "Changing the region secret")',
    schema: z.string().min(1).optional(),
  },
  {
    name: 'RZ_REGION_ACCEPTED_SECRET_FILE',
    key: 'regionAcceptedSecretFile',
    expect: 'a path to a file holding the secret',
    help: 'Read RZ_REGION_ACCEPTED_SECRET from this file at start instead; a trailing newline is ignored',
    schema: z.string().min(1).optional(),
  },
  {
    name: 'RZ_REGION_TLS_CA_FILE',
    key: 'regionTlsCaFile',
    expect: 'a path to a PEM file',
    help: "Certificate authorities that sign the https:// peer regions' certificates (default: the system ones)",
    schema: z.string().min(1).optional(),
  },
  {
    name: 'RZ_REGION_CONNECT_TIMEOUT_MS',
    key: 'regionConnectTimeoutMs',
    expect: 'an integer from 50 to 60000',
    help: 'A forward that has no connection to the home region within this time (waiting for a free one included) answers 503',
    default: '2000',
    schema: int(50, 60000),
  },
  {
    name: 'RZ_REGION_RESPONSE_TIMEOUT_MS',
    key: 'regionResponseTimeoutMs',
    expect: 'an integer from 100 to 600000',
    help: 'A forward whose answer has not arrived this long after connecting answers 503; a long-poll gets its wait on top',
    default: '5000',
    schema: int(100, 600000),
  },
  {
    name: 'RZ_REGION_MAX_SOCKETS',
    key: 'regionMaxSockets',
    expect: 'an integer from 1 to 1000000',
    help: 'Most connections this replica opens to one peer region (each request in flight, held long-polls included, takes one); idle ones are kept alive for reuse',
    default: '1024',
    schema: int(1, 1000000),
  },
  {
    name: 'RZ_REGION_BREAKER_FAILURES',
    key: 'regionBreakerFailures',
    expect: 'an integer from 1 to 1000',
    help: 'After this many forwards in a row to one region fail to connect or time out, its sessions answer 503 at once until a probe reaches it again',
    default: '5',
    schema: int(1, 1000),
  },
  {
    name: 'RZ_REGION_BREAKER_COOLDOWN_MS',
    key: 'regionBreakerCooldownMs',
    expect: 'an integer from 100 to 600000',
    help: 'How long a region that tripped the breaker is left alone before it is probed again (GET /health)',
    default: '5000',
    schema: int(100, 600000),
  },
  {
    name: 'LOG_LEVEL',
    key: 'logLevel',
    expect: 'one of fatal, error, warn, info, debug, trace, silent',
    help: 'Log verbosity (JSON lines on stdout)',
    default: 'info',
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  },
  {
    name: 'RZ_ACCESS_LOG',
    key: 'accessLog',
    expect: 'true or false (or 1/0, yes/no; lower case)',
    help: 'Log one line per request (method, route, status, time; never payloads or tokens)',
    default: 'false',
    schema: bool,
  },
];

export interface HostPort {
  host: string;
  port: number;
}

export interface Config {
  port: number;
  /** Unset: Node binds `::` (dual-stack) when the machine has IPv6, `0.0.0.0` otherwise. */
  host: string | undefined;
  redisUrl: string | undefined;
  redisSentinels: HostPort[] | undefined;
  redisSentinelMaster: string;
  redisSentinelPassword: string | undefined;
  redisClusterNodes: HostPort[] | undefined;
  redisUsername: string | undefined;
  redisPassword: string | undefined;
  redisTls: boolean;
  redisTlsCaFile: string | undefined;
  redisTlsCertFile: string | undefined;
  redisTlsKeyFile: string | undefined;
  redisTlsServername: string | undefined;
  redisTlsRejectUnauthorized: boolean;
  publicBaseUrl: string;
  ttlSeconds: number;
  maxBytes: number;
  maxTxnsPerSession: number;
  msc4108DelegateUrl: string | undefined;
  msc4388Enabled: boolean;
  createPolicy: 'open' | 'authenticated';
  homeserverUrl: string | undefined;
  authCacheSeconds: number;
  homeserverTimeoutMs: number;
  redisCommandTimeoutMs: number;
  redisAllowEviction: boolean;
  readiness: 'startup' | 'store';
  shutdownGraceSeconds: number;
  shutdownDelaySeconds: number;
  metricsPort: number | undefined;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxHeaderBytes: number;
  maxHeadersCount: number;
  maxConnections: number;
  maxConnectionsPerAddress: number;
  maxUrlBytes: number;
  createRate: number;
  requestRate: number;
  requestRateWindowSeconds: number;
  maxSessions: number;
  maxSessionsPerAddress: number;
  /** Parsed CIDR ranges, as `[address, prefixLength]` strings ready for ipaddr.js. */
  trustedProxies: string[];
  forwardedHeader: 'x-forwarded-for' | 'forwarded';
  ipv6Prefix: number;
  longPollMaxWaitSeconds: number;
  longPollMaxWaiters: number;
  longPollMaxWaitersPerAddress: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  accessLog: boolean;
  /** Multi-region (src/region); `region` undefined: single region. */
  region: string | undefined;
  regionPeers: RegionPeer[];
  /** From RZ_REGION_SECRET, or read from RZ_REGION_SECRET_FILE at start. Never log it. */
  regionSecret: string | undefined;
  regionSecretFile: string | undefined;
  /** Also accepted from peers, never sent (from RZ_REGION_ACCEPTED_SECRET or its file). Never log it. */
  regionAcceptedSecret: string | undefined;
  regionAcceptedSecretFile: string | undefined;
  regionTlsCaFile: string | undefined;
  regionConnectTimeoutMs: number;
  regionResponseTimeoutMs: number;
  regionMaxSockets: number;
  regionBreakerFailures: number;
  regionBreakerCooldownMs: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

/** Reads and validates the environment; throws ConfigError listing every bad value, one per line. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    const raw = env[s.name];
    const given = raw !== undefined && raw !== '';
    const exact = integers.has(s.schema);
    const value = given ? (exact ? raw : raw.trim()) : typeof s.default === 'function' ? s.default(env) : s.default;
    const parsed = s.schema.safeParse(value);
    if (parsed.success) {
      out[s.key] = parsed.data;
    } else if (given || typeof s.default !== 'function') {
      // A derived default only fails when what it derives from is bad, which is reported already.
      const why = parsed.error.issues.find((i) => i.code === 'custom' && i.params?.explains === true)?.message;
      const shown = (s.show ?? JSON.stringify)(raw ?? '');
      problems.push(`${s.name} must be ${s.expect} (got ${shown}${why === undefined ? '' : `: ${why}`})`);
    }
  }
  const topologies = ['REDIS_URL', 'RZ_REDIS_SENTINELS', 'RZ_REDIS_CLUSTER_NODES'].filter((n) => env[n]);
  if (topologies.length > 1) problems.push(`Set only one of ${topologies.join(', ')} (one Redis topology)`);
  problems.push(...ignoredRedisSettings(env, out, topologies));
  if (Boolean(env.RZ_REDIS_TLS_CERT_FILE) !== Boolean(env.RZ_REDIS_TLS_KEY_FILE)) {
    problems.push('RZ_REDIS_TLS_CERT_FILE and RZ_REDIS_TLS_KEY_FILE go together');
  }
  problems.push(...redisTlsFileProblems(out));
  // Two servers cannot listen on one port; said here rather than as an EADDRINUSE at start.
  if (out.metricsPort !== undefined && out.metricsPort !== 0 && out.metricsPort === out.port) {
    problems.push('RZ_METRICS_PORT must differ from PORT (leave it unset to serve /metrics on the main port)');
  }
  // Node refuses such a server at start in its own words ("headersTimeout"), naming no setting.
  const headersMs = out.headersTimeoutMs;
  const requestMs = out.requestTimeoutMs;
  if (typeof headersMs === 'number' && typeof requestMs === 'number' && headersMs > requestMs) {
    problems.push(
      `RZ_HEADERS_TIMEOUT_MS (${headersMs}) must not exceed RZ_REQUEST_TIMEOUT_MS (${requestMs}): the headers are part of the request`,
    );
  }
  // Checked on the raw values, so it is reported together with every other problem.
  if (env.RZ_CREATE_POLICY?.trim() === 'authenticated' && !env.RZ_HOMESERVER_URL) {
    problems.push('RZ_HOMESERVER_URL must be set when RZ_CREATE_POLICY is authenticated (tokens are verified there)');
  }
  problems.push(...regionProblems(env, out));
  if (problems.length > 0) throw new ConfigError(problems);
  return out as unknown as Config;
}

/** Settings that only mean something with TLS to Redis. */
const REDIS_TLS_ONLY = [
  'RZ_REDIS_TLS_CA_FILE',
  'RZ_REDIS_TLS_CERT_FILE',
  'RZ_REDIS_TLS_KEY_FILE',
  'RZ_REDIS_TLS_SERVERNAME',
  'RZ_REDIS_TLS_REJECT_UNAUTHORIZED',
];
/** Settings that only mean something with Sentinels. */
const SENTINEL_ONLY = ['RZ_REDIS_SENTINEL_MASTER', 'RZ_REDIS_SENTINEL_PASSWORD'];

const listed = (names: string[]): string => `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} set`;

/**
 * Redis settings that would otherwise be ignored without a word: credentials or TLS with no Redis
 * configured (the sessions would be kept in memory), TLS files while TLS is off (the connection
 * would be plaintext), Sentinel settings for another topology.
 */
function ignoredRedisSettings(env: NodeJS.ProcessEnv, out: Record<string, unknown>, topologies: string[]): string[] {
  const given = (name: string) => (env[name]?.trim() ?? '') !== '';
  const tlsOn = out.redisTls === true || (typeof out.redisUrl === 'string' && /^rediss:/i.test(out.redisUrl));
  if (topologies.length === 0) {
    const redisOnly = ['RZ_REDIS_USERNAME', 'RZ_REDIS_PASSWORD', ...REDIS_TLS_ONLY, ...SENTINEL_ONLY].filter(given);
    if (out.redisTls === true) redisOnly.unshift('RZ_REDIS_TLS');
    if (redisOnly.length === 0) return [];
    return [
      `${listed(redisOnly)}, but no Redis is: set REDIS_URL, RZ_REDIS_SENTINELS or RZ_REDIS_CLUSTER_NODES (without one, sessions are kept in memory)`,
    ];
  }
  const problems: string[] = [];
  const tlsOnly = REDIS_TLS_ONLY.filter(given);
  if (!tlsOn && tlsOnly.length > 0) {
    problems.push(`${listed(tlsOnly)}, but TLS to Redis is off: set RZ_REDIS_TLS=true or use a rediss:// URL`);
  }
  const sentinelOnly = SENTINEL_ONLY.filter(given);
  if (topologies[0] !== 'RZ_REDIS_SENTINELS' && sentinelOnly.length > 0) {
    problems.push(`${listed(sentinelOnly)}, but Sentinel settings apply only with RZ_REDIS_SENTINELS`);
  }
  return problems;
}

/**
 * The Redis TLS files, read when the connection is made: checked at start with the rest, each as what
 * it must be, and the client certificate against its key.
 */
function redisTlsFileProblems(out: Record<string, unknown>): string[] {
  const file = (key: keyof Config) => (typeof out[key] === 'string' ? out[key] : undefined);
  const [ca, cert, key] = [file('redisTlsCaFile'), file('redisTlsCertFile'), file('redisTlsKeyFile')];
  const caProblem = ca === undefined ? undefined : certificateFileProblem('RZ_REDIS_TLS_CA_FILE', ca);
  const certProblem = cert === undefined ? undefined : certificateFileProblem('RZ_REDIS_TLS_CERT_FILE', cert);
  const keyProblem = key === undefined ? undefined : privateKeyFileProblem('RZ_REDIS_TLS_KEY_FILE', key);
  // Compared only once both halves can be read, so that each problem is said once.
  const pairProblem =
    cert !== undefined && key !== undefined && certProblem === undefined && keyProblem === undefined
      ? keyPairProblem('RZ_REDIS_TLS_CERT_FILE', 'RZ_REDIS_TLS_KEY_FILE', cert, key)
      : undefined;
  return [caProblem, certProblem, keyProblem, pairProblem].filter((p) => p !== undefined);
}

/** `RZ_*` variables no setting reads: most likely a typo that would otherwise pass unnoticed. */
export function unknownSettings(env: NodeJS.ProcessEnv = process.env): string[] {
  const known = new Set(SETTINGS.map((s) => s.name));
  return Object.keys(env).filter((name) => name.startsWith('RZ_') && !known.has(name));
}

/**
 * The setting an unknown RZ_ variable most likely meant, if any: one of the few settings without the
 * prefix written with it (RZ_REDIS_URL for REDIS_URL: every other Redis setting has it), or a name
 * at most two letters away (RZ_TTL_SECOND).
 */
export function settingSuggestion(name: string): string | undefined {
  const names = SETTINGS.map((s) => s.name);
  const bare = name.slice('RZ_'.length);
  if (names.includes(bare)) return bare;
  let best: { name: string; distance: number } | undefined;
  for (const candidate of names) {
    const distance = editDistance(name, candidate);
    if (distance <= 2 && (best === undefined || distance < best.distance)) best = { name: candidate, distance };
  }
  return best?.name;
}

/** Levenshtein distance: letters inserted, deleted or replaced to turn one name into the other. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length]!;
}

export function helpText(): string {
  const lines = [
    'Usage: rendezvous-server                             start a replica (settings below)',
    '       rendezvous-server check <base-url> [--json] [--metrics-here]',
    '                                                     check a live deployment (check --help)',
    '       rendezvous-server --help                      this text',
    '',
    'A rendezvous server for Matrix "sign in with QR code" (MSC3886, MSC4108, MSC4388).',
    'Configuration comes from environment variables:',
    '',
  ];
  for (const s of SETTINGS) {
    const def = s.defaultText ?? (typeof s.default === 'string' ? s.default : 'unset');
    lines.push(`  ${s.name}`, `      ${s.help}.`, `      Expects ${s.expect}; default: ${def}.`);
  }
  return lines.join('\n') + '\n';
}
