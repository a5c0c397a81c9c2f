import type { Headers, Req } from './families';

export interface Answer {
  status: number;
  body: string;
  headers: Headers;
}

/** One request outside the measured runs (setup, availability probes). */
export async function send(base: string, req: Req): Promise<Answer> {
  const res = await fetch(base + req.path, {
    method: req.method,
    headers: req.headers,
    body: req.method === 'GET' || req.method === 'DELETE' ? undefined : (req.body ?? ''),
  });
  const headers: Headers = {};
  res.headers.forEach((v, k) => (headers[k] = v));
  return { status: res.status, body: await res.text(), headers };
}
