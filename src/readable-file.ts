import { readFileSync } from 'node:fs';

/**
 * A file a setting names (a secret, a certificate, a key), read at start so that a missing one is
 * reported like every other bad value: its text, or the problem naming the setting.
 */
export function readSettingFile(setting: string, file: string): { text: string } | { problem: string } {
  try {
    return { text: readFileSync(file, 'utf8') };
  } catch (err) {
    return { problem: `${setting} cannot be read (${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'})` };
  }
}

/** What is wrong with a file a setting names; undefined when it can be read. */
export function unreadableFile(setting: string, file: string): string | undefined {
  const read = readSettingFile(setting, file);
  return 'problem' in read ? read.problem : undefined;
}
