/** What every admin command shares: the NameServer option and an Admin client closed after the action. */
import { Option } from 'commander';
import { Admin } from '../client/admin.js';
import { clientConnection } from './connection-options.js';

export const defaultNamesrv = '127.0.0.1:9876';

export const namesrvOption = (): Option => new Option('--namesrv <list>', 'NameServer addresses, comma separated').default(defaultNamesrv);

export async function withAdmin<T>(namesrv: string, action: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = new Admin(clientConnection(namesrv));
  try {
    return await action(admin);
  } finally {
    admin.close();
  }
}
