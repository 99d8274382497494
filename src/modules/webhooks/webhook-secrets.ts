import { aad, open, seal, type Sealed } from '../../crypto/aead';

const secretAad = (webhookId: string) => aad('pkv/v1/webhook-secret', webhookId);

/**
 * Webhook signing secrets, sealed (AES-256-GCM) under the `webhook_secrets` system key and bound to their webhook's
 * id. The system key is wrapped under the master keyring and rewrapped by rotation like the other system keys, so
 * the secrets themselves never need re-sealing; it is made with the first webhook.
 */
export class WebhookSecrets {
  private key: Promise<Buffer> | undefined;

  constructor(private readonly systemKey: () => Promise<Buffer>) {}

  async seal(webhookId: string, secret: string): Promise<Sealed> {
    const plaintext = Buffer.from(secret, 'utf8');
    try {
      return seal(await this.load(), plaintext, secretAad(webhookId));
    } finally {
      plaintext.fill(0);
    }
  }

  /** The secret, to sign one delivery; throws IntegrityError when the stored bytes were changed or moved. */
  async open(webhookId: string, sealed: Sealed): Promise<string> {
    const opened = open(await this.load(), sealed, secretAad(webhookId));
    try {
      return opened.toString('utf8');
    } finally {
      opened.fill(0);
    }
  }

  private load(): Promise<Buffer> {
    this.key ??= this.systemKey().catch((err: unknown) => {
      this.key = undefined; // a database hiccup must not stick
      throw err;
    });
    return this.key;
  }
}
