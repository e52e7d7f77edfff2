//! Any text as a `--profiles-file`: loaded over the built-ins. Nothing may panic; a file that
//! loads must print (`dbbind profiles NAME`) as a file that loads again to the same profiles.
#![no_main]

use dbbind_core::profile::ProfileSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(set) = ProfileSet::with_overlay(text, "fuzz.yaml") else {
        return;
    };
    let _ = set.shape_filter();
    let _ = set.detection_summary();
    let printed = set.to_yaml();
    match ProfileSet::with_overlay(&printed, "printed.yaml") {
        Ok(again) => assert_eq!(
            again.to_yaml(),
            printed,
            "profiles printed and loaded again differ"
        ),
        Err(error) => panic!("profiles printed by dbbind do not load again: {error}"),
    }
});
