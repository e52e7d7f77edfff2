// pgx-check hands pgx (github.com/jackc/pgx/v5) exactly what its container was given and
// nothing of its own: "pgx-check url <url>" connects with the URL (pgx reads PGPASSWORD and the
// other PG* variables for what the URL leaves out), "pgx-check env" with libpq's PG* variables
// alone. It prints who it connected as, then holds the connection open (pg_sleep) so the test
// can ask PostgreSQL who is connected; PGAPPNAME names the connection.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] == "url" && len(os.Args) != 3) || (os.Args[1] != "url" && os.Args[1] != "env") {
		fmt.Fprintln(os.Stderr, "usage: pgx-check url <connection URL> | pgx-check env")
		os.Exit(2)
	}
	connString := ""
	if os.Args[1] == "url" {
		connString = os.Args[2]
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgx: error: %v\n", err)
		os.Exit(1)
	}
	defer conn.Close(ctx)
	var user, database string
	if err := conn.QueryRow(ctx, "select current_user::text, current_database()::text").Scan(&user, &database); err != nil {
		fmt.Fprintf(os.Stderr, "pgx: error: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("pgx connected as %s to %s\n", user, database)
	if _, err := conn.Exec(ctx, "select pg_sleep(3600)"); err != nil {
		fmt.Fprintf(os.Stderr, "pgx: error: %v\n", err)
		os.Exit(1)
	}
}
