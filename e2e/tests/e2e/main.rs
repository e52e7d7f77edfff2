//! The end-to-end suite: a real kube-apiserver, kube-controller-manager and etcd, a real node
//! (kubelet, kube-scheduler, containerd, runc), a real PostgreSQL, and dbbind installed by its
//! chart. One environment serves every check (`dbbind_e2e::trials`); the examples' scenarios
//! run first, then the checks, one at a time, in order: the last one stops dbbind.

use dbbind_e2e::scenarios::{self, Environment, SCENARIOS};
use dbbind_e2e::trials::{self, Check};

mod checks;

fn main() {
    let scenarios = SCENARIOS.iter().map(|scenario| {
        Check::new(
            format!("scenario::{}", scenario.name),
            move |environment: &mut Environment| {
                Box::pin(async move {
                    let client = environment.plane.client().await?;
                    scenarios::run(environment, &client, scenario).await?;
                    Ok(())
                })
            },
        )
    });
    trials::run(
        "end-to-end",
        Environment::start,
        scenarios.chain(checks::all()).collect(),
    )
}
