/**
 * Throwaway certificates and credentials for a local cluster (`raftmq dev --tls --acl`, tests): a CA, and one
 * certificate per process signed by it, valid for 127.0.0.1 and localhost. A broker node's
 * certificate also names the node (`raftmq://<group>/<id>`), which its peers check.
 * X.509 is built by node-forge; keys come from node:crypto (native and fast).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import forge from 'node-forge';
import { nodeIdentityUri } from '../server/tls.js';

export interface CertificateAuthority {
  readonly certificatePem: string;
  readonly keyPem: string;
}

export interface IssuedCertificate {
  readonly certificatePem: string;
  readonly keyPem: string;
}

export interface CertificateRequest {
  readonly commonName: string;
  /** Host names and IP addresses the certificate is valid for. */
  readonly hosts: readonly string[];
  /** URI subject alternative names (a broker node's identity). */
  readonly uris?: readonly string[];
  readonly validDays?: number;
  /** For tests of expiry and of "not yet valid" (default: now). */
  readonly notBeforeMs?: number;
}

const ipv4 = /^\d{1,3}(\.\d{1,3}){3}$/;

function rsaKeyPair(): { publicKey: forge.pki.PublicKey; privateKey: forge.pki.rsa.PrivateKey; keyPem: string } {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  return { publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e), privateKey: forgeKey, keyPem };
}

function validity(certificate: forge.pki.Certificate, notBeforeMs: number, validDays: number): void {
  // A minute back: a peer whose clock is a little behind still accepts it.
  certificate.validity.notBefore = new Date(notBeforeMs - 60_000);
  certificate.validity.notAfter = new Date(notBeforeMs + validDays * 86_400_000);
  certificate.serialNumber = `01${randomBytes(15).toString('hex')}`; // positive, unique
}

export function createCertificateAuthority(commonName = 'RaftMQ dev CA', validDays = 365, notBeforeMs = Date.now()): CertificateAuthority {
  const keys = rsaKeyPair();
  const certificate = forge.pki.createCertificate();
  certificate.publicKey = keys.publicKey;
  validity(certificate, notBeforeMs, validDays);
  const subject = [{ name: 'commonName', value: commonName }];
  certificate.setSubject(subject);
  certificate.setIssuer(subject);
  certificate.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  certificate.sign(keys.privateKey, forge.md.sha256.create());
  return { certificatePem: forge.pki.certificateToPem(certificate), keyPem: keys.keyPem };
}

/** A server-and-client certificate signed by `ca`. */
export function issueCertificate(ca: CertificateAuthority, request: CertificateRequest): IssuedCertificate {
  if (request.hosts.length === 0 && (request.uris ?? []).length === 0) throw new Error('a certificate needs at least one host or URI');
  const caCertificate = forge.pki.certificateFromPem(ca.certificatePem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem) as forge.pki.rsa.PrivateKey;
  const keys = rsaKeyPair();
  const certificate = forge.pki.createCertificate();
  certificate.publicKey = keys.publicKey;
  validity(certificate, request.notBeforeMs ?? Date.now(), request.validDays ?? 365);
  certificate.setSubject([{ name: 'commonName', value: request.commonName }]);
  certificate.setIssuer(caCertificate.subject.attributes);
  certificate.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    {
      name: 'subjectAltName',
      altNames: [
        ...request.hosts.map((host) => (ipv4.test(host) ? { type: 7, ip: host } : { type: 2, value: host })),
        ...(request.uris ?? []).map((uri) => ({ type: 6, value: uri })),
      ],
    },
  ]);
  certificate.sign(caKey, forge.md.sha256.create());
  return { certificatePem: forge.pki.certificateToPem(certificate), keyPem: keys.keyPem };
}

/** What `writeDevAuth` wrote: the cluster key and the bootstrap super user's credentials file. */
export interface DevAuthFiles {
  readonly keyFile: string;
  readonly adminFile: string;
}

/**
 * A throwaway cluster key and bootstrap super user (`admin`, a random secret) in `dir`, both
 * readable by the owner only: `raftmq --credentials <adminFile>` signs as that user.
 */
export async function writeDevAuth(dir: string): Promise<DevAuthFiles> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const files = { keyFile: path.join(dir, 'cluster.key'), adminFile: path.join(dir, 'admin.json') };
  await fs.writeFile(files.keyFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  await fs.writeFile(files.adminFile, `${JSON.stringify({ accessKey: 'admin', secretKey: randomBytes(24).toString('base64url') })}\n`, { mode: 0o600 });
  return files;
}

/** Where `writeDevCertificates` put a process's files. */
export interface CertificateFiles {
  readonly caFile: string;
  certFile(processId: string): string;
  keyFile(processId: string): string;
}

export function certificateFilesIn(dir: string): CertificateFiles {
  return {
    caFile: path.join(dir, 'ca.pem'),
    certFile: (id) => path.join(dir, `${id}.pem`),
    keyFile: (id) => path.join(dir, `${id}-key.pem`),
  };
}

/**
 * Writes a CA and certificates into `dir`: one per broker node (`nodes`, naming the node of
 * `groupId`) and one per other process (`others`, e.g. namesrv, client). Keys are written
 * readable by the owner only. The CA's key is kept beside it so more can be issued later.
 */
export async function writeDevCertificates(dir: string, groupId: string, nodes: readonly string[], others: readonly string[], hosts: readonly string[] = ['127.0.0.1', 'localhost']): Promise<CertificateFiles> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const files = certificateFilesIn(dir);
  const ca = createCertificateAuthority();
  await fs.writeFile(files.caFile, ca.certificatePem);
  await fs.writeFile(path.join(dir, 'ca-key.pem'), ca.keyPem, { mode: 0o600 });
  const write = async (id: string, issued: IssuedCertificate): Promise<void> => {
    await fs.writeFile(files.certFile(id), issued.certificatePem);
    await fs.writeFile(files.keyFile(id), issued.keyPem, { mode: 0o600 });
  };
  for (const id of nodes) await write(id, issueCertificate(ca, { commonName: `${groupId}/${id}`, hosts, uris: [nodeIdentityUri(groupId, id)] }));
  for (const id of others) await write(id, issueCertificate(ca, { commonName: id, hosts }));
  return files;
}
