import { describe, expect, it } from 'vitest';
import { systemClock } from '../util/clock.js';
import { EntryKind } from '../raft/types.js';
import { BrokerService, defaultBrokerServiceOptions, type RaftPort } from './broker-service.js';
import { BrokerStateMachine, type ApplyResult } from './broker-state-machine.js';
import { encodeCommand } from './core/entry-codec.js';
import { defaultTopicConfig } from './core/names.js';
import { BrokerError } from './errors.js';
import type { MessageInput } from './core/entry-codec.js';

const message = (topic: string): MessageInput => ({ topic, messageId: 'm', tag: '', keys: [], messageGroup: '', queueId: 0, bornTimestamp: 0, bornHost: '', properties: {}, body: Buffer.from('x') });

describe('BrokerService on a new leader', () => {
  it('answers no send from a state that has not applied the log it inherited: neither TOPIC_NOT_FOUND nor an auto-creation over an existing topic', async () => {
    // A node restarted and elected for term 2 before it applied anything (the topics of its log are not in its state yet).
    const machine = new BrokerStateMachine();
    let proposed = 0;
    const raft: RaftPort = { propose: () => { proposed++; return new Promise(() => undefined); }, role: 'leader', term: 2, leaderAddress: () => undefined };
    const codeOf = async (autoCreateTopics: boolean): Promise<string> => {
      const service = new BrokerService({ ...defaultBrokerServiceOptions, brokerGroup: 'g', autoCreateTopics, readReadyWaitMs: 200 }, raft, machine, { payloadAt: () => Promise.reject(new Error('no log')) }, systemClock);
      try {
        return await service.send([message('t')], 'NORMAL').then(() => 'OK', (error: unknown) => (error instanceof BrokerError ? error.code : String(error)));
      } finally {
        service.close();
      }
    };
    expect(await codeOf(false)).toBe('HA_NOT_AVAILABLE');
    expect(await codeOf(true)).toBe('HA_NOT_AVAILABLE');
    expect(proposed).toBe(0); // no topic creation proposed from the stale state
  }, 10_000);
});

/** A leader whose log applies what it is given, on this node only; `hold` keeps proposals unanswered until `release`. */
function appliedLeader(options: Partial<typeof defaultBrokerServiceOptions> = {}) {
  const machine = new BrokerStateMachine();
  let index = 0;
  const held: Array<() => void> = [];
  let holding = false;
  const entries: Uint8Array[] = [];
  const applyNow = (payload: Uint8Array) => {
    entries.push(payload);
    index++;
    const [result] = machine.apply([{ index, term: 1, kind: EntryKind.normal, payload }]);
    return { index, term: 1, result: result as ApplyResult };
  };
  applyNow(encodeCommand({ timeMs: 1 }, { op: 'topic.put', config: { ...defaultTopicConfig('t', 'NORMAL'), readQueues: 2, writeQueues: 2 } }));
  const raft: RaftPort = {
    propose: (payload) => new Promise((resolve) => {
      if (holding) held.push(() => resolve(applyNow(payload)));
      else resolve(applyNow(payload));
    }),
    role: 'leader', term: 1, leaderAddress: () => undefined,
  };
  const service = new BrokerService({ ...defaultBrokerServiceOptions, brokerGroup: 'g', ...options }, raft, machine, { payloadAt: () => Promise.reject(new Error('no log')) }, systemClock);
  return {
    service, entries,
    hold: () => { holding = true; },
    release: () => { holding = false; for (const resolve of held.splice(0)) resolve(); },
  };
}

const sized = (id: string, bytes: number, queueId = 0): MessageInput => ({ ...message('t'), messageId: id, queueId, body: Buffer.alloc(bytes, 1) });

describe('BrokerService.sendEach', () => {
  it('answers each message of a request on its own, in order, and stores the request in one entry', async () => {
    const { service, entries } = appliedLeader();
    const before = entries.length;
    const answers = await service.sendEach([
      { message: sized('a', 10), kind: 'NORMAL' },
      { problem: new BrokerError('ILLEGAL_MESSAGE_TAG', 'refused by the protocol layer') },
      { message: { ...sized('b', 10), topic: 'missing' }, kind: 'NORMAL' },
      { message: sized('c', 10, 1), kind: 'NORMAL' },
      { message: sized('d', 10, 5), kind: 'NORMAL' },
      { message: sized('e', 10), kind: 'FIFO' },
    ]);
    expect(answers.map((a) => (a instanceof BrokerError ? a.code : `${a.messageId}@${a.queueId}/${a.offset}`)))
      .toEqual(['a@0/0', 'ILLEGAL_MESSAGE_TAG', 'TOPIC_NOT_FOUND', 'c@1/0', 'BAD_REQUEST', 'MESSAGE_PROPERTY_CONFLICT_WITH_TYPE']);
    expect(entries.length - before).toBe(1);
    service.close();
  });

  it('refuses a request with TOO_MANY_REQUESTS, storing nothing of it, while more than the backlog limit waits for the quorum, and takes it again once that drains', async () => {
    const { service, entries, hold, release } = appliedLeader({ sendBacklogBytesMax: 64 * 1024 });
    const before = entries.length;
    hold();
    // 40 KiB waiting: under the limit, so queued.
    const first = service.sendEach([{ message: sized('w1', 20 * 1024), kind: 'NORMAL' }, { message: sized('w2', 20 * 1024), kind: 'NORMAL' }]);
    await new Promise((resolve) => setImmediate(resolve));
    const refused = await service.sendEach([{ message: sized('x1', 30 * 1024), kind: 'NORMAL' }, { problem: new BrokerError('MESSAGE_BODY_EMPTY', 'empty') }]);
    expect(refused.map((a) => (a instanceof BrokerError ? a.code : 'OK'))).toEqual(['TOO_MANY_REQUESTS', 'MESSAGE_BODY_EMPTY']);
    expect((refused[0] as BrokerError).definite).toBe(true);
    release();
    expect((await first).every((a) => !(a instanceof BrokerError))).toBe(true);
    expect(entries.length, 'the first request\'s entry and nothing of the refused one').toBe(before + 1);
    const again = await service.sendEach([{ message: sized('x1', 30 * 1024), kind: 'NORMAL' }]);
    expect(again[0]).not.toBeInstanceOf(BrokerError);
    expect(entries.length).toBe(before + 2);
    service.close();
  });

  it('takes one request larger than the limit when nothing waits (its size is bounded by the request limit instead)', async () => {
    const { service } = appliedLeader({ sendBacklogBytesMax: 1024 });
    const [answer] = await service.sendEach([{ message: sized('big', 8 * 1024), kind: 'NORMAL' }]);
    expect(answer).not.toBeInstanceOf(BrokerError);
    service.close();
  });

  it('keeps send all-or-nothing: one bad message refuses the call before anything is proposed', async () => {
    const { service, entries } = appliedLeader();
    const before = entries.length;
    await expect(service.send([sized('ok', 10), sized('bad', 10, 9)], 'NORMAL')).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    expect(entries.length).toBe(before);
    service.close();
  });
});
