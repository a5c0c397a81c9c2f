import type { MemoryStore } from '../store/memory';
import {
  ListenerTable,
  parseWake,
  type Notifier,
  type NotifierStats,
  type Subscription,
  type WakeListener,
} from './notifier';

/** Wake-ups inside one process: the in-memory store reports its writes and deletes directly. */
export class MemoryNotifier implements Notifier {
  readonly kind = 'memory' as const;
  private readonly table = new ListenerTable(
    () => Promise.resolve(),
    () => {},
  );

  constructor(private readonly store: MemoryStore) {
    store.setWakeListener((id, message) => {
      const event = parseWake(message);
      if (event !== null) this.table.dispatch(id, event);
    });
  }

  listen(id: string, listener: WakeListener): Subscription {
    return this.table.listen(id, listener);
  }

  stats(): NotifierStats {
    return this.table.stats();
  }

  async settled(): Promise<void> {}

  async close(): Promise<void> {
    this.store.setWakeListener(undefined);
  }
}
