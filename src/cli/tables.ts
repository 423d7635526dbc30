/** Table style for cli-table3: no colour codes when the output goes to a file or a program. */
export function plainWhenPiped(): { style?: { head: string[]; border: string[] } } {
  return process.stdout.isTTY ? {} : { style: { head: [], border: [] } };
}

/**
 * A node's role for a table, with the states an operator must see: a node that stopped on a
 * fatal error, and one that abstains from elections because its log lost synced entries (the
 * group may wait for another holder of those entries rather than elect without them).
 */
export function roleCell(role: string, state: { readonly failed: string; readonly abstainingUntil: number }): string {
  if (state.failed !== '') return `failed: ${state.failed}`;
  if (state.abstainingUntil > 0) return `${role}, abstaining until ${state.abstainingUntil} is committed here`;
  return role;
}
