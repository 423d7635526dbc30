/**
 * The package's public client API: `import { Producer } from 'raftmq'`. Everything here is
 * our own client (src/client/); the broker, NameServer and CLI are run as processes
 * (`raftmq broker`, `raftmq namesrv`), not imported. Deep imports of
 * `raftmq/dist/src/client/*.js` keep working but are not a promise: names exported here are.
 */
export { Producer, delayLevels, newMessageId } from './client/producer.js';
export type { Message, SendReceipt, QueueSelector, ProducerOptions } from './client/producer.js';
export { Transaction } from './client/transaction.js';
export type { TransactionChecker, TransactionResolution, TransactionalReceipt } from './client/transaction.js';
export { SimpleConsumer } from './client/simple-consumer.js';
export type { SimpleConsumerOptions } from './client/simple-consumer.js';
export { PullConsumer } from './client/pull-consumer.js';
export type { PullConsumerOptions, QueueRef } from './client/pull-consumer.js';
export { PushConsumer } from './client/push-consumer.js';
export type { PushConsumerOptions, ConsumeResult } from './client/push-consumer.js';
export type { ReceivedMessage, FilterExpression } from './client/messages.js';
export { Admin } from './client/admin.js';
export type {
  AccessListing, TopicSettings, TopicInfo, GroupInfo, QueueRead, ClusterNodeInfo, FindMessagesQuery,
  MessageInfo, MessageTraceInfo, MessageQueryResult, MessageTraceEvent,
} from './client/admin.js';
export { MQClientError } from './client/mq-connection.js';
export type { ConnectionOptions, TopicRoute, GroupRoute } from './client/mq-connection.js';
export type { ClientTlsOptions } from './client/channel-security.js';
export type { Credentials } from './util/request-signature.js';
export { RaftNodeClient, RaftClientError } from './client/raft-node-client.js';
export type { RaftNodeClientOptions, NodeStatus, CommittedEntry } from './client/raft-node-client.js';
