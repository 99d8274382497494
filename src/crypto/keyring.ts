import { IntegrityError } from '../errors';
import { aad, open, seal, Sealed } from './aead';

export interface MasterKey {
  version: number;
  key: Buffer;
}

export interface WrappedKey extends Sealed {
  kekVersion: number;
}

const CANARY = Buffer.from('provider-key-vault canary v1', 'utf8');

/** The master keys (KEKs) by version; the first configured one is active for new wraps. Pure: no storage. */
export class Keyring {
  private readonly keys = new Map<number, Buffer>();
  readonly activeVersion: number;

  constructor(masterKeys: readonly MasterKey[]) {
    if (masterKeys.length === 0) throw new Error('no master key configured');
    for (const k of masterKeys) this.keys.set(k.version, k.key);
    this.activeVersion = masterKeys[0].version;
  }

  get versions(): number[] {
    return [...this.keys.keys()];
  }

  has(version: number): boolean {
    return this.keys.has(version);
  }

  /** Seals a data key under a KEK (the active one by default), bound to its owner row (`context`) and the KEK version. */
  wrap(dataKey: Buffer, context: string, version = this.activeVersion): WrappedKey {
    return { kekVersion: version, ...seal(this.kek(version), dataKey, aad('pkv/v1/dek', context, version)) };
  }

  unwrap(w: WrappedKey, context: string): Buffer {
    return open(this.kek(w.kekVersion), w, aad('pkv/v1/dek', context, w.kekVersion));
  }

  /** A known text sealed under one version: stored, it proves later that the configured key is the same one. */
  sealCanary(version: number): Sealed {
    return seal(this.kek(version), CANARY, aad('pkv/v1/canary', version));
  }

  /** True when the configured key of `version` opens its stored canary. */
  opensCanary(version: number, sealed: Sealed): boolean {
    try {
      return open(this.kek(version), sealed, aad('pkv/v1/canary', version)).equals(CANARY);
    } catch {
      return false;
    }
  }

  private kek(version: number): Buffer {
    const key = this.keys.get(version);
    if (!key) throw new IntegrityError(`master key version ${version} is not configured`);
    return key;
  }
}
