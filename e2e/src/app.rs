//! What the app containers of the real node run: a shell script of ours around unmodified
//! clients (Debian's `psql`, and pgx through `pgx-check`, e2e/drivers/pgx), which connects
//! once for every way the binding reaches the container — the `postgres` set, the `libpq` set,
//! the URL, the files; the `libpq` set and the URL also through pgx — with exactly the
//! environment and files the kubelet gave it. It does no parsing of its own: it hands the
//! driver the variables (renamed to libpq's names for the `postgres` set) or the URL as they are.
//!
//! Each connection names itself in `application_name` (`<scenario>/<container>/<binding>/<way>`)
//! and, in the app container, stays open (`pg_sleep`), so the test asks PostgreSQL who is
//! connected — the database's own word. Init containers connect once and fail the pod if they
//! cannot. Before connecting, the script prints what it received (`ENV` and `FILE` lines,
//! passwords masked) for the demo's report.

use std::fmt::Write as _;

use crate::image::NODE_POSTGRES_DIR;

/// Where the app image keeps the database CA (libpq's default for root), for Node.
const NODE_CA: &str = "NODE_EXTRA_CA_CERTS=/root/.postgresql/root.crt";

/// One way a binding reaches a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Way {
    /// The binding's directory name (`db`, or its alias).
    pub binding: String,
    /// Its variables' prefix (`""`, `POOLER_`).
    pub prefix: String,
    /// `postgres`, `libpq`, `url` or `files` (psql), `pgx-libpq` or `pgx-url` (pgx),
    /// `node-libpq` or `node-url` (node-postgres).
    pub kind: &'static str,
}

impl Way {
    /// The `application_name` of this way's connection.
    pub fn label(&self, scenario: &str, container: &str) -> String {
        format!("{scenario}/{container}/{}/{}", self.binding, self.kind)
    }
}

/// The ways the other drivers read too: for each way through the `libpq` set or the URL, the
/// same through pgx and through node-postgres. For app containers only: those drivers hold
/// their connections open.
pub fn with_drivers(ways: Vec<Way>) -> Vec<Way> {
    let mut all = Vec::with_capacity(ways.len() * 3);
    for way in ways {
        let twins: &[&'static str] = match way.kind {
            "libpq" => &["pgx-libpq", "node-libpq"],
            "url" => &["pgx-url", "node-url"],
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
            "files" => format!(
                "d=\"$SERVICE_BINDING_ROOT/{binding}\"\n  \
                 export PGHOST=\"$(cat \"$d/host\")\" PGUSER=\"$(cat \"$d/username\")\" PGPASSWORD=\"$(cat \"$d/password\")\"\n  \
                 [ -f \"$d/port\" ] && export PGPORT=\"$(cat \"$d/port\")\"\n  \
                 [ -f \"$d/database\" ] && export PGDATABASE=\"$(cat \"$d/database\")\"\n  \
                 [ -f \"$d/sslmode\" ] && export PGSSLMODE=\"$(cat \"$d/sslmode\")\"\n  \
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
        assert_eq!(kinds, ["url", "pgx-url", "node-url", "postgres"]);
        let hold = script("osba", "app", &ways, Mode::Hold);
        assert!(hold.contains("exec pgx-check url \"${DATABASE_URL:-${POSTGRES_URL}}\""));
        assert!(hold.contains("NODE_EXTRA_CA_CERTS=/root/.postgresql/root.crt"));
        assert!(hold.contains("check.js url \"${DATABASE_URL:-${POSTGRES_URL}}\""));
        let unknown = Way {
            binding: "db".into(),
            prefix: "".into(),
            kind: "jdbc",
        };
        assert!(script("x", "app", &[unknown], Mode::Hold).contains("no such way: jdbc"));
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
