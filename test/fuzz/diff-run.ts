// `npm run fuzz:diff [-- count [seed [replicas]]]`: memory store against Redis, answer by answer.
import { runDifferential } from './differential';

const count = Number(process.argv[2] ?? 3000);
const seed = Number(process.argv[3] ?? Date.now() % 2 ** 31);
const replicas = Number(process.argv[4] ?? 2);

runDifferential(count, seed, { replicas }).then(
  (report) => {
    process.stdout.write(`${JSON.stringify({ seed, replicas, ...report }, null, 2)}\n`);
    process.exit(report.failures.length === 0 ? 0 : 1);
  },
  (err: unknown) => {
    process.stderr.write(`differential run failed: ${String(err)}\n`);
    process.exit(1);
  },
);
