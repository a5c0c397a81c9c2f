import { MSC3886_PREFIXES } from '../protocols/msc3886';
import { MSC4108_PREFIX } from '../protocols/msc4108';
import { MSC4388_PREFIXES } from '../protocols/msc4388';

/** The paths the check calls: the server's own constants, so the two can never disagree. */
export const PATHS = {
  msc3886Root: '/',
  msc3886Prefixed: MSC3886_PREFIXES[1],
  msc4108: MSC4108_PREFIX,
  msc4388: MSC4388_PREFIXES[0].prefix,
  msc4388Stable: MSC4388_PREFIXES[1].prefix,
} as const;

export const MSC4388_CONFLICT = MSC4388_PREFIXES[0].conflict;
