//! Starting and reloading: replicas racing on first start, an invalid profiles file.

use super::*;

pub(crate) async fn replicas_race_on_first_start(faults: &mut Faults) -> Result<()> {
    let client = faults.plane.client().await?;
    let secret = cert_secret(&client)
        .await?
        .ok_or_else(|| anyhow!("no certificate Secret after both replicas started"))?;
    let ca = &secret["ca.crt"];
    if certificates(&secret["ca-bundle.crt"]).len() != 1 {
        return Err(anyhow!("a first install's bundle holds one CA"));
    }
    for replica in &faults.replicas {
        if !serves_certificate_of(replica.listen_port, ca).await {
            return Err(anyhow!(
                "replica on port {} does not serve a certificate of the stored CA",
                replica.listen_port
            ));
        }
    }
    let bundles = ca_bundles(&client).await?;
    if bundles.len() < 2 || bundles.iter().any(|b| b != &secret["ca-bundle.crt"]) {
        return Err(anyhow!(
            "both configurations should trust exactly the stored bundle; {} webhooks, {} equal",
            bundles.len(),
            bundles
                .iter()
                .filter(|b| *b == &secret["ca-bundle.crt"])
                .count()
        ));
    }
    expect_bound(&client, GENERIC_SECRET, "host").await?;
    every_replica_binds(faults, ca, "race").await
}

pub(crate) async fn invalid_profiles_file_keeps_the_old_profiles(
    faults: &mut Faults,
) -> Result<()> {
    let client = faults.plane.client().await?;
    expect_bound(&client, "acme-db", "server").await?;

    // A ConfigMap update swaps the file whole: write beside it, then rename.
    let swap = |text: &str| -> Result<()> {
        let next = faults.profiles_file.with_extension("next");
        std::fs::write(&next, text)?;
        Ok(std::fs::rename(&next, &faults.profiles_file)?)
    };
    swap("profiles:\n- name: acme\n  fields: [this is not a mapping\n")?;
    let valid = |value: u8| {
        let line = format!("\ndbbind_profiles_file_valid {value}\n");
        move |replica: &Dbbind| {
            replica
                .admin_get("/metrics")
                .is_ok_and(|(_, m)| m.contains(&line))
        }
    };
    poll::until_sync(
        "dbbind_profiles_file_valid 0 on both replicas",
        Duration::from_secs(20),
        || Ok(faults.replicas.iter().all(valid(0))),
    )
    .await?;
    for replica in &faults.replicas {
        if !replica.log().contains("profiles file not reloaded") {
            return Err(anyhow!(
                "replica on port {} did not log why the profiles file was not reloaded",
                replica.listen_port
            ));
        }
    }
    // The previous profiles stay in effect.
    expect_bound(&client, "acme-db", "server").await?;

    swap(PROFILES)?;
    poll::until_sync(
        "dbbind_profiles_file_valid 1 again",
        Duration::from_secs(20),
        || Ok(faults.replicas.iter().all(valid(1))),
    )
    .await?;
    Ok(())
}
