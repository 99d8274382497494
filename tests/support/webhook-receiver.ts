import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One delivery as the receiver got it. */
export interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
  json: { id: string; event: string; at: string; data: Record<string, unknown> };
  /** Whether X-PKV-Signature verified under the secret the test gave the receiver. */
  verified: boolean;
  t: number;
}

/**
 * A webhook endpoint on 127.0.0.1 that checks each delivery's signature the way docs/webhooks.md tells receivers to
 * (HMAC-SHA256 of "<t>.<body>", compared in constant time), and answers as told: a queue of statuses (then 200),
 * or `hang` (never answers).
 */
export class WebhookReceiver {
  url = '';
  secret = '';
  readonly received: Received[] = [];
  /** Statuses for the next deliveries, in order; 200 once it is empty (or `always`, when set). */
  readonly statuses: number[] = [];
  always: number | 'hang' | undefined;
  private server: http.Server | undefined;

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => parts.push(c));
      req.on('end', () => {
        const body = Buffer.concat(parts).toString('utf8');
        const sig = String(req.headers['x-pkv-signature'] ?? '');
        const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(sig);
        const expected = m ? crypto.createHmac('sha256', this.secret).update(`${m[1]}.${body}`, 'utf8').digest() : Buffer.alloc(0);
        const verified = !!m && crypto.timingSafeEqual(expected, Buffer.from(m[2], 'hex'));
        this.received.push({ headers: req.headers, body, json: JSON.parse(body), verified, t: m ? Number(m[1]) : NaN });
        const status = this.statuses.shift() ?? this.always ?? 200;
        if (status === 'hang') return;
        if (status >= 300 && status < 400) res.writeHead(status, { location: 'http://127.0.0.1:9/elsewhere' });
        else res.writeHead(status, { 'content-type': 'text/plain' });
        res.end(status < 300 ? 'ok' : 'echo: the receiver says no');
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks/pkv`;
    return this;
  }

  /** Deliveries of one event (or all). */
  of(event?: string): Received[] {
    return event ? this.received.filter((r) => r.json.event === event) : this.received;
  }

  async close(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server!.close(resolve));
  }
}
