import { expect } from 'chai';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { isMap, parse, parseDocument, type YAMLMap } from 'yaml';
import { SETTINGS, loadConfig } from '../src/config';
import { start } from '../src/main';
import { Metrics } from '../src/metrics';
import { req } from './helpers/exchange';

const ROOT = join(__dirname, '..');
const CHART = join(ROOT, 'helm', 'rendezvous-server');
const read = (...p: string[]) => readFileSync(join(CHART, ...p), 'utf8');
const TEMPLATES = readdirSync(join(CHART, 'templates'))
  .filter((f) => /\.(ya?ml|tpl)$/.test(f))
  .map((f) => ({ file: f, text: read('templates', f) }));
const template = (name: string) => TEMPLATES.find((t) => t.file === name)!.text;
const KNOWN = new Set(SETTINGS.map((s) => s.name));

/** Settings a Kubernetes deployment cannot do without: where it listens, its URL, Redis, the drain. */
const REQUIRED = [
  'PORT',
  'RZ_PUBLIC_BASE_URL',
  'REDIS_URL',
  'RZ_REDIS_SENTINELS',
  'RZ_REDIS_SENTINEL_MASTER',
  'RZ_REDIS_CLUSTER_NODES',
  'RZ_REDIS_PASSWORD',
  'RZ_SHUTDOWN_DELAY_SECONDS',
  'RZ_SHUTDOWN_GRACE_SECONDS',
  'RZ_TRUSTED_PROXIES',
];

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Values = Record<string, any>;

describe('Helm chart (static checks: no helm binary here)', () => {
  const chart = parse(read('Chart.yaml')) as Values;
  const values = parse(read('values.yaml')) as Values;

  /** Every variable a template sets: ConfigMap keys and container env entries. */
  function envSetByTemplates(): Set<string> {
    const names = new Set<string>();
    for (const m of template('configmap.yaml').matchAll(/^ {2}([A-Z][A-Z0-9_]*):/gm)) names.add(m[1]!);
    for (const m of template('deployment.yaml').matchAll(/- name: ([A-Z][A-Z0-9_]*)$/gm)) names.add(m[1]!);
    return names;
  }

  it('has a v2 Chart.yaml whose appVersion is the package version', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(chart).to.include({ apiVersion: 'v2', name: 'rendezvous-server', type: 'application' });
    expect(chart.version).to.match(/^\d+\.\d+\.\d+$/);
    expect(chart.appVersion).to.equal(pkg.version);
  });

  it('documents every key of values.yaml', () => {
    const doc = parseDocument(read('values.yaml'));
    const undocumented: string[] = [];
    const walk = (map: YAMLMap, path: string, inDocumentedBlock: boolean) => {
      map.items.forEach((pair, i) => {
        const key = String((pair.key as { value: unknown }).value);
        const comment =
          (pair.key as { commentBefore?: string }).commentBefore ?? (i === 0 ? map.commentBefore : undefined) ?? '';
        const documented = comment.includes('-- ');
        const value = pair.value;
        if (isMap(value) && value.items.length > 0 && !documented) {
          walk(value as YAMLMap, `${path}${key}.`, inDocumentedBlock);
        } else if (!documented && !inDocumentedBlock) {
          undocumented.push(path + key);
        }
      });
    };
    walk(doc.contents as YAMLMap, '', false);
    expect(undocumented).to.deep.equal([]);
  });

  it('sets only environment variables the config module reads, and every required one', () => {
    const set = envSetByTemplates();
    const unknown = [...set].filter((n) => !KNOWN.has(n));
    expect(unknown, 'set by the chart but not read by the server').to.deep.equal([]);
    const missing = REQUIRED.filter((n) => !set.has(n));
    expect(missing, 'needed in Kubernetes but not set by the chart').to.deep.equal([]);
  });

  it('configures the server, with its default values, in a way the server accepts', () => {
    const env: Record<string, string> = {};
    for (const m of template('configmap.yaml').matchAll(
      /^ {2}([A-Z][A-Z0-9_]*): \{\{ (?:required "[^"]*" )?\.Values\.([\w.]+)/gm,
    )) {
      let node: unknown = values;
      for (const part of m[2]!.split('.')) node = (node as Values)[part];
      env[m[1]!] = String(node);
    }
    // Only the Redis setting of the default mode is rendered.
    delete env.RZ_REDIS_SENTINELS;
    delete env.RZ_REDIS_CLUSTER_NODES;
    expect(Object.keys(env)).to.include.members(['PORT', 'RZ_PUBLIC_BASE_URL', 'REDIS_URL', 'RZ_TRUSTED_PROXIES']);
    const config = loadConfig(env);
    expect(config.port).to.equal(values.containerPort);
    expect(config.trustedProxies.length).to.be.greaterThan(0);
    // The ingress holds a request longer than the longest long-poll.
    const readTimeout = /proxy-read-timeout: "(\d+)"/.exec(template('ingress.yaml'))![1];
    expect(Number(readTimeout)).to.be.greaterThan(config.longPollMaxWaitSeconds);
  });

  it('references only values that values.yaml defines', () => {
    const missing = new Set<string>();
    for (const { file, text } of TEMPLATES) {
      for (const m of text.matchAll(/\.Values\.([A-Za-z0-9_.]+)/g)) {
        let node: unknown = values;
        for (const part of m[1]!.split('.')) node = (node as Values | undefined)?.[part];
        if (node === undefined) missing.add(`${file}: .Values.${m[1]}`);
      }
    }
    expect([...missing]).to.deep.equal([]);
  });

  it('closes every template action it opens', () => {
    for (const { file, text } of TEMPLATES) {
      const opens = text.match(/\{\{-?\s*(if|range|with|define)\b/g)?.length ?? 0;
      const ends = text.match(/\{\{-?\s*end\s*-?\}\}/g)?.length ?? 0;
      expect(ends, file).to.equal(opens);
      expect(text.match(/\{\{/g)?.length ?? 0, file).to.equal(text.match(/\}\}/g)?.length ?? 0);
    }
  });

  it('probes the paths and the port the server answers on', async () => {
    const deployment = template('deployment.yaml');
    const probe = (kind: string) =>
      new RegExp(`${kind}:\\s+httpGet:\\s+path: (\\S+)\\s+port: (\\S+)`).exec(deployment)!.slice(1);
    const [livePath, livePort] = probe('livenessProbe');
    const [readyPath, readyPort] = probe('readinessProbe');
    expect([livePort, readyPort]).to.deep.equal(['http', 'http']);
    expect(deployment).to.match(/- name: http\s+containerPort: \{\{ \.Values\.containerPort \}\}/);
    expect(template('configmap.yaml')).to.match(/^ {2}PORT: \{\{ \.Values\.containerPort \| quote \}\}$/m);
    // The image and the server default agree with the chart's port.
    expect(values.containerPort).to.equal(loadConfig({}).port);
    expect(readFileSync(join(ROOT, 'Dockerfile'), 'utf8')).to.match(
      new RegExp(`^EXPOSE ${values.containerPort}$`, 'm'),
    );

    const server = await start(loadConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent' }));
    try {
      const base = `http://127.0.0.1:${server.port}`;
      expect((await req(`${base}${livePath}`)).status).to.equal(200);
      expect((await req(`${base}${readyPath}`)).status).to.equal(200);
    } finally {
      await server.stop();
    }
  });

  it('runs non-root on a read-only root filesystem, with time to drain before the kill', () => {
    expect(values.podSecurityContext).to.include({ runAsNonRoot: true });
    expect(values.securityContext).to.include({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    const uid = /^USER (\d+):/m.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))![1];
    expect(values.podSecurityContext.runAsUser).to.equal(Number(uid));
    expect(values.terminationGracePeriodSeconds).to.be.greaterThan(
      values.config.shutdownDelaySeconds + values.config.shutdownGraceSeconds,
    );
    const deployment = template('deployment.yaml');
    expect(deployment).to.include('toYaml .Values.securityContext');
    expect(deployment).to.include('toYaml .Values.podSecurityContext');
  });

  it('reads the Redis password from a Secret, never from the ConfigMap', () => {
    expect(template('configmap.yaml')).to.not.match(/PASSWORD/);
    expect(template('deployment.yaml')).to.match(
      /- name: RZ_REDIS_PASSWORD\s+valueFrom:\s+secretKeyRef:\s+name: \{\{ include "rendezvous.redisSecret" \. \}\}/,
    );
  });

  it('ships every optional resource the operators expect', () => {
    const kinds = TEMPLATES.map((t) => /^kind: (\w+)$/m.exec(t.text)?.[1]).filter(Boolean);
    expect(kinds).to.include.members([
      'Deployment',
      'Service',
      'Ingress',
      'HorizontalPodAutoscaler',
      'PodDisruptionBudget',
      'ConfigMap',
      'Secret',
      'ServiceMonitor',
    ]);
    expect(template('ingress.yaml')).to.include('nginx.ingress.kubernetes.io/enable-cors: "false"');
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
    expect(template('grafana-dashboard.yaml')).to.include('.Files.Get "dashboards/rendezvous-server.json"');
  });
});
