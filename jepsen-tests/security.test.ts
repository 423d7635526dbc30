import { describe, expect, it } from 'vitest';
import type { Op } from './history.js';
import { accessRefusals, clientSecurity, silentClients, type Security } from './security.js';

let index = 0;
const op = (fields: Partial<Op> & Pick<Op, 'type' | 'f' | 'process'>): Op => ({ index: index++, time: index, ...fields });

const healthy: Op[] = [
  op({ type: 'ok', process: 0, f: 'enqueue', value: '0-0', queue: 0, offset: 0 }),
  op({ type: 'ok', process: 'consumer-0', f: 'dequeue', reads: [[0, 0, '0-0']] }),
  op({ type: 'ok', process: 'log-reader', f: 'read', reads: [[0, 0, '0-0']] }),
  op({ type: 'ok', process: 'drain', f: 'drain', reads: [[0, 0, '0-0']] }),
];

describe('secure runs', () => {
  it('name every client role that never succeeded: a consumer refused at start reads nothing and loses nothing', () => {
    expect(silentClients(healthy, {})).toEqual([]);
    const noLogReads = healthy.map((o) => (o.f === 'read' ? { ...o, reads: [] } : o));
    expect(silentClients(noLogReads, {})).toEqual(['the log reader']);
    expect(silentClients(healthy.filter((o) => o.f !== 'enqueue'), {})).toEqual(['the producers']);
    expect(silentClients(healthy, { delay: {} })).toEqual(['the delay producers', 'the delay reader', 'the delay consumers', 'the delay drain']);
    const txn = [...healthy,
      op({ type: 'ok', process: 'txn-0', f: 'txn-send', value: 'commit/0-0' }),
      op({ type: 'ok', process: 'txn-reader', f: 'txn-read', reads: [[0, 0, 'commit/0-0']] }),
      op({ type: 'ok', process: 'txn-consumer', f: 'txn-receive', reads: [[0, 0, 'commit/0-0']] }),
      op({ type: 'ok', process: 'txn-drain', f: 'txn-drain', reads: [[0, 0, 'commit/0-0']] }),
      op({ type: 'info', process: 'txn-settle', f: 'txn-state', value: 'commit/0-0', state: 'unknown' }),
    ];
    expect(silentClients(txn, { transactions: {} })).toEqual(['the settle phase\'s state queries']);
    expect(silentClients([...txn, op({ type: 'info', process: 'txn-settle', f: 'txn-state', value: 'commit/0-0', state: 'ended' })], { transactions: {} })).toEqual([]);
  });

  it('count the access gate\'s refusals among the errors, and nothing else', () => {
    expect(accessRefusals([
      { error: 'send: permission denied: jepsen-client may not Pub on Topic:jepsen: no policy allows it' },
      { error: 'send: Username is not matched' },
      { error: 'broker group jepsen has no reachable leader after 12 attempts' },
      {},
    ])).toBe(2);
  });

  it('give clients nothing without security, else the CA and the chosen user', () => {
    expect(clientSecurity(undefined, 'workload')).toEqual({});
    const security = { caFile: '/x/ca.pem', operator: { accessKey: 'admin', accessSecret: 'a' }, workload: { accessKey: 'jepsen-client', accessSecret: 'w' }, auditor: { accessKey: 'jepsen-auditor', accessSecret: 'u' } } as unknown as Security;
    expect(clientSecurity(security, 'workload')).toEqual({ tls: { caFile: '/x/ca.pem' }, sessionCredentials: { accessKey: 'jepsen-client', accessSecret: 'w' } });
    expect(clientSecurity(security, 'operator').sessionCredentials?.accessKey).toBe('admin');
  });
});
