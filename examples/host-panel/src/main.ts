import { createPanel } from './app.js';
import { configFromEnv } from './config.js';

const config = configFromEnv();
const panel = await createPanel(config);
const server = panel.app.listen(config.port, config.host, () => {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  const lines = [`Panel listening on ${url} (database: ${config.databaseUrl.replace(/:[^:@/]*@/, ':***@')})`];
  if (panel.generated.adminPassword) {
    lines.push(`First start: log in at ${url}/login as \`${panel.generated.adminUser}\` with password \`${panel.generated.adminPassword}\` (shown once)`);
  }
  if (panel.generated.apiToken) lines.push(`First start: API token \`${panel.generated.apiToken}\` (shown once; or set PANEL_API_TOKEN)`);
  if (panel.demoSeeded) lines.push('Demo data created: a WireGuard network with 4 peers and 3 VMs');
  console.log(lines.join('\n'));
});

let closing = false;
async function shutdown(signal: string) {
  if (closing) return;
  closing = true;
  console.log(`${signal}: shutting down`);
  server.close();
  server.closeAllConnections();
  await panel.close();
  process.exit(0);
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
