import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Cluster, Redis } from 'ioredis';

type Arg = string | number | Buffer;

/** Every script the Redis backend runs, by the command name it is defined under. */
const SCRIPTS = {
  rzCreateSession: 'createSession-3.lua',
  rzDeleteSession: 'deleteSession-4.lua',
  rzUpdateSession: 'updateSession-2.lua',
  rzCountSessions: 'countSessions-1.lua',
  rzClaimSlot: 'claimSlot-4.lua',
  rzCreateClaimedSession: 'createClaimedSession-1.lua',
  rzPlaceTombstone: 'placeTombstone-1.lua',
  rzReleaseClaim: 'releaseClaim-4.lua',
  rzDeleteClaimedSession: 'deleteSession-2.lua',
  rzReleaseSlot: 'releaseSlot-4.lua',
  rzAddRateCounts: 'addRateCounts-n.lua',
} as const;

/** An array reply of a script: numbers, and strings (or Buffers, from a `…Buffer` call). */
export type Reply = (number | string)[];
type BufferReply = (number | Buffer)[];

/**
 * The scripts as commands on the client (ioredis sends EVALSHA, and EVAL once after a NOSCRIPT).
 * What each answers is documented at the top of its file.
 */
export interface ScriptCommands {
  rzCreateSession(...args: Arg[]): Promise<Reply>;
  rzDeleteSession(...args: Arg[]): Promise<number>;
  rzUpdateSessionBuffer(...args: Arg[]): Promise<BufferReply>;
  rzCountSessions(...args: Arg[]): Promise<number[]>;
  rzClaimSlot(...args: Arg[]): Promise<Reply>;
  rzCreateClaimedSession(...args: Arg[]): Promise<number>;
  rzPlaceTombstone(...args: Arg[]): Promise<number>;
  rzReleaseClaim(...args: Arg[]): Promise<number>;
  rzDeleteClaimedSessionBuffer(...args: Arg[]): Promise<BufferReply>;
  rzReleaseSlot(...args: Arg[]): Promise<number>;
  rzAddRateCounts(...args: Arg[]): Promise<number[]>;
}

export type ScriptedClient = (Redis | Cluster) & ScriptCommands;

const INCLUDE = /^--- @include "([a-z]+)"$/gm;

/**
 * A script's source with its `--- @include "name"` lines replaced by lua/includes/<name>.lua, so the
 * code shared by several scripts (the stored layout, the caps) is written once and each script is
 * still one self-contained EVAL.
 */
export function scriptSource(file: string): string {
  const dir = join(__dirname, 'lua');
  return readFileSync(join(dir, file), 'utf8').replace(INCLUDE, (_, name: string) =>
    readFileSync(join(dir, 'includes', `${name}.lua`), 'utf8').trimEnd(),
  );
}

let sources: Map<string, { numberOfKeys: number | undefined; lua: string }> | undefined;

/**
 * A script file's name ends in its key count, or in `n` when that varies: the caller then passes
 * the count as the first argument (ioredis's convention for a command defined without one).
 */
function keyCountOf(file: string): number | undefined {
  const count = /-(\d+|n)\.lua$/.exec(file)![1]!;
  return count === 'n' ? undefined : Number(count);
}

/** Defines every script on the client, read and assembled once per process. */
export function defineScripts(client: Redis | Cluster): ScriptedClient {
  sources ??= new Map(
    Object.entries(SCRIPTS).map(([name, file]) => [name, { numberOfKeys: keyCountOf(file), lua: scriptSource(file) }]),
  );
  for (const [name, definition] of sources) client.defineCommand(name, definition);
  return client as ScriptedClient;
}
