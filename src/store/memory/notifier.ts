import { ListenerTable, wakeOf } from '../listeners';
import type { Notifier, NotifierStats, Subscription, WakeListener } from '../types';
import type { MemorySessions } from './sessions';

/** Wake-ups inside one process: the memory store reports its writes and deletes directly. */
export class MemoryNotifier implements Notifier {
  private readonly table = new ListenerTable({
    subscribe: () => Promise.resolve(),
    unsubscribe: () => {},
    isUp: () => true,
  });

  constructor(private readonly sessions: MemorySessions) {
    sessions.setWakeListener((id, change) =>
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

  async connected(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {
    this.sessions.setWakeListener(undefined);
  }
}
