import { Counter, Gauge, Histogram } from 'prom-client';
import { boundChildren, type Metrics } from '../metrics';

/**
 * The multi-region metrics, registered in the replica's registry (`/metrics`) only when RZ_REGION
 * is set. `peer` is a configured region name, so the label set is fixed by the configuration.
 */
export class RegionMetrics {
  readonly forwarded: Counter<'peer' | 'status'>;
  readonly duration: Histogram<'peer' | 'kind'>;
  readonly failures: Counter<'peer' | 'reason'>;
  readonly peerUp: Gauge<'peer'>;
  readonly peerRefused: Counter;
  readonly received: Counter<'from'>;

  /** Children bound once per label set (see boundChildren). */
  readonly forwardedTo: (peer: string, status: string) => { inc(): void };
  readonly durationOf: (peer: string, kind: string) => { observe(v: number): void };
  readonly receivedFrom: (from: string) => { inc(): void };

  constructor(metrics: Metrics) {
    const registers = [metrics.registry];
    this.forwarded = new Counter({
      name: 'rendezvous_region_forwarded_requests_total',
      help: "Requests forwarded to another region's replicas, by peer region and the status answered to the client",
      labelNames: ['peer', 'status'] as const,
      registers,
    });
    this.duration = new Histogram({
      name: 'rendezvous_region_forward_duration_seconds',
      help: 'Time from starting a forward to the whole answer, by peer region and kind (request, or longpoll: held by the home region)',
      labelNames: ['peer', 'kind'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5, 5, 30, 60],
      registers,
    });
    this.failures = new Counter({
      name: 'rendezvous_region_forward_failures_total',
      help: 'Forwards that got no answer from the home region, by peer and reason (connect, timeout, reset, busy, invalid, gateway, breaker_open, refused)',
      labelNames: ['peer', 'reason'] as const,
      registers,
    });
    this.peerUp = new Gauge({
      name: 'rendezvous_region_peer_up',
      help: '1 while forwards to the peer region are let through, 0 while its circuit breaker is open',
      labelNames: ['peer'] as const,
      registers,
    });
    this.peerRefused = new Counter({
      name: 'rendezvous_region_peer_auth_refused_total',
      help: 'Requests refused with 403 for claiming to be forwarded without the region secret',
      registers,
    });
    this.received = new Counter({
      name: 'rendezvous_region_forwards_received_total',
      help: 'Authenticated forwards this replica served as the home region, by forwarding region',
      labelNames: ['from'] as const,
      registers,
    });
    this.forwardedTo = boundChildren((peer, status) => this.forwarded.labels(peer, status));
    this.durationOf = boundChildren((peer, kind) => this.duration.labels(peer, kind));
    this.receivedFrom = boundChildren((from) => this.received.labels(from));
  }
}
