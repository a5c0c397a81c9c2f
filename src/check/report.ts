export type Status = 'pass' | 'warn' | 'fail' | 'skip';

/**
 * One verdict of the check: what was looked at, what was seen and what it means for clients, and
 * for anything short of a pass, the configuration line that fixes it.
 */
export interface Finding {
  id: string;
  status: Status;
  title: string;
  detail: string;
  fix?: string;
}

export class Report {
  readonly findings: Finding[] = [];

  add(finding: Finding): void {
    this.findings.push(finding);
  }

  pass(id: string, title: string, detail: string): void {
    this.add({ id, status: 'pass', title, detail });
  }

  warn(id: string, title: string, detail: string, fix: string): void {
    this.add({ id, status: 'warn', title, detail, fix });
  }

  fail(id: string, title: string, detail: string, fix: string): void {
    this.add({ id, status: 'fail', title, detail, fix });
  }

  skip(id: string, title: string, detail: string): void {
    this.add({ id, status: 'skip', title, detail });
  }

  /**
   * Each of these steps that has no finding yet is reported as skipped, saying why: a step the check
   * could not get to still counts in the totals.
   */
  skipMissing(steps: { id: string; title: string }[], why: string): void {
    for (const s of steps) if (!this.has(s.id)) this.skip(s.id, s.title, why);
  }

  has(id: string): boolean {
    return this.findings.some((f) => f.id === id);
  }

  get failed(): boolean {
    return this.findings.some((f) => f.status === 'fail');
  }

  counts(): Record<Status, number> {
    const out: Record<Status, number> = { pass: 0, warn: 0, fail: 0, skip: 0 };
    for (const f of this.findings) out[f.status]++;
    return out;
  }
}
