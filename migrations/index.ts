import { Initial1763900000000 } from './1763900000000-Initial';
import { RedTeam1764800000000 } from './1764800000000-RedTeam';
import { Gateway1764820000000 } from './1764820000000-Gateway';
import { Health1764830000000 } from './1764830000000-Health';
import { CredentialMacs1764840000000 } from './1764840000000-CredentialMacs';
import { UsageEstimate1764850000000 } from './1764850000000-UsageEstimate';

/** Every migration, oldest first. Listed explicitly so the same set runs from ts (tests) and from dist. */
export const migrations = [Initial1763900000000, RedTeam1764800000000, Gateway1764820000000, Health1764830000000, CredentialMacs1764840000000, UsageEstimate1764850000000];
