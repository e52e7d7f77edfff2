//! `dbbind profiles` and `--profiles-file`.

use crate::dbbind;
use crate::support::repo_path;

#[test]
fn the_list_names_every_profile_in_detection_order() {
    let run = dbbind(&["profiles"], "");
    assert_eq!(run.code, 0);
    let names: Vec<&str> = run
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, dbbind_core::profile::ProfileSet::builtin().names());
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("crunchy-pgbouncer  no ")),
        "{}",
        run.stdout
    );
}

#[test]
fn one_profile_prints_as_a_profiles_file_that_loads_back() {
    let run = dbbind(&["profiles", "bitnami"], "");
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.starts_with("profiles:\n- name: bitnami\n"),
        "{}",
        run.stdout
    );
    // Copy it, change it, load it: the user's version replaces the built-in.
    let changed = run.stdout.replace("default: postgres\n", "default: app\n");
    let temporary = tempfile::tempdir().unwrap();
    let dir = temporary.path().to_owned();
    let file = dir.join("profiles.yaml");
    std::fs::write(&file, changed).unwrap();
    let secret = repo_path("tests/fixtures/secrets/bitnami-custom-user.yaml");
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {dbbind.io/secret: myapp-postgresql}}\nspec: {containers: [{name: app, image: 'a:1'}]}\n";
    let run = dbbind(
        &[
            "render",
            "--profiles-file",
            file.to_str().unwrap(),
            "-f",
            "-",
            "-n",
            "shop",
            "--secret",
            secret.to_str().unwrap(),
        ],
        manifest,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("- name: POSTGRES_DB\n      value: app\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn unknown_profile_and_bad_profiles_file_exit_2() {
    let run = dbbind(&["profiles", "mysql"], "");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .starts_with("Error: unknown profile \"mysql\"; profiles: servicebinding, "),
        "{}",
        run.stderr
    );

    let run = dbbind(&["profiles", "--profiles-file", "/nonexistent.yaml"], "");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .starts_with("dbbind: cannot read profiles file /nonexistent.yaml: "),
        "{}",
        run.stderr
    );
}
