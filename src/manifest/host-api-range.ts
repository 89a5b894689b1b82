/** Parses `MAJOR.MINOR.PATCH` (a pre-release suffix is ignored); throws on anything else. */
function parse(version: string): [number, number, number] {
  const match = /^(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?$/.exec(version);
  if (!match) throw new TypeError(`Expected a version like 1.2.3, got \`${version}\``);
  return [Number(match[1]), Number(match[2]), Number(match[3])];
}

function compare(a: [number, number, number], b: [number, number, number]): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/**
 * Whether `version` satisfies `range`, where a range is `1.2.3` (exact), `^1.2.3` (same major,
 * or same minor below 1.0), `~1.2.3` (same minor) or `>=1.2.3`.
 * @example satisfies('1.4.0', '^1.0.0') // true
 */
export function satisfies(version: string, range: string): boolean {
  const operator = /^(\^|~|>=)/.exec(range)?.[1] ?? '';
  const wanted = parse(range.slice(operator.length));
  const actual = parse(version);
  if (compare(actual, wanted) < 0) return false;
  switch (operator) {
    case '':
      return compare(actual, wanted) === 0;
    case '>=':
      return true;
    case '~':
      return actual[0] === wanted[0] && actual[1] === wanted[1];
    default:
      return wanted[0] > 0 ? actual[0] === wanted[0] : actual[0] === 0 && actual[1] === wanted[1];
  }
}
