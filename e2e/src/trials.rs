//! The one runner of the suites that share an environment (`e2e`, `faults`): their checks run
//! one at a time, in order, on one environment, started by the first check that runs (so
//! `--list` or a filter matching nothing starts nothing) and torn down before the process
//! exits, whatever the checks did. libtest-mimic gives them cargo test's filters and output.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use libtest_mimic::{Arguments, Failed, Trial};
use tokio::runtime::Runtime;

use crate::Result;

/// What a check returns: a future borrowing the environment.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + 'a>>;

type Run<E> = Box<dyn for<'a> Fn(&'a mut E) -> CheckFuture<'a> + Send + Sync>;

/// One check of a suite: its name, as `cargo test` filters and prints it, and what it does.
pub struct Check<E> {
    name: String,
    run: Run<E>,
}

impl<E> Check<E> {
    pub fn new(
        name: impl Into<String>,
        run: impl for<'a> Fn(&'a mut E) -> CheckFuture<'a> + Send + Sync + 'static,
    ) -> Check<E> {
        Check {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

/// The environment: not started yet, started, or failed to start (every check then fails
/// with the reason).
enum State<E> {
    NotStarted(Option<Box<dyn FnOnce() -> Result<E> + Send>>),
    Started(E),
    Failed(String),
}

/// Runs `checks` in order on the environment `start` makes; exits with libtest's status.
pub fn run<E: Send + 'static>(
    suite: &str,
    start: impl FnOnce() -> Result<E> + Send + 'static,
    checks: Vec<Check<E>>,
) -> ! {
    crate::process::stop_all_on_signal();
    let mut arguments = Arguments::from_args();
    arguments.test_threads = Some(1);
    let runtime = match Runtime::new() {
        Ok(runtime) => Arc::new(runtime),
        Err(error) => {
            eprintln!("cannot start a tokio runtime: {error}");
            std::process::exit(1);
        }
    };
    let state = Arc::new(Mutex::new(State::NotStarted(Some(Box::new(start)))));
    let suite = suite.to_owned();
    let trials = checks
        .into_iter()
        .map(|check| {
            let (runtime, state, suite) = (Arc::clone(&runtime), Arc::clone(&state), suite.clone());
            Trial::test(check.name, move || {
                let mut state = state
                    .lock()
                    .map_err(|_| Failed::from("the environment is poisoned"))?;
                if let State::NotStarted(start) = &mut *state {
                    let start = start.take().ok_or("the environment is starting twice")?;
                    *state = match start() {
                        Ok(environment) => State::Started(environment),
                        Err(error) => State::Failed(format!(
                            "the {suite} environment did not start: {error:#}"
                        )),
                    };
                }
                match &mut *state {
                    State::Started(environment) => runtime
                        .block_on((check.run)(environment))
                        .map_err(|error| Failed::from(format!("{error:#}"))),
                    State::Failed(reason) => Err(Failed::from(reason.clone())),
                    State::NotStarted(_) => Err(Failed::from("the environment did not start")),
                }
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&arguments, trials);
    // Dropped here, before exit: the environment's teardown runs.
    drop(state);
    conclusion.exit()
}
