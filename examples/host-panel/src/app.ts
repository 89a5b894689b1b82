import { join } from 'node:path';
import express, { type Express } from 'express';
import session from 'express-session';
import type { Knex } from 'knex';
import { connect } from '../../../src/db/connect.js';
import { createAuth, SESSION_COOKIE, sessionVerifier } from './auth.js';
import { createRecords } from './records.js';
import { bootstrapSecrets, type Secrets } from './bootstrap.js';
import type { PanelConfig } from './config.js';
import { migrateHost } from './db/migrate.js';
import { seedDemo } from './demo.js';
import { errorHandler, HttpError } from './errors.js';
import { HookRegistry } from './hooks.js';
import { createLogger } from './logger.js';
import { logPluginEvents } from './plugin-events.js';
import { PluginManager } from './plugins.js';
import { createAdminRouter } from './routes/admin.js';
import { createApiRouter } from './routes/api.js';
import { LoginThrottle, type LoginLimits } from './login-throttle.js';
import { generateSecret, scryptHasher, type PasswordHasher } from './passwords.js';
import { createLoginRouter } from './routes/login.js';
import { KnexSessionStore } from './session-store.js';
import { VIEWS_DIR, ViewRegistry } from './views.js';

export interface Panel {
  app: Express;
  db: Knex;
  plugins: PluginManager;
  hooks: HookRegistry;
  views: ViewRegistry;
  /** Credentials generated on this start (print them once). */
  generated: Secrets['generated'];
  demoSeeded: boolean;
  close(): Promise<void>;
}

export interface CreatePanelOptions {
  /** `debug` … `error`, or `silent`. @default `LOG_LEVEL`, else 'info' */
  logLevel?: string;
  /** The clock of the login rate limits (epoch ms). @default Date.now */
  now?: () => number;
  /** Hashes and checks passwords. @default scrypt */
  passwords?: PasswordHasher;
  /** Limits on failed logins. @default {@link DEFAULT_LOGIN_LIMITS} */
  loginLimits?: Partial<LoginLimits>;
}

/** Builds the panel (database, plugins, routes) without listening, so tests drive it in process. */
export async function createPanel(config: PanelConfig, options: CreatePanelOptions = {}): Promise<Panel> {
  const logger = createLogger('panel', options.logLevel);
  const db = connect(config.databaseUrl);
  try {
    await migrateHost(db);
    const secrets = await bootstrapSecrets(db, config);
    const auth = createAuth({ apiTokenSha256: secrets.apiTokenHash, sessionSecret: secrets.sessionSecret, cookieSecure: config.cookieSecure });
    const passwords = options.passwords ?? scryptHasher;
    const hooks = new HookRegistry(logger.child('hooks'));
    // Before any plugin starts: a quota event at start-up is logged too.
    logPluginEvents(hooks, logger.child('events'));
    const views = new ViewRegistry(auth);
    const plugins = new PluginManager({
      db, hooks, views, auth, logger, records: createRecords(db), config: { dataDir: 'data' }, pluginOptions: config.pluginOptions,
    });
    plugins.discover(config.pluginDirs);
    await plugins.startEnabled();
    const ctx = { db, hooks };
    const demoSeeded = config.demo ? await seedDemo(ctx) : false;

    const app = express();
    app.disable('x-powered-by');
    app.set('trust proxy', config.trustProxy ?? false);
    app.use((_req, res, next) => {
      res.set({
        'X-Content-Type-Options': 'nosniff',
        'X-Frame-Options': 'DENY',
        'Referrer-Policy': 'same-origin',
        'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
      });
      next();
    });
    app.use('/static', express.static(join(VIEWS_DIR, '..', 'public'), { maxAge: '1h' }));
    app.use('/api', express.json({ limit: '100kb', strict: false }));
    app.use(express.urlencoded({ extended: false, limit: '100kb' }));
    // Express 5 leaves req.body undefined without a form; the form handlers then name the missing
    // fields instead of failing on it. The API keeps undefined: it answers "must be a JSON object".
    app.use((req, _res, next) => {
      if (!req.path.startsWith('/api/') && req.body === undefined) req.body = {};
      next();
    });
    const store = new KnexSessionStore(db, { verify: sessionVerifier(db, auth) });
    app.use(
      session({
        name: SESSION_COOKIE,
        secret: secrets.sessionSecret,
        store,
        resave: false,
        // A session is stored once it holds something (a login); the login form's CSRF token lives in a cookie until then.
        saveUninitialized: false,
        cookie: { httpOnly: true, sameSite: 'lax', maxAge: 12 * 3_600_000, secure: config.cookieSecure ?? 'auto' },
      }),
    );
    app.use(
      createLoginRouter({
        db, auth, views, passwords, logger: logger.child('auth'),
        throttle: new LoginThrottle(options.loginLimits, options.now),
        dummyHash: await passwords.hash(generateSecret(16)),
      }),
    );
    app.use('/api', createApiRouter(ctx, auth, plugins));
    app.use(createAdminRouter(ctx, db, auth, views, plugins));
    app.use(plugins.middleware());
    app.use((req, _res, next) => next(new HttpError(404, 'not_found', `Nothing at ${req.method} ${req.path.slice(0, 200)}`)));
    app.use(
      errorHandler(logger, (req, res, status, message) =>
        views.render(req, res, 'error', { title: status === 404 ? 'Not found' : 'Error', status, message })),
    );

    return {
      app,
      db,
      plugins,
      hooks,
      views,
      generated: secrets.generated,
      demoSeeded,
      async close() {
        await plugins.close();
        store.close();
        await db.destroy();
      },
    };
  } catch (error) {
    await db.destroy();
    throw error;
  }
}
