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

/**
 * What is wrong with a PEM file a setting names (a certificate, a CA, a key); undefined when it can be
 * read and holds a PEM block. Otherwise a wrong file would only show as a failed TLS handshake, later.
 */
export function pemFileProblem(setting: string, file: string): string | undefined {
  const read = readSettingFile(setting, file);
  if ('problem' in read) return read.problem;
  if (!/-----BEGIN [A-Z0-9 ]+-----/.test(read.text))
    return `${setting} is not a PEM file (${file}: no -----BEGIN line)`;
  return undefined;
}
