//! The end-to-end suite: a real kube-apiserver, kube-controller-manager and etcd, a real node
//! (kubelet, kube-scheduler, containerd, runc), a real PostgreSQL, and `dbbind serve`
//! registered as the webhook. One environment serves every test;
//! it is torn down when main returns, whatever the tests did. Tests run one at a time, in order:
//! the last one stops dbbind.

use std::sync::Arc;

use dbbind_e2e::scenarios::{self, Environment, SCENARIOS};
use libtest_mimic::{Arguments, Failed, Trial};
use tokio::runtime::Runtime;

mod checks;

fn main() {
    dbbind_e2e::process::stop_all_on_signal();
    let mut arguments = Arguments::from_args();
    arguments.test_threads = Some(1);
    let runtime = Arc::new(Runtime::new().expect("a tokio runtime"));
    let environment = match Environment::start() {
        Ok(environment) => Arc::new(std::sync::Mutex::new(environment)),
        Err(error) => {
            eprintln!("the end-to-end environment did not start: {error}");
            std::process::exit(1);
        }
    };

    let mut trials = Vec::new();
    for scenario in SCENARIOS {
        let (runtime, environment) = (Arc::clone(&runtime), Arc::clone(&environment));
        trials.push(Trial::test(
            format!("scenario::{}", scenario.name),
            move || {
                let environment = environment
                    .lock()
                    .map_err(|_| Failed::from("environment poisoned"))?;
                runtime.block_on(async {
                    let client = environment.plane.client().await?;
                    scenarios::run(&environment, &client, scenario).await
                })?;
                Ok(())
            },
        ));
    }
    for (name, check) in checks::ALL {
        let (runtime, environment) = (Arc::clone(&runtime), Arc::clone(&environment));
        trials.push(Trial::test(format!("check::{name}"), move || {
            let mut environment = environment
                .lock()
                .map_err(|_| Failed::from("environment poisoned"))?;
            runtime
                .block_on(check(&mut environment))
                .map_err(|e| Failed::from(e.to_string()))
        }));
    }

    let conclusion = libtest_mimic::run(&arguments, trials);
    drop(environment);
    conclusion.exit();
}
