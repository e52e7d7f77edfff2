//! The core decision, driven through the library: every fixture Secret, the bad-input table,
//! idempotency, the secret-value canary and property tests of annotation parsing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbbind_test_support as support;

mod bad_inputs;
mod canary;
mod endpoints;
mod fixtures;
mod fuzz_findings;
mod idempotency;
mod properties;
mod tls;
mod workloads;
