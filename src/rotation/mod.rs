//! Restart on credential rotation (docs/design.md §10): the plumbing around
//! [`dbbind_core::rotation`], which decides. So far, [`leader`]: one replica acts on rotations.

pub mod leader;
