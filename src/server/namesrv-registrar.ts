/**
 * A broker node's registrations with every NameServer: periodic, and at once (coalesced to
 * one per event-loop turn) when its role, term or leader changes, so that a new leader is
 * routable within one election timeout. A NameServer that is down only costs a log line.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Registration } from '../namesrv/route-registry.js';
import { loadProtoFile } from '../util/proto-files.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

export const NameServerClient = (grpc.loadPackageDefinition(loadProtoFile('namesrv.proto')) as any).raftmq.namesrv.v1.NameServer as grpc.ServiceClientConstructor;

export class NameServerRegistrar {
  private readonly clients: any[];
  private timer: NodeJS.Timeout | undefined;
  private soon = false;
  private readonly failing = new Set<string>();

  constructor(
    private readonly addresses: readonly string[],
    private readonly intervalMs: number,
    private readonly snapshot: () => Registration,
    private readonly logger: Logger,
    credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  ) {
    this.clients = addresses.map((address) => new NameServerClient(address, credentials, { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1_000 }));
  }

  start(): void {
    this.registerNow();
    this.timer = setInterval(() => this.registerNow(), this.intervalMs);
    this.timer.unref();
  }

  registerSoon(): void {
    if (this.soon) return;
    this.soon = true;
    setImmediate(() => {
      this.soon = false;
      this.registerNow();
    });
  }

  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    for (const client of this.clients) client.close();
  }

  private registerNow(): void {
    if (this.clients.length === 0) return;
    const registration = this.snapshot();
    this.clients.forEach((client, i) => {
      const address = this.addresses[i] as string;
      client.Register(registration, { deadline: Date.now() + Math.max(this.intervalMs, 1_000) }, (error: grpc.ServiceError | null) => {
        if (error !== null && !this.failing.has(address)) {
          this.failing.add(address);
          this.logger.warn({ namesrv: address, err: error.message }, 'cannot register with NameServer');
        } else if (error === null && this.failing.delete(address)) {
          this.logger.info({ namesrv: address }, 'registered with NameServer again');
        }
      });
    });
  }
}
