import { readFileSync } from 'node:fs';

/**
 * What is wrong with a file a setting names (a certificate, a key), found at start like every other
 * bad value; undefined when it can be read.
 */
export function unreadableFile(setting: string, file: string): string | undefined {
  try {
    readFileSync(file);
    return undefined;
  } catch (err) {
    return `${setting} cannot be read (${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'})`;
  }
}
