import { expect } from 'chai';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { isMap, parse, parseDocument, type YAMLMap } from 'yaml';
import { SETTINGS, loadConfig } from '../src/config';
import { start } from '../src/main';
import { Metrics } from '../src/metrics';
import { req } from './helpers/exchange';
import { CHART, helm, helmBinary, one, render, valueArgs, type K8sObject } from './helpers/helm';
import { modelFor, validateObject } from './helpers/k8s-schema';

const ROOT = join(__dirname, '..');
const read = (...p: string[]) => readFileSync(join(CHART, ...p), 'utf8');
const KNOWN = new Set(SETTINGS.map((s) => s.name));
/** Every values set under ci/: the least an installation needs, everything on, each Redis topology. */
const VALUE_SETS = readdirSync(join(CHART, 'ci')).filter((f) => f.endsWith('-values.yaml'));
const REQUIRED_ONLY = 'required-values.yaml';
const FULL = 'full-values.yaml';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Values = Record<string, any>;

/** The server container of the Deployment. */
const container = (objects: K8sObject[]) => one(objects, 'Deployment').spec.template.spec.containers[0];

/**
 * The environment a pod of this render starts with: the ConfigMap, then the container's own
 * entries (a Secret reference stands for a password, a file path is taken as written).
 */
function podEnv(objects: K8sObject[]): Record<string, string> {
  const env: Record<string, string> = { ...(one(objects, 'ConfigMap', '-rendezvous-server').data as object) };
  for (const e of container(objects).env ?? []) env[e.name] = e.value ?? 'from-a-secret';
  return env;
}

const MEBI = 1024 * 1024;
function bytes(quantity: string): number {
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(quantity);
  if (m === null) throw new Error(`unexpected quantity ${quantity}`);
  return Number(m[1]) * ({ Ki: 1024, Mi: MEBI, Gi: 1024 * MEBI }[m[2] ?? ''] ?? 1);
}

describe('Helm chart, rendered by helm', function () {
  // The first test may extract the helm binary (about a second); helm itself takes a fraction of one.
  this.timeout(60_000);
  const values = parse(read('values.yaml')) as Values;
  const rendered = new Map<string, K8sObject[]>();

  before(async () => {
    helmBinary();
    for (const set of VALUE_SETS) rendered.set(set, await render([set]));
  });
  const objects = (set: string) => rendered.get(set)!;

  it('passes helm lint --strict with every values set', async () => {
    expect(VALUE_SETS).to.include.members([REQUIRED_ONLY, FULL, 'sentinel-values.yaml', 'cluster-values.yaml']);
    for (const set of VALUE_SETS) {
      const r = await helm(['lint', '--strict', CHART, ...valueArgs([set])]);
      expect(r.code, `${set}: ${r.stdout}${r.stderr}`).to.equal(0);
      expect(r.stdout).to.include('0 chart(s) failed');
    }
  });

  it('refuses to render without the values an installation needs, naming each one', async () => {
    const bare = await helm(['template', 'rz', CHART]);
    expect(bare.code).to.not.equal(0);
    for (const name of ['image.repository', 'config.publicBaseUrl', 'redis.url']) expect(bare.stderr).to.include(name);
    // Nothing else missing: the message names publicBaseUrl alone.
    const noUrl = await helm([
      'template',
      'rz',
      CHART,
      ...valueArgs([], { 'image.repository': 'registry.example.org/rz', 'redis.url': 'redis://r:6379' }),
    ]);
    expect(noUrl.code).to.not.equal(0);
    expect(noUrl.stderr).to.include('config.publicBaseUrl');
    expect(noUrl.stderr).to.not.include('image.repository');
    expect(noUrl.stderr).to.not.include('redis.url');
    // Each topology asks for its own location.
    const sentinel = await helm(['template', 'rz', CHART, ...valueArgs([REQUIRED_ONLY], { 'redis.mode': 'sentinel' })]);
    expect(sentinel.stderr).to.include('redis.sentinels');
  });

  it('checks the values against values.schema.json before rendering anything', async () => {
    // Each refusal names the value (helm 3 and 4 word the rest differently).
    for (const [key, value, complaint] of [
      ['replicaCount', 'three', 'replicaCount'],
      ['config.publicBaseUrl', 'ftp://rendezvous.example.org', 'publicBaseUrl'],
      ['redis.mode', 'memcached', 'mode'],
      ['config.publicBaseURL', 'https://typo.example.org', 'publicBaseURL'],
      ['config.extraEnv.RZ-BAD', '1', 'RZ-BAD'],
      ['networkPolicy.egress.redisPorts[0]', '70000', 'redisPorts'],
    ] as const) {
      const r = await helm(['template', 'rz', CHART, ...valueArgs([REQUIRED_ONLY], { [key]: value })]);
      expect(r.code, `${key}=${value}`).to.not.equal(0);
      expect(r.stderr, `${key}=${value}`).to.include('schema');
      expect(r.stderr, `${key}=${value}`).to.include(complaint);
    }
  });

  it('describes every key of values.yaml in values.schema.json', () => {
    const schema = JSON.parse(read('values.schema.json')) as Values;
    const missing: string[] = [];
    const walk = (node: Values, s: Values | undefined, path: string) => {
      for (const [key, value] of Object.entries(node)) {
        const sub = s?.properties?.[key] as Values | undefined;
        if (sub === undefined) missing.push(path + key);
        else if (value !== null && typeof value === 'object' && !Array.isArray(value) && sub.properties) {
          walk(value as Values, sub, `${path}${key}.`);
        }
      }
    };
    walk(values, schema, '');
    expect(missing).to.deep.equal([]);
    expect(schema.additionalProperties, 'a misspelt top-level key is refused').to.equal(false);
  });

  it('renders only objects that validate against the Kubernetes OpenAPI schemas (every values set)', () => {
    const kinds = new Set<string>();
    for (const set of VALUE_SETS) {
      for (const obj of objects(set)) {
        kinds.add(obj.kind);
        // The Prometheus Operator's CRD has no schema here: checked against the Service below.
        if (obj.kind === 'ServiceMonitor') continue;
        expect(() => validateObject(obj), `${set}: ${obj.kind} ${obj.metadata.name}`).to.not.throw();
      }
    }
    expect([...kinds]).to.include.members([
      'Deployment',
      'Service',
      'ConfigMap',
      'Secret',
      'ServiceAccount',
      'Ingress',
      'NetworkPolicy',
      'HorizontalPodAutoscaler',
      'PodDisruptionBudget',
      'ServiceMonitor',
      'Pod',
    ]);
  });

  it('has a validator that refuses a malformed object (replicas: "three")', () => {
    const deployment = structuredClone(one(objects(REQUIRED_ONLY), 'Deployment'));
    deployment.spec.replicas = 'three';
    expect(() => validateObject(deployment)).to.throw(/replicas/);
    expect(modelFor('monitoring.coreos.com/v1', 'ServiceMonitor')).to.equal(undefined);
  });

  it('renders a ServiceMonitor (CRD, checked structurally) that selects the Service and scrapes a port it has', () => {
    for (const set of [FULL, 'cluster-values.yaml']) {
      const monitor = one(objects(set), 'ServiceMonitor');
      const service = one(objects(set), 'Service');
      expect(monitor.apiVersion).to.equal('monitoring.coreos.com/v1');
      for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels as Record<string, string>)) {
        expect(service.metadata.labels[k], `${set}: label ${k}`).to.equal(v);
      }
      const ports = (service.spec.ports as { name: string }[]).map((p) => p.name);
      for (const endpoint of monitor.spec.endpoints as { port: string; path: string; interval: string }[]) {
        expect(ports, set).to.include(endpoint.port);
        expect(endpoint.path).to.equal('/metrics');
        expect(endpoint.interval).to.match(/^\d+(s|m)$/);
      }
    }
  });

  it('sets only environment variables the server reads, and every one a Kubernetes deployment needs', () => {
    const needed: Record<string, string[]> = {
      [REQUIRED_ONLY]: ['REDIS_URL'],
      [FULL]: ['REDIS_URL', 'RZ_REDIS_PASSWORD', 'RZ_REDIS_TLS_CA_FILE', 'RZ_REDIS_TLS_CERT_FILE'],
      'sentinel-values.yaml': [
        'RZ_REDIS_SENTINELS',
        'RZ_REDIS_SENTINEL_MASTER',
        'RZ_REDIS_PASSWORD',
        'RZ_REDIS_SENTINEL_PASSWORD',
      ],
      'cluster-values.yaml': ['RZ_REDIS_CLUSTER_NODES', 'RZ_REDIS_TLS'],
    };
    for (const set of VALUE_SETS) {
      const env = podEnv(objects(set));
      const names = Object.keys(env);
      expect(
        names.filter((n) => !KNOWN.has(n)),
        `${set}: set by the chart but not read by the server`,
      ).to.deep.equal([]);
      const required = [
        'PORT',
        'RZ_PUBLIC_BASE_URL',
        'RZ_SHUTDOWN_DELAY_SECONDS',
        'RZ_SHUTDOWN_GRACE_SECONDS',
        'RZ_TRUSTED_PROXIES',
        ...(needed[set] ?? []),
      ];
      expect(
        required.filter((n) => !names.includes(n)),
        `${set}: needed in Kubernetes but not set by the chart`,
      ).to.deep.equal([]);
    }
  });

  it('configures the server, with every values set, in a way the server accepts', () => {
    for (const set of VALUE_SETS) {
      const env = podEnv(objects(set));
      const config = loadConfig(env);
      expect(config.port, set).to.equal(values.containerPort);
      expect(config.publicBaseUrl, set).to.match(/^https:\/\//);
      expect(config.trustedProxies.length, set).to.be.greaterThan(0);
    }
    // The full set's extra settings arrive as given.
    const full = loadConfig(podEnv(objects(FULL)));
    expect(full.maxTxnsPerSession).to.equal(128);
    expect(full.msc4388Enabled).to.equal(false);
    expect(full.host).to.equal('::');
  });

  it('leaves HOST unset by default, so pods bind every address they have (IPv6-only clusters too)', () => {
    const env = podEnv(objects(REQUIRED_ONLY));
    expect(env).to.not.have.property('HOST');
    expect(loadConfig(env).host).to.equal(undefined);
    expect(readFileSync(join(ROOT, 'Dockerfile'), 'utf8')).to.not.match(/^\s*HOST=/m);
  });

  it('refuses a config.extraEnv entry for a variable the chart sets itself, naming it', async () => {
    for (const [key, value] of [
      ['config.extraEnv.PORT', '9000'],
      ['config.extraEnv.RZ_PUBLIC_BASE_URL', 'https://other.example.org'],
      ['config.extraEnv.RZ_REDIS_PASSWORD', 'x'],
    ] as const) {
      const r = await helm(['template', 'rz', CHART, ...valueArgs([REQUIRED_ONLY], { [key]: value })]);
      expect(r.code, key).to.not.equal(0);
      expect(r.stderr).to.include(key);
    }
    const host = await helm(['template', 'rz', CHART, ...valueArgs([FULL], { 'config.extraEnv.HOST': '0.0.0.0' })]);
    expect(host.stderr).to.include('config.extraEnv.HOST');
  });

  it('serves metrics on their own port, which the Service exposes and the Ingress never routes', async () => {
    for (const set of [REQUIRED_ONLY, FULL]) {
      const env = podEnv(objects(set));
      const ports = container(objects(set)).ports as { name: string; containerPort: number }[];
      expect(ports.find((p) => p.name === 'metrics')?.containerPort).to.equal(Number(env.RZ_METRICS_PORT));
      expect(loadConfig(env).metricsPort).to.equal(values.metrics.port);
    }
    const ingress = one(objects(FULL), 'Ingress');
    for (const rule of ingress.spec.rules as { http: { paths: { backend: { service: { port: object } } }[] } }[]) {
      for (const path of rule.http.paths) expect(path.backend.service.port).to.deep.equal({ name: 'http' });
    }
    const r = await helm(['template', 'rz', CHART, ...valueArgs([FULL], { 'metrics.separatePort': 'false' })]);
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.include('would publish /metrics');
  });

  it('keeps CORS, ETags and long-polls intact through ingress-nginx', () => {
    const annotations = one(objects(FULL), 'Ingress').metadata.annotations as Record<string, string>;
    expect(annotations['nginx.ingress.kubernetes.io/enable-cors']).to.equal('false');
    expect(annotations['nginx.ingress.kubernetes.io/proxy-buffering']).to.equal('off');
    const config = loadConfig(podEnv(objects(FULL)));
    expect(Number(annotations['nginx.ingress.kubernetes.io/proxy-read-timeout'])).to.be.greaterThan(
      config.longPollMaxWaitSeconds,
    );
    expect(annotations['cert-manager.io/cluster-issuer']).to.equal('letsencrypt');
  });

  it('sizes the memory limit above the benchmark peak for the default long-poll waiter bound', () => {
    // The figure the README reports: peak RSS of one replica holding 10,000 waits.
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const peakMb = Number(/\| same, peak during the burst \| ([\d,]+) MB \|/.exec(readme)![1]!.replace(',', ''));
    expect(loadConfig({}).longPollMaxWaiters).to.equal(10_000);
    const resources = container(objects(REQUIRED_ONLY)).resources;
    expect(bytes(resources.limits.memory)).to.be.greaterThan(peakMb * 1e6);
    expect(bytes(resources.requests.memory)).to.be.lessThan(bytes(resources.limits.memory));
    expect(values.resources.limits.memory).to.equal(resources.limits.memory);
  });

  it('probes /health for liveness and /ready for readiness on the port the server answers on', async () => {
    const c = container(objects(REQUIRED_ONLY));
    expect(c.livenessProbe.httpGet).to.deep.equal({ path: '/health', port: 'http' });
    expect(c.readinessProbe.httpGet).to.deep.equal({ path: '/ready', port: 'http' });
    const http = (c.ports as { name: string; containerPort: number }[]).find((p) => p.name === 'http')!;
    expect(http.containerPort).to.equal(loadConfig(podEnv(objects(REQUIRED_ONLY))).port);
    expect(readFileSync(join(ROOT, 'Dockerfile'), 'utf8')).to.match(new RegExp(`^EXPOSE ${http.containerPort}$`, 'm'));

    const server = await start(loadConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent' }));
    try {
      const base = `http://127.0.0.1:${server.port}`;
      expect((await req(`${base}${c.livenessProbe.httpGet.path}`)).status).to.equal(200);
      expect((await req(`${base}${c.readinessProbe.httpGet.path}`)).status).to.equal(200);
    } finally {
      await server.stop();
    }
  });

  it('runs non-root on a read-only root filesystem, without a service account token, with time to drain', () => {
    for (const set of VALUE_SETS) {
      const pod = one(objects(set), 'Deployment').spec.template.spec;
      expect(pod.securityContext.runAsNonRoot, set).to.equal(true);
      expect(pod.automountServiceAccountToken, set).to.equal(false);
      expect(pod.enableServiceLinks, set).to.equal(false);
      expect(pod.containers[0].securityContext).to.include({
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
      });
      const env = loadConfig(podEnv(objects(set)));
      expect(pod.terminationGracePeriodSeconds, set).to.be.greaterThan(
        env.shutdownDelaySeconds + env.shutdownGraceSeconds,
      );
    }
    const uid = /^USER (\d+):/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))![1];
    expect(one(objects(REQUIRED_ONLY), 'Deployment').spec.template.spec.securityContext.runAsUser).to.equal(
      Number(uid),
    );
    const account = one(objects(REQUIRED_ONLY), 'ServiceAccount');
    expect(account.automountServiceAccountToken).to.equal(false);
    expect(one(objects(REQUIRED_ONLY), 'Deployment').spec.template.spec.serviceAccountName).to.equal(
      account.metadata.name,
    );
    expect(objects('cluster-values.yaml').some((o) => o.kind === 'ServiceAccount')).to.equal(false);
  });

  it('keeps the Redis password in a Secret, and rolls the pods when it or the settings change', async () => {
    const full = objects(FULL);
    const configMap = one(full, 'ConfigMap', '-rendezvous-server');
    expect(JSON.stringify(configMap.data)).to.not.include('not-a-real-password');
    const secret = one(full, 'Secret');
    expect(Buffer.from(secret.data['redis-password'] as string, 'base64').toString()).to.equal('not-a-real-password');
    const ref = (container(full).env as { name: string; valueFrom?: { secretKeyRef: { name: string } } }[]).find(
      (e) => e.name === 'RZ_REDIS_PASSWORD',
    );
    expect(ref?.valueFrom?.secretKeyRef.name).to.equal(secret.metadata.name);

    const checksums = (objs: K8sObject[]) => {
      const a = one(objs, 'Deployment').spec.template.metadata.annotations as Record<string, string>;
      return { config: a['checksum/config'], secret: a['checksum/secret'] };
    };
    const before = checksums(full);
    const newPassword = checksums(await render([FULL], { 'redis.password': 'another-password' }));
    expect(newPassword.secret).to.not.equal(before.secret);
    expect(newPassword.config).to.equal(before.config);
    const newSetting = checksums(await render([FULL], { 'config.logLevel': 'debug' }));
    expect(newSetting.config).to.not.equal(before.config);
  });

  it('mounts a client certificate only together with its key', async () => {
    const env = podEnv(objects(FULL));
    expect(env.RZ_REDIS_TLS_CERT_FILE).to.equal('/etc/rendezvous/redis-tls/tls.crt');
    expect(env.RZ_REDIS_TLS_KEY_FILE).to.equal('/etc/rendezvous/redis-tls/tls.key');
    for (const missing of ['redis.tls.keyKey', 'redis.tls.certKey']) {
      const r = await helm(['template', 'rz', CHART, ...valueArgs([FULL], { [missing]: '' })]);
      expect(r.code, missing).to.not.equal(0);
      expect(r.stderr).to.include('go together');
    }
  });

  it('ships a helm test that runs the check against the Service, let in by the NetworkPolicy', () => {
    const full = objects(FULL);
    const pod = one(full, 'Pod', '-check');
    const service = one(full, 'Service');
    const deployment = one(full, 'Deployment');
    expect(pod.metadata.annotations['helm.sh/hook']).to.equal('test');
    const c = pod.spec.containers[0];
    expect(c.image).to.equal(deployment.spec.template.spec.containers[0].image);
    const http = (service.spec.ports as { name: string; port: number }[]).find((p) => p.name === 'http')!;
    expect(c.args).to.deep.equal(['node', 'dist/main.js', 'check', `http://${service.metadata.name}:${http.port}`]);
    expect(pod.spec.automountServiceAccountToken).to.equal(false);
    expect(c.securityContext.readOnlyRootFilesystem).to.equal(true);

    const policy = one(full, 'NetworkPolicy');
    const httpRule = (policy.spec.ingress as { ports: { port: string }[]; from: { podSelector?: object }[] }[]).find(
      (r) => r.ports[0]!.port === 'http',
    )!;
    const testPeer = httpRule.from.find((p) => p.podSelector !== undefined) as {
      podSelector: { matchLabels: Record<string, string> };
    };
    for (const [k, v] of Object.entries(testPeer.podSelector.matchLabels)) {
      expect(pod.metadata.labels[k], `test pod label ${k}`).to.equal(v);
    }
    // The server pods themselves are not let in as the test pod.
    expect(deployment.spec.template.metadata.labels['app.kubernetes.io/component']).to.equal(undefined);
    expect(policy.spec.policyTypes).to.deep.equal(['Ingress', 'Egress']);
    // Nothing that selects server pods takes the test pod for one: not the Service (it would be
    // an endpoint), not the PDB, not the NetworkPolicy (its egress rules would cut it off).
    const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
      Object.entries(selector).every(([k, v]) => labels[k] === v);
    const podLabels = pod.metadata.labels as Record<string, string>;
    expect(selects(service.spec.selector, podLabels), 'Service').to.equal(false);
    expect(selects(one(full, 'PodDisruptionBudget').spec.selector.matchLabels, podLabels), 'PDB').to.equal(false);
    expect(selects(policy.spec.podSelector.matchLabels, podLabels), 'NetworkPolicy').to.equal(false);
    expect(selects(service.spec.selector, deployment.spec.template.metadata.labels), 'sanity').to.equal(true);
  });

  it('documents every key of values.yaml', () => {
    const doc = parseDocument(read('values.yaml'));
    const undocumented: string[] = [];
    const walk = (map: YAMLMap, path: string) => {
      map.items.forEach((pair, i) => {
        const key = String((pair.key as { value: unknown }).value);
        const comment =
          (pair.key as { commentBefore?: string }).commentBefore ?? (i === 0 ? map.commentBefore : undefined) ?? '';
        const documented = comment.includes('-- ');
        const value = pair.value;
        if (isMap(value) && value.items.length > 0 && !documented) walk(value as YAMLMap, `${path}${key}.`);
        else if (!documented) undocumented.push(path + key);
      });
    };
    walk(doc.contents as YAMLMap, '');
    expect(undocumented).to.deep.equal([]);
  });

  it('has a README whose values table is generated from values.yaml (npm run chart-readme)', () => {
    const { render: renderReadme } = require('../scripts/chart-readme.js') as { render(text: string): string };
    const committed = read('README.md');
    expect(renderReadme(committed), 'README.md is stale: run npm run chart-readme').to.equal(committed);
    expect(committed).to.include('| `config.publicBaseUrl` | string | `""` |');
  });

  it('has a v2 Chart.yaml whose appVersion is the package version', () => {
    const chart = parse(read('Chart.yaml')) as Values;
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(chart).to.include({ apiVersion: 'v2', name: 'rendezvous-server', type: 'application' });
    expect(chart.version).to.match(/^\d+\.\d+\.\d+$/);
    expect(chart.appVersion).to.equal(pkg.version);
  });

  it('has a Grafana dashboard that only queries metrics the server exports', async () => {
    const dashboard = JSON.parse(read('dashboards', 'rendezvous-server.json')) as {
      panels: { targets: { expr: string }[] }[];
    };
    const exported = new Set<string>();
    for (const m of await new Metrics().registry.getMetricsAsJSON()) {
      exported.add(m.name);
      if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(m.name + s);
    }
    const queried = new Set<string>();
    for (const panel of dashboard.panels) {
      for (const t of panel.targets) for (const m of t.expr.matchAll(/\brendezvous_\w+/g)) queried.add(m[0]);
    }
    expect(queried.size).to.be.greaterThan(10);
    expect([...queried].filter((n) => !exported.has(n))).to.deep.equal([]);
    const shipped = one(objects(FULL), 'ConfigMap', '-dashboard');
    expect(JSON.parse(shipped.data['rendezvous-server.json'] as string)).to.deep.equal(dashboard);
  });
});
