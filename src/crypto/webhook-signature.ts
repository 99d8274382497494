import crypto from 'node:crypto';

/**
 * `X-PKV-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (the Stripe scheme): the time is signed
 * with the body, so a receiver that refuses old timestamps also refuses a replayed delivery.
 */
export function webhookSignature(secret: string, body: string, unixSeconds: number): string {
  const mac = crypto.createHmac('sha256', secret).update(`${unixSeconds}.${body}`, 'utf8').digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

/** A signing secret for a webhook created without one: 256 bits, shown once. */
export function newWebhookSecret(): string {
  return `whsec_${crypto.randomBytes(32).toString('base64url')}`;
}
