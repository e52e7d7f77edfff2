"""Django: its settings take the database from DATABASE_URL through dj-database-url, the way
Django apps on Heroku-style platforms do (`DATABASES = {"default": dj_database_url.config()}`),
and Django's own PostgreSQL backend (psycopg 3) connects. Django passes no password when the URL
has none, so libpq reads PGPASSWORD. The variable's name may carry a binding's prefix
(`django_check.py REPORTING_DATABASE_URL`). Prints who it connected as, then holds the
connection open; PGAPPNAME names the connection."""

import sys

import dj_database_url
import django
from django.conf import settings

variable = sys.argv[1] if len(sys.argv) == 2 else "DATABASE_URL"
settings.configure(DATABASES={"default": dj_database_url.config(env=variable)})
django.setup()

from django.db import connection  # noqa: E402  (needs the settings above)
from django.db.utils import Error  # noqa: E402

try:
    with connection.cursor() as cursor:
        cursor.execute("select current_user::text, current_database()::text")
        user, database = cursor.fetchone()
        print(f"Django connected as {user} to {database}", flush=True)
        cursor.execute("select pg_sleep(3600)")
except Error as error:
    sys.exit(f"Django: error: {error}")
