/** Table style for cli-table3: no colour codes when the output goes to a file or a program. */
export function plainWhenPiped(): { style?: { head: string[]; border: string[] } } {
  return process.stdout.isTTY ? {} : { style: { head: [], border: [] } };
}
