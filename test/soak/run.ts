// `npm run soak [-- --duration=S --seed=N ...]`: the chaos soak; exits non-zero on any violation.
import { constants } from 'node:os';
import { FAULT_KINDS, Soak, type FaultKind, type SoakOptions } from './soak';

const HELP = `npm run soak -- [options]
  --duration=S      how long the load runs, in seconds (default 600)
  --seed=N          seed of the fault schedule and the load (default: from the clock)
  --per-family=N    exchanges kept running at once per protocol family (default 5)
  --hostile-rate=R  hostile or malformed requests per second (default 5)
  --fault-every=A-B seconds between faults, a seeded pick in [A, B] (default 6-15)
  --faults=K,K      kinds of fault to inject (default all: ${FAULT_KINDS.join(', ')})
  --pause=A-B       how long Redis is paused, in ms (default 1200-4000)
  --rss-limit=MB    a replica above this resident size is a violation (default 256)
  --persistence=P   Redis persistence: always (default), everysec or none
  --no-limits       turn the rate budgets and caps off (default: the production defaults)
  --verbose         print each fault as it is injected`;

/** `a-b` as [a, b], and a lone `a` as [a, a]: the bounds of a random interval. */
function range(value: string): [number, number] {
  const [a, b] = value.split('-').map(Number);
  return [a!, b ?? a!];
}

function parse(argv: string[]): SoakOptions {
  const opts: SoakOptions = {
    durationS: 600,
    seed: Date.now() % 2 ** 31,
    perFamily: 5,
    hostileRate: 5,
    faultMinS: 6,
    faultMaxS: 15,
    faultKinds: [...FAULT_KINDS],
    pauseMinMs: 1200,
    pauseMaxMs: 4000,
    rssLimitMb: 256,
    persistence: 'always',
    limits: true,
    verbose: false,
  };
  for (const arg of argv) {
    const [key, value = ''] = arg.replace(/^--/, '').split('=', 2) as [string, string?];
    const num = Number(value);
    switch (key) {
      case 'duration':
        opts.durationS = num;
        break;
      case 'seed':
        opts.seed = num;
        break;
      case 'per-family':
        opts.perFamily = num;
        break;
      case 'hostile-rate':
        opts.hostileRate = num;
        break;
      case 'fault-every':
        [opts.faultMinS, opts.faultMaxS] = range(value);
        break;
      case 'faults': {
        const kinds = value.split(',');
        const unknown = kinds.filter((k) => !(FAULT_KINDS as readonly string[]).includes(k));
        if (unknown.length > 0 || kinds.length === 0) {
          process.stderr.write(`unknown fault kind ${unknown.join(', ')}\n${HELP}\n`);
          process.exit(2);
        }
        opts.faultKinds = kinds as FaultKind[];
        break;
      }
      case 'pause':
        [opts.pauseMinMs, opts.pauseMaxMs] = range(value);
        break;
      case 'rss-limit':
        opts.rssLimitMb = num;
        break;
      case 'persistence':
        if (value !== 'always' && value !== 'everysec' && value !== 'none') {
          process.stderr.write(`bad value for persistence\n${HELP}\n`);
          process.exit(2);
        }
        opts.persistence = value;
        break;
      case 'no-limits':
        opts.limits = false;
        break;
      case 'verbose':
        opts.verbose = true;
        break;
      case 'help':
        process.stdout.write(`${HELP}\n`);
        process.exit(0);
      // falls through (never reached)
      default:
        process.stderr.write(`unknown option ${arg}\n${HELP}\n`);
        process.exit(2);
    }
  }
  for (const [k, v] of Object.entries(opts)) {
    if (typeof v === 'number' && !(Number.isFinite(v) && v >= 0)) {
      process.stderr.write(`bad value for ${k}\n${HELP}\n`);
      process.exit(2);
    }
  }
  return opts;
}

async function main(): Promise<void> {
  const opts = parse(process.argv.slice(2));
  const soak = new Soak(opts);
  // Registered before any child is started, so it runs before the helpers' own exit-on-signal:
  // the summary so far is printed and every process of the run killed, whatever state it is in.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stdout.write(`\ninterrupted (${signal}); stopping everything\n${soak.summary()}\n`);
      soak.killAllNow();
      process.exit(128 + constants.signals[signal]);
    });
  }
  process.stdout.write(`soak: seed ${opts.seed}, ${opts.durationS} s\n`);
  let failed = false;
  try {
    await soak.start();
    await soak.run();
  } catch (err) {
    failed = true;
    process.stderr.write(`soak run failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  } finally {
    await soak.stop();
  }
  const left = soak.leftovers();
  if (left.length > 0) soak.violation('processes left running', left.join(', '));
  process.stdout.write(`${soak.summary()}\n  processes left running: ${left.length}\n`);
  process.exit(failed || soak.violations.length > 0 ? 1 : 0);
}

void main();
