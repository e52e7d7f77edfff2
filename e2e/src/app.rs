//! What the app containers of the real node run: a shell script of ours around unmodified
//! clients (Debian's `psql`; pgx, node-postgres, Spring Boot, pgjdbc, psycopg and Django through
//! the small checks in e2e/drivers), which connects once for every way the binding reaches the
//! container — the `postgres` set, the `libpq` set, the URL, the files through psql; the
//! `libpq` set and the URL also through pgx, node-postgres and psycopg, the URL through Django;
//! the `spring` set through Spring Boot, the `jdbc` and `quarkus` sets through pgjdbc — with
//! exactly the environment and files the kubelet gave it. It does no parsing of its own: it
//! hands the driver the variables (renamed to libpq's names for the `postgres` set) or the URL
//! as they are.
//!
//! Each connection names itself in `application_name` (`<scenario>/<container>/<binding>/<way>`)
//! and, in the app container, stays open (`pg_sleep`), so the test asks PostgreSQL who is
//! connected — the database's own word. Init containers connect once and fail the pod if they
//! cannot. Before connecting, the script prints what it received (`ENV` and `FILE` lines,
//! passwords masked) for the demo's report.

use std::fmt::Write as _;

use crate::image::{JVM_LIB_DIR, JVM_RUNTIME_DIR, NODE_POSTGRES_DIR, PYTHON_DIR};

/// Where the app image keeps the database CA (libpq's default for root), for Node.
const NODE_CA: &str = "NODE_EXTRA_CA_CERTS=/root/.postgresql/root.crt";

/// The JVM checks' command line. The serial collector and the first JIT tier keep several JVMs
/// starting at once on two cores from starving each other; they change nothing the driver does.
fn java() -> String {
    format!(
        "/{JVM_RUNTIME_DIR}/bin/java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp '/{JVM_LIB_DIR}/*'"
    )
}

/// One way a binding reaches a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Way {
    /// The binding's directory name (`db`, or its alias).
    pub binding: String,
    /// Its variables' prefix (`""`, `POOLER_`).
    pub prefix: String,
    /// `postgres`, `libpq`, `url` or `files` (psql); `<driver>-<set>` for the other drivers:
    /// `pgx-libpq`, `pgx-url`, `node-libpq`, `node-url`, `psycopg-libpq`, `psycopg-url`,
    /// `django-url`, `pgjdbc-jdbc`, `pgjdbc-quarkus`; `spring` (Spring Boot).
    pub kind: &'static str,
}

impl Way {
    /// The `application_name` of this way's connection.
    pub fn label(&self, scenario: &str, container: &str) -> String {
        format!("{scenario}/{container}/{}/{}", self.binding, self.kind)
    }

    /// The driver this way connects through, and the variables (or files) it reads.
    pub fn driver_and_set(&self) -> (&'static str, &'static str) {
        match self.kind {
            "spring" => ("Spring Boot", "spring"),
            kind => match kind.split_once('-') {
                Some(("pgx", set)) => ("pgx", set),
                Some(("node", set)) => ("node-postgres", set),
                Some(("psycopg", set)) => ("psycopg", set),
                Some(("django", set)) => ("Django", set),
                Some(("pgjdbc", set)) => ("pgjdbc", set),
                _ => ("psql", kind),
            },
        }
    }

    /// Whether psql reads this way: the only driver init containers, which connect once and
    /// exit, run.
    pub fn through_psql(&self) -> bool {
        self.driver_and_set().0 == "psql"
    }
}

/// The ways the other drivers read too: for each way through the `libpq` set, the same through
/// pgx, node-postgres and psycopg; for each way through the URL, the same through those and
/// Django. For app containers only: those drivers hold their connections open.
pub fn with_drivers(ways: Vec<Way>) -> Vec<Way> {
    let mut all = Vec::with_capacity(ways.len() * 4);
    for way in ways {
        let twins: &[&'static str] = match way.kind {
            "libpq" => &["pgx-libpq", "node-libpq", "psycopg-libpq"],
            "url" => &["pgx-url", "node-url", "psycopg-url", "django-url"],
            _ => &[],
        };
        let twins: Vec<Way> = twins
            .iter()
            .map(|kind| Way {
                kind,
                ..way.clone()
            })
            .collect();
        all.push(way);
        all.extend(twins);
    }
    all
}

/// The variable sets every framework reads, and the ways every driver reads them: psql, pgx,
/// node-postgres and psycopg with the `libpq` set and the URL, Django with the URL, Spring Boot
/// with the `spring` set, pgjdbc with the `jdbc` set and with the `quarkus` set's names. The
/// README's framework table names these drivers (a test below holds it to them).
pub const EVERY_SET: &str = "postgres,libpq,database-url,spring,quarkus,jdbc";
pub const EVERY_DRIVER: [&str; 13] = [
    "postgres",
    "libpq",
    "url",
    "pgx-libpq",
    "pgx-url",
    "node-libpq",
    "node-url",
    "psycopg-libpq",
    "psycopg-url",
    "django-url",
    "spring",
    "pgjdbc-jdbc",
    "pgjdbc-quarkus",
];

/// Whether the container keeps its connections open (the app) or connects once (an init
/// container, which must exit for the pod to start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Hold,
    Once,
}

/// The shell script a container runs.
pub fn script(scenario: &str, container: &str, ways: &[Way], mode: Mode) -> String {
    let sql = match mode {
        Mode::Hold => "select pg_sleep(3600)",
        Mode::Once => "select 1",
    };
    let mut out = String::from(REPORT);
    if mode == Mode::Once {
        out.push_str("set -e\n");
    }
    for way in ways {
        let label = way.label(scenario, container);
        let p = &way.prefix;
        let connect = match way.kind {
            "postgres" => format!(
                "export PGHOST=\"${{{p}POSTGRES_HOST}}\" PGUSER=\"${{{p}POSTGRES_USER}}\" PGPASSWORD=\"${{{p}POSTGRES_PASSWORD}}\"\n  \
                 [ -n \"${{{p}POSTGRES_PORT:-}}\" ] && export PGPORT=\"${{{p}POSTGRES_PORT}}\"\n  \
                 [ -n \"${{{p}POSTGRES_DB:-}}\" ] && export PGDATABASE=\"${{{p}POSTGRES_DB}}\"\n  \
                 [ -n \"${{{p}POSTGRES_SSLMODE:-}}\" ] && export PGSSLMODE=\"${{{p}POSTGRES_SSLMODE}}\"\n  \
                 [ -n \"${{{p}POSTGRES_SSLROOTCERT:-}}\" ] && export PGSSLROOTCERT=\"${{{p}POSTGRES_SSLROOTCERT}}\"\n  \
                 [ -n \"${{{p}POSTGRES_SSLCERT:-}}\" ] && export PGSSLCERT=\"${{{p}POSTGRES_SSLCERT}}\"\n  \
                 [ -n \"${{{p}POSTGRES_SSLKEY:-}}\" ] && export PGSSLKEY=\"${{{p}POSTGRES_SSLKEY}}\"\n  \
                 exec psql -X -q -v ON_ERROR_STOP=1 -c '{sql}'"
            ),
            "libpq" => format!("exec psql -X -q -v ON_ERROR_STOP=1 -c '{sql}'"),
            "url" => format!(
                "exec psql -X -q -v ON_ERROR_STOP=1 -c '{sql}' \"${{{p}DATABASE_URL:-${{{p}POSTGRES_URL}}}}\""
            ),
            // pgx and node-postgres hold their connections themselves; only app containers
            // use them.
            "pgx-libpq" => "exec pgx-check env".to_owned(),
            "pgx-url" => {
                format!("exec pgx-check url \"${{{p}DATABASE_URL:-${{{p}POSTGRES_URL}}}}\"")
            }
            // Node trusts the database CA as a company image would: node-postgres verifies
            // the server's certificate whenever it uses TLS.
            "node-libpq" => {
                format!("export {NODE_CA}\n  exec node /{NODE_POSTGRES_DIR}/check.js env")
            }
            "node-url" => format!(
                "export {NODE_CA}\n  exec node /{NODE_POSTGRES_DIR}/check.js url \"${{{p}DATABASE_URL:-${{{p}POSTGRES_URL}}}}\""
            ),
            "psycopg-libpq" => format!("exec python3 /{PYTHON_DIR}/psycopg_check.py env"),
            "psycopg-url" => format!(
                "exec python3 /{PYTHON_DIR}/psycopg_check.py url \"${{{p}DATABASE_URL:-${{{p}POSTGRES_URL}}}}\""
            ),
            // dj-database-url reads the variable by its name.
            "django-url" => format!(
                "v={p}DATABASE_URL\n  [ -n \"${{{p}DATABASE_URL:-}}\" ] || v={p}POSTGRES_URL\n  \
                 exec python3 /{PYTHON_DIR}/django_check.py \"$v\""
            ),
            // Spring Boot reads its own names only: a named binding's are mapped to them, as
            // its app would.
            "spring" => {
                let mut map = String::new();
                if !p.is_empty() {
                    for name in ["URL", "USERNAME", "PASSWORD"] {
                        let _ = write!(
                            map,
                            "export SPRING_DATASOURCE_{name}=\"${{{p}SPRING_DATASOURCE_{name}}}\"\n  "
                        );
                    }
                }
                format!("{map}exec {} dbbind.check.SpringCheck", java())
            }
            "pgjdbc-jdbc" => format!(
                "exec {} dbbind.check.JdbcCheck {p}POSTGRES_JDBC_URL {p}POSTGRES_USER {p}POSTGRES_PASSWORD",
                java()
            ),
            "pgjdbc-quarkus" => format!(
                "exec {} dbbind.check.JdbcCheck {p}QUARKUS_DATASOURCE_JDBC_URL {p}QUARKUS_DATASOURCE_USERNAME {p}QUARKUS_DATASOURCE_PASSWORD",
                java()
            ),
            "files" => format!(
                "d=\"$SERVICE_BINDING_ROOT/{binding}\"\n  \
                 export PGHOST=\"$(cat \"$d/host\")\" PGUSER=\"$(cat \"$d/username\")\" PGPASSWORD=\"$(cat \"$d/password\")\"\n  \
                 [ -f \"$d/port\" ] && export PGPORT=\"$(cat \"$d/port\")\"\n  \
                 [ -f \"$d/database\" ] && export PGDATABASE=\"$(cat \"$d/database\")\"\n  \
                 [ -f \"$d/sslmode\" ] && export PGSSLMODE=\"$(cat \"$d/sslmode\")\"\n  \
                 [ -f \"$d/ca.crt\" ] && export PGSSLROOTCERT=\"$d/ca.crt\"\n  \
                 [ -f \"$d/tls.crt\" ] && export PGSSLCERT=\"$d/tls.crt\" PGSSLKEY=\"$d/tls.key\"\n  \
                 exec psql -X -q -v ON_ERROR_STOP=1 -c '{sql}'",
                binding = way.binding
            ),
            other => format!("echo \"no such way: {other}\" >&2\n  exit 1"),
        };
        let background = if mode == Mode::Hold { " &" } else { "" };
        let _ = writeln!(
            out,
            "echo \"CONNECT {label}\"\n(\n  export PGAPPNAME='{label}' PGCONNECT_TIMEOUT=10\n  {connect}\n){background}"
        );
    }
    if mode == Mode::Hold {
        out.push_str("wait\nsleep 3600\n");
    }
    out
}

/// Prints what the container received: variables of the bindings (passwords masked; in a URL,
/// everything between the user and the last `@`, since a password may hold `@`) and the files
/// under `$SERVICE_BINDING_ROOT` with their modes and owners.
const REPORT: &str = r#"env | grep -E '^([A-Z0-9_]*_)?(POSTGRES_|PG|DATABASE_URL|SERVICE_BINDING_ROOT|SPRING_DATASOURCE_|QUARKUS_DATASOURCE_)|^ConnectionStrings__' | sort \
  | sed -E 's/^([^=]*PASSWORD)=.*/\1=***/; s#(://[^:/@]*):.*@#\1:***@#' | sed 's/^/ENV /'
if [ -n "${SERVICE_BINDING_ROOT:-}" ] && [ -d "$SERVICE_BINDING_ROOT" ]; then
  for f in "$SERVICE_BINDING_ROOT"/*/*; do
    [ -f "$f" ] && echo "FILE $(stat -L -c '%A %u:%g' "$f") $f"
  done
fi
"#;

/// The `ENV` and `FILE` lines a container printed.
pub fn received(log: &str) -> (Vec<String>, Vec<String>) {
    let mut variables = Vec::new();
    let mut files = Vec::new();
    for line in log.lines() {
        // The kubelet's log format: `<time> stdout F <text>`.
        let text = line.splitn(4, ' ').nth(3).unwrap_or(line);
        if let Some(variable) = text.strip_prefix("ENV ") {
            variables.push(variable.to_owned());
        } else if let Some(file) = text.strip_prefix("FILE ") {
            files.push(file.to_owned());
        }
    }
    (variables, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_connects_once_per_way_with_the_containers_own_names() {
        let ways = [
            Way {
                binding: "db".into(),
                prefix: "".into(),
                kind: "postgres",
            },
            Way {
                binding: "pooler".into(),
                prefix: "POOLER_".into(),
                kind: "url",
            },
            Way {
                binding: "db".into(),
                prefix: "".into(),
                kind: "files",
            },
        ];
        let hold = script("crunchy", "app", &ways, Mode::Hold);
        assert!(hold.contains("PGAPPNAME='crunchy/app/db/postgres'"));
        assert!(hold.contains("export PGHOST=\"${POSTGRES_HOST}\""));
        assert!(hold.contains("\"${POOLER_DATABASE_URL:-${POOLER_POSTGRES_URL}}\""));
        assert!(hold.contains("d=\"$SERVICE_BINDING_ROOT/db\""));
        assert!(hold.contains("select pg_sleep(3600)") && hold.ends_with("wait\nsleep 3600\n"));
        let once = script("bitnami", "migrate", &ways[..1], Mode::Once);
        assert!(once.contains("set -e") && once.contains("select 1") && !once.contains(" &\n"));
    }

    #[test]
    fn every_driver_gets_the_libpq_set_and_the_url() {
        let ways = with_drivers(vec![
            Way {
                binding: "db".into(),
                prefix: "".into(),
                kind: "url",
            },
            Way {
                binding: "db".into(),
                prefix: "".into(),
                kind: "postgres",
            },
        ]);
        let kinds: Vec<&str> = ways.iter().map(|w| w.kind).collect();
        assert_eq!(
            kinds,
            [
                "url",
                "pgx-url",
                "node-url",
                "psycopg-url",
                "django-url",
                "postgres"
            ]
        );
        let hold = script("osba", "app", &ways, Mode::Hold);
        assert!(hold.contains("exec pgx-check url \"${DATABASE_URL:-${POSTGRES_URL}}\""));
        assert!(hold.contains("NODE_EXTRA_CA_CERTS=/root/.postgresql/root.crt"));
        assert!(hold.contains("check.js url \"${DATABASE_URL:-${POSTGRES_URL}}\""));
        assert!(hold.contains("django_check.py \"$v\""));
        assert!(
            ways.iter()
                .all(|way| way.through_psql() != way.kind.contains('-'))
        );
        let unknown = Way {
            binding: "db".into(),
            prefix: "".into(),
            kind: "jdbc",
        };
        assert!(script("x", "app", &[unknown], Mode::Hold).contains("no such way: jdbc"));
    }

    #[test]
    fn the_jvm_checks_read_their_sets_by_name_and_a_named_binding_is_mapped_for_spring() {
        let way = |kind, prefix: &str| Way {
            binding: "reporting".into(),
            prefix: prefix.into(),
            kind,
        };
        let hold = script(
            "s",
            "app",
            &[way("pgjdbc-quarkus", ""), way("spring", "REPORTING_")],
            Mode::Hold,
        );
        assert!(hold.contains(
            "dbbind.check.JdbcCheck QUARKUS_DATASOURCE_JDBC_URL QUARKUS_DATASOURCE_USERNAME QUARKUS_DATASOURCE_PASSWORD"
        ));
        assert!(
            hold.contains("export SPRING_DATASOURCE_URL=\"${REPORTING_SPRING_DATASOURCE_URL}\"")
        );
        assert!(hold.contains("-cp '/usr/lib/dbbind/jvm/lib/*' dbbind.check.SpringCheck"));
        assert_eq!(
            way("spring", "").driver_and_set(),
            ("Spring Boot", "spring")
        );
        assert_eq!(way("pgjdbc-jdbc", "").driver_and_set(), ("pgjdbc", "jdbc"));
    }

    #[test]
    fn the_readme_table_names_every_driver_the_node_check_runs_in_its_sets_row() {
        let readme = std::fs::read_to_string(crate::tools::repo_root().join("README.md")).unwrap();
        let table = readme
            .split_once("### Framework name sets")
            .expect("the README's framework section")
            .1;
        let row_of = |set: &str| -> String {
            let env_value = match set {
                "url" => "database-url",
                other => other,
            };
            table
                .lines()
                .find(|line| line.contains(&format!("| `{env_value}` |")))
                .unwrap_or_else(|| panic!("no README table row for `{env_value}`"))
                .to_owned()
        };
        for kind in EVERY_DRIVER {
            let way = Way {
                binding: "db".into(),
                prefix: String::new(),
                kind,
            };
            let (driver, set) = way.driver_and_set();
            let proved_by = row_of(set)
                .rsplit('|')
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            assert!(
                proved_by.contains(driver),
                "the README's `{set}` row does not name {driver}: {proved_by}"
            );
        }
        let sets: Vec<&str> = EVERY_SET.split(',').collect();
        for set in [
            "postgres",
            "libpq",
            "database-url",
            "spring",
            "quarkus",
            "jdbc",
        ] {
            assert!(sets.contains(&set), "{set} is not in the check's sets");
        }
    }

    #[test]
    fn the_report_masks_passwords_also_with_url_reserved_characters() {
        let password = "p@ss/w0rd?x#1";
        let output = std::process::Command::new("/bin/sh")
            .args(["-c", REPORT])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("POSTGRES_PASSWORD", password)
            .env("POSTGRES_HOST", "db.example")
            .env(
                "DATABASE_URL",
                format!("postgresql://app:{password}@db.example:5432/app"),
            )
            .output()
            .expect("sh runs");
        let printed = String::from_utf8_lossy(&output.stdout);
        assert!(!printed.contains("w0rd"), "{printed}");
        assert!(printed.contains("ENV POSTGRES_PASSWORD=***"), "{printed}");
        assert!(
            printed.contains("ENV POSTGRES_HOST=db.example"),
            "{printed}"
        );
        assert!(
            printed.contains("ENV DATABASE_URL=postgresql://app:***@db.example:5432/app"),
            "{printed}"
        );
    }

    #[test]
    fn received_reads_the_report_lines_out_of_the_kubelets_log() {
        let log = "2026-12-01T00:00:00Z stdout F ENV POSTGRES_HOST=db\n2026-12-01T00:00:00Z stdout F FILE -rw-r----- root:2000 /bindings/db/password\n2026-12-01T00:00:00Z stdout F CONNECT x\n";
        let (variables, files) = received(log);
        assert_eq!(variables, ["POSTGRES_HOST=db"]);
        assert_eq!(files, ["-rw-r----- root:2000 /bindings/db/password"]);
    }
}
