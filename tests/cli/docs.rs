//! The README's reference sections are checked against the code, so they cannot drift.

use dbbind_core::env_set::{BindingShape, EnvSet};
use dbbind_core::keys::{self, BINDING_KEYS, POD_KEYS};
use dbbind_core::kind::WorkloadKind;

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
    // Every key the parser accepts, and those dbbind writes itself.
    let written = [
        keys::STATUS,
        keys::BINDINGS,
        keys::VALUE_PREFIX,
        keys::RESTARTED_AT,
    ];
    let read = BINDING_KEYS
        .iter()
        .chain(&POD_KEYS)
        .map(|key| keys::binding_key(key, None));
    for key in read.chain(written.map(str::to_owned)) {
        assert!(
            readme.contains(&format!("`{key}")),
            "{key} is not in the README"
        );
    }
}

/// Every name set has its row in the README's framework table, and every variable any set
/// injects (for the default binding, with and without a URI of its own) is named in the README.
#[test]
fn every_name_set_and_its_variables_are_documented() {
    let readme = readme();
    for set in EnvSet::ALL {
        assert!(
            readme.contains(&format!("| `{set}` |")),
            "the README's name set table has no row for {set}"
        );
        for has_uri in [false, true] {
            let shape = BindingShape {
                alias: None,
                has_uri,
            };
            for var in set.variables(&shape).vars {
                assert!(
                    readme.contains(&format!("`{}", var.name)),
                    "{set}: {} is not in the README",
                    var.name
                );
            }
        }
    }
}

#[test]
fn every_workload_kind_is_named_in_the_readme_and_the_render_help() {
    let readme = readme();
    let help = dbbind(&["render", "--help"], "").stdout;
    for kind in WorkloadKind::ALL {
        assert!(readme.contains(kind.name()), "{kind} is not in the README");
        assert!(help.contains(kind.name()), "{kind} is not in render --help");
    }
}

#[test]
fn the_built_in_profiles_file_is_shown_as_shipped() {
    // The README links to the built-in file rather than copying it; the link must resolve.
    assert!(readme().contains("(core/src/profile/builtin.yaml)"));
    assert!(repo_path("core/src/profile/builtin.yaml").exists());
}

#[test]
fn every_serve_flag_and_its_env_var_is_in_the_readme() {
    use clap::CommandFactory;
    let readme = readme();
    let command = dbbind::cli::Cli::command();
    let serve = command.find_subcommand("serve").unwrap();
    let mut checked = 0;
    for arg in serve.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" {
            continue;
        }
        assert!(
            readme.contains(&format!("| `--{long}` |")),
            "--{long} is not in the README's flag table"
        );
        let env = arg
            .get_env()
            .unwrap_or_else(|| panic!("--{long} has no env var"))
            .to_string_lossy()
            .into_owned();
        assert!(
            readme.contains(&format!("`{env}`")),
            "{env} is not in the README"
        );
        // The default is written once, in the flag's declaration; the README shows that one.
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .filter(|value| value != "false")
            .collect();
        if let [default] = defaults.as_slice() {
            let row = format!("| `--{long}` | `{env}` | `{default}` |");
            assert!(readme.contains(&row), "the README's row is not {row}");
        }
        checked += 1;
    }
    assert!(checked >= 24, "{checked}");
}

#[test]
fn every_metric_is_in_the_readme() {
    let metrics = dbbind::metrics::Metrics::new();
    metrics.observe_binding("generic");
    let readme = readme();
    for line in metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
    {
        let name = line.split_whitespace().nth(2).unwrap();
        let exposed = if line.ends_with(" counter") {
            format!("{name}_total")
        } else {
            name.to_owned()
        };
        assert!(
            readme.contains(&format!("`{exposed}`")),
            "{exposed} is not in the README"
        );
    }
}

#[test]
fn every_design_reference_points_at_a_section_of_docs_design_md() {
    let design = std::fs::read_to_string(repo_path("docs/design.md")).unwrap();
    let sections: Vec<String> = design
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .filter_map(|heading| heading.split_once('.').map(|(n, _)| n.to_owned()))
        .collect();
    // Spelled in pieces, so this file does not match itself.
    let reference = ["docs/design.md", " §"].concat();
    let outside = [["DESIGN", " §"].concat(), ["DESIGN", ".md"].concat()];
    let mut checked = 0;
    let mut stack = vec![repo_path("")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    stack.push(path);
                }
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            assert!(
                !outside.iter().any(|cited| text.contains(cited.as_str())),
                "{}: cites a design file outside the repository",
                path.display()
            );
            for (at, _) in text.match_indices(reference.as_str()) {
                let rest = &text[at + reference.len()..];
                let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
                assert!(
                    sections.contains(&number),
                    "{}: {reference}{number} does not exist",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "only {checked} references found");
}
