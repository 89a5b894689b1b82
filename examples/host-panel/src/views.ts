import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ejs from 'ejs';
import type { Request, Response } from 'express';
import type { HostAuth, HostViews, NavItem, PeerRecord, TableColumn, TableSlot, ViewSlot, VmRecord } from '../../../src/plugin-api.js';

export const VIEWS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'views');

const CORE_NAV: NavItem[] = [
  { path: '/admin/networks', label: 'Networks', minRole: 'viewer' },
  { path: '/admin/vms', label: 'VMs', minRole: 'viewer' },
  { path: '/admin/plugins', label: 'Plugins', minRole: 'admin' },
];

/** The host's views: an admin layout around every page, and the slots plugins extend. */
export class ViewRegistry implements HostViews {
  private partials: { slot: ViewSlot; render: ejs.TemplateFunction }[] = [];
  private columns: { slot: TableSlot; column: TableColumn<PeerRecord> | TableColumn<VmRecord> }[] = [];
  private nav: NavItem[] = [];

  constructor(private readonly auth: HostAuth) {}

  /** Renders a template (absolute path, or a name under the host's views/) inside the layout. */
  async render(req: Request, res: Response, template: string, locals: Record<string, unknown> & { title: string }): Promise<void> {
    const path = template.startsWith('/') ? template : join(VIEWS_DIR, `${template}.ejs`);
    const common = {
      // Only a logged-in page has forms of its own; the login page passes its token itself.
      csrfToken: req.session?.user ? this.auth.csrfToken(req) : '',
      user: req.session?.user ?? null,
      currentPath: req.path,
    };
    // Templates are compiled once and cached by file name (restart the panel to pick up edits).
    const body = await ejs.renderFile(path, { ...common, ...locals, slots: this.slotHelpers(common, locals) }, { async: false, cache: true });
    const flash = req.session?.flash;
    if (req.session && flash) delete req.session.flash;
    const html = await ejs.renderFile(
      join(VIEWS_DIR, 'layout.ejs'),
      { ...common, title: locals.title, body, flash: flash ?? null, nav: [...CORE_NAV, ...this.nav] },
      { cache: true },
    );
    res.type('html').send(html);
  }

  private slotHelpers(common: Record<string, unknown>, locals: Record<string, unknown>) {
    return {
      /** Markup of every partial in a form slot, rendered with the page's locals plus `subject`. */
      partials: (slot: ViewSlot, extra: Record<string, unknown> = {}): string =>
        this.partials
          .filter((p) => p.slot === slot)
          .map((p) => p.render({ ...common, ...locals, ...extra }))
          .join('\n'),
      /** Extra columns of a table slot. */
      columns: (slot: TableSlot) => this.columns.filter((c) => c.slot === slot).map((c) => c.column as TableColumn<Record<string, unknown>>),
    };
  }

  addPartial(slot: ViewSlot, template: string): () => void {
    // Compiled once, when the plugin adds it (a syntax error fails the plugin's start, not a page).
    const entry = { slot, render: ejs.compile(readFileSync(template, 'utf8'), { filename: template }) };
    this.partials.push(entry);
    return () => {
      this.partials = this.partials.filter((p) => p !== entry);
    };
  }

  addColumn(slot: 'peer.table', column: TableColumn<PeerRecord>): () => void;
  addColumn(slot: 'vm.table', column: TableColumn<VmRecord>): () => void;
  addColumn(slot: TableSlot, column: TableColumn<PeerRecord> | TableColumn<VmRecord>): () => void {
    const entry = { slot, column };
    this.columns.push(entry);
    return () => {
      this.columns = this.columns.filter((c) => c !== entry);
    };
  }

  flash(req: Request, message: string): void {
    if (req.session) req.session.flash = message;
  }

  addNavItem(item: NavItem): () => void {
    this.nav.push(item);
    return () => {
      this.nav = this.nav.filter((n) => n !== item);
    };
  }
}
