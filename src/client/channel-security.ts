/**
 * How a client's connections are secured: plaintext by default; with `tls`, TLS that verifies
 * every server against the given CA (or the system's roots) and its host name, optionally
 * presenting a client certificate.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

export interface ClientTlsOptions {
  /** PEM file of the CA that signs the servers' certificates (default: the system's roots). */
  readonly caFile?: string;
  /** The same as PEM text or bytes. */
  readonly ca?: string | Buffer;
  /** A client certificate and its key (PEM files), for servers that ask for one. */
  readonly certFile?: string;
  readonly keyFile?: string;
}

/** The channel credentials for `tls` (plaintext when undefined); a file that cannot be read is a clear error. */
export function clientChannelCredentials(tls: ClientTlsOptions | undefined): grpc.ChannelCredentials {
  if (tls === undefined) return grpc.credentials.createInsecure();
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) throw new Error('give a TLS client certificate and its key together, or neither');
  const read = (what: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new Error(`cannot read the TLS ${what} file ${file}: ${(error as Error).message}`);
    }
  };
  const ca = tls.ca !== undefined ? Buffer.from(tls.ca) : tls.caFile === undefined ? null : read('CA', tls.caFile);
  const key = tls.keyFile === undefined ? null : read('key', tls.keyFile);
  const cert = tls.certFile === undefined ? null : read('certificate', tls.certFile);
  try {
    return grpc.credentials.createSsl(ca, key, cert);
  } catch (error) {
    throw new Error(`the TLS client files are not a usable CA / certificate / key: ${(error as Error).message}`);
  }
}
