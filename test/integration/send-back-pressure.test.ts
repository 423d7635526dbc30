/**
 * Back-pressure on sends with real broker processes: 1,024 sends in flight of 32 KiB each
 * (32 MiB offered at once) against a leader allowed 4 MiB of sends waiting for its quorum.
 * The excess is refused with a definite TOO_MANY_REQUESTS (nothing of it stored), every
 * acknowledged message is stored, and the leader's resident memory stays bounded.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MQClientError } from '../../src/client/mq-connection.js';
import { Producer } from '../../src/client/producer.js';
import { BrokerCluster } from '../support/broker-cluster.js';

const backlogBytes = 4 * 1024 * 1024;
const bodyBytes = 32 * 1024;
const inflight = 1024;
const sendsMax = 8_000;
const floodMs = 8_000;
/** Well above an idle broker (about 150 MiB) and far below what queueing the whole offer repeatedly would take. */
const rssBytesMax = 700 * 1024 * 1024;

function residentBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match === null ? 0 : Number(match[1]) * 1024;
}

describe('send back-pressure', () => {
  const cluster = new BrokerCluster({ autoCreateTopics: false, extraArgs: ['--send-backlog-bytes', String(backlogBytes)] });
  let producer: Producer;
  beforeAll(async () => {
    await cluster.start();
    await cluster.admin.createTopic('flood', { readQueues: 4, writeQueues: 4 });
    producer = new Producer({ nameServers: [cluster.namesrv], retries: 0, sendTimeoutMs: 30_000 });
    await producer.start(['flood']);
  }, 60_000);
  afterAll(async () => {
    producer?.shutdown();
    await cluster.stop();
  });

  it('refuses what is over the backlog with a definite TOO_MANY_REQUESTS, stores every acknowledged message, and keeps the leader\'s memory bounded at 1,024 in flight', async () => {
    const leader = await cluster.leader();
    const pid = cluster.local.processes.get(leader.nodeId)?.pid as number;
    let rssMax = residentBytes(pid);
    const sampler = setInterval(() => { rssMax = Math.max(rssMax, residentBytes(pid)); }, 100);
    const body = Buffer.alloc(bodyBytes, 7);
    const deadline = Date.now() + floodMs;
    let started = 0;
    let acked = 0;
    let unknown = 0;
    const refusals = new Map<string, number>();
    let indefiniteRefusals = 0;
    const worker = async (): Promise<void> => {
      while (started < sendsMax && Date.now() < deadline) {
        started++;
        try {
          await producer.send({ topic: 'flood', body });
          acked++;
        } catch (error) {
          const failure = error as MQClientError;
          refusals.set(failure.code, (refusals.get(failure.code) ?? 0) + 1);
          if (failure.code === 'TOO_MANY_REQUESTS' && !failure.definite) indefiniteRefusals++;
          if (!failure.definite) unknown++;
          // A refused sender pauses as a client backing off would (and as ours does when it retries).
          if (failure.code === 'TOO_MANY_REQUESTS') await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: inflight }, worker));
    } finally {
      clearInterval(sampler);
    }
    console.log(`back-pressure: ${started} sends, ${acked} acknowledged, refusals ${JSON.stringify(Object.fromEntries(refusals))}, leader RSS max ${Math.round(rssMax / 1048576)} MiB`);
    expect(refusals.get('TOO_MANY_REQUESTS') ?? 0, 'sends refused for the backlog').toBeGreaterThan(0);
    expect(indefiniteRefusals).toBe(0);
    expect(acked, 'sends acknowledged while refusing the excess').toBeGreaterThan(inflight);
    expect(rssMax, 'leader resident memory').toBeLessThan(rssBytesMax);
    const stored = ((await cluster.admin.listTopics()).find((t) => t.name === 'flood')?.maxOffsets ?? []).reduce((sum, n) => sum + n, 0);
    expect(stored, 'every acknowledged message is stored').toBeGreaterThanOrEqual(acked);
    expect(stored, 'nothing refused is stored (only sends of unknown outcome may be)').toBeLessThanOrEqual(acked + unknown);
  }, 90_000);
});
