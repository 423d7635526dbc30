/**
 * TLS for every listener and every connection a server process opens, from PEM files that
 * are re-read while the process runs (a renewed certificate is used for new connections
 * without a restart), and the peer identity a node's certificate carries.
 *
 * One certificate per process: a broker node serves it on its gRPC port (clients, admin and
 * Raft share that port) and on its peer lane, and presents it when it dials a peer, its
 * group's leader or the NameServer. A node's certificate names it with the URI subject
 * alternative name `raftmq://<group>/<node>`; peers accept a Raft connection only from a
 * certificate signed by the configured CA that names a current member of their own group.
 * Clients need no certificate: the client port asks for one and takes connections without.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../raft/node/ports.js';
import type { NodeId } from '../raft/types.js';
import type { LaneAddress, LaneSockets } from './peer-lane.js';

type CertificateProvider = grpc.experimental.CertificateProvider;
type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;

export interface TlsFiles {
  /** This process's certificate chain (PEM). */
  readonly certFile: string;
  /** Its private key (PEM). */
  readonly keyFile: string;
  /** The CA certificates that sign the cluster's certificates (PEM). */
  readonly caFile: string;
  /** How often the files are checked for a change (default 10 s). */
  readonly refreshIntervalMs?: number;
}

interface Pem {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer;
}

/** The URI a node's certificate carries (subject alternative name). */
export function nodeIdentityUri(groupId: string, nodeId: NodeId): string {
  return `raftmq://${groupId}/${nodeId}`;
}

/** Every `raftmq://group/node` a certificate names. */
export function nodeIdentitiesOf(certificate: tls.PeerCertificate): Array<{ groupId: string; nodeId: NodeId }> {
  const identities: Array<{ groupId: string; nodeId: NodeId }> = [];
  for (const name of (certificate.subjectaltname ?? '').split(',')) {
    const match = /^\s*URI:raftmq:\/\/([^/\s]+)\/([^/\s]+)\s*$/.exec(name);
    if (match !== null) identities.push({ groupId: match[1] as string, nodeId: match[2] as NodeId });
  }
  return identities;
}

/**
 * Why a connection whose verified certificate is `certificate` may not speak for node `nodeId`
 * of `groupId`, or undefined if it may. `undefined` certificate: the peer presented none the
 * CA signed.
 */
export function certificateRefusal(certificate: tls.PeerCertificate | undefined, groupId: string, nodeId: NodeId): string | undefined {
  if (certificate === undefined || certificate.raw === undefined) {
    return `no client certificate signed by this cluster's CA: a peer must present one naming ${nodeIdentityUri(groupId, nodeId)}`;
  }
  const identities = nodeIdentitiesOf(certificate);
  if (identities.some((id) => id.groupId === groupId && id.nodeId === nodeId)) return undefined;
  const named = identities.length === 0 ? 'no raftmq:// node' : identities.map((id) => nodeIdentityUri(id.groupId, id.nodeId)).join(', ');
  return `the peer's certificate names ${named}, not ${nodeIdentityUri(groupId, nodeId)}`;
}

function readPem(files: TlsFiles): Pem {
  const read = (what: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new Error(`cannot read the TLS ${what} file ${file}: ${(error as Error).message}`);
    }
  };
  const pem = { cert: read('certificate', files.certFile), key: read('key', files.keyFile), ca: read('CA', files.caFile) };
  try {
    // Parses all three and checks that the key belongs to the certificate; a CA file without
    // a certificate in it would otherwise be taken and fail every handshake later.
    tls.createSecureContext(pem);
    new X509Certificate(pem.ca);
  } catch (error) {
    throw new Error(`TLS files ${files.certFile}, ${files.keyFile}, ${files.caFile} are not a usable certificate, key and CA: ${(error as Error).message}`);
  }
  return pem;
}

function fileStamp(files: TlsFiles): string {
  return [files.certFile, files.keyFile, files.caFile].map((file) => {
    try {
      const stat = statSync(file);
      return `${stat.mtimeMs}/${stat.size}/${stat.ino}`;
    } catch {
      return 'missing';
    }
  }).join('|');
}

/**
 * The certificate, key and CA of one process, re-read when their files change. A change that
 * does not form a usable set (half-written, key of another certificate) is logged and the
 * previous set kept. A grpc-js certificate provider (CA and identity), and the source of the
 * peer lane's secure contexts.
 */
export class TlsMaterial implements CertificateProvider {
  private pem: Pem;
  private stamp: string;
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private readonly changeListeners = new Set<() => void>();
  private readonly timer: NodeJS.Timeout;
  private secureContext: tls.SecureContext;

  constructor(readonly files: TlsFiles, private readonly logger: Logger) {
    this.stamp = fileStamp(files);
    this.pem = readPem(files);
    this.secureContext = tls.createSecureContext(this.pem);
    const refreshIntervalMs = files.refreshIntervalMs ?? 10_000;
    if (!Number.isSafeInteger(refreshIntervalMs) || refreshIntervalMs < 10) throw new Error(`TLS refresh interval must be ≥ 10 ms, not ${refreshIntervalMs}`);
    this.timer = setInterval(() => this.refresh(), refreshIntervalMs).unref();
  }

  /** Checks the files now; true if a new set was taken. */
  refresh(): boolean {
    const stamp = fileStamp(this.files);
    if (stamp === this.stamp) return false;
    let pem: Pem;
    try {
      pem = readPem(this.files);
    } catch (error) {
      // Not remembered as seen: a file still being written is read again next time.
      this.logger.warn({ err: (error as Error).message }, 'TLS files changed but are not usable; keeping the previous certificate');
      return false;
    }
    this.stamp = stamp;
    this.pem = pem;
    this.secureContext = tls.createSecureContext(pem);
    this.logger.info({ certFile: this.files.certFile }, 'TLS certificate reloaded');
    for (const listener of this.caListeners) listener({ caCertificate: pem.ca });
    for (const listener of this.identityListeners) listener({ certificate: pem.cert, privateKey: pem.key });
    for (const listener of this.changeListeners) listener();
    return true;
  }

  close(): void {
    clearInterval(this.timer);
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    process.nextTick(() => { if (this.caListeners.has(listener)) listener({ caCertificate: this.pem.ca }); });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    process.nextTick(() => { if (this.identityListeners.has(listener)) listener({ certificate: this.pem.cert, privateKey: this.pem.key }); });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }

  /**
   * For this process's gRPC server: its certificate; a client certificate is asked for and
   * verified against the CA when given (peers), not required (clients, admin tools).
   */
  serverCredentials(): grpc.ServerCredentials {
    // grpc-js's factory hands its first two arguments to the constructor in the other order; one provider for both makes that moot.
    return grpc.experimental.createCertificateProviderServerCredentials(this, this, false);
  }

  /**
   * For a connection this process opens: verifies the server against the CA (and its host
   * name), presents this process's certificate. `peer`: the server must also be that node of
   * that group (Raft and lane connections to a member).
   */
  channelCredentials(peer?: { groupId: string; nodeId: NodeId }): grpc.ChannelCredentials {
    const verifyOptions: grpc.VerifyOptions = peer === undefined ? {} : { checkServerIdentity: serverIdentityCheck(peer) };
    return grpc.experimental.createCertificateProviderChannelCredentials(this, this, verifyOptions);
  }

  /** Lane sockets over mutual TLS (see peer-lane.ts's LaneSockets). */
  laneSockets(groupId: string, handshakeTimeoutMs: number): LaneSockets {
    return {
      connect: (address: LaneAddress, peer: NodeId) => tls.connect({
        host: address.host, port: address.port, secureContext: this.secureContext,
        ...(net.isIP(address.host) === 0 ? { servername: address.host } : {}),
        checkServerIdentity: serverIdentityCheck({ groupId, nodeId: peer }),
      }),
      createServer: (onConnection) => {
        // tls.createServer takes the PEM itself (a `secureContext` option there is ignored); setSecureContext swaps it later.
        const server = tls.createServer({ ...this.pem, requestCert: true, rejectUnauthorized: true, handshakeTimeout: handshakeTimeoutMs }, onConnection);
        const update = (): void => server.setSecureContext(this.pem);
        this.changeListeners.add(update);
        server.once('close', () => this.changeListeners.delete(update));
        // A handshake that fails (no certificate, another CA) is the client's problem, not the server's.
        server.on('tlsClientError', (error) => this.logger.debug({ err: error.message }, 'peer lane: TLS handshake refused'));
        return server;
      },
      refusal: (socket, claim) => certificateRefusal(peerCertificateOf(socket), claim.groupId, claim.from),
    };
  }
}

/** The verified certificate of a TLS socket's peer, if it presented one the CA signed. */
export function peerCertificateOf(socket: net.Socket): tls.PeerCertificate | undefined {
  if (!(socket instanceof tls.TLSSocket) || !socket.authorized) return undefined;
  const certificate = socket.getPeerCertificate();
  return certificate.raw === undefined ? undefined : certificate;
}

/** The server's host name as usual, and the node it must be. */
function serverIdentityCheck(peer: { groupId: string; nodeId: NodeId }): (host: string, certificate: tls.PeerCertificate) => Error | undefined {
  return (host, certificate) => {
    const hostProblem = tls.checkServerIdentity(host, certificate);
    if (hostProblem !== undefined) return hostProblem;
    const refusal = certificateRefusal(certificate, peer.groupId, peer.nodeId);
    return refusal === undefined ? undefined : new Error(refusal);
  };
}

/** The verified client certificate of a gRPC call, if any (see serverCredentials). */
export function callCertificate(call: { getAuthContext(): { sslPeerCertificate?: tls.PeerCertificate } }): tls.PeerCertificate | undefined {
  return call.getAuthContext().sslPeerCertificate;
}
