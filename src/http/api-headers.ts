/** On every /api/v1 answer, body-parser refusals (400, 413) included: API answers are never cached. */
export const API_HEADERS: ReadonlyArray<readonly [string, string]> = [['Cache-Control', 'no-store']];

/** The largest JSON body the API reads. */
export const API_BODY_LIMIT = '64kb';
