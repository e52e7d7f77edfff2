//! The connection fields dbbind knows, and the names each one takes in annotations, profiles
//! and files (docs/design.md §3). The variables each one becomes are in `env_set`, with every
//! other variable name.

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

/// A TLS file a binding may carry (docs/design.md §9). Unlike a field it is never a value in
/// the environment: it is projected as a file, and variables and URLs hold its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsFile {
    /// The CA that signed the server's certificate.
    RootCert,
    /// The client's certificate.
    Cert,
    /// The client's private key.
    Key,
}

impl TlsFile {
    pub const ALL: [TlsFile; 3] = [TlsFile::RootCert, TlsFile::Cert, TlsFile::Key];

    /// File name under the binding's directory.
    pub fn file_entry(self) -> &'static str {
        match self {
            TlsFile::RootCert => "ca.crt",
            TlsFile::Cert => "tls.crt",
            TlsFile::Key => "tls.key",
        }
    }

    /// libpq's name for it: the connection parameter, and in JDBC and libpq URLs.
    pub fn param(self) -> &'static str {
        match self {
            TlsFile::RootCert => "sslrootcert",
            TlsFile::Cert => "sslcert",
            TlsFile::Key => "sslkey",
        }
    }

    /// Npgsql's connection-string keyword.
    pub fn dotnet_keyword(self) -> &'static str {
        match self {
            TlsFile::RootCert => "Root Certificate",
            TlsFile::Cert => "SSL Certificate",
            TlsFile::Key => "SSL Key",
        }
    }

    /// The file's mode: libpq refuses a key that group or others can read (unless root owns
    /// it with mode 0640, which is what the kubelet makes of 0600 under `fsGroup`).
    pub fn mode(self) -> Option<i32> {
        (self == TlsFile::Key).then_some(0o600)
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
