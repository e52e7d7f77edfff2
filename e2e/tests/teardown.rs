//! Ctrl-C on the demo leaves nothing behind. The demo is started as a terminal starts it, in a
//! process group of its own, with one example running on the node; once it keeps the cluster
//! running, SIGINT goes to the whole group (as a terminal sends it: the daemons get it too).
//! Afterwards no process of its test bed runs (no daemon, shim or container process), nothing
//! is mounted under its directories, its bridge and its route to the Service range are gone,
//! and so are its directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dbbind_e2e::node::{processes_mentioning, runc_root, running_containers};
use dbbind_e2e::tools::mounts_under;

/// What the demo says of its test bed: `==> test bed: control plane DIR, node DIR, pod network
/// SUBNET on bridge NAME`.
struct TestBed {
    plane: PathBuf,
    node: PathBuf,
    bridge: String,
}

fn parse_test_bed(line: &str) -> Option<TestBed> {
    let rest = line.strip_prefix("==> test bed: control plane ")?;
    let (plane, rest) = rest.split_once(", node ")?;
    let (node, rest) = rest.split_once(", pod network ")?;
    let (_, bridge) = rest.split_once(" on bridge ")?;
    Some(TestBed {
        plane: plane.into(),
        node: node.into(),
        bridge: bridge.trim().to_owned(),
    })
}

/// The pid namespaces of the node's containers, from runc's state: a process in one of them
/// after the teardown is a container process left running.
fn container_pid_namespaces(node: &std::path::Path) -> Vec<String> {
    running_containers(&runc_root(node))
        .into_iter()
        .filter_map(|(_, pid)| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok())
        .map(|ns| ns.display().to_string())
        .collect()
}

/// Processes (pid, command line) in one of `namespaces`.
fn processes_in(namespaces: &[String]) -> Vec<(u32, String)> {
    let host = std::fs::read_link("/proc/self/ns/pid")
        .unwrap()
        .display()
        .to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_string_lossy().parse().ok()?;
            let ns = std::fs::read_link(entry.path().join("ns/pid")).ok()?;
            let ns = ns.display().to_string();
            (ns != host && namespaces.contains(&ns)).then(|| {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                (pid, String::from_utf8_lossy(&cmdline).replace('\0', " "))
            })
        })
        .collect()
}

/// The harness's directories in the temporary directory (`dbbind-e2e-…`, `dbbind-node-…`,
/// `dbbind-pg-…`).
fn run_dirs() -> std::collections::BTreeSet<String> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("dbbind-"))
        .collect()
}

#[test]
fn ctrl_c_on_the_demo_leaves_nothing_behind() {
    let dirs_before = run_dirs();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--keep", "--only", "cnpg"])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = demo.id();
    // The test bed's directories come on stderr, the "keeps running" line on stdout.
    let stderr = BufReader::new(demo.stderr.take().unwrap());
    let (beds, bed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in stderr.lines().map_while(Result::ok) {
            eprintln!("demo: {line}");
            if !sent && let Some(test_bed) = parse_test_bed(&line) {
                let _ = beds.send(test_bed);
                sent = true;
            }
        }
    });
    let stdout = BufReader::new(demo.stdout.take().unwrap());
    let (ready, running) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            println!("demo: {line}");
            if line.contains("The cluster keeps running") {
                let _ = ready.send(());
            }
        }
    });
    let bed = bed
        .recv_timeout(Duration::from_secs(1800))
        .expect("the demo never said where its test bed is");
    running
        .recv_timeout(Duration::from_secs(900))
        .expect("the demo never kept its cluster running");
    let namespaces = container_pid_namespaces(&bed.node);
    assert!(
        !processes_in(&namespaces).is_empty(),
        "no container process found before the signal: the check would prove nothing"
    );
    assert!(
        !mounts_under(&bed.node).is_empty(),
        "no mounts before the signal"
    );

    // Ctrl-C, as a terminal sends it: to the whole process group.
    let signalled = Command::new("kill")
        .args(["-INT", "--", &format!("-{pid}")])
        .status()
        .unwrap();
    assert!(signalled.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = demo.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the demo did not stop within 60 s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "the demo exited ({status}) {:?} after SIGINT",
        started.elapsed()
    );
    // Its daemons got the signal too; give stragglers a moment before looking.
    std::thread::sleep(Duration::from_secs(2));

    let mut left: Vec<String> = Vec::new();
    for dir in [&bed.node, &bed.plane] {
        left.extend(
            processes_mentioning(dir)
                .into_iter()
                .map(|(pid, cmdline)| format!("process {pid}: {cmdline}")),
        );
        left.extend(
            mounts_under(dir)
                .into_iter()
                .map(|point| format!("mount {point}")),
        );
        if dir.exists() {
            left.push(format!("directory {}", dir.display()));
        }
    }
    left.extend(
        processes_in(&namespaces)
            .into_iter()
            .map(|(pid, cmdline)| format!("container process {pid}: {cmdline}")),
    );
    let link = Command::new("ip")
        .args(["link", "show", &bed.bridge])
        .output()
        .unwrap();
    if link.status.success() {
        left.push(format!("bridge {}", bed.bridge));
    }
    let routes = Command::new("ip")
        .args(["route", "show", "table", "main"])
        .output()
        .unwrap();
    left.extend(
        String::from_utf8_lossy(&routes.stdout)
            .lines()
            .filter(|line| line.starts_with("unreachable 10.0.0.0/24"))
            .map(|line| format!("route {line}")),
    );
    left.extend(
        run_dirs()
            .difference(&dirs_before)
            .map(|name| format!("directory {name}")),
    );
    assert!(
        left.is_empty(),
        "left behind after Ctrl-C:\n{}",
        left.join("\n")
    );
}
