/**
 * How a command connects, on the command line. TLS: `raftmq --tls-ca <pem> <command>` turns
 * TLS on for every connection the command opens (verifying servers against that CA), `raftmq
 * --tls <command>` does the same with the system's roots; servers (`broker`, `node`,
 * `namesrv`) also take `--tls-cert` and `--tls-key`, their own certificate, and the CA then
 * also checks their peers. Credentials: `raftmq --credentials <json> <command>` (or the
 * environment's RAFTMQ_ACCESS_KEY and RAFTMQ_SECRET_KEY) signs every call; a secret is never
 * taken as an argument, where `ps` would show it. Brokers turn authentication on with
 * `--auth-key-file` and `--auth-admin-file`.
 */
import { Option, type Command } from 'commander';
import { clientChannelCredentials, type ClientTlsOptions } from '../client/channel-security.js';
import { signedRaftNodeClientOptions, type RaftNodeClientOptions } from '../client/raft-node-client.js';
import { readCredentialsFile, type AuthSettings } from '../server/access-gate.js';
import type { TlsFiles } from '../server/tls.js';
import type { Credentials } from '../util/request-signature.js';
import { addressList, integer } from './node-options.js';

/** The root program's TLS flags, as `optsWithGlobals()` shows them. */
interface GlobalTlsFlags { tlsCa?: string; tls?: boolean; credentials?: string }

let commandTls: ClientTlsOptions | undefined;
let commandCredentials: Credentials | undefined;

/** Adds --tls-ca / --tls to the root program and remembers them before each command runs. */
export function withGlobalTlsOptions(program: Command): Command {
  return program
    .option('--tls-ca <file>', 'TLS for every connection, servers verified against this CA certificate (PEM); servers also need --tls-cert and --tls-key')
    .option('--tls', 'TLS for every connection, servers verified against the system\'s root certificates')
    .option('--credentials <file>', 'sign every call as this user: JSON { "accessKey": ..., "secretKey": ... } (or set RAFTMQ_ACCESS_KEY and RAFTMQ_SECRET_KEY)')
    .hook('preAction', (_program, action) => {
      const flags = action.optsWithGlobals<GlobalTlsFlags>();
      commandTls = flags.tlsCa !== undefined ? { caFile: flags.tlsCa } : flags.tls === true ? {} : undefined;
      commandCredentials = commandCredentialsFrom(flags.credentials);
    });
}

function commandCredentialsFrom(file: string | undefined): Credentials | undefined {
  if (file !== undefined) return readCredentialsFile(file, 'credentials');
  const accessKey = process.env.RAFTMQ_ACCESS_KEY;
  const accessSecret = process.env.RAFTMQ_SECRET_KEY;
  if (accessKey === undefined && accessSecret === undefined) return undefined;
  if (accessKey === undefined || accessSecret === undefined || accessKey === '' || accessSecret === '') throw new Error('set both RAFTMQ_ACCESS_KEY and RAFTMQ_SECRET_KEY, or neither');
  return { accessKey, accessSecret };
}

/** The user this command signs as, if any. */
export function clientCredentials(): Credentials | undefined {
  return commandCredentials;
}

/** The client TLS settings of this command (undefined: plaintext). */
export function clientTls(): ClientTlsOptions | undefined {
  return commandTls;
}

/** What a client of the NameServers at `namesrv` is given: the addresses, the command's TLS and credentials. */
export function clientConnection(namesrv: string): { nameServers: string[]; tls?: ClientTlsOptions; sessionCredentials?: Credentials } {
  return {
    nameServers: addressList(namesrv), ...(commandTls === undefined ? {} : { tls: commandTls }),
    ...(commandCredentials === undefined ? {} : { sessionCredentials: commandCredentials }),
  };
}

/** For clients of Raft nodes directly (status, propose, members): the command's TLS and signature. */
export function raftNodeClientOptions(): RaftNodeClientOptions {
  return signedRaftNodeClientOptions(clientChannelCredentials(commandTls), commandCredentials);
}

/** --auth-key-file, --auth-admin-file and --auth-skew-ms for a broker. */
export function withAuthOptions(command: Command): Command {
  return command
    .option('--auth-key-file <file>', 'authentication and ACL on (with --auth-admin-file): the cluster key that seals users\' secrets, 64 hex digits (openssl rand -hex 32); the same file on every broker node')
    .option('--auth-admin-file <file>', 'the bootstrap super user, JSON { "accessKey": ..., "secretKey": ... } (RocketMQ\'s initAuthenticationUser); the same on every broker node')
    .option('--auth-skew-ms <ms>', 'how far a request\'s signed time may be from this node\'s clock', integer('--auth-skew-ms', 1_000), 300_000)
    .option('--auth-anonymous-user <name>', 'unsigned calls act as this user (its ACL applies); default: unsigned calls are refused with UNAUTHORIZED');
}

export interface AuthFlags { authKeyFile?: string; authAdminFile?: string; authSkewMs: number; authAnonymousUser?: string }

/** `{ auth }` for a broker's config, or nothing (authentication off); half a configuration is a clear error. */
export function authConfig(flags: AuthFlags): { auth?: AuthSettings } {
  if (flags.authKeyFile === undefined && flags.authAdminFile === undefined) return {};
  if (flags.authKeyFile === undefined || flags.authAdminFile === undefined) throw new Error('authentication needs both --auth-key-file and --auth-admin-file');
  return {
    auth: {
      keyFile: flags.authKeyFile, adminFile: flags.authAdminFile, maxSkewMs: flags.authSkewMs,
      ...(flags.authAnonymousUser === undefined ? {} : { anonymousUser: flags.authAnonymousUser }),
    },
  };
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
