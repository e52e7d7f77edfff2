//! The README's reference sections are checked against the code, so they cannot drift.

use crate::dbbind;
use crate::support::repo_path;

fn readme() -> String {
    std::fs::read_to_string(repo_path("README.md")).unwrap()
}

/// The text between `<!-- NAME:start -->` and `<!-- NAME:end -->`.
fn section(text: &str, name: &str) -> String {
    let start = format!("<!-- {name}:start -->\n");
    let end = format!("<!-- {name}:end -->");
    let from = text
        .find(&start)
        .unwrap_or_else(|| panic!("README has no {start}"))
        + start.len();
    let to = text[from..].find(&end).unwrap() + from;
    text[from..to].to_owned()
}

#[test]
fn the_profile_list_is_the_output_of_dbbind_profiles() {
    let run = dbbind(&["profiles"], "");
    assert_eq!(
        section(&readme(), "profiles"),
        format!("```text\n{}```\n", run.stdout)
    );
}

#[test]
fn every_annotation_and_env_name_is_documented() {
    let readme = readme();
    for key in [
        "secret",
        "profile",
        "host",
        "port",
        "database",
        "user",
        "sslmode",
        "keys",
        "env",
        "files",
        "containers",
        "on-conflict",
        "inject",
        "status",
        "bindings",
        "value.",
    ] {
        assert!(
            readme.contains(&format!("`dbbind.io/{key}")),
            "dbbind.io/{key} is not in the README"
        );
    }
    for field in dbbind::field::Field::ALL {
        assert!(
            readme.contains(&format!("`{}`", field.postgres_env())),
            "{field}"
        );
        if let Some(name) = field.libpq_env() {
            assert!(readme.contains(&format!("`{name}`")), "{name}");
        }
    }
}

#[test]
fn the_built_in_profiles_file_is_shown_as_shipped() {
    // The README links to the built-in file rather than copying it; the link must resolve.
    assert!(readme().contains("(src/profile/builtin.yaml)"));
    assert!(repo_path("src/profile/builtin.yaml").exists());
}
