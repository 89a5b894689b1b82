/** Flags that only change how iproute2 prints (`tc -j -s`, `ip -d`), never what it does. */
const OUTPUT_FLAGS = new Set(['-j', '-json', '-s', '-stats', '-statistics', '-d', '-details', '-p', '-pretty']);
const OBJECTS: Record<string, ReadonlySet<string>> = {
  tc: new Set(['qdisc', 'class', 'filter']),
  ip: new Set(['link', 'address', 'addr', 'route']),
};
const SHOW = new Set(['show', 'list', 'ls']);

/**
 * True when `argv` only reads the kernel: `tc [-n NS] [-j|-s|-d…] qdisc|class|filter show …` or
 * `ip [-n NS] [-j|-s|-d…] link|address|route show …`. A dry run passes these, and only these, to
 * the real kernel; iproute2 answers them without CAP_NET_ADMIN.
 */
export function isReadOnlyCommand(argv: readonly string[]): boolean {
  const [program, ...rest] = argv;
  const objects = program === undefined ? undefined : OBJECTS[program];
  if (objects === undefined) return false;
  let i = 0;
  if (rest[i] === '-n' || rest[i] === '-netns') i += 2;
  while (i < rest.length && OUTPUT_FLAGS.has(rest[i]!)) i++;
  return objects.has(rest[i] ?? '') && SHOW.has(rest[i + 1] ?? '');
}
