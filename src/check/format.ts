import type { CheckResult } from './index';
import type { Status } from './report';

const LABEL: Record<Status, string> = { pass: 'PASS', warn: 'WARN', fail: 'FAIL', skip: 'SKIP' };

/** For people: one line per finding; what was seen and the fix under anything that is not a pass. */
export function formatText(result: CheckResult): string {
  const { report } = result;
  const width = Math.max(...report.findings.map((f) => f.id.length));
  const lines = [`Rendezvous check of ${result.url}`, ''];
  for (const f of report.findings) {
    lines.push(`${LABEL[f.status]}  ${f.id.padEnd(width)}  ${f.title}`);
    const indent = ' '.repeat(width + 8);
    if (f.status !== 'pass') lines.push(`${indent}seen: ${f.detail}`);
    if (f.fix !== undefined) lines.push(`${indent}fix:  ${f.fix}`);
  }
  const c = report.counts();
  lines.push(
    '',
    `${c.pass} passed, ${c.warn} warnings, ${c.fail} failed, ${c.skip} skipped in ${(result.durationMs / 1000).toFixed(1)} s`,
  );
  return lines.join('\n') + '\n';
}

/** For machines: the same findings, with the counts and the verdict. */
export function formatJson(result: CheckResult): string {
  const { report } = result;
  return (
    JSON.stringify(
      {
        url: result.url,
        ok: !report.failed,
        durationMs: result.durationMs,
        counts: report.counts(),
        findings: report.findings,
      },
      null,
      2,
    ) + '\n'
  );
}
