//! Idle connections flooding one replica are shed; clients are still served.

use super::*;

/// Idle TLS connections opened against one replica (`--max-connections` 1,024 and
/// `--header-read-timeout` 5 s, the defaults).
pub(crate) const IDLE_CONNECTIONS: usize = 5_000;

/// What became of an idle connection.
pub(crate) enum Idle {
    /// Closed before its handshake finished: room made for a newer connection.
    ClosedInHandshake,
    /// Held open after the handshake for this long, until the server closed it.
    Held(Duration),
}

/// Opens a TLS connection, sends nothing, and waits for the server to close it.
pub(crate) async fn idle_connection(port: u16, roots: Arc<str>) -> Idle {
    use tokio::io::AsyncReadExt;
    let Ok(mut tls) = connect_verified(port, &roots).await else {
        return Idle::ClosedInHandshake;
    };
    let opened = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(60), tls.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return Idle::Held(opened.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// 5,000 idle TLS connections against one replica: its cap holds (memory bounded), each held
/// connection is closed by the first-byte timeout or to make room, and a real client is served
/// by the flooded replica all through the flood, not only after it.
pub(crate) async fn idle_connections_are_shed(faults: &mut Faults) -> Result<()> {
    let client = faults.plane.client().await?;
    let roots: Arc<str> = stored_bundle(&client).await?.into();
    // The flood's sockets are this process's; a failed connect must not pass for a refusal.
    dbbind_e2e::tools::enough_open_files(IDLE_CONNECTIONS + 2_000)?;
    let (target, other) = (&faults.replicas[0], &faults.replicas[1]);
    let port = target.listen_port;
    let before = target.rss_kib()?;
    let started = Instant::now();
    let mut flood = tokio::task::JoinSet::new();
    // 200 handshakes in flight at a time, as fast as the two cores allow.
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    for _ in 0..IDLE_CONNECTIONS {
        let (roots, gate) = (Arc::clone(&roots), Arc::clone(&gate));
        flood.spawn(async move {
            let permit = gate.acquire_owned().await;
            let idle = idle_connection(port, roots);
            drop(permit);
            idle.await
        });
    }
    replica_binds(other, &roots, "during-flood").await?;
    let mut peak = before;
    // Every 200 ms while the flood lasts, the flooded replica binds a pod.
    let (mut probes, mut failed_probes) = (0, Vec::new());
    let (mut in_a_row, mut most_in_a_row) = (0, 0);
    let (mut closed_in_handshake, mut held) = (0, Vec::new());
    while !flood.is_empty() {
        peak = peak.max(target.rss_kib()?);
        probes += 1;
        if let Err(error) = replica_binds(target, &roots, &format!("flood-{probes}")).await {
            failed_probes.push(format!("{:?}: {error}", started.elapsed()));
            in_a_row += 1;
            most_in_a_row = most_in_a_row.max(in_a_row);
        } else {
            in_a_row = 0;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        while let Some(done) = flood.try_join_next() {
            match done.map_err(|e| anyhow!("idle connection task: {e}"))? {
                Idle::ClosedInHandshake => closed_in_handshake += 1,
                Idle::Held(open) => held.push(open),
            }
        }
        if started.elapsed() > Duration::from_secs(180) {
            return Err(anyhow!("5,000 idle connections not shed within 180 s"));
        }
    }
    let flood_lasted = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = target.rss_kib()?;
    replica_binds(target, &roots, "after-flood").await?;
    let longest = held.iter().max().copied().unwrap_or_default();
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "{IDLE_CONNECTIONS} idle connections in {flood_lasted:?}: {} held after their handshake (the longest {longest:?}), {closed_in_handshake} closed in their handshake; the flooded replica bound {} of {probes} pods meanwhile; RSS {} MiB before, {} MiB at the peak, {} MiB after",
        held.len(),
        probes - failed_probes.len(),
        before / 1024,
        peak / 1024,
        after / 1024
    );
    // Each held connection is closed by --header-read-timeout (5 s) after its handshake, or
    // sooner to make room.
    if longest > Duration::from_secs(8) {
        return Err(anyhow!(
            "an idle connection was held {longest:?}, beyond --header-read-timeout"
        ));
    }
    // The cap bounds memory: 1,024 connections of about 25 KiB, whatever the flood.
    if growth_mib > 64 {
        return Err(anyhow!("RSS grew by {growth_mib} MiB under the flood"));
    }
    // Served all through the flood, not only after it (before connections made room, the
    // replica answered nothing until the idle ones timed out, 5 s in). The flood's 200
    // handshakes at a time saturate both cores, client and server alike, so a probe's own
    // handshake can now and then starve past a second and be taken for a silent one: a
    // probe may fail, never two in a row, and nine in ten must pass.
    for failure in &failed_probes {
        eprintln!("a probe during the flood failed: {failure}");
    }
    if most_in_a_row > 1 || failed_probes.len() * 10 > probes {
        return Err(anyhow!(
            "the flooded replica failed {} of {probes} admissions during the flood ({most_in_a_row} in a row): {}",
            failed_probes.len(),
            failed_probes.join("; ")
        ));
    }
    Ok(())
}
