/** How a proxy in front routes the rendezvous paths to the server, path unchanged. */
const ROUTE_WITH_PATH_UNCHANGED =
  'nginx: `location ~ ^/_matrix/client/(unstable/org\\.matrix\\.msc4108|unstable/io\\.element\\.msc4388|v1|unstable/org\\.matrix\\.msc3886)/rendezvous(/|$) { proxy_pass http://rendezvous; }` (no URI after the upstream name); Ingress: a `path: /` rule with `pathType: Prefix` to the Service.';

/**
 * How to fix each kind of finding, as the line to put in nginx or in the chart's Ingress values.
 * One place, so the wording stays consistent and the README can point at it.
 */
export const FIX = {
  routing: `Route the rendezvous paths to the server with the path unchanged. ${ROUTE_WITH_PATH_UNCHANGED}`,
  notFound: `Check the base URL given to the check and to clients (scheme, host, port and path prefix): it must be the URL the rendezvous server answers at, usually with no path (the server serves its paths from the root), or a homeserver or proxy that routes the rendezvous paths to it. Behind a proxy, route them with the path unchanged. ${ROUTE_WITH_PATH_UNCHANGED}`,
  redirect:
    'Check the URL given to the check and to clients: use the one the redirect points at (https:// rather than http://, the right host), or route the rendezvous paths to the server without redirecting them. Clients re-send a redirected POST as a body-less GET (301, 302, 303), and a browser follows no redirect across origins without CORS on it.',
  unreachable:
    'Check the URL (scheme, host, port), that its name resolves and its TLS certificate verifies from here (a private CA: NODE_EXTRA_CA_CERTS=ca.pem), and that a firewall lets this machine in.',
  rateLimited:
    'Run the check again once Retry-After has passed. A run creates 7 sessions, deleting each; the default RZ_CREATE_RATE allows 30 creates a minute per client address, and RZ_MAX_SESSIONS_PER_ADDRESS (50) and RZ_MAX_SESSIONS (20000) bound the sessions alive at once, which free only as sessions end or expire. Behind a proxy, set RZ_TRUSTED_PROXIES so clients are not all counted as the proxy.',
  requestRateLimited:
    'Run the check again once Retry-After has passed. A run sends about 115 requests (most of them to prove the shared store); the default RZ_REQUEST_RATE of 30 a second over RZ_REQUEST_RATE_WINDOW_SECONDS (10) allows 300 per window per client address, about two runs, shared with every other client at that address. Behind a proxy, set RZ_TRUSTED_PROXIES so clients are not all counted as the proxy.',
  storeUnavailable:
    'The server answered 503: its Redis is unreachable or refusing writes. Check REDIS_URL (Helm: redis.url) and that Redis answers from the replicas; /ready says why.',
  proxyError:
    'A proxy answered instead of the server (no Matrix JSON error): check that the upstream is up and reachable from the proxy, and its connect and read timeouts (nginx `proxy_read_timeout 90s;`).',
  conditional:
    'Pass If-Match and If-None-Match through unchanged and do not cache these paths: no `proxy_cache` (or `proxy_cache off;`) on the rendezvous location, no `proxy_set_header If-Match`/`If-None-Match`; on a CDN, bypass its cache for these paths.',
  cache:
    'Do not cache the rendezvous paths: no `proxy_cache` on the rendezvous location (or `proxy_cache off;` there), and never `proxy_ignore_headers Cache-Control` for them (the server sends `Cache-Control: no-store`); on a CDN, bypass its cache for these paths.',
  requestHeaders:
    "Pass request headers through unchanged: no `proxy_set_header` that empties or replaces If-Match, If-None-Match, Content-Type or Prefer on the rendezvous location (nginx passes the client's headers on by default); on a CDN or WAF, let these headers reach the origin.",
  validators:
    'Keep ETag, Expires and Last-Modified on every answer, 304 included: no `proxy_hide_header ETag`, no `etag off;` on a caching layer, and give every answer its Content-Type (some CDNs drop ETags without one).',
  notModified:
    'Pass 304s on as the server sends them, without Content-Type or Content-Length: no `add_header Content-Type` or `add_header Content-Length` (nginx adds those to 304s too), no `more_set_headers` or CDN rule setting them on every answer of the rendezvous location. If nothing in front adds them, the URL does not reach this server: route the rendezvous paths to it.',
  weakEtag:
    'Stop compressing rendezvous answers: nginx `gzip off;` in the rendezvous location (the server already sends `Cache-Control: no-transform`); ingress-nginx: `use-gzip: "false"` in the controller ConfigMap, or leave text/plain and application/json out of `gzip-types`.',
  cacheControl:
    'Pass Cache-Control through as the server sends it: remove `add_header Cache-Control`, `expires` and `proxy_hide_header Cache-Control` from the rendezvous location; on a CDN, honour the origin cache headers.',
  cors: 'Let the server answer CORS itself, and nothing else: remove `add_header Access-Control-*` and `proxy_hide_header Access-Control-*` lines from the location; ingress-nginx: `nginx.ingress.kubernetes.io/enable-cors: "false"` (the chart sets it).',
  preflight:
    'Pass OPTIONS requests to the server (no `if ($request_method = OPTIONS) { return 204; }` of the proxy\'s own), and keep its Access-Control-* answer intact; ingress-nginx: `nginx.ingress.kubernetes.io/enable-cors: "false"`.',
  contentType:
    "Do not rewrite Content-Type: no `add_header Content-Type` (nginx adds a second one beside the server's), no `charset utf-8;`/`charset_types` covering text/plain, no `default_type` or `proxy_hide_header Content-Type` on the rendezvous location.",
  longPoll:
    'Let held requests and answers through at once: nginx `proxy_buffering off;` and `proxy_read_timeout 90s;` (above RZ_LONGPOLL_MAX_WAIT_SECONDS), and no upstream `max_conns` or single shared connection that queues other requests behind a held read; ingress-nginx: `nginx.ingress.kubernetes.io/proxy-buffering: "off"` and `nginx.ingress.kubernetes.io/proxy-read-timeout: "90"` (the chart sets both).',
  longPollNotHeld:
    'Turn long-poll on (RZ_LONGPOLL_MAX_WAIT_SECONDS above 0; 30 by default) and let the wait a client asks for reach the server: pass the Prefer request header and the query string through unchanged (no `proxy_set_header Prefer`, no rewrite that drops `?timeout_ms=`, no `proxy_cache` on the rendezvous location: nginx then drops If-None-Match on the way to the server).',
  longPollTimeout:
    'Hold requests longer than the longest long-poll: nginx `proxy_read_timeout 90s;`; ingress-nginx: `nginx.ingress.kubernetes.io/proxy-read-timeout: "90"`; or lower RZ_LONGPOLL_MAX_WAIT_SECONDS below the proxy\'s timeout.',
  sharedStore:
    'Point every replica at the same Redis: one REDIS_URL (Helm: redis.url; compose: REDIS_URL) for all of them, never the in-memory store (no Redis setting) with more than one replica, and no load balancer in front of replicas of different installations.',
  metrics:
    'Serve metrics on a port of their own, which nothing public routes to: RZ_METRICS_PORT=9464 (Helm: metrics.separatePort: true, the default). Until then block them case-insensitively: nginx `location ~* ^/metrics(/|$) { return 404; }`.',
  clock:
    'Keep the clocks in sync with NTP (chrony or systemd-timesyncd) on the servers, and on this machine if it is the one that is off.',
  publicUrl: 'Set RZ_PUBLIC_BASE_URL (Helm: config.publicBaseUrl) to the URL clients reach the server at.',
  discovery:
    'Route GET on the MSC4388 path to the server as well (the location that routes its sessions does), and do not answer it from the proxy.',
} as const;
