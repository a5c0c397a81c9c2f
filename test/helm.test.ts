import { expect } from 'chai';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { isMap, parse, parseDocument, type YAMLMap } from 'yaml';
import { parseCheckArgs } from '../src/check/cli';
import { ConfigError, SETTINGS, loadConfig } from '../src/config';
import { start } from '../src/main';
import { Metrics } from '../src/metrics';
import { msc4388BodyLimit } from '../src/protocols/msc4388';
import { REGION_NAME } from '../src/region/names';
import { peerList } from '../src/region/settings';
import { req } from './helpers/exchange';
import { CHART, helm, helmBinary, notes, one, render, secretFileAt, valueArgs, type K8sObject } from './helpers/helm';
import { CERTIFICATE_PEM, KEY_PEM, PEM_FILE } from './helpers/pem';
import { modelFor, validateObject } from './helpers/k8s-schema';

const ROOT = join(__dirname, '..');
const read = (...p: string[]) => readFileSync(join(CHART, ...p), 'utf8');
const KNOWN = new Set(SETTINGS.map((s) => s.name));
/** Every values set under ci/: the least an installation needs, everything on, each Redis topology. */
const VALUE_SETS = readdirSync(join(CHART, 'ci')).filter((f) => f.endsWith('-values.yaml'));
const REQUIRED_ONLY = 'required-values.yaml';
const FULL = 'full-values.yaml';
/** Region eu of three: peers, the shared secret and the peers' CA from existing Secrets. */
const REGIONS = 'regions-values.yaml';
/** Numbers of a million and more in a values file, which reach the templates as float64. */
const LARGE = 'large-numbers-values.yaml';

/**
 * Stand-ins for the Secrets the values sets name but the chart leaves to the operator, by Secret
 * name and key: what a pod would find in the files the chart mounts from them.
 */
const CLUSTER_SECRETS: Record<string, Record<string, string>> = {
  // As `kubectl create secret generic --from-file` of a file written with echo: a trailing newline.
  'rendezvous-region': {
    'shared-secret': 'stand-in-region-secret-0123456789\n',
    'next-secret': 'stand-in-next-region-secret-0123\n',
  },
  'rendezvous-region-ca': { 'ca.pem': CERTIFICATE_PEM },
  'redis-tls': {
    'ca.crt': CERTIFICATE_PEM,
    'tls.crt': CERTIFICATE_PEM,
    'tls.key': KEY_PEM,
  },
};
const REGION_SECRET = CLUSTER_SECRETS['rendezvous-region']!['shared-secret']!;

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

/** Where the stand-in Secret files are written (a temporary directory per run). */
let standIns = '';

/**
 * The environment a pod of this render starts with, as the server reads it there: podEnv, with each
 * path into a mounted Secret pointed at a temporary file holding the stand-in for the key that
 * Kubernetes would project at that path. A path no Secret backs stays as written (and the server
 * finds no file there).
 */
function podEnvWithFiles(objects: K8sObject[]): Record<string, string> {
  const env = podEnv(objects);
  const deployment = one(objects, 'Deployment');
  for (const [name, value] of Object.entries(env)) {
    const file = value.startsWith('/') ? secretFileAt(deployment, value) : undefined;
    if (file === undefined) continue;
    const content = CLUSTER_SECRETS[file.secret]?.[file.key];
    if (content === undefined) throw new Error(`${name}: no stand-in for key ${file.key} of Secret ${file.secret}`);
    const path = join(standIns, file.secret, file.key);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, content);
    env[name] = path;
  }
  return env;
}

/** The server's own configuration of a pod of this render. */
const loadPod = (objects: K8sObject[]) => loadConfig(podEnvWithFiles(objects));

/** What loadConfig refuses in this environment (empty: it loads). */
function refusals(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
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
    standIns = mkdtempSync(join(tmpdir(), 'rz-helm-secrets-'));
    for (const set of VALUE_SETS) rendered.set(set, await render([set]));
  });
  after(() => rmSync(standIns, { recursive: true, force: true }));
  const objects = (set: string) => rendered.get(set)!;

  it('passes helm lint --strict with every values set', async () => {
    expect(VALUE_SETS).to.include.members([
      REQUIRED_ONLY,
      FULL,
      REGIONS,
      'sentinel-values.yaml',
      'cluster-values.yaml',
    ]);
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

  it('refuses values from templates/validate/values.yaml, in helm template, install and lint alike (lint logs missing ones)', async () => {
    // One refusal of each kind the chart makes at render time (the schema cannot say them).
    const refused: [Record<string, string>, string, Record<string, string>?][] = [
      [{ 'image.repository': '' }, 'required values are not set'],
      [
        { 'autoscaling.enabled': 'true', 'autoscaling.minReplicas': '5', 'autoscaling.maxReplicas': '2' },
        'minReplicas',
      ],
      [{ 'region.peers.us': 'https://us.example.org' }, 'inconsistent region values'],
      [{ 'config.extraEnv.PORT': '1' }, 'config.extraEnv.PORT'],
      [{ 'config.extraEnv.RZ_REGION': 'eu' }, 'config.extraEnv.RZ_REGION'],
      [{ 'ingress.enabled': 'true', 'metrics.separatePort': 'false' }, 'would publish /metrics'],
      [{ 'redis.tls.certKey': 'tls.crt' }, 'redis.tls.certKey'],
      [
        {
          'redis.url': '',
          'redis.mode': 'sentinel',
          'redis.sentinels': 's:26379',
          'networkPolicy.enabled': 'true',
          'networkPolicy.egress.enabled': 'true',
        },
        'redisPorts',
        { 'networkPolicy.egress.redisPorts': '[]' },
      ],
    ];
    for (const [set, message, json] of refused) {
      const args = valueArgs([REQUIRED_ONLY], set, json);
      const what = JSON.stringify({ ...set, ...json });
      for (const command of [
        ['template', 'rz', CHART],
        ['install', 'rz', CHART, '--dry-run=client'],
      ]) {
        const r = await helm([...command, ...args]);
        expect(r.code, `${command[0]} ${what}`).to.not.equal(0);
        // The template that says it validates values, never an object's (the test pod's was named).
        expect(r.stderr, `${command[0]} ${what}`).to.match(
          /execution error at \(rendezvous-server\/templates\/validate\/values\.yaml:/,
        );
        expect(r.stderr, `${command[0]} ${what}`).to.include(message);
      }
      // Lint turns `fail` into a log line. Values merely missing stay that (Helm lints a chart
      // without its required values); values that were set and refused must fail it, with the message.
      const lint = await helm(['lint', CHART, ...args]);
      if (message === 'required values are not set') {
        expect(lint.code, `lint ${what}: ${lint.stdout}`).to.equal(0);
        expect(lint.stdout + lint.stderr, `lint ${what}`).to.include(message);
        continue;
      }
      expect(lint.code, `lint ${what}: ${lint.stdout}`).to.not.equal(0);
      expect(lint.stdout, `lint ${what}`).to.include(
        '[ERROR] templates/: rendezvous-server/templates/validate/values.yaml',
      );
      expect(lint.stdout, `lint ${what}`).to.include(message);
    }
    // No template but the validating one refuses anything.
    const templates = readdirSync(join(CHART, 'templates'), { recursive: true, encoding: 'utf8' });
    for (const file of templates.filter((f) => /\.(yaml|tpl|txt)$/.test(f))) {
      const text = read('templates', file);
      if (file !== '_helpers.tpl') expect(text, file).to.not.match(/\bfail\b\s|rendezvous\.refuse/);
      if (file !== join('validate', 'values.yaml')) expect(text, file).to.not.include('include "rendezvous.validate"');
    }
  });

  it('says in words, not as its regular expression, what a public URL must be', async () => {
    for (const value of [
      'ftp://rendezvous.example.org',
      'https://user:password@rendezvous.example.org',
      'rendezvous.example.org',
    ]) {
      const r = await helm(['template', 'rz', CHART, ...valueArgs([REQUIRED_ONLY], { 'config.publicBaseUrl': value })]);
      expect(r.code, value).to.not.equal(0);
      expect(r.stderr, value).to.include('publicBaseUrl').and.include('an absolute http:// or https:// URL');
      expect(r.stderr, value).to.not.include('25[0-5]');
      expect(r.stderr.length, value).to.be.below(600);
    }
    // The sentence itself is no URL: refused too.
    const schema = JSON.parse(read('values.schema.json')) as Values;
    const sentence = schema.properties.config.properties.publicBaseUrl.then.const as string;
    const r = await helm([
      'template',
      'rz',
      CHART,
      ...valueArgs([REQUIRED_ONLY], {}, { 'config.publicBaseUrl': JSON.stringify(sentence) }),
    ]);
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.include('publicBaseUrl');
  });

  it('checks the values against values.schema.json before rendering anything', async () => {
    // Each refusal names the value (helm 3 and 4 word the rest differently).
    for (const [key, value, complaint] of [
      ['replicaCount', 'three', 'replicaCount'],
      ['config.publicBaseUrl', 'ftp://rendezvous.example.org', 'publicBaseUrl'],
      ['redis.mode', 'memcached', 'mode'],
      ['redis.url', 'redis://r:6379/sessions', 'url'],
      ['config.publicBaseURL', 'https://typo.example.org', 'publicBaseURL'],
      ['config.extraEnv.RZ-BAD', '1', 'RZ-BAD'],
      ['networkPolicy.egress.redisPorts[0]', '70000', 'redisPorts'],
      ['region.name', 'EU', 'region'],
      ['region.name', 'a'.repeat(17), 'region'],
      ['region.peers.US', 'https://us.example.org', 'US'],
      ['region.peers.us', 'ftp://us.example.org', 'region/peers/us'],
      ['region.peers.us', 'https://user:password@us.example.org', 'region/peers/us'],
      ['region.peers.us', 'https://us.example.org/?x=1', 'region/peers/us'],
      // No plain value for the shared secret: only a Secret's name and key.
      ['region.secret', 'a-plain-shared-secret', 'secret'],
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
      [REGIONS]: ['RZ_REGION', 'RZ_REGION_PEERS', 'RZ_REGION_SECRET_FILE', 'RZ_REGION_TLS_CA_FILE'],
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
      const config = loadPod(objects(set));
      expect(config.port, set).to.equal(values.containerPort);
      expect(config.publicBaseUrl, set).to.match(/^https:\/\//);
      expect(config.trustedProxies.length, set).to.be.greaterThan(0);
    }
    // The full set's extra settings arrive as given.
    const full = loadPod(objects(FULL));
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
      // The region settings, refused with regions off too (REQUIRED_ONLY has none).
      ['config.extraEnv.RZ_REGION', 'eu'],
      ['config.extraEnv.RZ_REGION_PEERS', 'us=https://us.example.org'],
      ['config.extraEnv.RZ_REGION_SECRET', 'a-plain-shared-secret'],
      ['config.extraEnv.RZ_REGION_SECRET_FILE', '/run/secrets/region-secret'],
      ['config.extraEnv.RZ_REGION_ACCEPTED_SECRET', 'a-plain-next-secret'],
      ['config.extraEnv.RZ_REGION_ACCEPTED_SECRET_FILE', '/run/secrets/region-next-secret'],
      ['config.extraEnv.RZ_REGION_TLS_CA_FILE', '/run/secrets/region-ca.crt'],
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
      expect(loadPod(objects(set)).metricsPort).to.equal(values.metrics.port);
    }
    const ingress = one(objects(FULL), 'Ingress');
    for (const rule of ingress.spec.rules as { http: { paths: { backend: { service: { port: object } } }[] } }[]) {
      for (const path of rule.http.paths) expect(path.backend.service.port).to.deep.equal({ name: 'http' });
    }
    const r = await helm(['template', 'rz', CHART, ...valueArgs([FULL], { 'metrics.separatePort': 'false' })]);
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.include('would publish /metrics');
  });

  it('never publishes /metrics through a LoadBalancer or NodePort Service: they get a ClusterIP Service of their own', async () => {
    for (const type of ['LoadBalancer', 'NodePort']) {
      const objs = await render([FULL], { 'service.type': type });
      const services = objs.filter((o) => o.kind === 'Service');
      const metricsPort = (s: K8sObject) =>
        (s.spec.ports as { name: string; port: number }[]).some(
          (p) => p.name === 'metrics' || p.port === values.metrics.port,
        );
      for (const s of services.filter((s) => s.spec.type !== 'ClusterIP')) {
        expect(metricsPort(s), `${type}: ${s.metadata.name}`).to.equal(false);
      }
      const scraped = services.filter(metricsPort);
      expect(scraped, type).to.have.length(1);
      expect(scraped[0]!.spec.type).to.equal('ClusterIP');
      expect(scraped[0]!.spec.selector).to.deep.equal(one(objs, 'Deployment').spec.selector.matchLabels);
      // The ServiceMonitor selects it and scrapes the port it has.
      const monitor = one(objs, 'ServiceMonitor');
      for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels as Record<string, string>)) {
        expect(scraped[0]!.metadata.labels[k], `${type}: label ${k}`).to.equal(v);
      }
      expect(monitor.spec.endpoints[0].port).to.equal('metrics');
      for (const obj of services) expect(() => validateObject(obj)).to.not.throw();
      // With metrics on the main port, such a Service would publish them: refused.
      const r = await helm([
        'template',
        'rz',
        CHART,
        ...valueArgs(['cluster-values.yaml'], { 'service.type': type, 'metrics.separatePort': 'false' }),
      ]);
      expect(r.code, type).to.not.equal(0);
      expect(r.stderr).to.include('would publish /metrics');
    }
    // Inside the cluster only (ClusterIP), the one Service carries both ports, as before.
    expect(objects(REQUIRED_ONLY).filter((o) => o.kind === 'Service')).to.have.length(1);
  });

  it('keeps CORS, ETags and long-polls intact through ingress-nginx', async () => {
    const annotations = one(objects(FULL), 'Ingress').metadata.annotations as Record<string, string>;
    expect(annotations['nginx.ingress.kubernetes.io/enable-cors']).to.equal('false');
    expect(annotations['nginx.ingress.kubernetes.io/proxy-buffering']).to.equal('off');
    expect(annotations['cert-manager.io/cluster-issuer']).to.equal('letsencrypt');
    // The read timeout follows the longest wait, the largest one the schema allows included.
    for (const wait of [undefined, '300']) {
      const rendered =
        wait === undefined ? objects(FULL) : await render([FULL], { 'config.longPollMaxWaitSeconds': wait });
      const timeout = (one(rendered, 'Ingress').metadata.annotations as Record<string, string>)[
        'nginx.ingress.kubernetes.io/proxy-read-timeout'
      ];
      expect(Number(timeout), wait).to.be.greaterThan(loadPod(rendered).longPollMaxWaitSeconds);
    }
    // The controller takes every body the server reads, the largest payload the schema allows included.
    for (const maxBytes of [undefined, '1048576']) {
      const rendered = maxBytes === undefined ? objects(FULL) : await render([FULL], { 'config.maxBytes': maxBytes });
      const size = (one(rendered, 'Ingress').metadata.annotations as Record<string, string>)[
        'nginx.ingress.kubernetes.io/proxy-body-size'
      ];
      expect(size, maxBytes).to.match(/^\d+$/);
      expect(Number(size), maxBytes).to.be.at.least(msc4388BodyLimit(loadPod(rendered).maxBytes));
    }
  });

  it('refuses Redis TLS files while TLS to Redis is off, as the server does', async () => {
    const plain = await helm([
      'template',
      'rz',
      CHART,
      ...valueArgs([REQUIRED_ONLY], { 'redis.tls.existingSecret': 'redis-tls' }),
    ]);
    expect(plain.code).to.not.equal(0);
    expect(plain.stderr).to.include('redis.tls.existingSecret is set, but TLS to Redis is off');
    expect(refusals({ REDIS_URL: 'redis://r:6379', RZ_REDIS_TLS_CA_FILE: PEM_FILE }).join('\n')).to.include(
      'TLS to Redis is off',
    );
    const turnedOn: Record<string, string>[] = [
      { 'redis.tls.existingSecret': 'redis-tls', 'redis.tls.enabled': 'true' },
      { 'redis.tls.existingSecret': 'redis-tls', 'redis.url': 'rediss://redis-master.redis:6380' },
    ];
    for (const set of turnedOn) {
      const r = await helm(['template', 'rz', CHART, ...valueArgs([REQUIRED_ONLY], set)]);
      expect(r.code, JSON.stringify(set) + r.stderr).to.equal(0);
    }
  });

  it("refuses the Sentinels' password outside Sentinel mode, as the server does", async () => {
    const r = await helm([
      'template',
      'rz',
      CHART,
      ...valueArgs([REQUIRED_ONLY], {
        'redis.existingSecret': 'redis',
        'redis.existingSecretSentinelPasswordKey': 'sentinel-password',
      }),
    ]);
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.include('redis.existingSecretSentinelPasswordKey is set, but redis.mode is single');
    expect(refusals({ REDIS_URL: 'redis://r:6379', RZ_REDIS_SENTINEL_PASSWORD: 'x' }).join('\n')).to.include(
      'Sentinel settings apply only with RZ_REDIS_SENTINELS',
    );
  });

  it("refuses another mode's Redis location, which it would leave out, as the server refuses two topologies", async () => {
    const mismatched: [Record<string, string>, string][] = [
      [
        { 'redis.mode': 'sentinel', 'redis.sentinels': 's0.redis:26379' },
        'redis.url is set, but redis.mode is sentinel',
      ],
      [{ 'redis.clusterNodes': 'n0.redis:6379' }, 'redis.clusterNodes is set, but redis.mode is single'],
      [
        {
          'redis.mode': 'cluster',
          'redis.url': '',
          'redis.clusterNodes': 'n0.redis:6379',
          'redis.sentinels': 's0:26379',
        },
        'redis.sentinels is set, but redis.mode is cluster',
      ],
    ];
    for (const [set, message] of mismatched) {
      const r = await helm(['template', 'rz', CHART, ...valueArgs([REQUIRED_ONLY], set)]);
      expect(r.code, JSON.stringify(set)).to.not.equal(0);
      expect(r.stderr).to.include(message);
    }
    expect(refusals({ REDIS_URL: 'redis://r:6379', RZ_REDIS_SENTINELS: 's0:26379' }).join('\n')).to.include(
      'Set only one of REDIS_URL, RZ_REDIS_SENTINELS',
    );
    // With the other mode's location cleared, the same mode renders.
    const sentinel = await render([REQUIRED_ONLY], {
      'redis.mode': 'sentinel',
      'redis.url': '',
      'redis.sentinels': 's0.redis:26379',
    });
    expect(podEnv(sentinel)).to.not.have.property('REDIS_URL');
    expect(podEnv(sentinel).RZ_REDIS_SENTINELS).to.equal('s0.redis:26379');
  });

  it('refuses values Kubernetes would refuse, or with which pods never serve, scale or drain', async () => {
    const refused: [Record<string, string>, string][] = [
      // Kubernetes refuses the HPA; without a CPU request its utilisation is never computed.
      [{ 'autoscaling.minReplicas': '11', 'autoscaling.maxReplicas': '10' }, 'autoscaling.minReplicas (11)'],
      [{ 'resources.requests.cpu': 'null' }, 'resources.requests.cpu'],
      // No voluntary eviction would ever be allowed: node drains hang.
      [{ 'podDisruptionBudget.maxUnavailable': '0' }, 'maxUnavailable'],
      [{ 'podDisruptionBudget.maxUnavailable': '0%' }, 'maxUnavailable'],
      [{ 'podDisruptionBudget.maxUnavailable': 'one' }, 'maxUnavailable'],
      // The probes reach the pod at its own address, never its loopback.
      [{ 'config.host': '127.0.0.1' }, 'config.host 127.0.0.1'],
      [{ 'config.host': '::1' }, 'config.host ::1'],
      [{ 'config.host': 'localhost' }, 'config.host localhost'],
      // /ready waits for a silent Redis this long: a probe timing out first empties the Service.
      [{ 'config.redisCommandTimeoutMs': '2000' }, 'probes.readiness.timeoutSeconds (2)'],
    ];
    for (const [set, message] of refused) {
      const r = await helm(['template', 'rz', CHART, ...valueArgs([REQUIRED_ONLY], set)]);
      expect(r.code, JSON.stringify(set)).to.not.equal(0);
      expect(r.stderr, JSON.stringify(set)).to.include(message);
    }
    const taken = await render([REQUIRED_ONLY], {
      'podDisruptionBudget.maxUnavailable': '25%',
      'config.redisCommandTimeoutMs': '2500',
      'probes.readiness.timeoutSeconds': '3',
      'autoscaling.enabled': 'false',
      'resources.requests.cpu': 'null',
      'config.host': '::',
    });
    expect(one(taken, 'PodDisruptionBudget').spec.maxUnavailable).to.equal('25%');
    for (const obj of taken) if (obj.kind !== 'ServiceMonitor') expect(() => validateObject(obj)).to.not.throw();
    // The defaults keep the probe above the command timeout, as the server's default does.
    expect(values.probes.readiness.timeoutSeconds * 1000).to.be.greaterThan(loadConfig({}).redisCommandTimeoutMs);
  });

  it('refuses a termination grace period the drain would outlast', async () => {
    const r = await helm(['template', 'rz', CHART, ...valueArgs([FULL], { 'config.shutdownGraceSeconds': '60' })]);
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.include('terminationGracePeriodSeconds (30) must exceed');
    const longer = await render([FULL], { 'config.shutdownGraceSeconds': '60', terminationGracePeriodSeconds: '70' });
    expect(one(longer, 'Deployment').spec.template.spec.terminationGracePeriodSeconds).to.equal(70);
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
    expect(http.containerPort).to.equal(loadPod(objects(REQUIRED_ONLY)).port);
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
      const env = loadPod(objects(set));
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

  it('runs a region: its name and peers in the ConfigMap, the secret and CA as files from their Secrets', () => {
    const regions = objects(REGIONS);
    const given = (parse(read('ci', REGIONS)) as Values).region as {
      name: string;
      peers: Record<string, string>;
      existingSecret: string;
      existingSecretKey: string;
      tls: { existingSecret: string; caKey: string };
    };
    const data = one(regions, 'ConfigMap', '-rendezvous-server').data as Record<string, string>;
    expect(data.RZ_REGION).to.equal('eu');
    // Each file the server is pointed at is the key of the Secret the values name.
    const deployment = one(regions, 'Deployment');
    const env = podEnv(regions);
    expect(secretFileAt(deployment, env.RZ_REGION_SECRET_FILE!)).to.deep.equal({
      secret: given.existingSecret,
      key: given.existingSecretKey,
    });
    expect(secretFileAt(deployment, env.RZ_REGION_TLS_CA_FILE!)).to.deep.equal({
      secret: given.tls.existingSecret,
      key: given.tls.caKey,
    });
    for (const m of container(regions).volumeMounts as { name: string; readOnly?: boolean }[]) {
      expect(m.readOnly, m.name).to.equal(true);
    }

    // The server loads it with those files in place: the peers as given, the secret read from its file.
    const config = loadPod(regions);
    expect(config.region).to.equal(given.name);
    const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
    expect([...config.regionPeers].sort(byName)).to.deep.equal(
      Object.entries(given.peers)
        .map(([name, url]) => ({ name, url: url.replace(/\/+$/, '') }))
        .sort(byName),
    );
    expect(config.regionSecret).to.equal(REGION_SECRET.trimEnd());
    expect(readFileSync(config.regionTlsCaFile!, 'utf8')).to.equal(CLUSTER_SECRETS['rendezvous-region-ca']!['ca.pem']);
    // The forwarding knobs are no chart values: config.extraEnv reaches them.
    expect(config.regionResponseTimeoutMs).to.equal(8000);
    // Without the Secret's files the same environment is refused: the test's stand-ins are what it read.
    expect(refusals(env).join('\n')).to.match(/RZ_REGION_SECRET_FILE cannot be read/);
  });

  it('mounts a second, accepted region secret from the same Secret while the shared one changes', async () => {
    expect(podEnv(objects(REGIONS)).RZ_REGION_ACCEPTED_SECRET_FILE).to.equal(undefined);
    const changing = await render([REGIONS], { 'region.acceptedSecretKey': 'next-secret' });
    const env = podEnv(changing);
    expect(secretFileAt(one(changing, 'Deployment'), env.RZ_REGION_ACCEPTED_SECRET_FILE!)).to.deep.equal({
      secret: 'rendezvous-region',
      key: 'next-secret',
    });
    const config = loadPod(changing);
    expect(config.regionSecret).to.equal(REGION_SECRET.trimEnd());
    expect(config.regionAcceptedSecret).to.equal(CLUSTER_SECRETS['rendezvous-region']!['next-secret']!.trimEnd());
  });

  it('never puts the region secret in the ConfigMap, a plain env value or a Secret of its own', async () => {
    const regions = objects(REGIONS);
    const data = one(regions, 'ConfigMap', '-rendezvous-server').data as Record<string, string>;
    expect(Object.keys(data).filter((n) => n.startsWith('RZ_REGION_SECRET'))).to.deep.equal([]);
    // The pod gets a path, and that path is a mounted Secret's key.
    const env = container(regions).env as { name: string; value?: string }[];
    expect(env.map((e) => e.name)).to.not.include('RZ_REGION_SECRET');
    const file = env.find((e) => e.name === 'RZ_REGION_SECRET_FILE')?.value;
    expect(secretFileAt(one(regions, 'Deployment'), file ?? '')).to.not.equal(undefined);
    // The chart creates no Secret for it: the shared one is the operator's, the same in every region.
    expect(regions.filter((o) => o.kind === 'Secret')).to.deep.equal([]);
    // Naming another Secret changes the pod template, so the pods roll onto it; the contents of
    // the named one are read at start (README and NOTES say to restart after changing them).
    const moved = await render([REGIONS], { 'region.existingSecret': 'rendezvous-region-2' });
    const volumes = one(moved, 'Deployment').spec.template.spec.volumes as { secret: { secretName: string } }[];
    expect(volumes.map((v) => v.secret.secretName)).to.include('rendezvous-region-2');
  });

  it('rolls the pods when the region settings change', async () => {
    const checksum = (objs: K8sObject[]) =>
      (one(objs, 'Deployment').spec.template.metadata.annotations as Record<string, string>)['checksum/config'];
    const before = checksum(objects(REGIONS));
    expect(checksum(await render([REGIONS], { 'region.peers.sa': 'https://rendezvous-sa.internal' }))).to.not.equal(
      before,
    );
    expect(checksum(await render([REGIONS], { 'region.name': 'eu2' }))).to.not.equal(before);
  });

  it('renders nothing region-related without region.name', async () => {
    const regionEnv = (objs: K8sObject[]) => Object.keys(podEnv(objs)).filter((n) => n.startsWith('RZ_REGION'));
    for (const set of VALUE_SETS.filter((v) => v !== REGIONS)) {
      expect(regionEnv(objects(set)), set).to.deep.equal([]);
      expect(loadPod(objects(set)).region, set).to.equal(undefined);
    }
    // A CA without a region is left out, as the server ignores RZ_REGION_TLS_CA_FILE without RZ_REGION.
    const caOnly = await render([REQUIRED_ONLY], { 'region.tls.existingSecret': 'rendezvous-region-ca' });
    expect(regionEnv(caOnly)).to.deep.equal([]);
    expect(one(caOnly, 'Deployment').spec.template.spec.volumes).to.equal(undefined);
    expect(refusals({ RZ_REGION_TLS_CA_FILE: '/nonexistent/ca.crt' })).to.deep.equal([]);
  });

  it('refuses at template time exactly the region values the server refuses at start, naming each', async () => {
    const accepted = podEnvWithFiles(objects(REGIONS));
    expect(refusals(accepted)).to.deep.equal([]);
    const without = (...names: string[]) =>
      Object.fromEntries(Object.entries(accepted).filter(([n]) => !names.includes(n))) as Record<string, string>;
    for (const c of [
      {
        what: 'peers without a region',
        render: [[REQUIRED_ONLY], { 'region.peers.us': 'https://rendezvous-us.internal' }],
        complaint: 'region.peers needs region.name',
        server: without('RZ_REGION', 'RZ_REGION_SECRET_FILE', 'RZ_REGION_TLS_CA_FILE'),
        refusal: /RZ_REGION_PEERS needs? RZ_REGION/,
      },
      {
        what: 'the secret without a region',
        render: [[REQUIRED_ONLY], { 'region.existingSecret': 'rendezvous-region' }],
        complaint: 'region.existingSecret needs region.name',
        server: without('RZ_REGION', 'RZ_REGION_PEERS', 'RZ_REGION_TLS_CA_FILE'),
        refusal: /RZ_REGION_SECRET_FILE needs? RZ_REGION/,
      },
      {
        what: 'peers without the secret',
        render: [[REGIONS], { 'region.existingSecret': '' }],
        complaint: 'region.peers needs region.existingSecret',
        server: without('RZ_REGION_SECRET_FILE'),
        refusal: /RZ_REGION_PEERS needs the shared secret/,
      },
      {
        what: 'an accepted secret without the shared one',
        render: [
          [REGIONS],
          { 'region.existingSecret': '', 'region.peers': 'null', 'region.acceptedSecretKey': 'next-secret' },
        ],
        complaint: 'region.acceptedSecretKey needs region.existingSecret',
        server: {
          ...without('RZ_REGION_SECRET_FILE', 'RZ_REGION_PEERS'),
          RZ_REGION_ACCEPTED_SECRET: 'stand-in-next-region-secret-0123',
        },
        refusal: /RZ_REGION_ACCEPTED_SECRET is accepted beside RZ_REGION_SECRET, which is not set/,
      },
      {
        what: "a peer named as the release's own region",
        render: [[REGIONS], { 'region.peers.eu': 'https://rendezvous-eu.internal' }],
        complaint: 'region.peers.eu',
        server: { ...accepted, RZ_REGION_PEERS: `${accepted.RZ_REGION_PEERS},eu=https://rendezvous-eu.internal` },
        refusal: /names this replica's own region/,
      },
    ] as const) {
      const [files, set] = c.render;
      const r = await helm(['template', 'rz', CHART, ...valueArgs([...files], set)]);
      expect(r.code, c.what).to.not.equal(0);
      expect(r.stderr, c.what).to.include(c.complaint);
      expect(r.stderr, c.what).to.include('inconsistent region values');
      // The server refuses the environment the chart would have rendered.
      expect(refusals(c.server).join('\n'), c.what).to.match(c.refusal);
    }

    // What the server accepts, the chart renders: a region with the secret and no peers (it only
    // receives forwards), and a region alone (ids name it, nothing is forwarded).
    for (const [what, set] of [
      ['the secret without peers', { 'region.peers': 'null' }],
      ['a region alone', { 'region.peers': 'null', 'region.existingSecret': '', 'region.tls.existingSecret': '' }],
    ] as const) {
      const objs = await render([REGIONS], set);
      for (const obj of objs) expect(() => validateObject(obj), `${what}: ${obj.kind}`).to.not.throw();
      const config = loadPod(objs);
      expect(config.region, what).to.equal('eu');
      expect(config.regionPeers, what).to.deep.equal([]);
      expect(podEnv(objs), what).to.not.have.property('RZ_REGION_PEERS');
    }
  });

  it('checks region names and peer URLs as the server does', () => {
    const schema = JSON.parse(read('values.schema.json')) as Values;
    const region = schema.properties.region.properties as Values;
    expect(region.name.pattern).to.equal(`^$|${REGION_NAME.source}`);
    expect(region.peers.propertyNames.pattern).to.equal(REGION_NAME.source);
    // Every URL the schema lets through is one the server takes as a peer URL.
    const url = new RegExp(region.peers.additionalProperties.pattern as string);
    const samples = [
      'https://rendezvous-us.internal',
      'http://10.30.0.10:8080/',
      'https://[fd00::1]:8443/rendezvous',
      'https://user:pw@us.example.org',
      'https://us.example.org/?x=1',
      'https://us.example.org/#top',
      'https://a.example.org,b.example.org',
      'ftp://us.example.org',
      'https://us example.org',
    ];
    const allowed = samples.filter((u) => url.test(u));
    expect(allowed).to.deep.equal(samples.slice(0, 3));
    for (const u of allowed) expect(peerList.safeParse(`us=${u}`).success, u).to.equal(true);
  });

  it('lets the pods forward to the other regions through the NetworkPolicy, on the ports their URLs name', async () => {
    const given = parse(read('ci', REGIONS)) as {
      region: { peers: Record<string, string> };
      networkPolicy: { egress: { regionPeersTo: object[] } };
    };
    type Rule = { ports: { port: number | string; protocol: string }[]; to?: object[] };
    const egress = (objs: K8sObject[]) => one(objs, 'NetworkPolicy').spec.egress as Rule[];
    const portOf = (u: URL) => Number(u.port || (u.protocol === 'https:' ? 443 : 80));
    const wanted = Object.values(given.region.peers).map((u) => portOf(new URL(u)));
    expect(new Set(wanted).size, 'the values set names two different ports').to.equal(2);

    const rules = egress(objects(REGIONS));
    const toPeers = rules.filter((r) => r.ports.some((p) => p.port === 443));
    expect(toPeers, 'one rule to the peers').to.have.length(1);
    const peerRule = toPeers[0]!;
    const numeric = (ports: (number | string)[]) => ports.map(Number).sort((a, b) => a - b);
    expect(numeric(peerRule.ports.map((p) => p.port))).to.deep.equal(numeric([...new Set(wanted)]));
    expect(peerRule.ports.every((p) => p.protocol === 'TCP')).to.equal(true);
    expect(peerRule.to).to.deep.equal(given.networkPolicy.egress.regionPeersTo);

    // Plain http without a port is 80; a port two peers share is listed once.
    const more = egress(
      await render([REGIONS], {
        'region.peers.sa': 'http://rendezvous-sa.internal',
        'region.peers.af': 'https://rendezvous-af.internal:443/',
      }),
    ).find((r) => r.ports.some((p) => p.port === 443))!;
    expect(numeric(more.ports.map((p) => p.port))).to.deep.equal(numeric([...new Set([...wanted, 80])]));
    // Without regionPeersTo the peers' ports are open to any address (as Redis is without redisTo).
    const open = egress(await render([REGIONS], { 'networkPolicy.egress.regionPeersTo': 'null' }));
    expect(open.filter((r) => r.to === undefined && r.ports.some((p) => p.port === 443))).to.have.length(1);
    // No peers (or no region): no such rule, the default policy is what it was.
    const noPeers = egress(await render([REGIONS], { 'region.peers': 'null' }));
    expect(noPeers).to.have.length(rules.length - 1);
    expect(noPeers.some((r) => r.ports.some((p) => p.port === 443 || p.port === 8080))).to.equal(false);
    const full = egress(objects(FULL));
    const fullValues = parse(read('ci', FULL)) as Values;
    expect(full).to.have.length(2 + (fullValues.networkPolicy.egress.extraRules as object[]).length);
    // Egress off: no egress rules at all, regions or not.
    const ingressOnly = one(await render([REGIONS], { 'networkPolicy.egress.enabled': 'false' }), 'NetworkPolicy');
    expect(ingressOnly.spec.policyTypes).to.deep.equal(['Ingress']);
    expect(ingressOnly.spec.egress).to.equal(undefined);
  });

  it('lets the pods reach the homeserver through the NetworkPolicy when creates need a token it verifies', async () => {
    const egressPorts = (objs: K8sObject[]) =>
      (one(objs, 'NetworkPolicy').spec.egress as { ports: { port: number }[] }[]).flatMap((r) =>
        r.ports.map((p) => p.port),
      );
    const on = { 'networkPolicy.enabled': 'true', 'networkPolicy.egress.enabled': 'true' };
    for (const [url, port] of [
      ['http://synapse.matrix.svc:8008', 8008],
      ['https://matrix.example.org', 443],
      ['http://matrix.example.org', 80],
    ] as const) {
      const objs = await render([REQUIRED_ONLY], {
        ...on,
        'config.extraEnv.RZ_CREATE_POLICY': 'authenticated',
        'config.extraEnv.RZ_HOMESERVER_URL': url,
      });
      expect(loadPod(objs).createPolicy).to.equal('authenticated');
      expect(egressPorts(objs), url).to.include(port);
    }
    // An open create policy never calls the homeserver: nothing is opened for it.
    const open = await render([REQUIRED_ONLY], {
      ...on,
      'config.extraEnv.RZ_HOMESERVER_URL': 'https://hs.example.org',
    });
    expect(egressPorts(open)).to.not.include(443);
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

  it('renders whole numbers from a values file as the digits the server takes, as --set does (1048576, 1000000)', async () => {
    const given = (parse(read('ci', LARGE)) as Values).config as { maxBytes: number; extraEnv: Record<string, number> };
    const data = one(objects(LARGE), 'ConfigMap', '-rendezvous-server').data as Record<string, string>;
    expect(given.maxBytes).to.equal(1_048_576);
    expect(data.RZ_MAX_BYTES).to.equal('1048576');
    for (const [name, value] of Object.entries(given.extraEnv)) {
      expect(value, name).to.be.at.least(1_000_000);
      expect(data[name], name).to.equal(String(value));
    }
    const config = loadPod(objects(LARGE));
    expect(config.maxBytes).to.equal(1_048_576);
    expect(config.maxSessions).to.equal(1_000_000);
    // The same values through --set (integers to the templates) render the very same ConfigMap.
    const set = await render([REQUIRED_ONLY], {
      'config.maxBytes': String(given.maxBytes),
      ...Object.fromEntries(Object.entries(given.extraEnv).map(([k, v]) => [`config.extraEnv.${k}`, String(v)])),
    });
    expect(one(set, 'ConfigMap', '-rendezvous-server').data).to.deep.equal(data);
    // No values set puts a number in exponent form into a pod's environment.
    for (const s of VALUE_SETS) {
      for (const [name, value] of Object.entries(podEnv(objects(s)))) {
        expect(value, `${s}: ${name}`).to.not.match(/^[-+]?\d+(\.\d+)?e[-+]?\d+$/i);
      }
    }
  });

  it('lets the pods reach Redis through the NetworkPolicy on every port the Redis values name', async () => {
    type Rule = { ports?: { port: number | string }[] };
    const egress = (objs: K8sObject[]) => one(objs, 'NetworkPolicy').spec.egress as Rule[];
    const allows = (objs: K8sObject[], port: number) =>
      egress(objs).some((r) => r.ports === undefined || r.ports.some((p) => Number(p.port) === port));
    /** Where the server connects for Redis, as it reads its settings (a URL without a port: 6379, as ioredis). */
    const inUse = (objs: K8sObject[]) => {
      const c = loadPod(objs);
      if (c.redisUrl !== undefined) return [Number(new URL(c.redisUrl).port || 6379)];
      return (c.redisSentinels ?? c.redisClusterNodes ?? []).map((n) => n.port);
    };
    const on = { 'networkPolicy.enabled': 'true', 'networkPolicy.egress.enabled': 'true' };
    const cases: [string, K8sObject[]][] = [];
    for (const set of VALUE_SETS) cases.push([set, await render([set], on)]);
    cases.push(['a URL on 7000', await render([REQUIRED_ONLY], { ...on, 'redis.url': 'redis://redis.example:7000' })]);
    cases.push([
      'a URL without a port',
      await render([REQUIRED_ONLY], { ...on, 'redis.url': 'rediss://redis.example' }),
    ]);
    cases.push([
      'Sentinels on 5000 and 5001',
      await render(['sentinel-values.yaml'], { ...on, 'redis.sentinels': 's-0.redis:5000\\,s-1.redis:5001' }),
    ]);
    cases.push([
      'Cluster nodes on 7001 and 7002',
      await render(['cluster-values.yaml'], { ...on, 'redis.clusterNodes': 'n-0.redis:7001\\,n-1.redis:7002' }),
    ]);
    for (const [what, objs] of cases) {
      const ports = inUse(objs);
      expect(ports.length, what).to.be.greaterThan(0);
      for (const port of ports) expect(allows(objs, port), `${what}: Redis on ${port}`).to.equal(true);
    }
    // The chart's own examples as they stand (egress on, Redis over TLS on 6380).
    for (const set of [FULL, REGIONS]) {
      for (const port of inUse(objects(set))) expect(allows(objects(set), port), `${set}: ${port}`).to.equal(true);
    }
    // networkPolicy.egress.redisPorts adds what the values cannot say (the data nodes Sentinels hand out).
    const extra = await render([REQUIRED_ONLY], { ...on, 'networkPolicy.egress.redisPorts': '{6390}' });
    expect(allows(extra, 6390)).to.equal(true);
    const none = { 'networkPolicy.egress.redisPorts': '[]' };
    const only = egress(await render([REQUIRED_ONLY], on, none));
    expect(only.flatMap((r) => (r.ports ?? []).map((p) => Number(p.port))).filter((p) => p !== 53)).to.deep.equal([
      6379,
    ]);
    // Without it, a Sentinel's data nodes would be unreachable: refused, naming it.
    const sentinel = await helm(['template', 'rz', CHART, ...valueArgs(['sentinel-values.yaml'], on, none)]);
    expect(sentinel.code).to.not.equal(0);
    expect(sentinel.stderr).to.include('networkPolicy.egress.redisPorts');
  });

  it('takes the max, never the sum, over replicas of the store-wide metrics every replica reports alike', async () => {
    const storeWide = (await new Metrics().registry.getMetricsAsJSON())
      .filter((m) => m.help.includes('store-wide'))
      .map((m) => m.name);
    expect(storeWide).to.include.members(['rendezvous_sessions_live', 'rendezvous_sessions_expired_total']);
    const dashboard = JSON.parse(read('dashboards', 'rendezvous-server.json')) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    let queries = 0;
    for (const panel of dashboard.panels) {
      for (const { expr } of panel.targets) {
        if (!storeWide.some((name) => new RegExp(`\\b${name}\\b`).test(expr))) continue;
        queries++;
        expect(expr, panel.title).to.match(/^max(\s+by\s*\([^)]*\))?\s*\(/);
        expect(expr, panel.title).to.not.match(/\b(sum|avg|count)\b/);
      }
    }
    expect(queries).to.be.at.least(2);
  });

  it('changes the region secret in three rollouts, each region accepting what the others send at every point', async () => {
    // Keys of the stand-in Secret: the secret in use, and the one replacing it.
    const [old, next] = ['shared-secret', 'next-secret'];
    const steps: Record<string, string>[] = [
      { 'region.existingSecretKey': old },
      { 'region.existingSecretKey': old, 'region.acceptedSecretKey': next },
      { 'region.existingSecretKey': next, 'region.acceptedSecretKey': old },
      { 'region.existingSecretKey': next },
    ];
    const rendered = await Promise.all(steps.map((s) => render([REGIONS], s)));
    const configs = rendered.map(loadPod);
    const accepts = (c: (typeof configs)[number], secret: string) =>
      secret === c.regionSecret || secret === c.regionAcceptedSecret;
    // A step is finished in every region before the next starts: pods of two adjacent steps meet.
    for (let i = 1; i < steps.length; i++) {
      const [before, after] = [configs[i - 1]!, configs[i]!];
      expect(accepts(after, before.regionSecret!), `step ${i}: the new pods accept the old ones' forwards`).to.equal(
        true,
      );
      expect(accepts(before, after.regionSecret!), `step ${i}: the old pods accept the new ones' forwards`).to.equal(
        true,
      );
      // Each step changes the pod template, so its helm upgrade rolls the pods.
      const template = (objs: K8sObject[]) => JSON.stringify(one(objs, 'Deployment').spec.template);
      expect(template(rendered[i]!), `step ${i}`).to.not.equal(template(rendered[i - 1]!));
    }
    expect(configs[3]!.regionSecret).to.not.equal(configs[0]!.regionSecret);
    expect(configs[3]!.regionAcceptedSecret).to.equal(undefined);

    // The chart's README and install notes describe that rotation, not an outage.
    const readme = read('README.md');
    const section = /\*\*Changing the secret\.\*\*[\s\S]*?(?=\n- \*\*|\n## )/.exec(readme)?.[0] ?? '';
    for (const value of ['region.acceptedSecretKey', 'region.existingSecretKey']) {
      expect(section, value).to.include(value);
    }
    expect(section).to.not.match(/\b502\b/);
    const text = await notes([REGIONS]);
    expect(text).to.include('region.acceptedSecretKey');
    expect(text).to.include('region.existingSecretKey');
    expect(text).to.not.match(/\b502\b|restart them/);
    // With the accepted key set, the notes say it is accepted (and never sent).
    expect(await notes([REGIONS], { 'region.acceptedSecretKey': next })).to.include(`key ${next}`);
  });

  it('runs the check with --metrics-here when metrics are on the main port, and only then', async () => {
    const objs = objects('cluster-values.yaml');
    expect(podEnv(objs)).to.not.have.property('RZ_METRICS_PORT');
    const args = one(objs, 'Pod', '-check').spec.containers[0].args as string[];
    expect(args.slice(0, 3)).to.deep.equal(['node', 'dist/main.js', 'check']);
    expect(parseCheckArgs(args.slice(3))).to.include({ metricsHere: true });
    const separate = one(objects(FULL), 'Pod', '-check').spec.containers[0].args as string[];
    expect(parseCheckArgs(separate.slice(3))).to.include({ metricsHere: false });
    // The operator is told, in the notes of such an installation and in the README.
    expect(await notes(['cluster-values.yaml'])).to.include('--metrics-here');
    expect(await notes([REQUIRED_ONLY])).to.not.include('/metrics');
    expect(read('README.md')).to.match(/`metrics\.separatePort: false`[^.]*`--metrics-here`/);
  });

  it('refuses a Redis URL the server would refuse: a path that is not a database number', () => {
    const schema = JSON.parse(read('values.schema.json')) as Values;
    const pattern = new RegExp(schema.properties.redis.properties.url.pattern as string);
    const takes = (v: string) => refusals({ REDIS_URL: v }).length === 0;
    for (const v of [
      'redis://r:6379',
      'redis://r:6379/',
      'redis://r:6379/7',
      'rediss://user:p%2Fss@redis.example:6380/0',
      'redis://[::1]:6379/2',
    ]) {
      expect(pattern.test(v), `schema: ${v}`).to.equal(true);
      expect(takes(v), `server: ${v}`).to.equal(true);
    }
    for (const v of ['redis://r:6379/sessions', 'redis://r:6379/0/x', 'redis://r:6379/-1', 'http://r:6379']) {
      expect(pattern.test(v), `schema: ${v}`).to.equal(false);
      expect(takes(v), `server: ${v}`).to.equal(false);
    }
  });

  it('refuses a public URL, bind address or Redis seed list the server would refuse, and takes what it takes', async () => {
    const schema = JSON.parse(read('values.schema.json')) as Values;
    const config = schema.properties.config.properties;
    const redis = schema.properties.redis.properties;
    const fields: {
      name: string;
      pattern: RegExp;
      env: (v: string) => Record<string, string>;
      takes: string[];
      refuses: string[];
      alphabet: string[];
      prefix?: string[];
    }[] = [
      {
        name: 'config.publicBaseUrl',
        pattern: new RegExp(config.publicBaseUrl.if.not.pattern as string),
        env: (v) => ({ RZ_PUBLIC_BASE_URL: v }),
        takes: [
          'https://rendezvous.example.org',
          'https://example.org/_synapse/client/rendezvous/',
          'http://10.0.0.5:8080',
          'https://[2001:db8::1]:8443/rz',
          'https://rz.example.org.',
        ],
        refuses: [
          'https://user:password@rendezvous.example.org',
          'https://token@rendezvous.example.org',
          'https://rendezvous.example.org:65536',
          'https://[2001:db8::zz]',
          'https://rendezvous.example.org/?a=1',
          'ftp://rendezvous.example.org',
        ],
        alphabet: [
          'a',
          '0',
          '9',
          '.',
          '-',
          '_',
          ':',
          '/',
          '@',
          '[',
          ']',
          '::1',
          '1.2.3.4',
          '999',
          'rz',
          '%',
          '?',
          ' ',
          '65535',
          '65536',
          '0x1f',
          'é',
          '::',
          '--',
        ],
        prefix: ['https://', 'http://'],
      },
      {
        name: 'config.host',
        pattern: new RegExp(config.host.pattern as string),
        env: (v) => ({ HOST: v }),
        takes: ['::', '0.0.0.0', '10.1.2.3', 'fd00::5', 'rendezvous_1', 'pod.example.org'],
        refuses: ['bad host!', '-pod', '1:::', '[::]', 'http://pod', 'pod:8080'],
        alphabet: ['a', '0', '9', '.', '-', '_', ':', '::', '1', 'f', '255', '256', 'ffff', ' ', '[', '/'],
      },
      {
        name: 'redis.sentinels',
        pattern: new RegExp(redis.sentinels.pattern as string),
        env: (v) => ({ RZ_REDIS_SENTINELS: v }),
        takes: ['s0.redis:26379', 's0:26379, s1:26379', '[fd00::1]:26379', '10.0.0.1:26379'],
        refuses: [
          'redis://s0:26379',
          'user@s0:26379',
          ':password@s0:26379',
          's0/0:26379',
          's0',
          's0:port',
          's0:0',
          's0:65536',
          's0:26379, s1:99999',
        ],
        alphabet: [
          's0',
          'a',
          ':26379',
          ',',
          ' ',
          '[',
          ']',
          '::1',
          '.',
          '-',
          '_',
          '@',
          '/',
          '26379',
          'redis://',
          's1:1,',
          ':65535',
          ':65536',
          ':0',
        ],
      },
    ];
    // Each name, a pseudo-random sample: whatever the schema lets through, the server takes.
    let seed = 7;
    const next = () => (seed = (seed * 48271) % 2147483647);
    for (const f of fields) {
      const takes = (v: string) => refusals(f.env(v)).length === 0;
      for (const v of f.takes) {
        expect(f.pattern.test(v), `schema: ${f.name} ${v}`).to.equal(true);
        expect(takes(v), `server: ${f.name} ${v}`).to.equal(true);
      }
      for (const v of f.refuses) {
        expect(f.pattern.test(v), `schema: ${f.name} ${v}`).to.equal(false);
        expect(takes(v), `server: ${f.name} ${v}`).to.equal(false);
      }
      let through = 0;
      for (let i = 0; i < 40_000; i++) {
        const body = Array.from({ length: 1 + (next() % 8) }, () => f.alphabet[next() % f.alphabet.length]).join('');
        const v = (f.prefix === undefined ? '' : f.prefix[next() % f.prefix.length]) + body;
        if (!f.pattern.test(v)) continue;
        through++;
        expect(takes(v), `${f.name}: ${v}`).to.equal(true);
      }
      expect(through, f.name).to.be.greaterThan(100);
    }
    expect(redis.clusterNodes.pattern).to.equal(redis.sentinels.pattern);
    // The Sentinel master name is at most 200 characters, as the server takes it.
    expect(refusals({ RZ_REDIS_SENTINELS: 's0:26379', RZ_REDIS_SENTINEL_MASTER: 'm'.repeat(201) })).to.have.length(1);
    expect(redis.sentinelMaster.maxLength).to.equal(200);
    // Helm reads the patterns alike (Go's regexp), naming the value.
    for (const [key, value] of [
      ['config.publicBaseUrl', 'https://user:password@rendezvous.example.org'],
      ['config.host', 'bad-host-'],
    ]) {
      const r = await helm(['template', 'rz', CHART, ...valueArgs([REQUIRED_ONLY], { [key]: value })]);
      expect(r.code, key).to.not.equal(0);
      expect(r.stderr, key).to.include(key.split('.')[1]);
    }
    const sentinel = await helm([
      'template',
      'rz',
      CHART,
      ...valueArgs(['sentinel-values.yaml'], { 'redis.sentinels': 'redis://s0.redis:26379' }),
    ]);
    expect(sentinel.code).to.not.equal(0);
    expect(sentinel.stderr).to.include('sentinels');
  });

  it('refuses trusted proxies the server would refuse, and a metrics port that is the container or Service port', async () => {
    const schema = JSON.parse(read('values.schema.json')) as Values;
    const pattern = new RegExp(schema.properties.config.properties.trustedProxies.pattern as string);
    const takes = (v: string) => refusals({ RZ_TRUSTED_PROXIES: v }).length === 0;
    for (const v of [
      values.config.trustedProxies as string,
      '',
      '10.0.0.5',
      '10.0.0.0/8, 192.168.1.0/24',
      '0.0.0.0/0',
      '::/0',
      '::',
      '::1',
      'fd00::/8',
      '2001:db8::1/64',
      '::ffff:10.0.0.1',
      '1:2:3:4:5:6:7:8',
      '1:2:3:4:5:6:10.0.0.1',
    ]) {
      expect(pattern.test(v), `schema: ${v}`).to.equal(true);
      expect(takes(v), `server: ${v}`).to.equal(true);
    }
    for (const v of [
      'not-an-ip',
      'localhost',
      '*',
      '10.0.0.0/33',
      '10.0.0.0/',
      '300.1.1.1',
      '10.0.0',
      '010.0.0.1',
      '10.0.0.1;10.0.0.2',
      '10.0.0.1 10.0.0.2',
      'fd00::/129',
      '1::2::3',
      ':::',
      '1:2:3:4:5:6:7:8:9',
    ]) {
      expect(pattern.test(v), `schema: ${v}`).to.equal(false);
      expect(takes(v), `server: ${v}`).to.equal(false);
    }
    // Whatever else the schema lets through, the server takes (a fixed pseudo-random sample).
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    const alphabet = '0123456789abcdef:./, ';
    let through = 0;
    for (let i = 0; i < 50_000; i++) {
      const v = Array.from({ length: 1 + (next() % 18) }, () => alphabet[next() % alphabet.length]).join('');
      if (!pattern.test(v)) continue;
      through++;
      expect(takes(v), v).to.equal(true);
    }
    expect(through).to.be.greaterThan(100);
    // Helm reads the pattern alike (Go's regexp), naming the value.
    for (const v of ['not-an-ip', '10.0.0.0/33']) {
      const r = await helm(['template', 'rz', CHART, ...valueArgs([REQUIRED_ONLY], { 'config.trustedProxies': v })]);
      expect(r.code, v).to.not.equal(0);
      expect(r.stderr, v).to.include('trustedProxies');
    }
    const list = await render([REQUIRED_ONLY], { 'config.trustedProxies': '10.0.0.5\\,fd00::/8' });
    expect(loadPod(list).trustedProxies).to.deep.equal(['10.0.0.5/32', 'fd00::/8']);

    // A metrics port that is the container port: the server refuses to start, the chart to render.
    expect(refusals({ PORT: '8080', RZ_METRICS_PORT: '8080' }).join('\n')).to.include('RZ_METRICS_PORT must differ');
    const clashes: Record<string, string>[] = [
      { 'metrics.port': String(values.containerPort) },
      { containerPort: String(values.metrics.port) },
    ];
    for (const set of clashes) {
      const r = await helm(['template', 'rz', CHART, ...valueArgs([REQUIRED_ONLY], set)]);
      expect(r.code, JSON.stringify(set)).to.not.equal(0);
      expect(r.stderr).to.include('metrics.port');
      expect(r.stderr).to.include('containerPort');
    }
    // Nor may it be the Service's port: Kubernetes refuses a Service with two ports of one number.
    const service = await helm([
      'template',
      'rz',
      CHART,
      ...valueArgs([REQUIRED_ONLY], { 'service.port': String(values.metrics.port) }),
    ]);
    expect(service.code).to.not.equal(0);
    expect(service.stderr).to.include('metrics.port');
    expect(service.stderr).to.include('service.port');
    // With metrics on the main port, metrics.port is not used.
    const shared = await render(['cluster-values.yaml'], { 'metrics.port': String(values.containerPort) });
    expect(loadPod(shared).metricsPort).to.equal(undefined);
  });
});
