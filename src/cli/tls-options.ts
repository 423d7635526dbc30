/**
 * TLS on the command line: `raftmq --tls-ca <pem> <command>` turns TLS on for every connection
 * the command opens (verifying servers against that CA), `raftmq --tls <command>` does the same
 * with the system's roots. Servers (`broker`, `node`, `namesrv`) also take `--tls-cert` and
 * `--tls-key`, their own certificate; the CA then also checks their peers.
 */
import { Option, type Command } from 'commander';
import * as grpc from '@grpc/grpc-js';
import { clientChannelCredentials, type ClientTlsOptions } from '../client/channel-security.js';
import type { TlsFiles } from '../server/tls.js';
import { addressList, integer } from './node-options.js';

/** The root program's TLS flags, as `optsWithGlobals()` shows them. */
interface GlobalTlsFlags { tlsCa?: string; tls?: boolean }

let commandTls: ClientTlsOptions | undefined;

/** Adds --tls-ca / --tls to the root program and remembers them before each command runs. */
export function withGlobalTlsOptions(program: Command): Command {
  return program
    .option('--tls-ca <file>', 'TLS for every connection, servers verified against this CA certificate (PEM); servers also need --tls-cert and --tls-key')
    .option('--tls', 'TLS for every connection, servers verified against the system\'s root certificates')
    .hook('preAction', (_program, action) => {
      const flags = action.optsWithGlobals<GlobalTlsFlags>();
      commandTls = flags.tlsCa !== undefined ? { caFile: flags.tlsCa } : flags.tls === true ? {} : undefined;
    });
}

/** The client TLS settings of this command (undefined: plaintext). */
export function clientTls(): ClientTlsOptions | undefined {
  return commandTls;
}

/** What a client of the NameServers at `namesrv` is given: the addresses and the command's TLS. */
export function clientConnection(namesrv: string): { nameServers: string[]; tls?: ClientTlsOptions } {
  return { nameServers: addressList(namesrv), ...(commandTls === undefined ? {} : { tls: commandTls }) };
}

/** Channel credentials for clients that take them directly (Raft node admin). */
export function clientCredentials(): grpc.ChannelCredentials {
  return clientChannelCredentials(commandTls);
}

/** --tls-cert, --tls-key and --tls-refresh-ms for a server command. */
export function withServerTlsOptions(command: Command): Command {
  return command
    .option('--tls-cert <file>', 'this process\'s TLS certificate chain (PEM; with --tls-key and the root --tls-ca). A broker node\'s must name it as URI raftmq://<group>/<id>')
    .option('--tls-key <file>', 'the private key of --tls-cert (PEM)')
    .addOption(new Option('--tls-refresh-ms <ms>', 'how often the TLS files are checked for a renewed certificate').argParser(integer('--tls-refresh-ms', 10)).default(10_000));
}

export interface ServerTlsFlags { tlsCert?: string; tlsKey?: string; tlsRefreshMs: number }

/** `{ tls }` for a server's config, or nothing for plaintext. */
export function serverTlsConfig(flags: ServerTlsFlags): { tls?: TlsFiles } {
  const tls = serverTlsFiles(flags);
  return tls === undefined ? {} : { tls };
}

/** The server's TLS files, or undefined for plaintext; a partial set is a clear error. */
export function serverTlsFiles(flags: ServerTlsFlags): TlsFiles | undefined {
  const caFile = commandTls?.caFile;
  if (flags.tlsCert === undefined && flags.tlsKey === undefined && caFile === undefined) return undefined;
  if (flags.tlsCert === undefined || flags.tlsKey === undefined || caFile === undefined) {
    throw new Error('TLS on a server needs all of --tls-cert, --tls-key and the root option --tls-ca (raftmq --tls-ca ca.pem broker --tls-cert node.pem --tls-key node-key.pem ...)');
  }
  return { certFile: flags.tlsCert, keyFile: flags.tlsKey, caFile, refreshIntervalMs: flags.tlsRefreshMs };
}
