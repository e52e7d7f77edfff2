//! Leader election for rotation: one leader, and a hand-over when it stops.

use super::*;

/// Waits until exactly one of the replicas still present leads; returns its index.
pub(crate) async fn sole_leader(
    replicas: &[Option<Leadership>],
    within: Duration,
) -> Result<usize> {
    let started = Instant::now();
    loop {
        let leading: Vec<usize> = (0..replicas.len())
            .filter(|&i| replicas[i].as_ref().is_some_and(Leadership::is_leader))
            .collect();
        if let [only] = leading.as_slice() {
            return Ok(*only);
        }
        if leading.len() > 1 {
            return Err(anyhow!("{} replicas lead at once", leading.len()));
        }
        if started.elapsed() > within {
            return Err(anyhow!("no leader within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The rotation controller's leader election on a real Lease: one of three leads; when the
/// leader leaves (its Lease released) or dies (its Lease left to run out), exactly one other
/// takes over, within about one Lease duration: the candidates wait for the expiry they read.
pub(crate) async fn one_leader_and_hand_over(faults: &mut Faults) -> Result<()> {
    let client = faults.plane.client().await?;
    let settings = |identity: &str| LeaseSettings {
        namespace: "dbbind".to_owned(),
        name: "dbbind-rotation".to_owned(),
        identity: identity.to_owned(),
        duration: Duration::from_secs(4),
        grace: Duration::from_secs(2),
    };
    let mut replicas = Vec::new();
    for identity in ["replica-a", "replica-b", "replica-c"] {
        replicas.push(Some(
            Leadership::join(client.clone(), &settings(identity))
                .await
                .map_err(|e| anyhow!("{e}"))?,
        ));
    }
    let first = sole_leader(&replicas, Duration::from_secs(20)).await?;
    // Leaving on shutdown.
    let left = Instant::now();
    if let Some(leader) = replicas[first].take() {
        leader
            .leave(Duration::from_secs(5))
            .await
            .map_err(|e| anyhow!("{e}"))?;
    }
    let second = sole_leader(&replicas, Duration::from_secs(20)).await?;
    let handed_over = left.elapsed();

    // Dying: no release; the survivor leads once the Lease has run out (4 s).
    let died = Instant::now();
    if let Some(leader) = replicas[second].take() {
        leader.abandon();
    }
    sole_leader(&replicas, Duration::from_secs(30)).await?;
    let took_over = died.elapsed();
    eprintln!(
        "Lease (4 s): a leader that left was replaced after {handed_over:?}, one that died after {took_over:?}"
    );
    // The Lease's duration, plus the up to 1 s a candidate waits after forcing an expired
    // Lease free, plus the API server's round trips.
    let bound = Duration::from_secs(4 + 3);
    if handed_over > bound || took_over > bound {
        return Err(anyhow!(
            "leadership moved after {handed_over:?} (left) and {took_over:?} (died); a 4 s Lease should move within {bound:?}"
        ));
    }
    for leadership in replicas.into_iter().flatten() {
        leadership
            .leave(Duration::from_secs(5))
            .await
            .map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}
