// node-postgres check: hands pg (npm) exactly what its container was given and nothing of its
// own. "check.js url <url>" connects with the URL as the connection string (pg reads
// PGPASSWORD and the other PG* variables for what the URL leaves out); "check.js env" with
// libpq's PG* variables alone. It prints who it connected as, then holds the connection open
// (pg_sleep) so the test can ask PostgreSQL who is connected; PGAPPNAME names the connection.
'use strict';
const { Client } = require('pg');

const [mode, url] = process.argv.slice(2);
if (!((mode === 'url' && url !== undefined) || mode === 'env')) {
  console.error('usage: node check.js url <connection URL> | node check.js env');
  process.exit(2);
}
const client = mode === 'url' ? new Client({ connectionString: url }) : new Client();
client
  .connect()
  .then(() => client.query('select current_user::text as u, current_database()::text as d'))
  .then((result) => {
    console.log(`node-postgres connected as ${result.rows[0].u} to ${result.rows[0].d}`);
    return client.query('select pg_sleep(3600)');
  })
  .catch((error) => {
    console.error(`node-postgres: error: ${error.message}`);
    process.exit(1);
  });
