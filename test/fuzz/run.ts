// `npm run fuzz [-- count [seed]]`: the long hostile-input run; exits non-zero on any failure.
import { runFuzz } from './harness';

const count = Number(process.argv[2] ?? 12_000);
const seed = Number(process.argv[3] ?? Date.now() % 2 ** 31);

runFuzz(count, seed).then(
  (report) => {
    process.stdout.write(`${JSON.stringify({ seed, ...report }, null, 2)}\n`);
    process.exit(report.failures.length === 0 ? 0 : 1);
  },
  (err: unknown) => {
    process.stderr.write(`fuzz run failed: ${String(err)}\n`);
    process.exit(1);
  },
);
