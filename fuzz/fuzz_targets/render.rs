//! Any text as `dbbind render -f MANIFEST`, with the fixture shapes' kinds of documents: read,
//! decided and patched offline. Nothing may panic.
#![no_main]

use dbbind_core::manifest::{Source, render};
use dbbind_fuzz::profiles;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let manifest = Source {
        name: "fuzz.yaml",
        text,
    };
    let _ = render(&manifest, &[], None, profiles());
    let _ = render(&manifest, &[], Some("shop"), profiles());
});
