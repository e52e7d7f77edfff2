//! The connection fields dbbind knows, and the names each one takes in the pod (docs/design.md §3).
//!
//! This table is the single place where a field meets its env var names and file entry; the
//! profile schema, the `dbbind.io/keys` annotation and the patch all refer to it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One piece of a PostgreSQL connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Field {
    Host,
    Port,
    Database,
    User,
    Password,
    Uri,
    Sslmode,
}

impl Field {
    /// Every field, in the order variables are injected.
    pub const ALL: [Field; 7] = [
        Field::Host,
        Field::Port,
        Field::Database,
        Field::User,
        Field::Password,
        Field::Uri,
        Field::Sslmode,
    ];

    /// Fields a user may fill in with a literal annotation (`dbbind.io/<field>`). Password and URI
    /// are absent on purpose: both carry a credential, which must come from a Secret.
    pub const LITERAL_ANNOTATIONS: [Field; 5] = [
        Field::Host,
        Field::Port,
        Field::Database,
        Field::User,
        Field::Sslmode,
    ];

    /// The name used in annotations, profiles and messages.
    pub fn name(self) -> &'static str {
        match self {
            Field::Host => "host",
            Field::Port => "port",
            Field::Database => "database",
            Field::User => "user",
            Field::Password => "password",
            Field::Uri => "uri",
            Field::Sslmode => "sslmode",
        }
    }

    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|field| field.name() == name)
    }

    /// Variable of the `postgres` set, before any alias prefix.
    pub fn postgres_env(self) -> &'static str {
        match self {
            Field::Host => "POSTGRES_HOST",
            Field::Port => "POSTGRES_PORT",
            Field::Database => "POSTGRES_DB",
            Field::User => "POSTGRES_USER",
            Field::Password => "POSTGRES_PASSWORD",
            Field::Uri => "POSTGRES_URL",
            Field::Sslmode => "POSTGRES_SSLMODE",
        }
    }

    /// Variable of the `libpq` set; libpq has no variable for a whole URI.
    pub fn libpq_env(self) -> Option<&'static str> {
        match self {
            Field::Host => Some("PGHOST"),
            Field::Port => Some("PGPORT"),
            Field::Database => Some("PGDATABASE"),
            Field::User => Some("PGUSER"),
            Field::Password => Some("PGPASSWORD"),
            Field::Uri => None,
            Field::Sslmode => Some("PGSSLMODE"),
        }
    }

    /// File name under the binding's directory (Service Binding Specification entry names).
    pub fn file_entry(self) -> &'static str {
        match self {
            Field::User => "username",
            other => other.name(),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Comma-separated field names, for messages.
pub fn join_fields(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|field| field.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for field in Field::ALL {
            assert_eq!(Field::from_name(field.name()), Some(field));
        }
        assert_eq!(Field::from_name("username"), None);
    }

    #[test]
    fn serde_uses_the_annotation_names() {
        let text = serde_json::to_string(&Field::Sslmode).unwrap();
        assert_eq!(text, "\"sslmode\"");
    }
}
