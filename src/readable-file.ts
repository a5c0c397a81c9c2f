import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';

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

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;
const CERTIFICATE = /^(TRUSTED )?CERTIFICATE$/;

/** OpenSSL's reason without its numeric prefix (`error:0480006C:PEM routines::no start line`). */
function reason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/^error:[0-9A-F]+:[^:]*::/, '');
}

/**
 * What is wrong with a certificate file a setting names (a CA bundle, a client certificate); undefined
 * when every certificate in it can be read. Node's TLS skips a CA it cannot parse without a word, so a
 * damaged bundle would otherwise only show later, as a handshake that cannot verify its peer.
 */
export function certificateFileProblem(setting: string, file: string): string | undefined {
  const read = readSettingFile(setting, file);
  if ('problem' in read) return read.problem;
  let count = 0;
  for (const [block, label] of read.text.matchAll(PEM_BLOCK)) {
    if (!CERTIFICATE.test(label!)) continue;
    count++;
    try {
      new X509Certificate(block);
    } catch (err) {
      return `${setting} holds a certificate that cannot be read (${file}, certificate ${count}: ${reason(err)})`;
    }
  }
  return count > 0 ? undefined : `${setting} holds no PEM certificate (${file}: no -----BEGIN CERTIFICATE----- block)`;
}

/** What is wrong with a private key file a setting names; undefined when it holds a usable key. */
export function privateKeyFileProblem(setting: string, file: string): string | undefined {
  const read = readSettingFile(setting, file);
  if ('problem' in read) return read.problem;
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(read.text)) {
    return `${setting} holds an encrypted key (${file}): give it without a passphrase, kept in a Secret`;
  }
  try {
    createPrivateKey(read.text);
    return undefined;
  } catch (err) {
    return `${setting} holds no private key that can be read (${file}: ${reason(err)})`;
  }
}

/** Whether a client certificate and key that can each be read belong together. */
export function keyPairProblem(certSetting: string, keySetting: string, cert: string, key: string): string | undefined {
  try {
    createSecureContext({ cert: readFileSync(cert), key: readFileSync(key) });
    return undefined;
  } catch (err) {
    return `${certSetting} and ${keySetting} do not belong together (${reason(err)})`;
  }
}
