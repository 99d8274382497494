import http from 'node:http';
import { createTestContext, dbKind, TestContext } from '../support/test-app';
import { createKey, createProject, uniqueSecret } from '../support/factories';
import { listen } from '../support/resilience-helpers';
import { StandInProvider } from '../support/stand-in-provider';

jest.setTimeout(120_000);

const MiB = 1024 * 1024;
/** The streamed answer's size. */
const ANSWER_MIB = 300;
/** SQLite only: what is measured is the process streaming, not the database. */
const describeSqlite = dbKind() === 'sqlite' ? describe : describe.skip;

interface Streamed {
  bytes: number;
  events: number;
  peakRss: number;
  peakHeap: number;
}

describeSqlite('the gateway streams a long answer in constant memory', () => {
  let ctx: TestContext;
  let vault: { url: string; close(): Promise<void> };
  let provider: StandInProvider;
  let virtualKey: string;
  let secret: string;

  /** Reads a streamed answer through the gateway, keeping nothing but counts, sampling this process's memory as it goes. */
  const stream = (mb: number): Promise<Streamed> =>
    new Promise((resolve, reject) => {
      const out: Streamed = { bytes: 0, events: 0, peakRss: 0, peakHeap: 0 };
      const sample = () => {
        const m = process.memoryUsage();
        out.peakRss = Math.max(out.peakRss, m.rss);
        out.peakHeap = Math.max(out.peakHeap, m.heapUsed + m.external);
      };
      const timer = setInterval(sample, 20);
      let tail = '';
      const req = http.request(`${vault.url}/gateway/big?mb=${mb}`, { headers: { Authorization: `Bearer ${virtualKey}` } }, (res) => {
        res.on('data', (c: Buffer) => {
          out.bytes += c.length;
          const text = tail + c.toString('latin1');
          out.events += text.split('\n\n').length - 1;
          if (text.includes(secret)) reject(new Error('the key went by'));
          tail = text.slice(-secret.length);
        });
        res.on('end', () => {
          clearInterval(timer);
          sample();
          resolve(out);
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });

  beforeAll(async () => {
    provider = await new StandInProvider().start();
    ctx = await createTestContext({ PKV_LOG_LEVEL: 'info' });
    vault = await listen(ctx.handler);
    const admin = await ctx.user('admin');
    const project = await createProject(ctx, admin);
    secret = uniqueSecret();
    provider.validKeys.add(secret);
    const key = await createKey(ctx, admin, { ownerId: admin.id, projectId: project.id, secret, baseUrl: `${provider.url}/v1` });
    virtualKey = (await ctx.http().post(`/api/v1/provider-keys/${key.id}/virtual-keys`).set(admin.auth).send({ name: 'big' })).body.virtualKey;
  });

  afterAll(async () => {
    await vault?.close();
    await provider?.close();
    await ctx?.close();
  });

  it('passes 300 MiB of server-sent events through with memory growth far below the answer’s size', async () => {
    await stream(4); // warm-up: sockets, pools and code paths exist before the baseline
    const before = process.memoryUsage();
    const baseRss = before.rss;
    const baseHeap = before.heapUsed + before.external;
    const started = Date.now();
    const got = await stream(ANSWER_MIB);
    const seconds = (Date.now() - started) / 1000;
    expect(got.bytes).toBeGreaterThanOrEqual(ANSWER_MIB * MiB);
    expect(got.events).toBeGreaterThan(3000);
    const rssGrowth = (got.peakRss - baseRss) / MiB;
    const heapGrowth = (got.peakHeap - baseHeap) / MiB;
    console.log(`${ANSWER_MIB} MiB streamed in ${seconds.toFixed(1)} s; peak growth: RSS ${rssGrowth.toFixed(1)} MiB, heap+external ${heapGrowth.toFixed(1)} MiB`);
    // A gateway that buffered the answer would hold all of it (and more, in copies); this one holds a few chunks, plus
    // what the collector has not reclaimed yet: a few MiB on a quiet machine, but 109 MiB was seen after 100 MiB on a
    // machine running two other test suites (17 s instead of 3). So the answer is three times that, and the bound half
    // of it: garbage does not grow with the answer, buffering would. heap+external is only logged.
    expect(rssGrowth).toBeLessThan(ANSWER_MIB / 2);
    await ctx.container.gateway.usage.flush();
    // Two calls (the warm-up and this one) may share a timestamp: pick this call's row by its size, then check it.
    const rows: Array<Record<string, unknown>> = await ctx.db.read((m) => m.query('SELECT response_bytes, prompt_tokens, completion_tokens FROM gateway_usage'));
    expect(rows).toHaveLength(2);
    const row = rows.reduce((a, b) => (Number(b.response_bytes) > Number(a.response_bytes) ? b : a));
    expect(Number(row.response_bytes)).toBe(got.bytes);
    expect([Number(row.prompt_tokens), Number(row.completion_tokens)]).toEqual([1, 2]);
  });
});
