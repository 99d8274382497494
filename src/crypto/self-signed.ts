import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import forge from 'node-forge';

export interface SelfSigned {
  cert: string;
  key: string;
  /** SHA-256 of the DER certificate, colon-separated hex, for pinning by clients. */
  fingerprint: string;
  certFile: string;
  created: boolean;
}

const VALID_DAYS = 365;

export function certFingerprint(certPem: string): string {
  return new crypto.X509Certificate(certPem).fingerprint256;
}

/** Builds an X.509 certificate for localhost / 127.0.0.1 / ::1 with node-forge (the RSA key itself comes from OpenSSL). */
export function generateSelfSigned(now = new Date()): { cert: string; key: string } {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'pkcs1', format: 'pem' }).toString());
  cert.serialNumber = '01' + crypto.randomBytes(15).toString('hex');
  cert.validity.notBefore = new Date(now.getTime() - 60_000);
  cert.validity.notAfter = new Date(now.getTime() + VALID_DAYS * 86_400_000);
  const subject = [
    { name: 'commonName', value: 'localhost' },
    { name: 'organizationName', value: 'provider-key-vault (self-signed)' },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' }] },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: keyPem };
}

/** The stored pair when it parses, belongs together and has a month left; undefined when it must be made anew. */
function reusable(certFile: string, keyFile: string, now: Date): { cert: string; key: string; x509: crypto.X509Certificate } | undefined {
  if (!fs.existsSync(certFile) || !fs.existsSync(keyFile)) return undefined;
  try {
    const cert = fs.readFileSync(certFile, 'utf8');
    const key = fs.readFileSync(keyFile, 'utf8');
    const x509 = new crypto.X509Certificate(cert);
    if (!x509.checkPrivateKey(crypto.createPrivateKey(key))) return undefined;
    return new Date(x509.validTo).getTime() - now.getTime() > 30 * 86_400_000 ? { cert, key, x509 } : undefined;
  } catch {
    return undefined; // corrupt or half-written: replace it
  }
}

/** Reuses the certificate kept in the data dir while it is sound with a month left; otherwise makes a new one (key mode 0600). */
export function ensureSelfSigned(dataDir: string, now = new Date()): SelfSigned {
  const dir = path.join(dataDir, 'tls');
  const certFile = path.join(dir, 'self-signed.crt');
  const keyFile = path.join(dir, 'self-signed.key');
  const kept = reusable(certFile, keyFile, now);
  if (kept) return { cert: kept.cert, key: kept.key, fingerprint: kept.x509.fingerprint256, certFile, created: false };
  const fresh = generateSelfSigned(now);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  // The private key never sits in a file with looser permissions: written to a new 0600 file, then renamed over.
  const tmpKey = `${keyFile}.${process.pid}.tmp`;
  fs.writeFileSync(tmpKey, fresh.key, { mode: 0o600, flag: 'wx' });
  fs.renameSync(tmpKey, keyFile);
  fs.writeFileSync(certFile, fresh.cert, { mode: 0o644 });
  return { ...fresh, fingerprint: certFingerprint(fresh.cert), certFile, created: true };
}
