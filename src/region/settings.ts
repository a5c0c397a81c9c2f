import { readFileSync } from 'node:fs';
import { z } from 'zod';
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
  regionTlsCaFile?: string;
}

/**
 * The checks that involve several region settings, run by loadConfig with every other problem.
 * Reads RZ_REGION_SECRET_FILE (the secret then lives in `regionSecret`) and checks that the CA file
 * can be read. No message ever contains the secret.
 */
export function regionProblems(env: NodeJS.ProcessEnv, out: Parsed): string[] {
  const problems: string[] = [];
  const given = (name: string) => env[name] !== undefined && env[name] !== '';
  const region = out.region;
  const peers = out.regionPeers ?? [];
  if (region === undefined) {
    // A malformed RZ_REGION is reported already; the settings that need it are not blamed for it.
    if (given('RZ_REGION')) return problems;
    const needRegion = ['RZ_REGION_PEERS', 'RZ_REGION_SECRET', 'RZ_REGION_SECRET_FILE'].filter(given);
    if (needRegion.length > 0) problems.push(`${needRegion.join(', ')} need RZ_REGION (this replica's own region)`);
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
  if (given('RZ_REGION_SECRET') && given('RZ_REGION_SECRET_FILE')) {
    problems.push('Set only one of RZ_REGION_SECRET and RZ_REGION_SECRET_FILE');
  } else if (given('RZ_REGION_SECRET_FILE')) {
    const file = env.RZ_REGION_SECRET_FILE!.trim();
    try {
      // A Kubernetes Secret or `echo secret > file` ends the value with a newline; it is not part of it.
      out.regionSecret = readFileSync(file, 'utf8').replace(/[\r\n]+$/, '');
      if (out.regionSecret === '') {
        out.regionSecret = undefined;
        problems.push(`RZ_REGION_SECRET_FILE names an empty file (${file})`);
      }
    } catch (err) {
      problems.push(
        `RZ_REGION_SECRET_FILE cannot be read (${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  }
  const secret = out.regionSecret;
  if (secret !== undefined && (secret.length < MIN_SECRET_LENGTH || secret.length > MAX_SECRET_LENGTH)) {
    problems.push(
      `The region secret must be ${MIN_SECRET_LENGTH} to ${MAX_SECRET_LENGTH} characters (its value is not shown)`,
    );
  } else if (secret !== undefined && !SECRET_CHARS.test(secret)) {
    problems.push('The region secret must be visible ASCII characters, no spaces (its value is not shown)');
  }
  if (peers.length > 0 && secret === undefined && !problems.some((p) => p.includes('RZ_REGION_SECRET_FILE'))) {
    problems.push('RZ_REGION_PEERS needs the shared secret: set RZ_REGION_SECRET or RZ_REGION_SECRET_FILE');
  }
  if (out.regionTlsCaFile !== undefined) {
    try {
      readFileSync(out.regionTlsCaFile);
    } catch (err) {
      problems.push(
        `RZ_REGION_TLS_CA_FILE cannot be read (${out.regionTlsCaFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  }
  return problems;
}
