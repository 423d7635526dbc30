/**
 * A broker refusal or failure, named with the client protocol's status codes
 * (`apache.rocketmq.v2.Code`). `definite` says whether the operation certainly did not happen.
 */
export type BrokerErrorCode =
  | 'BAD_REQUEST' | 'ILLEGAL_TOPIC' | 'ILLEGAL_CONSUMER_GROUP' | 'ILLEGAL_MESSAGE_TAG' | 'ILLEGAL_MESSAGE_KEY' | 'ILLEGAL_MESSAGE_GROUP'
  | 'ILLEGAL_MESSAGE_PROPERTY_KEY' | 'ILLEGAL_MESSAGE_ID' | 'ILLEGAL_FILTER_EXPRESSION' | 'ILLEGAL_INVISIBLE_TIME' | 'ILLEGAL_DELIVERY_TIME'
  | 'INVALID_RECEIPT_HANDLE' | 'INVALID_TRANSACTION_ID' | 'MESSAGE_PROPERTY_CONFLICT_WITH_TYPE' | 'ILLEGAL_OFFSET' | 'ILLEGAL_POLLING_TIME'
  | 'NOT_FOUND' | 'TOPIC_NOT_FOUND' | 'CONSUMER_GROUP_NOT_FOUND' | 'FORBIDDEN' | 'UNAUTHORIZED'
  | 'MESSAGE_BODY_TOO_LARGE' | 'MESSAGE_BODY_EMPTY' | 'MESSAGE_PROPERTIES_TOO_LARGE' | 'TOO_MANY_REQUESTS'
  | 'HA_NOT_AVAILABLE' | 'INTERNAL_SERVER_ERROR' | 'UNSUPPORTED';

export class BrokerError extends Error {
  override readonly name = 'BrokerError';
  constructor(
    readonly code: BrokerErrorCode,
    message: string,
    readonly definite: boolean = true,
    /** For HA_NOT_AVAILABLE: the address of the leader, when known. */
    readonly leaderAddress?: string,
  ) {
    super(message);
  }
}
