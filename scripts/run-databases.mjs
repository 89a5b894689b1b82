// Databases of one test run, so that runs going at the same time (scripts/run-tests.mjs runs its
// clock-shifted runs side by side) never share MariaDB or PostgreSQL tables. Each run gets
// `<base database>_<tag>` on the servers of TEST_MYSQL_URL / TEST_POSTGRES_URL (defaults as in
// test/support/databases.ts) and passes their URLs to its test processes; they are dropped at the end.

const DEFAULTS = {
  TEST_MYSQL_URL: 'mysql://root@127.0.0.1:3306/test',
  TEST_POSTGRES_URL: 'postgres://postgres@127.0.0.1:5432/test',
};

function withDatabase(url, name) {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

async function mysqlAdmin(url) {
  const { default: mysql } = await import('mysql2/promise');
  const parsed = new URL(url);
  const connection = await mysql.createConnection({
    host: parsed.hostname, port: Number(parsed.port || 3306), user: decodeURIComponent(parsed.username), password: decodeURIComponent(parsed.password), connectTimeout: 5000,
  });
  return {
    create: (name) => connection.query(`CREATE DATABASE \`${name}\``),
    drop: (name) => connection.query(`DROP DATABASE IF EXISTS \`${name}\``),
    end: () => connection.end(),
  };
}

async function postgresAdmin(url) {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  return {
    create: (name) => client.query(`CREATE DATABASE "${name}"`),
    // FORCE (PostgreSQL 13+) ends connections a killed test process left behind.
    drop: (name) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`),
    end: () => client.end(),
  };
}

/**
 * Creates this run's databases; returns the environment that points the db layer at them and a
 * `drop()` for the end. A server that cannot be reached is left as it is: the db tests then skip
 * or, under CI=true, fail as they would without this.
 * @param tag lower-case letters, digits and `_` (e.g. `plus400d_4242`)
 */
export async function createRunDatabases(tag, log = console.log) {
  const env = {};
  const created = [];
  for (const [variable, admin, engine] of [['TEST_MYSQL_URL', mysqlAdmin, 'MariaDB'], ['TEST_POSTGRES_URL', postgresAdmin, 'PostgreSQL']]) {
    const base = process.env[variable] ?? DEFAULTS[variable];
    const name = `${new URL(base).pathname.slice(1) || 'test'}_${tag}`;
    let handle;
    try {
      handle = await admin(base);
      await handle.drop(name);
      await handle.create(name);
      env[variable] = withDatabase(base, name);
      created.push({ engine, base, name, admin });
    } catch (error) {
      log(`run-databases: no database ${name} for ${variable}: ${error.message}`);
    } finally {
      await handle?.end().catch(() => {});
    }
  }
  return {
    env,
    /** What was created, e.g. `MariaDB test_plus400d_4242`. */
    names: created.map((c) => `${c.engine} ${c.name}`),
    async drop() {
      for (const { base, name, admin } of created) {
        let handle;
        try {
          handle = await admin(base);
          await handle.drop(name);
        } catch (error) {
          log(`run-databases: could not drop ${name}: ${error.message}`);
        } finally {
          await handle?.end().catch(() => {});
        }
      }
    },
  };
}
