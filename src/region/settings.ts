import { z } from 'zod';
import { readSettingFile, certificateFileProblem } from '../readable-file';
import { REGION_NAME } from './names';

/** Another region: its name and the base URL its replicas are reached at (no trailing slash). */
export interface RegionPeer {
  name: string;
  url: string;
}

/** Shortest shared secret accepted; a guessable secret would let anyone claim to be a region. */
export const MIN_SECRET_LENGTH = 16;
/** Longest: a presented secret longer than this is refused unread (src/region/auth.ts). */
export const MAX_SECRET_LENGTH = 1024;
/** It travels in an HTTP header: visible ASCII only, so it arrives exactly as it was sent. */
const SECRET_CHARS = /^[\x21-\x7e]+$/;

const peerUrl = (raw: string): string | undefined => {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return undefined;
  }
  if (!/^https?:$/.test(u.protocol) || u.username !== '' || u.password !== '' || u.search !== '' || u.hash !== '') {
    return undefined;
  }
  return raw.replace(/\/+$/, '');
};

/**
 * `name=url,name=url`. Only the syntax is checked here (the error then states what is expected);
 * duplicates and the replica's own region are cross-field checks with their own messages.
 */
export const peerList = z.string().transform((v, ctx) => {
  const out: RegionPeer[] = [];
  for (const item of v
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '')) {
    const eq = item.indexOf('=');
    const name = eq < 0 ? '' : item.slice(0, eq).trim();
    const url = eq < 0 ? undefined : peerUrl(item.slice(eq + 1).trim());
    if (!REGION_NAME.test(name) || url === undefined) {
      ctx.addIssue({ code: 'custom', message: `not name=URL: ${item}` });
      return z.NEVER;
    }
    out.push({ name, url });
  }
  return out;
});

/** The parsed values the cross-field checks look at (a subset of Config). */
interface Parsed {
  region?: string;
  regionPeers?: RegionPeer[];
  regionSecret?: string;
  regionAcceptedSecret?: string;
  regionTlsCaFile?: string;
}

const isGiven = (env: NodeJS.ProcessEnv, name: string): boolean => env[name] !== undefined && env[name] !== '';

/** A secret's two settings (the value, or a file holding it) and where its value goes in Config. */
const SECRETS = [
  { name: 'RZ_REGION_SECRET', key: 'regionSecret', label: 'The region secret' },
  { name: 'RZ_REGION_ACCEPTED_SECRET', key: 'regionAcceptedSecret', label: 'The accepted region secret' },
] as const;

/**
 * The checks that involve several region settings, run by loadConfig with every other problem.
 * Reads the secrets' files (RZ_REGION_SECRET_FILE, RZ_REGION_ACCEPTED_SECRET_FILE; the values then
 * live in `regionSecret` and `regionAcceptedSecret`) and checks that the CA file can be read. No
 * message ever contains a secret.
 */
export function regionProblems(env: NodeJS.ProcessEnv, out: Parsed): string[] {
  const problems: string[] = [];
  const given = (name: string) => isGiven(env, name);
  const region = out.region;
  const peers = out.regionPeers ?? [];
  if (region === undefined) {
    // A malformed RZ_REGION is reported already; the settings that need it are not blamed for it.
    if (given('RZ_REGION')) return problems;
    const needRegion = SECRETS.flatMap(({ name }) => [name, `${name}_FILE`]);
    const set = ['RZ_REGION_PEERS', ...needRegion].filter(given);
    if (set.length > 0) {
      problems.push(`${set.join(', ')} ${set.length === 1 ? 'needs' : 'need'} RZ_REGION (this replica's own region)`);
    }
    return problems;
  }
  const seen = new Set<string>();
  for (const peer of peers) {
    if (peer.name === region) {
      problems.push(`RZ_REGION_PEERS names this replica's own region (${region}); list only the other regions`);
    } else if (seen.has(peer.name)) {
      problems.push(`RZ_REGION_PEERS names region ${peer.name} more than once`);
    }
    seen.add(peer.name);
  }
  for (const { name, key, label } of SECRETS) problems.push(...secretProblems(env, name, label, out, key));
  // No secret although its file was named: that file's problem is reported already.
  const missing = out.regionSecret === undefined && !given('RZ_REGION_SECRET_FILE');
  if (peers.length > 0 && missing) {
    problems.push('RZ_REGION_PEERS needs the shared secret: set RZ_REGION_SECRET or RZ_REGION_SECRET_FILE');
  }
  if (out.regionAcceptedSecret !== undefined && missing) {
    problems.push('RZ_REGION_ACCEPTED_SECRET is accepted beside RZ_REGION_SECRET, which is not set');
  }
  const ca =
    out.regionTlsCaFile === undefined
      ? undefined
      : certificateFileProblem('RZ_REGION_TLS_CA_FILE', out.regionTlsCaFile);
  if (ca !== undefined) problems.push(ca);
  return problems;
}

/** Reads one secret from its file when that is the setting given, and checks its value. */
function secretProblems(
  env: NodeJS.ProcessEnv,
  name: string,
  label: string,
  out: Parsed,
  key: 'regionSecret' | 'regionAcceptedSecret',
): string[] {
  const fileName = `${name}_FILE`;
  const given = (n: string) => isGiven(env, n);
  const problems: string[] = [];
  // Both given: the value set directly is still checked, so every problem shows at once.
  if (given(name) && given(fileName)) problems.push(`Set only one of ${name} and ${fileName}`);
  else if (given(fileName)) {
    const file = env[fileName]!.trim();
    const read = readSettingFile(fileName, file);
    if ('problem' in read) return [read.problem];
    // A Kubernetes Secret or `echo secret > file` ends the value with a newline; it is not part of it.
    const value = read.text.replace(/[\r\n]+$/, '');
    if (value === '') return [`${fileName} names an empty file (${file})`];
    out[key] = value;
  }
  const secret = out[key];
  // Named by where it came from: the setting itself, or its file when only that was given.
  const from = `${label} (${given(name) ? name : fileName})`;
  if (secret !== undefined && (secret.length < MIN_SECRET_LENGTH || secret.length > MAX_SECRET_LENGTH)) {
    problems.push(`${from} must be ${MIN_SECRET_LENGTH} to ${MAX_SECRET_LENGTH} characters (its value is not shown)`);
  } else if (secret !== undefined && !SECRET_CHARS.test(secret)) {
    problems.push(`${from} must be visible ASCII characters, no spaces (its value is not shown)`);
  }
  return problems;
}
