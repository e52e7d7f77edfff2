//! Kubernetes' rules for names and keys, used by annotation parsing and by profile validation
//! alike. A leaf: it imports nothing of dbbind's, so both can depend on it without a cycle.

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most `max` characters.
pub fn is_dns_label(text: &str, max: usize) -> bool {
    let bytes = text.as_bytes();
    let edge_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes.first().is_some_and(edge_ok)
        && bytes.last().is_some_and(edge_ok)
        && bytes.iter().all(|b| edge_ok(b) || *b == b'-')
}

/// A DNS subdomain (RFC 1123), the rule for Secret and most object names.
pub fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(|label| is_dns_label(label, 63))
}

/// A valid Secret data key: `[-._a-zA-Z0-9]+`, at most 253 characters.
pub fn is_secret_key(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && text != "."
        && text != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("reporting", 30));
        assert!(is_dns_label("a-1", 30));
        assert!(!is_dns_label("-a", 30));
        assert!(!is_dns_label("a-", 30));
        assert!(!is_dns_label("A", 30));
        assert!(!is_dns_label("a_b", 30));
        assert!(!is_dns_label("", 30));
        assert!(!is_dns_label(&"a".repeat(31), 30));
        assert!(is_dns_label(&"a".repeat(30), 30));
    }

    #[test]
    fn dns_subdomains_and_secret_keys() {
        assert!(is_dns_subdomain(
            "foo-user.acid-minimal-cluster.credentials.postgresql.acid.zalan.do"
        ));
        assert!(!is_dns_subdomain("Foo"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(is_secret_key("POSTGRES_PASSWORD"));
        assert!(is_secret_key("ca.crt"));
        assert!(!is_secret_key("a/b"));
        assert!(!is_secret_key(".."));
    }
}
