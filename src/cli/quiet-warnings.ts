/**
 * grpc-js sets a TLS connection's ServerName to its target host, which in most clusters is an
 * IP address; Node then warns (DEP0123) once per process, so every broker, NameServer and CLI
 * run with TLS printed the same two lines. The warning is about grpc-js, not anything the
 * operator can change: this drops that one and passes every other warning to Node's printer.
 * Imported first by the CLI only (a library must not touch its host's warnings).
 */
const printers = process.listeners('warning');
process.removeAllListeners('warning');
process.on('warning', (warning: Error & { code?: string }) => {
  if (warning.code === 'DEP0123') return;
  for (const print of printers) print(warning);
});
