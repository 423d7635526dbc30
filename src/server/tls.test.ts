import { X509Certificate } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority, issueCertificate, type CertificateAuthority } from '../cli/dev-certificates.js';
import { silentLogger, type Logger } from '../raft/node/ports.js';
import { certificateRefusal, nodeIdentitiesOf, nodeIdentityUri, peerCertificateOf, TlsMaterial } from './tls.js';

let dir: string;
let ca: CertificateAuthority;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-tls-'));
  ca = createCertificateAuthority('test CA');
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function writeIdentity(name: string, uris: string[], authority = ca): Promise<{ certFile: string; keyFile: string; caFile: string }> {
  const issued = issueCertificate(authority, { commonName: name, hosts: ['127.0.0.1', 'localhost'], uris });
  const files = { certFile: path.join(dir, `${name}.pem`), keyFile: path.join(dir, `${name}-key.pem`), caFile: path.join(dir, `${name}-ca.pem`) };
  await fs.writeFile(files.certFile, issued.certificatePem);
  await fs.writeFile(files.keyFile, issued.keyPem);
  await fs.writeFile(files.caFile, authority.certificatePem);
  return files;
}

/** What a TLS server sees of a client certificate, as tls.PeerCertificate. */
function peerCertificate(pem: string): tls.PeerCertificate {
  const x509 = new X509Certificate(pem);
  return { subjectaltname: x509.subjectAltName ?? '', raw: x509.raw } as unknown as tls.PeerCertificate;
}

function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { ...silentLogger, warnings, warn: (fields, message) => { warnings.push(`${message} ${JSON.stringify(fields)}`); } };
}

describe('peer identity in certificates', () => {
  it('reads every raftmq:// node a certificate names, and nothing else', () => {
    const issued = issueCertificate(ca, { commonName: 'x', hosts: ['127.0.0.1', 'example.org'], uris: [nodeIdentityUri('g1', 'n1'), 'https://example.org/', nodeIdentityUri('g2', 'n7')] });
    expect(nodeIdentitiesOf(peerCertificate(issued.certificatePem))).toEqual([{ groupId: 'g1', nodeId: 'n1' }, { groupId: 'g2', nodeId: 'n7' }]);
  });

  it('accepts only a certificate naming that node of that group', () => {
    const cert = peerCertificate(issueCertificate(ca, { commonName: 'n1', hosts: ['127.0.0.1'], uris: [nodeIdentityUri('g1', 'n1')] }).certificatePem);
    expect(certificateRefusal(cert, 'g1', 'n1')).toBeUndefined();
    expect(certificateRefusal(cert, 'g1', 'n2')).toMatch(/names raftmq:\/\/g1\/n1, not raftmq:\/\/g1\/n2/);
    expect(certificateRefusal(cert, 'g2', 'n1')).toMatch(/not raftmq:\/\/g2\/n1/);
    expect(certificateRefusal(undefined, 'g1', 'n1')).toMatch(/no client certificate signed by this cluster's CA/);
    const client = peerCertificate(issueCertificate(ca, { commonName: 'client', hosts: ['127.0.0.1'] }).certificatePem);
    expect(certificateRefusal(client, 'g1', 'n1')).toMatch(/names no raftmq:\/\/ node/);
  });
});

describe('TlsMaterial', () => {
  it('refuses unusable files at start with a clear error', async () => {
    const good = await writeIdentity('start', [nodeIdentityUri('g', 'n1')]);
    const other = await writeIdentity('start-other', []);
    expect(() => new TlsMaterial({ ...good, certFile: path.join(dir, 'missing.pem') }, silentLogger)).toThrow(/cannot read the TLS certificate file .*missing\.pem/);
    expect(() => new TlsMaterial({ ...good, keyFile: other.keyFile }, silentLogger)).toThrow(/not a usable certificate, key and CA/);
    await fs.writeFile(path.join(dir, 'garbage.pem'), 'not a certificate');
    expect(() => new TlsMaterial({ ...good, caFile: path.join(dir, 'garbage.pem') }, silentLogger)).toThrow(/not a usable/);
  });

  it('takes a renewed certificate, and keeps the old one while the new files do not fit together', async () => {
    const files = await writeIdentity('reload', [nodeIdentityUri('g', 'n1')]);
    const logger = recordingLogger();
    const material = new TlsMaterial({ ...files, refreshIntervalMs: 60_000 }, logger);
    const seen: string[] = [];
    material.addIdentityCertificateListener((update) => { if (update !== null) seen.push(new X509Certificate(update.certificate).serialNumber); });
    await new Promise((resolve) => setImmediate(resolve));
    const first = new X509Certificate(await fs.readFile(files.certFile)).serialNumber;
    expect(seen).toEqual([first]);
    expect(material.refresh()).toBe(false); // unchanged files

    // Half a renewal: a new certificate with the old key.
    const renewed = issueCertificate(ca, { commonName: 'reload', hosts: ['127.0.0.1'], uris: [nodeIdentityUri('g', 'n1')] });
    await fs.writeFile(files.certFile, renewed.certificatePem);
    expect(material.refresh()).toBe(false);
    expect(logger.warnings.join('\n')).toMatch(/TLS files changed but are not usable; keeping the previous certificate/);
    expect(seen).toEqual([first]);

    // The key arrives: the new pair is taken.
    await fs.writeFile(files.keyFile, renewed.keyPem);
    expect(material.refresh()).toBe(true);
    expect(seen).toEqual([first, new X509Certificate(renewed.certificatePem).serialNumber]);
    material.close();
  });

  it('lane sockets: mutual TLS, a hello accepted only from the certificate of the node it names', async () => {
    const server = new TlsMaterial(await writeIdentity('lane-n2', [nodeIdentityUri('g', 'n2')]), silentLogger);
    const n1 = new TlsMaterial(await writeIdentity('lane-n1', [nodeIdentityUri('g', 'n1')]), silentLogger);
    const foreign = new TlsMaterial(await writeIdentity('lane-foreign', [nodeIdentityUri('other', 'n1')]), silentLogger);
    const stranger = new TlsMaterial(await writeIdentity('lane-stranger', [nodeIdentityUri('g', 'n1')], createCertificateAuthority('another CA')), silentLogger);
    const sockets = server.laneSockets('g', 2_000);
    const accepted: Array<string | undefined> = [];
    const listener = sockets.createServer((socket) => {
      accepted.push(sockets.refusal?.(socket, { groupId: 'g', from: 'n1' }));
      socket.end();
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const address = { host: '127.0.0.1', port: (listener.address() as net.AddressInfo).port };
    const dial = (material: TlsMaterial, peer: string): Promise<string> => new Promise((resolve) => {
      const socket = material.laneSockets('g', 2_000).connect(address, peer);
      socket.on('secureConnect', () => resolve(`connected as ${String(peerCertificateOf(socket) !== undefined)}`));
      socket.on('error', (error) => resolve(`error: ${error.message}`));
    });
    expect(await dial(n1, 'n2')).toBe('connected as true');
    expect(await dial(n1, 'n3')).toMatch(/error: .*not raftmq:\/\/g\/n3/); // the dialer checks who answers
    expect(await dial(foreign, 'n2')).toBe('connected as true'); // a valid certificate, but of another group...
    expect(await dial(stranger, 'n2')).toMatch(/error/); // ... and one the CA did not sign
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(accepted[0]).toBeUndefined();
    expect(accepted[1]).toMatch(/names raftmq:\/\/other\/n1, not raftmq:\/\/g\/n1/);
    expect(accepted).toHaveLength(2);
    listener.close();
    for (const material of [server, n1, foreign, stranger]) material.close();
  });
});
