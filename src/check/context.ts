import { type Answer, type HttpClient, jsonOf } from './http';
import type { Report } from './report';

export type FamilyId = 'msc3886' | 'msc4108' | 'msc4388';

/** An answer about a session, kept so the cross-cutting checks can look at every one of them. */
export interface Seen {
  family: FamilyId;
  /** What was asked, e.g. "MSC4108 GET (304)"; named in findings. */
  label: string;
  answer: Answer;
  /** Whether this answer must carry ETag, Expires and Last-Modified (the ETag family's rule). */
  validators: boolean;
  /** Taken by the check for an answer from something else than the server (a homeserver's route). */
  foreign?: boolean;
}

/** Leaves `answer` out of the header checks: the check has put it down to something in front. */
export function disown(ctx: CheckContext, answer: Answer): void {
  for (const s of ctx.seen) if (s.answer === answer) s.foreign = true;
}

/** What every part of the check shares. */
export interface CheckContext {
  /** The base URL checked, without a trailing slash. */
  base: string;
  http: HttpClient;
  report: Report;
  seen: Seen[];
  cleanup: Cleanup;
  /** Round trip of the first request: long-poll probes leave this much (twice) for a read to arrive. */
  rttMs: number;
  /** A weak ETag was echoed in a conditional request: whether the server took it (per family). */
  weakEtagAccepted: Map<FamilyId, boolean>;
  /** The URL serves /metrics on purpose (`--metrics-here`): metrics answering is a warning. */
  metricsHere: boolean;
  /** Hold one read for the server's longest wait (`--full-wait`). */
  fullWait: boolean;
}

/**
 * Sessions the check created and has not yet seen deleted. Whatever a failed step left behind is
 * deleted at the end; behind replicas on different stores a DELETE may land on the wrong one, so
 * it is tried a few times.
 */
export class Cleanup {
  private readonly open = new Map<string, number[]>();

  track(url: string, deleted: number[]): void {
    this.open.set(url, deleted);
  }

  done(url: string): void {
    this.open.delete(url);
  }

  get pending(): number {
    return this.open.size;
  }

  /** Deletes what is left; says how many could not be, and what the last failed attempt got. */
  async run(http: HttpClient): Promise<{ left: number; last?: { answer: Answer } | { err: unknown } }> {
    let left = 0;
    let last: { answer: Answer } | { err: unknown } | undefined;
    for (const [url, deleted] of this.open) {
      let gone = false;
      let answerLost = http.unansweredDeletes.has(url);
      for (let attempt = 0; attempt < 4 && !gone; attempt++) {
        try {
          const a = await http.request({ method: 'DELETE', url, fresh: true });
          // The server's own 404 right after an attempt whose answer went missing: that one deleted it.
          gone = deleted.includes(a.status) || (answerLost && a.status === 404 && jsonOf(a)?.errcode === 'M_NOT_FOUND');
          answerLost = false;
          if (!gone) last = { answer: a };
        } catch (err) {
          answerLost = true;
          last = { err };
        }
      }
      if (!gone) left++;
    }
    this.open.clear();
    return { left, last };
  }
}
