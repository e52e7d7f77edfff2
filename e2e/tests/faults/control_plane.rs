//! The API server killed and restarted, etcd paused: admission answers from the cache.

use super::*;

/// Every 0.5 s for `rounds` rounds, each replica binds a review sent straight to it.
pub(crate) async fn answered_from_cache(
    faults: &Faults,
    roots: &str,
    label: &str,
    rounds: u32,
) -> Result<()> {
    for round in 0..rounds {
        every_replica_binds(faults, roots, &format!("{label}-{round}")).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

pub(crate) async fn api_server_restart(faults: &mut Faults) -> Result<()> {
    let client = faults.plane.client().await?;
    let roots = stored_bundle(&client).await?;
    faults.plane.kill_apiserver();
    // While it is down, admissions are answered from what the cache holds.
    answered_from_cache(faults, &roots, "apiserver-down", 10).await?;
    faults.plane.start_apiserver_again(2)?;
    let recovered = new_secret_becomes_bindable(faults, "after-restart").await?;
    if !faults.logs().contains("Secret watch failed") {
        return Err(anyhow!(
            "no replica logged the Secret watch failing while the API server was down"
        ));
    }
    eprintln!(
        "API server down 5 s: every admission answered; a new Secret bindable {recovered:?} after the restart"
    );
    Ok(())
}

pub(crate) async fn etcd_paused(faults: &mut Faults) -> Result<()> {
    let client = faults.plane.client().await?;
    let roots = stored_bundle(&client).await?;
    faults.plane.pause_etcd()?;
    let answered = answered_from_cache(faults, &roots, "etcd-paused", 16).await;
    faults.plane.resume_etcd()?;
    answered?;
    let recovered = new_secret_becomes_bindable(faults, "after-etcd-pause").await?;
    eprintln!(
        "etcd paused 8 s: every admission answered; a new Secret bindable {recovered:?} after it resumed"
    );
    Ok(())
}
