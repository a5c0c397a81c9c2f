/**
 * What a replica says it answered: its `rendezvous_http_requests_total` counter (family, method,
 * status), read from /metrics. The difference of two readings is exact, costs the load generator
 * nothing per request, and shows every status, so an answer the protocol does not promise counts as
 * an error even when the load generator only sees the number of answers.
 */
export type Served = Map<string, number>;

const SERIES = /^rendezvous_http_requests_total\{([^}]*)\} (\S+)$/gm;
const LABEL = /(\w+)="([^"]*)"/g;

/** The counter's series, keyed `family method status`. */
export async function served(base: string): Promise<Served> {
  const res = await fetch(`${base}/metrics`);
  if (!res.ok) throw new Error(`${base}/metrics answered ${res.status}`);
  const text = await res.text();
  const out: Served = new Map();
  for (const m of text.matchAll(SERIES)) {
    const labels: Record<string, string> = {};
    for (const l of m[1]!.matchAll(LABEL)) labels[l[1]!] = l[2]!;
    out.set(`${labels.family ?? ''} ${labels.method ?? ''} ${labels.status ?? ''}`, Number(m[2]));
  }
  return out;
}

/** Answers between two readings, by status, for one family and method. */
export function answered(
  before: Served,
  after: Served,
  family: string,
  method: string,
): { total: number; byStatus: Record<string, number> } {
  const byStatus: Record<string, number> = {};
  let total = 0;
  const prefix = `${family.toLowerCase()} ${method} `;
  for (const [key, n] of after) {
    if (!key.startsWith(prefix)) continue;
    const d = n - (before.get(key) ?? 0);
    if (d <= 0) continue;
    byStatus[key.slice(prefix.length)] = d;
    total += d;
  }
  return { total, byStatus };
}
