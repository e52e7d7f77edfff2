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
use crate::env_set::{Composition, Reference, VarValue};
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

/// The variables of one binding, in injection order: each requested set's variables as
/// `env_set` lists them, with the helper variables composed strings need (when neither the
/// `postgres` nor the `libpq` set is requested) before the first set that is not a plain one.
/// TLS files are paths under `root`, the container's bindings root (docs/design.md §9).
pub fn binding_env(
    binding: &ResolvedBinding,
    root: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<EnvVar>, Denial> {
    let directory = files::directory(binding, root);
    let tls_path = |file: TlsFile| format!("{directory}/{}", file.file_entry());
    let shape = binding.shape();
    let sets: Vec<_> = binding
        .request
        .env
        .iter()
        .map(|set| (set, set.variables(&shape)))
        .collect();
    let composes = sets.iter().any(|(_, variables)| {
        variables
            .vars
            .iter()
            .any(|var| matches!(var.value, VarValue::Composed(_)))
    });
    let mut vars = Vars::default();
    let mut parts: Option<Parts> = None;
    for (set, variables) in sets {
        if composes && parts.is_none() && !set.is_plain() {
            let tls = binding.tls.iter().map(|source| source.file);
            parts = Some(Parts::new(
                binding,
                tls.map(|file| (file, tls_path(file))),
                &mut vars,
            )?);
        }
        for var in variables.vars {
            let name = var.name;
            let made = match var.value {
                VarValue::Field(field) => binding
                    .source(field)
                    .map(|source| env_var(name, binding, source)),
                VarValue::TlsPath(file) => {
                    binding.has_tls(file).then(|| literal(name, tls_path(file)))
                }
                VarValue::Fixed(value) => Some(literal(name, value.to_owned())),
                VarValue::Composed(composition) => parts
                    .as_ref()
                    .map(|parts| literal(name, parts.compose(composition))),
            };
            vars.extend(made);
        }
        warnings.extend(variables.warning);
    }
    Ok(vars.0)
}

/// Variables in order; a name already there (`PGPASSWORD` from the `libpq` set and from
/// `database-url`) is not added twice: the first wins.
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
    /// Refers to the variables `EnvSets::reference` names, adding the helper variables it asks
    /// for to `vars`.
    fn new(
        binding: &ResolvedBinding,
        tls: impl Iterator<Item = (TlsFile, String)>,
        vars: &mut Vars,
    ) -> Result<Parts, Denial> {
        let request = &binding.request;
        let shape = binding.shape();
        let mut reference = |field: Field| -> Option<String> {
            let source = binding.source(field)?;
            let name = match request.env.reference(&shape, field) {
                Reference::Injected(name) => name,
                Reference::Helper(name) => {
                    vars.push(env_var(name.clone(), binding, source));
                    name
                }
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
            tls: tls.collect(),
        })
    }

    fn compose(&self, composition: Composition) -> String {
        match composition {
            Composition::LibpqUrl => self.libpq_url(),
            Composition::JdbcUrl => self.jdbc_url(),
            Composition::DotnetConnectionString => self.dotnet_connection_string(),
        }
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
