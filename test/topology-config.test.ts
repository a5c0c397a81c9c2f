import { expect } from 'chai';
import { ConfigError, loadConfig } from '../src/config';
import { redisTopology } from '../src/store/redis';
import { PEM_FILE } from './helpers/pem';

const problems = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
};

describe('Redis topology settings', () => {
  it('picks the topology from the one setting given, or the in-memory store', () => {
    expect(redisTopology(loadConfig({}))).to.equal(undefined);
    expect(redisTopology(loadConfig({ REDIS_URL: 'rediss://u:p@redis:6380/1' }))).to.equal('single');
    const sentinel = loadConfig({ RZ_REDIS_SENTINELS: 's1:26379, [::1]:26380', RZ_REDIS_SENTINEL_MASTER: 'm' });
    expect(redisTopology(sentinel)).to.equal('sentinel');
    expect(sentinel.redisSentinels).to.deep.equal([
      { host: 's1', port: 26379 },
      { host: '::1', port: 26380 },
    ]);
    const cluster = loadConfig({ RZ_REDIS_CLUSTER_NODES: 'n1:7000,n2:7001' });
    expect(redisTopology(cluster)).to.equal('cluster');
    expect(cluster.redisClusterNodes).to.have.length(2);
  });

  it('refuses two topologies at once, bad node lists, and half a client certificate', () => {
    expect(problems({ REDIS_URL: 'redis://r:6379', RZ_REDIS_CLUSTER_NODES: 'n1:7000' })).to.deep.equal([
      'Set only one of REDIS_URL, RZ_REDIS_CLUSTER_NODES (one Redis topology)',
    ]);
    expect(problems({ RZ_REDIS_SENTINELS: 's1' })[0]).to.match(/^RZ_REDIS_SENTINELS must be a comma-separated list/);
    expect(problems({ RZ_REDIS_CLUSTER_NODES: 'n1:7000,bad host:1' })[0]).to.match(/^RZ_REDIS_CLUSTER_NODES must/);
    // A port out of range is refused at start, not at the first connection.
    for (const port of ['0', '65536', '99999']) {
      expect(problems({ RZ_REDIS_SENTINELS: `s1:26379,s2:${port}` })[0]).to.match(/^RZ_REDIS_SENTINELS must/);
      expect(problems({ RZ_REDIS_CLUSTER_NODES: `n1:${port}` })[0]).to.match(/^RZ_REDIS_CLUSTER_NODES must/);
    }
    expect(problems({ RZ_REDIS_CLUSTER_NODES: 'n1:1,n2:65535' })).to.deep.equal([]);
    // A readable certificate without its key.
    expect(problems({ REDIS_URL: 'rediss://r', RZ_REDIS_TLS_CERT_FILE: PEM_FILE })).to.deep.equal([
      'RZ_REDIS_TLS_CERT_FILE and RZ_REDIS_TLS_KEY_FILE go together',
    ]);
    expect(problems({ RZ_METRICS_PORT: '70000' })[0]).to.match(/^RZ_METRICS_PORT must be a port number/);
  });
});
