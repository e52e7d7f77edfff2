//! The variable name sets of `dbbind.io/env` (docs/design.md §3 and §8), and every environment
//! variable name dbbind injects.
//!
//! One table: each [`EnvSet`] gives its annotation name and the variables it injects for a
//! binding ([`EnvSet::variables`]), described as values rather than made as `EnvVar`s, so the
//! annotation parser, the patch, the README check and the tests all read the same list. Adding
//! a set is adding a variant here (its name and its variables) and a row in the README's table.

use std::fmt;

use crate::field::{Field, TlsFile};
use crate::keys::DEFAULT_BINDING_NAME;
use crate::message::Warning;

/// One name set a binding can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EnvSet {
    /// dbbind's own names: `POSTGRES_HOST`, …, the default.
    Postgres,
    /// libpq's: `PGHOST`, …
    Libpq,
    /// `DATABASE_URL`.
    DatabaseUrl,
    /// Spring Boot: `SPRING_DATASOURCE_URL` (JDBC), `_USERNAME`, `_PASSWORD`.
    Spring,
    /// Quarkus: `QUARKUS_DATASOURCE_DB_KIND`, `_JDBC_URL`, `_USERNAME`, `_PASSWORD`.
    Quarkus,
    /// `POSTGRES_JDBC_URL`.
    Jdbc,
    /// .NET: `ConnectionStrings__<Name>` without the password, and `PGPASSWORD`.
    Dotnet,
}

/// The annotation value that asks for no variables at all.
pub const NO_SETS: &str = "none";

/// The part of the binding a set's variables depend on.
#[derive(Clone, Copy, Debug)]
pub struct BindingShape<'a> {
    /// `None` for the default binding.
    pub alias: Option<&'a str>,
    /// Whether the binding has a whole URI of its own (a Secret key or a literal).
    pub has_uri: bool,
}

/// One variable a set injects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Var {
    pub name: String,
    pub value: VarValue,
}

/// What a variable holds. The patch turns each into an `EnvVar`; a field or TLS file the binding
/// does not have leaves its variable out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarValue {
    /// The field's value: a Secret key reference or a literal.
    Field(Field),
    /// The path of a TLS file under the binding's directory.
    TlsPath(TlsFile),
    /// A fixed literal.
    Fixed(&'static str),
    /// A string made of `$(VAR)` references to the plain fields' variables, never the password.
    Composed(Composition),
}

/// The connection strings dbbind composes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Composition {
    /// `postgresql://$(USER)@$(HOST):$(PORT)/$(DB)?sslmode=…`, without the password.
    LibpqUrl,
    /// `jdbc:postgresql://$(HOST):$(PORT)/$(DB)?sslmode=…`.
    JdbcUrl,
    /// Npgsql's `Host=…;Port=…;Database=…;Username=…`.
    DotnetConnectionString,
}

/// A set's variables for one binding, and what the user should know about them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetVariables {
    pub vars: Vec<Var>,
    pub warning: Option<Warning>,
}

impl EnvSet {
    /// Every set, in the order the docs list them and their variables are injected.
    pub const ALL: [EnvSet; 7] = [
        EnvSet::Postgres,
        EnvSet::Libpq,
        EnvSet::DatabaseUrl,
        EnvSet::Spring,
        EnvSet::Quarkus,
        EnvSet::Jdbc,
        EnvSet::Dotnet,
    ];

    /// The name in `dbbind.io/env`.
    pub fn name(self) -> &'static str {
        match self {
            EnvSet::Postgres => "postgres",
            EnvSet::Libpq => "libpq",
            EnvSet::DatabaseUrl => "database-url",
            EnvSet::Spring => "spring",
            EnvSet::Quarkus => "quarkus",
            EnvSet::Jdbc => "jdbc",
            EnvSet::Dotnet => "dotnet",
        }
    }

    pub fn from_name(name: &str) -> Option<EnvSet> {
        EnvSet::ALL.into_iter().find(|set| set.name() == name)
    }

    /// Why a named binding may not ask for this set, if it may not.
    pub fn default_binding_only(self) -> Option<&'static str> {
        match self {
            EnvSet::Libpq => Some(
                "the libpq set (PGHOST, …) is for the default binding only: libpq reads one connection from its variables",
            ),
            _ => None,
        }
    }

    /// Whether the set holds the plain fields' own variables, which composed strings refer to.
    pub fn is_plain(self) -> bool {
        matches!(self, EnvSet::Postgres | EnvSet::Libpq)
    }

    /// The variables this set injects for a binding of this shape, in injection order.
    pub fn variables(self, shape: &BindingShape<'_>) -> SetVariables {
        let prefix = prefix(shape.alias);
        let var = |name: &str, value: VarValue| Var {
            name: format!("{prefix}{name}"),
            value,
        };
        let mut warning = None;
        let vars = match self {
            EnvSet::Postgres => Field::ALL
                .into_iter()
                .map(|field| var(postgres_name(field), VarValue::Field(field)))
                .chain(
                    TlsFile::ALL
                        .into_iter()
                        .map(|file| var(postgres_tls_name(file), VarValue::TlsPath(file))),
                )
                .collect(),
            EnvSet::Libpq => Field::ALL
                .into_iter()
                .filter_map(|field| libpq_name(field).map(|name| var(name, VarValue::Field(field))))
                .chain(
                    TlsFile::ALL
                        .into_iter()
                        .map(|file| var(libpq_tls_name(file), VarValue::TlsPath(file))),
                )
                .collect(),
            EnvSet::DatabaseUrl if shape.has_uri => {
                vec![var("DATABASE_URL", VarValue::Field(Field::Uri))]
            }
            EnvSet::DatabaseUrl => {
                let url = var("DATABASE_URL", VarValue::Composed(Composition::LibpqUrl));
                let password = var("PGPASSWORD", VarValue::Field(Field::Password));
                warning = Some(Warning::new(format!(
                    "binding {:?}: {} is composed without the password, which is in {}: libpq-based clients (psycopg, Django, the pg gem, node-postgres, pgx) read it; clients that take the password only from the URL (Prisma) do not, and need a Secret with its own URI key (dbbind.io/keys: uri=<key>)",
                    binding_name(shape.alias),
                    url.name,
                    password.name
                )));
                vec![url, password]
            }
            EnvSet::Spring => vec![
                var(
                    "SPRING_DATASOURCE_URL",
                    VarValue::Composed(Composition::JdbcUrl),
                ),
                var("SPRING_DATASOURCE_USERNAME", VarValue::Field(Field::User)),
                var(
                    "SPRING_DATASOURCE_PASSWORD",
                    VarValue::Field(Field::Password),
                ),
            ],
            EnvSet::Quarkus => vec![
                var("QUARKUS_DATASOURCE_DB_KIND", VarValue::Fixed("postgresql")),
                var(
                    "QUARKUS_DATASOURCE_JDBC_URL",
                    VarValue::Composed(Composition::JdbcUrl),
                ),
                var("QUARKUS_DATASOURCE_USERNAME", VarValue::Field(Field::User)),
                var(
                    "QUARKUS_DATASOURCE_PASSWORD",
                    VarValue::Field(Field::Password),
                ),
            ],
            EnvSet::Jdbc => vec![var(
                "POSTGRES_JDBC_URL",
                VarValue::Composed(Composition::JdbcUrl),
            )],
            EnvSet::Dotnet => {
                // .NET's configuration reads `ConnectionStrings:<Name>` from this variable; the
                // alias names the connection string rather than prefixing the variable.
                let connection = match shape.alias {
                    Some(alias) => alias.replace(['-', '.'], "_"),
                    None => "Default".to_owned(),
                };
                vec![
                    Var {
                        name: format!("ConnectionStrings__{connection}"),
                        value: VarValue::Composed(Composition::DotnetConnectionString),
                    },
                    var("PGPASSWORD", VarValue::Field(Field::Password)),
                ]
            }
        };
        SetVariables { vars, warning }
    }
}

impl fmt::Display for EnvSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The sets one binding asks for.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct EnvSets(u8);

impl EnvSets {
    /// No variables (`dbbind.io/env: none`).
    pub const NONE: EnvSets = EnvSets(0);

    /// What a binding gets without `dbbind.io/env`: the `postgres` set.
    pub fn postgres_only() -> EnvSets {
        EnvSets::from_iter([EnvSet::Postgres])
    }

    fn bit(set: EnvSet) -> u8 {
        1 << set as u8
    }

    pub fn contains(self, set: EnvSet) -> bool {
        self.0 & EnvSets::bit(set) != 0
    }

    /// Adds `set`; false if it was there already.
    pub fn insert(&mut self, set: EnvSet) -> bool {
        let added = !self.contains(set);
        self.0 |= EnvSets::bit(set);
        added
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The sets asked for, in [`EnvSet::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = EnvSet> {
        EnvSet::ALL
            .into_iter()
            .filter(move |set| self.contains(*set))
    }

    /// The variable a composed string refers to for `field`: the first plain set's that is asked
    /// for (`postgres`, then `libpq`), else a helper variable the patch adds for it, so a binding
    /// with only `spring` (say) still copies no value into the pod spec.
    pub fn reference(self, shape: &BindingShape<'_>, field: Field) -> Reference {
        let injected = self
            .iter()
            .filter(|set| set.is_plain())
            .flat_map(|set| set.variables(shape).vars)
            .find(|var| var.value == VarValue::Field(field));
        match injected {
            Some(var) => Reference::Injected(var.name),
            None => Reference::Helper(format!(
                "DBBIND_{}_{}",
                upper_snake(binding_name(shape.alias)),
                field.name().to_ascii_uppercase()
            )),
        }
    }
}

impl FromIterator<EnvSet> for EnvSets {
    fn from_iter<I: IntoIterator<Item = EnvSet>>(sets: I) -> EnvSets {
        let mut all = EnvSets::NONE;
        for set in sets {
            all.insert(set);
        }
        all
    }
}

impl fmt::Debug for EnvSets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The variable a composed string's `$(…)` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// A variable one of the binding's sets injects anyway.
    Injected(String),
    /// A variable of its own (`DBBIND_<BINDING>_<FIELD>`), to be injected before the string.
    Helper(String),
}

/// The prefix of a binding's variable names: empty, or `REPORTING_` for alias `reporting`.
pub fn prefix(alias: Option<&str>) -> String {
    match alias {
        Some(alias) => format!("{}_", upper_snake(alias)),
        None => String::new(),
    }
}

/// `db` for the default binding, the alias otherwise.
fn binding_name(alias: Option<&str>) -> &str {
    alias.unwrap_or(DEFAULT_BINDING_NAME)
}

fn upper_snake(name: &str) -> String {
    name.to_ascii_uppercase().replace(['-', '.'], "_")
}

fn postgres_name(field: Field) -> &'static str {
    match field {
        Field::Host => "POSTGRES_HOST",
        Field::Port => "POSTGRES_PORT",
        Field::Database => "POSTGRES_DB",
        Field::User => "POSTGRES_USER",
        Field::Password => "POSTGRES_PASSWORD",
        Field::Uri => "POSTGRES_URL",
        Field::Sslmode => "POSTGRES_SSLMODE",
    }
}

/// libpq has no variable for a whole URI.
fn libpq_name(field: Field) -> Option<&'static str> {
    match field {
        Field::Host => Some("PGHOST"),
        Field::Port => Some("PGPORT"),
        Field::Database => Some("PGDATABASE"),
        Field::User => Some("PGUSER"),
        Field::Password => Some("PGPASSWORD"),
        Field::Uri => None,
        Field::Sslmode => Some("PGSSLMODE"),
    }
}

fn postgres_tls_name(file: TlsFile) -> &'static str {
    match file {
        TlsFile::RootCert => "POSTGRES_SSLROOTCERT",
        TlsFile::Cert => "POSTGRES_SSLCERT",
        TlsFile::Key => "POSTGRES_SSLKEY",
    }
}

fn libpq_tls_name(file: TlsFile) -> &'static str {
    match file {
        TlsFile::RootCert => "PGSSLROOTCERT",
        TlsFile::Cert => "PGSSLCERT",
        TlsFile::Key => "PGSSLKEY",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: BindingShape<'static> = BindingShape {
        alias: None,
        has_uri: false,
    };

    #[test]
    fn names_round_trip_and_none_is_not_a_set() {
        for set in EnvSet::ALL {
            assert_eq!(EnvSet::from_name(set.name()), Some(set));
        }
        assert_eq!(EnvSet::from_name(NO_SETS), None);
    }

    #[test]
    fn a_set_of_sets_keeps_the_documented_order() {
        let sets: EnvSets = [EnvSet::Dotnet, EnvSet::Postgres, EnvSet::Spring]
            .into_iter()
            .collect();
        let order: Vec<EnvSet> = sets.iter().collect();
        assert_eq!(order, [EnvSet::Postgres, EnvSet::Spring, EnvSet::Dotnet]);
        let mut again = sets;
        assert!(!again.insert(EnvSet::Spring));
        assert!(again.insert(EnvSet::Jdbc));
        assert_eq!(format!("{:?}", EnvSets::postgres_only()), "{Postgres}");
    }

    #[test]
    fn an_alias_prefixes_every_name_but_the_dotnet_connection_string() {
        let shape = BindingShape {
            alias: Some("read-replica"),
            has_uri: false,
        };
        for set in EnvSet::ALL {
            for var in set.variables(&shape).vars {
                let prefixed = var.name.starts_with("READ_REPLICA_");
                assert_eq!(
                    prefixed,
                    var.name != "ConnectionStrings__read_replica",
                    "{}",
                    var.name
                );
            }
        }
    }

    #[test]
    fn plain_sets_compose_nothing_so_every_composed_string_has_its_parts() {
        for set in EnvSet::ALL.into_iter().filter(|set| set.is_plain()) {
            for var in set.variables(&DEFAULT).vars {
                assert!(!matches!(var.value, VarValue::Composed(_)), "{}", var.name);
            }
        }
    }

    #[test]
    fn database_url_takes_the_uri_when_there_is_one_and_warns_when_composed() {
        let with_uri = EnvSet::DatabaseUrl.variables(&BindingShape {
            alias: None,
            has_uri: true,
        });
        assert_eq!(
            with_uri.vars,
            [Var {
                name: "DATABASE_URL".to_owned(),
                value: VarValue::Field(Field::Uri)
            }]
        );
        assert_eq!(with_uri.warning, None);
        let composed = EnvSet::DatabaseUrl.variables(&DEFAULT);
        assert_eq!(composed.vars.len(), 2);
        assert!(composed.warning.is_some());
    }

    #[test]
    fn composed_strings_refer_to_postgres_then_libpq_then_a_helper() {
        let both: EnvSets = [EnvSet::Libpq, EnvSet::Postgres].into_iter().collect();
        assert_eq!(
            both.reference(&DEFAULT, Field::Host),
            Reference::Injected("POSTGRES_HOST".to_owned())
        );
        let libpq: EnvSets = [EnvSet::Libpq, EnvSet::Spring].into_iter().collect();
        assert_eq!(
            libpq.reference(&DEFAULT, Field::Port),
            Reference::Injected("PGPORT".to_owned())
        );
        let spring: EnvSets = [EnvSet::Spring].into_iter().collect();
        assert_eq!(
            spring.reference(&DEFAULT, Field::User),
            Reference::Helper("DBBIND_DB_USER".to_owned())
        );
    }
}
