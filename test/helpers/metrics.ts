import { req } from './exchange';

/** One scrape of a Prometheus text endpoint, queried by name and (a subset of) labels. */
export class Scrape {
  private constructor(readonly text: string) {}

  static async of(url: string): Promise<Scrape> {
    const res = await req(url);
    if (res.status !== 200) throw new Error(`scrape of ${url} answered ${res.status}`);
    return new Scrape(await res.text());
  }

  has(name: string): boolean {
    return this.text.split('\n').some((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  }

  /** Sum of every series of `name` whose labels include `labels` (0 when none does). */
  value(name: string, labels: Record<string, string> = {}): number {
    let sum = 0;
    for (const line of this.text.split('\n')) {
      if (line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (m === null || m[1] !== name) continue;
      const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
      if (Object.entries(labels).every(([k, v]) => got[k] === v)) sum += Number(m[3]);
    }
    return sum;
  }
}
