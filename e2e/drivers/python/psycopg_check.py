"""psycopg 3: hands psycopg the connection URL exactly as the kubelet gave it
(`psycopg_check.py url <url>`: libpq inside psycopg reads PGPASSWORD and the other PG*
variables for what the URL leaves out), or nothing at all (`psycopg_check.py env`: libpq's PG*
variables alone). Prints who it connected as, then holds the connection open; PGAPPNAME names
the connection."""

import sys

import psycopg

if not ((len(sys.argv) == 3 and sys.argv[1] == "url") or sys.argv[1:] == ["env"]):
    sys.exit("usage: psycopg_check.py url <connection URL> | psycopg_check.py env")
try:
    with psycopg.connect(sys.argv[2] if sys.argv[1] == "url" else "") as connection:
        user, database = connection.execute(
            "select current_user::text, current_database()::text"
        ).fetchone()
        print(f"psycopg connected as {user} to {database}", flush=True)
        connection.execute("select pg_sleep(3600)")
except psycopg.Error as error:
    sys.exit(f"psycopg: error: {error}")
