//! The environment variables one binding injects (docs/design.md §3 and §8).
//!
//! Every value is a reference: a field from a Secret key is a `secretKeyRef`, a literal is a
//! literal, and a composed string (a URL, a JDBC URL, a .NET connection string) is made only of
//! `$(VAR)` references to variables injected before it, which the kubelet expands. The password
//! never goes into a composed string: expansion does not percent-encode, and a generated
//! password with `@`, `:`, `/`, `?` or `#` would break the string (or be read as another part
//! of it). Where a framework needs it, the password is a variable of its own.

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};

use super::files;
use crate::binding::{ResolvedBinding, ValueSource};
use crate::field::{Field, TlsFile};
use crate::message::{Denial, Warning};

/// The fields a composed string may refer to: everything but the password and the URI.
const COMPOSABLE: [Field; 5] = [
    Field::Host,
    Field::Port,
    Field::Database,
    Field::User,
    Field::Sslmode,
];

/// The variables of one binding, in injection order: the `postgres` set, the `libpq` set, the
/// helper variables composed strings need when neither set is requested, then `DATABASE_URL`,
/// the `spring`, `quarkus`, `jdbc` and `dotnet` sets. TLS files are paths under `root`, the
/// container's bindings root (docs/design.md §9).
pub fn binding_env(
    binding: &ResolvedBinding,
    root: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<EnvVar>, Denial> {
    let directory = files::directory(binding, root);
    let tls_paths: Vec<(TlsFile, String)> = binding
        .tls
        .iter()
        .map(|source| {
            let path = format!("{directory}/{}", source.file.file_entry());
            (source.file, path)
        })
        .collect();
    let request = &binding.request;
    let sets = request.env;
    let prefix = request.env_prefix();
    let mut vars = Vars::default();
    if sets.postgres {
        for (field, source) in &binding.fields {
            vars.push(env_var(
                format!("{prefix}{}", field.postgres_env()),
                binding,
                source,
            ));
        }
    }
    if sets.postgres {
        for (file, path) in &tls_paths {
            vars.push(literal(
                format!("{prefix}{}", file.postgres_env()),
                path.clone(),
            ));
        }
    }
    if sets.libpq {
        for (field, source) in &binding.fields {
            if let Some(name) = field.libpq_env() {
                vars.push(env_var(format!("{prefix}{name}"), binding, source));
            }
        }
        for (file, path) in &tls_paths {
            vars.push(literal(
                format!("{prefix}{}", file.libpq_env()),
                path.clone(),
            ));
        }
    }

    let uri_key = binding.source(Field::Uri);
    let composes = (sets.database_url && uri_key.is_none())
        || sets.spring
        || sets.quarkus
        || sets.jdbc
        || sets.dotnet;
    if !composes {
        if let (true, Some(source)) = (sets.database_url, uri_key) {
            vars.push(env_var(format!("{prefix}DATABASE_URL"), binding, source));
        }
        return Ok(vars.0);
    }
    let parts = Parts::new(binding, tls_paths, &mut vars)?;
    let password = |name: String| {
        binding
            .source(Field::Password)
            .map(|source| env_var(name, binding, source))
    };
    let user = |name: String| {
        binding
            .source(Field::User)
            .map(|source| env_var(name, binding, source))
    };

    if sets.database_url {
        let name = format!("{prefix}DATABASE_URL");
        match uri_key {
            Some(source) => vars.push(env_var(name, binding, source)),
            None => {
                vars.push(literal(name.clone(), parts.libpq_url()));
                let password_var = format!("{prefix}PGPASSWORD");
                vars.extend(password(password_var.clone()));
                warnings.push(Warning::new(format!(
                    "binding {:?}: {name} is composed without the password, which is in {password_var}: libpq-based clients (psycopg, Django, the pg gem, node-postgres, pgx) read it; clients that take the password only from the URL (Prisma) do not, and need a Secret with its own URI key (dbbind.io/keys: uri=<key>)",
                    request.name()
                )));
            }
        }
    }
    if sets.spring {
        vars.push(literal(
            format!("{prefix}SPRING_DATASOURCE_URL"),
            parts.jdbc_url(),
        ));
        vars.extend(user(format!("{prefix}SPRING_DATASOURCE_USERNAME")));
        vars.extend(password(format!("{prefix}SPRING_DATASOURCE_PASSWORD")));
    }
    if sets.quarkus {
        vars.push(literal(
            format!("{prefix}QUARKUS_DATASOURCE_DB_KIND"),
            "postgresql".to_owned(),
        ));
        vars.push(literal(
            format!("{prefix}QUARKUS_DATASOURCE_JDBC_URL"),
            parts.jdbc_url(),
        ));
        vars.extend(user(format!("{prefix}QUARKUS_DATASOURCE_USERNAME")));
        vars.extend(password(format!("{prefix}QUARKUS_DATASOURCE_PASSWORD")));
    }
    if sets.jdbc {
        vars.push(literal(
            format!("{prefix}POSTGRES_JDBC_URL"),
            parts.jdbc_url(),
        ));
    }
    if sets.dotnet {
        let name = match &request.alias {
            Some(alias) => alias.replace(['-', '.'], "_"),
            None => "Default".to_owned(),
        };
        vars.push(literal(
            format!("ConnectionStrings__{name}"),
            parts.dotnet_connection_string(),
        ));
        vars.extend(password(format!("{prefix}PGPASSWORD")));
    }
    Ok(vars.0)
}

/// Variables in order; a name already there (`PGPASSWORD` from the `libpq` set and from
/// `database-url`) is not added twice.
#[derive(Default)]
struct Vars(Vec<EnvVar>);

impl Vars {
    fn push(&mut self, var: EnvVar) {
        if !self.0.iter().any(|own| own.name == var.name) {
            self.0.push(var);
        }
    }

    fn extend(&mut self, var: Option<EnvVar>) {
        if let Some(var) = var {
            self.push(var);
        }
    }
}

/// The `$(VAR)` references a composed string is made of: one per field the binding has, to a
/// variable injected before it.
struct Parts {
    host: String,
    port: Option<String>,
    database: Option<String>,
    user: Option<String>,
    sslmode: Option<String>,
    /// TLS files' paths: literals, since a path holds no secret.
    tls: Vec<(TlsFile, String)>,
}

impl Parts {
    /// Refers to the `postgres` set when injected, else the `libpq` set, else to helper
    /// variables `DBBIND_<BINDING>_<FIELD>` added here, so a binding with only `spring` (say)
    /// still copies no value.
    fn new(
        binding: &ResolvedBinding,
        tls: Vec<(TlsFile, String)>,
        vars: &mut Vars,
    ) -> Result<Parts, Denial> {
        let request = &binding.request;
        let prefix = request.env_prefix();
        let helper_prefix = format!(
            "DBBIND_{}_",
            request.name().to_ascii_uppercase().replace(['-', '.'], "_")
        );
        let mut reference = |field: Field| -> Option<String> {
            let source = binding.source(field)?;
            let name = if request.env.postgres {
                format!("{prefix}{}", field.postgres_env())
            } else if let (true, Some(libpq)) = (request.env.libpq, field.libpq_env()) {
                format!("{prefix}{libpq}")
            } else {
                let name = format!("{helper_prefix}{}", field.name().to_ascii_uppercase());
                vars.push(env_var(name.clone(), binding, source));
                name
            };
            Some(format!("$({name})"))
        };
        let [host, port, database, user, sslmode] = COMPOSABLE.map(&mut reference);
        let Some(host) = host else {
            return Err(Denial::about_secret(format!(
                "binding {:?}: cannot compose a connection string: no host (Secret {:?})",
                request.name(),
                request.secret
            )));
        };
        Ok(Parts {
            host,
            port,
            database,
            user,
            sslmode,
            tls,
        })
    }

    /// `host[:port]/[database]`, the part every URL shares.
    fn authority_and_path(&self) -> String {
        let mut out = self.host.clone();
        if let Some(port) = &self.port {
            out.push(':');
            out.push_str(port);
        }
        out.push('/');
        if let Some(database) = &self.database {
            out.push_str(database);
        }
        out
    }

    /// `?sslmode=…&sslrootcert=…&sslcert=…&sslkey=…`, whichever the binding has; libpq, pgx,
    /// node-postgres and pgjdbc all read these parameter names.
    fn ssl_query(&self) -> String {
        let mut params: Vec<String> = Vec::new();
        if let Some(sslmode) = &self.sslmode {
            params.push(format!("sslmode={sslmode}"));
        }
        for (file, path) in &self.tls {
            params.push(format!("{}={path}", file.param()));
        }
        if params.is_empty() {
            String::new()
        } else {
            format!("?{}", params.join("&"))
        }
    }

    /// `postgresql://$(USER)@$(HOST):$(PORT)/$(DB)?sslmode=$(SSLMODE)`, without the password.
    fn libpq_url(&self) -> String {
        let user = self
            .user
            .as_ref()
            .map(|user| format!("{user}@"))
            .unwrap_or_default();
        format!(
            "postgresql://{user}{}{}",
            self.authority_and_path(),
            self.ssl_query()
        )
    }

    /// `jdbc:postgresql://$(HOST):$(PORT)/$(DB)?sslmode=$(SSLMODE)`: user and password are
    /// given to the framework beside it.
    fn jdbc_url(&self) -> String {
        format!(
            "jdbc:postgresql://{}{}",
            self.authority_and_path(),
            self.ssl_query()
        )
    }

    /// `Host=…;Port=…;Database=…;Username=…` for Npgsql, which reads the password from
    /// `PGPASSWORD`. No `SSL Mode`: Npgsql spells its modes differently (`VerifyFull`).
    fn dotnet_connection_string(&self) -> String {
        let mut parts = vec![format!("Host={}", self.host)];
        let optional = [
            ("Port", &self.port),
            ("Database", &self.database),
            ("Username", &self.user),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                parts.push(format!("{key}={value}"));
            }
        }
        for (file, path) in &self.tls {
            parts.push(format!("{}={path}", file.dotnet_keyword()));
        }
        parts.join(";")
    }
}

fn literal(name: String, value: String) -> EnvVar {
    EnvVar {
        name,
        value: Some(value),
        value_from: None,
    }
}

fn env_var(name: String, binding: &ResolvedBinding, source: &ValueSource) -> EnvVar {
    match source {
        ValueSource::SecretKey { key, optional } => EnvVar {
            name,
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: binding.request.secret.clone(),
                    key: key.clone(),
                    optional: optional.then_some(true),
                }),
                ..EnvVarSource::default()
            }),
        },
        ValueSource::Literal(value) => EnvVar {
            name,
            // The kubelet expands `$(VAR)` in values; `$$` keeps a literal `$` literal.
            value: Some(value.replace('$', "$$")),
            value_from: None,
        },
    }
}
