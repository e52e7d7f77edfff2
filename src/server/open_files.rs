//! The open-files limit: each admission connection is a file descriptor, and at the connection
//! cap a new connection needs one before an idle connection can make room for it. Containers
//! commonly start with a soft limit of 1,024 (the default `--max-connections`), far below their
//! hard limit, so dbbind raises the soft limit to the hard one at start, as every Go program
//! (the API server, kubelet, containerd) does by itself.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// File descriptors dbbind needs besides its admission connections: listeners, the admin
/// port's connections, API server watches, logs.
pub const RESERVED: u64 = 128;

/// The soft limit after raising it as far as the hard limit allows (`None`: unlimited).
pub fn raise_to_hard_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return raised.current;
        }
    }
    limit.current
}

/// Whether `max_connections` fit under `soft` with [`RESERVED`] to spare.
pub fn enough_for(max_connections: usize, soft: Option<u64>) -> bool {
    soft.is_none_or(|soft| soft >= max_connections as u64 + RESERVED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let raised = raise_to_hard_limit();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(now.current, now.maximum);
        assert_eq!(raised, now.current);
    }

    #[test]
    fn connections_need_their_descriptors_and_a_reserve() {
        assert!(enough_for(1024, Some(1024 + RESERVED)));
        assert!(!enough_for(1024, Some(1024)));
        assert!(enough_for(1_000_000, None));
    }
}
