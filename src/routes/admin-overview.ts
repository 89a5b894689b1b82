import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Host } from '../plugin-api.js';
import { countLimitsByStatus, listLimits } from '../db/limits.js';
import type { Settings } from '../settings.js';

export const PLUGIN_VIEWS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'views');

/** `/admin/bandwidth`: cards with the limit counts and a paginated table of limited subjects. */
export function mountOverview(host: Host, settings: Settings, path: string, minRole: 'admin' | 'viewer'): void {
  host.router.get(path, host.auth.admin(minRole), async (req, res) => {
    const requested = Number(req.query.page ?? 1);
    const counts = await countLimitsByStatus(host.db);
    const pages = Math.max(1, Math.ceil(counts.total / settings.page_size));
    const page = Number.isInteger(requested) && requested >= 1 ? Math.min(requested, pages) : 1;
    const limits = await listLimits(host.db, { offset: (page - 1) * settings.page_size, limit: settings.page_size });
    await host.views.render(req, res, join(PLUGIN_VIEWS, 'bandwidth', 'overview.ejs'), {
      title: 'Bandwidth',
      counts,
      limits,
      page,
      pages,
      basePath: path,
    });
  });
}
