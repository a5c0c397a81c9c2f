/**
 * npm run bench: measures every hot path against the bare Node and Redis ceilings of the same run
 * and writes bench/results/latest.{md,json}. Flags: --smoke, --duration=S, --warmup=S,
 * --connections=N, --families=MSC3886,MSC4108, --stores=redis,memory, --out=DIR, --skip-longpoll,
 * --skip-regions.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type BenchOptions, FULL, SMOKE, type StoreKind, runBench } from './harness';
import { markdown } from './report';
import { REGIONS_FULL, REGIONS_SMOKE, runRegionsBench } from './regions';

export function progressPrinter(stream: NodeJS.WriteStream = process.stderr): (line: string) => void {
  let last = '';
  return (line) => {
    if (stream.isTTY) {
      stream.write(`\r${line.padEnd(last.length)}`);
    } else if (line.replace(/ \d+s$/, '') !== last.replace(/ \d+s$/, '')) {
      stream.write(`${line}\n`);
    }
    last = line;
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      smoke: { type: 'boolean', default: false },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      families: { type: 'string' },
      stores: { type: 'string' },
      out: { type: 'string' },
      'skip-longpoll': { type: 'boolean', default: false },
      'skip-regions': { type: 'boolean', default: false },
    },
  });
  const base = values.smoke ? SMOKE : FULL;
  const opts: BenchOptions = {
    ...base,
    ...(values.duration ? { durationS: Number(values.duration) } : {}),
    ...(values.warmup ? { warmupS: Number(values.warmup) } : {}),
    ...(values.connections ? { connections: Number(values.connections) } : {}),
    ...(values.families ? { families: values.families.split(',') } : {}),
    ...(values.stores ? { stores: values.stores.split(',') as StoreKind[] } : {}),
    progress: progressPrinter(),
  };
  if (values['skip-longpoll']) delete opts.longpoll;
  const results = await runBench(opts);
  // Multi-region (bench/regions.ts): its own regions, links and wrk runs, after everything else.
  const regions = values['skip-regions']
    ? undefined
    : await runRegionsBench({ ...(values.smoke ? REGIONS_SMOKE : REGIONS_FULL), progress: opts.progress });
  if (process.stderr.isTTY) process.stderr.write('\n');
  const md = markdown(results, regions === undefined ? [] : [regions.markdown]);
  process.stdout.write(md);
  const out = values.out ?? join(__dirname, 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'latest.md'), md);
  writeFileSync(join(out, 'latest.json'), `${JSON.stringify({ ...results, regions: regions?.results }, null, 2)}\n`);
  process.stderr.write(`written to ${join(out, 'latest.md')} and latest.json\n`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
