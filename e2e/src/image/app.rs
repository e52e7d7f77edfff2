//! The app image: real, unmodified clients (psql, pgx, node-postgres, the JVM drivers, psycopg and Django) and busybox for a shell.

use super::*;

/// Busybox applets the checks use, as links to `/bin/busybox`.
pub(super) const APPLETS: [&str; 17] = [
    "sh", "sleep", "cat", "ls", "stat", "id", "env", "test", "[", "tr", "head", "sed", "grep",
    "printf", "echo", "sort", "true",
];

/// Where the app image keeps node-postgres and its check (`check.js`).
pub const NODE_POSTGRES_DIR: &str = "usr/lib/dbbind/node-postgres";

/// Where the app image keeps the JVM checks' jars (`java -cp '<dir>/*'`).
pub const JVM_LIB_DIR: &str = "usr/lib/dbbind/jvm/lib";

/// Where the app image keeps the Java runtime (`<dir>/bin/java`).
pub const JVM_RUNTIME_DIR: &str = "usr/lib/dbbind/jvm/runtime";

/// Where the app image keeps the Python packages and checks (`PYTHONPATH`).
pub const PYTHON_DIR: &str = "usr/lib/dbbind/python";

/// The UTF-8 locale the image's `LANG` names.
pub(super) const C_UTF8: &str = "/usr/lib/locale/C.utf8";

/// Debian's Python, which the Python drivers' wheels (CPython 3.11) are installed for.
pub(super) const PYTHON: &str = "/usr/bin/python3.11";

/// Its standard library.
pub(super) const PYTHON_STDLIB: &str = "/usr/lib/python3.11";

/// Parts of the standard library no check imports (the static libpython alone is 25 MB).
pub(super) const PYTHON_STDLIB_LEFT_OUT: &[&str] = &[
    "config-3.11-x86_64-linux-gnu",
    "dist-packages",
    "ensurepip",
    "idlelib",
    "lib2to3",
    "pydoc_data",
    "site-packages",
    "test",
    "tkinter",
    "turtledemo",
];

/// Java runtime libraries for a display or sound: no check loads them, and `ldd` would pull in
/// X11 for them.
pub(super) const JVM_DESKTOP_LIBRARIES: &[&str] = &[
    "libawt",
    "libfontmanager",
    "libjawt",
    "libjavajpeg",
    "libjsound",
    "liblcms",
    "libmlib_image",
    "libsplashscreen",
];

/// The app image: busybox, psql, pgx-check, node and node-postgres, the Java runtime and the JVM
/// checks, Python and its packages, with the libraries they need; users for non-root checks,
/// and the database CA where libpq looks for it by default (`~/.postgresql/root.crt`, for
/// root). `drivers` is what `scripts/drivers` built.
pub fn write_app(psql: &Path, drivers: &Path, database_ca: &str, out: &Path) -> Result<()> {
    let node = which(
        "node",
        "Node.js (the machine's own; scripts/drivers needs its npm too)",
    )?;
    let python = PathBuf::from(PYTHON);
    if !python.is_file() {
        return Err(anyhow!(
            "{PYTHON} not found: install Debian's python3.11 (.ci/run does)"
        ));
    }
    let mut entries = vec![
        Entry::Dir("tmp".to_owned()),
        Entry::HostFile {
            path: "bin/busybox".to_owned(),
            host: which("busybox", "Debian's busybox-static package (.ci/run does)")?,
            mode: 0o755,
        },
        Entry::HostFile {
            path: "usr/bin/psql".to_owned(),
            host: psql.to_owned(),
            mode: 0o755,
        },
        Entry::HostFile {
            path: "usr/bin/pgx-check".to_owned(),
            host: drivers.join("pgx-check"),
            mode: 0o755,
        },
        Entry::HostFile {
            path: "usr/bin/node".to_owned(),
            host: node.clone(),
            mode: 0o755,
        },
        Entry::HostFile {
            path: "usr/bin/python3".to_owned(),
            host: python.clone(),
            mode: 0o755,
        },
        Entry::Text {
            path: "etc/passwd".to_owned(),
            text: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n".to_owned(),
        },
        Entry::Text {
            path: "root/.postgresql/root.crt".to_owned(),
            text: database_ca.to_owned(),
        },
        Entry::Text {
            path: "etc/group".to_owned(),
            text: "root:x:0:\napp:x:1000:\ndb:x:2000:\nnogroup:x:65534:\n".to_owned(),
        },
    ];
    for applet in APPLETS {
        entries.push(Entry::Symlink {
            path: format!("bin/{applet}"),
            target: "busybox".to_owned(),
        });
    }
    tree(
        &drivers.join("node-postgres"),
        NODE_POSTGRES_DIR,
        &[],
        &mut entries,
    )?;
    tree(&drivers.join("jvm/lib"), JVM_LIB_DIR, &[], &mut entries)?;
    let jvm = drivers.join("jvm/runtime");
    tree(&jvm, JVM_RUNTIME_DIR, &[], &mut entries)?;
    tree(&drivers.join("python"), PYTHON_DIR, &[], &mut entries)?;
    // The locale `LANG` names (Debian's libc-bin ships it; glibc has no built-in C.UTF-8).
    tree(
        Path::new(C_UTF8),
        C_UTF8.trim_start_matches('/'),
        &[],
        &mut entries,
    )?;
    let stdlib = Path::new(PYTHON_STDLIB);
    tree(
        stdlib,
        PYTHON_STDLIB.trim_start_matches('/'),
        PYTHON_STDLIB_LEFT_OUT,
        &mut entries,
    )?;

    // What the binaries and the native modules they load link to, from the host's system
    // directories (libraries shipped inside a tree, like psycopg's, come with the tree).
    let mut linked = vec![psql.to_owned(), node, python, jvm.join("bin/java")];
    linked.extend(shared_objects(&jvm.join("lib"), JVM_DESKTOP_LIBRARIES)?);
    linked.extend(shared_objects(&stdlib.join("lib-dynload"), &[])?);
    linked.extend(shared_objects(&drivers.join("python/psycopg_binary"), &[])?);
    let mut needed = BTreeSet::new();
    for binary in &linked {
        needed.extend(
            libraries(binary)?
                .into_iter()
                .filter(|library| is_system_library(library)),
        );
    }
    for library in needed {
        entries.push(Entry::HostFile {
            path: library.trim_start_matches('/').to_owned(),
            host: PathBuf::from(&library),
            mode: 0o755,
        });
    }
    let config = Config {
        entrypoint: &["/bin/sh"],
        cmd: &[],
        user: None,
        // A UTF-8 locale, as the JDK's and Python's official images set: without one the JVM
        // decodes the environment as ASCII and a non-ASCII password arrives mangled (seen:
        // pgjdbc's and Spring Boot's logins failed with `é` in the password, also with LANG
        // set while the locale's files were missing from the image).
        env: vec![
            DEFAULT_PATH.to_owned(),
            "LANG=C.UTF-8".to_owned(),
            // Where the image's Python packages are, as `pip install` in an image would.
            format!("PYTHONPATH=/{PYTHON_DIR}"),
        ],
        ports: &[],
    };
    write_archive(&[APP_IMAGE], &entries, &config, out)
}
