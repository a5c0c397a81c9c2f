import type { Context } from 'koa';
import { readBody } from './body';
import { MatrixError } from './errors';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads a request body that must be a JSON object: 400 `M_NOT_JSON` when it is not UTF-8 JSON,
 * `M_BAD_JSON` when it is JSON but not an object. The byte limit is the caller's.
 */
export async function readJsonObject(ctx: Context, limit: number): Promise<Record<string, unknown>> {
  const raw = await readBody(ctx, limit);
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8.decode(raw));
  } catch {
    throw new MatrixError(400, 'M_NOT_JSON', 'Request body is not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new MatrixError(400, 'M_BAD_JSON', 'Request body must be a JSON object');
  }
  return parsed as Record<string, unknown>;
}

/** A string field: 400 `M_MISSING_PARAM` when absent, `M_BAD_JSON` when not a string. */
export function stringField(body: Record<string, unknown>, name: string): string {
  const v = Object.hasOwn(body, name) ? body[name] : undefined;
  if (v === undefined) throw new MatrixError(400, 'M_MISSING_PARAM', `Missing '${name}'`);
  if (typeof v !== 'string') throw new MatrixError(400, 'M_BAD_JSON', `'${name}' must be a string`);
  return v;
}
