import { describe, expect, it } from 'vitest';
import { systemClock } from '../util/clock.js';
import { BrokerService, defaultBrokerServiceOptions, type RaftPort } from './broker-service.js';
import { BrokerStateMachine } from './broker-state-machine.js';
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
