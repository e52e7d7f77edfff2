//! Property tests: annotation parsing never panics, whatever keys and values a pod carries, and
//! every refusal is a `dbbind:` message that does not echo an unknown annotation's value.

use std::collections::BTreeMap;

use dbbind_core::binding::parse_annotations;
use dbbind_core::keys::{self, BINDING_KEYS, POD_KEYS};
use dbbind_core::message::Denial;
use proptest::prelude::*;

use crate::support::builtin;

fn annotation_key() -> impl Strategy<Value = String> {
    // Every key the parser accepts, a forbidden one, and those dbbind writes itself.
    let extra = ["password", "status", "bindings", "value.db.host"];
    let known = prop::sample::select(
        BINDING_KEYS
            .iter()
            .chain(&POD_KEYS)
            .chain(&extra)
            .copied()
            .collect::<Vec<&str>>(),
    );
    prop_oneof![
        (known, prop::option::of("[a-zA-Z0-9._-]{0,34}")).prop_map(|(base, alias)| match alias {
            Some(alias) => format!("dbbind.io/{base}.{alias}"),
            None => format!("dbbind.io/{base}"),
        }),
        "dbbind\\.io/[ -~]{0,40}",
        "[ -~]{0,20}",
    ]
}

fn annotation_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "true",
            "false",
            "keep",
            "deny",
            "auto",
            "generic",
            "postgres,libpq",
            "database-url",
            "spring,quarkus,jdbc,dotnet",
            "ro",
            "none",
            "5432",
            "user=login,password=pw",
            "app,sidecar",
            "",
            ",",
            "=",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

proptest! {
    #[test]
    fn parsing_never_panics(annotations in prop::collection::btree_map(annotation_key(), annotation_value(), 0..8)) {
        let profiles = builtin();
        if let Err(error) = parse_annotations(&annotations, &profiles) {
            let message = Denial::from(error).to_string();
            prop_assert!(message.starts_with("dbbind: "), "{}", message);
        }
    }

    #[test]
    fn unknown_annotation_values_are_never_echoed(
        name in "[a-z]{3,12}",
        marker in "[A-Z]{6}[0-9]{6}",
    ) {
        // Every key dbbind knows, from its one declaration: a known key's value may be echoed.
        let key = format!("{}{name}", keys::PREFIX);
        prop_assume!(!BINDING_KEYS.contains(&name.as_str())
            && !POD_KEYS.contains(&name.as_str())
            && !keys::is_written_by_dbbind(&key));
        let mut annotations = BTreeMap::new();
        annotations.insert("dbbind.io/secret".to_owned(), "db".to_owned());
        annotations.insert(key, marker.clone());
        let error = parse_annotations(&annotations, &builtin()).unwrap_err();
        prop_assert!(!error.to_string().contains(&marker));
    }
}
