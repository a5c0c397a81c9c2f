import type { MemoryStore } from '../store/memory';
import {
  ListenerTable,
  wakeOf,
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
    store.setWakeListener((id, change) =>
      this.table.dispatch(id, change.kind === 'deleted' ? change : wakeOf(change.session)),
    );
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
