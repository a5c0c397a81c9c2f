import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** PEM-shaped text: what the settings check of a certificate, CA or key file looks for. */
export const pemStandIn = (what = 'CERTIFICATE'): string =>
  `-----BEGIN ${what}-----\nstand-in\n-----END ${what}-----\n`;

/** A file holding `pemStandIn()`, for settings that name a PEM file and are only loaded, not used. */
export const PEM_FILE: string = (() => {
  const file = join(mkdtempSync(join(tmpdir(), 'rz-pem-')), 'stand-in.pem');
  writeFileSync(file, pemStandIn());
  return file;
})();
