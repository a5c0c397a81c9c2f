import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A throwaway self-signed certificate and its key, made by openssl once per run, for settings that
 * name a certificate, CA or key file and are only loaded, not used to connect (the settings check
 * parses what they hold). A second key, which the certificate does not belong to.
 */
const dir = mkdtempSync(join(tmpdir(), 'rz-pem-'));
const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
ssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'key.pem');
ssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'other-key.pem');
ssl('req', '-x509', '-key', 'key.pem', '-subj', '/CN=rendezvous-test', '-days', '2', '-out', 'cert.pem');

/** A certificate file (it serves as a CA bundle of one too). */
export const PEM_FILE = join(dir, 'cert.pem');
/** The key of the certificate in PEM_FILE. */
export const KEY_FILE = join(dir, 'key.pem');
/** A key the certificate in PEM_FILE does not belong to. */
export const OTHER_KEY_FILE = join(dir, 'other-key.pem');

export const CERTIFICATE_PEM = readFileSync(PEM_FILE, 'utf8');
export const KEY_PEM = readFileSync(KEY_FILE, 'utf8');
