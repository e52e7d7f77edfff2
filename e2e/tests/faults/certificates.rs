//! The certificate Secret deleted under traffic is regenerated.

use super::*;

pub(crate) async fn deleted_certificate_secret_is_regenerated(faults: &mut Faults) -> Result<()> {
    let client = faults.plane.client().await?;
    let before = cert_secret(&client)
        .await?
        .ok_or_else(|| anyhow!("no certificate Secret"))?;
    let prober = Prober::start(client.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;

    faults
        .plane
        .kubectl_run(&["delete", "secret", CERT_SECRET, "-n", "dbbind"], None)?;
    // Until both replicas serve the new certificate, every one of them must serve a certificate
    // the webhook configuration trusts, read just before.
    let started = Instant::now();
    let mut untrusted = Vec::new();
    let after = loop {
        let bundles = ca_bundles(&client).await?;
        let trusted = bundles.first().map(String::as_str).unwrap_or_default();
        for replica in &faults.replicas {
            if !serves_certificate_of(replica.listen_port, trusted).await {
                untrusted.push(format!(
                    "{:?} after the deletion, replica on port {} served a certificate the caBundle did not trust",
                    started.elapsed(),
                    replica.listen_port
                ));
            }
        }
        if let Some(after) = cert_secret(&client).await?
            && after["ca.crt"] != before["ca.crt"]
        {
            let mut all = true;
            for replica in &faults.replicas {
                all &= serves_certificate_of(replica.listen_port, &after["ca.crt"]).await;
            }
            let bundles = ca_bundles(&client).await?;
            if all && bundles.iter().all(|b| b == &after["ca-bundle.crt"]) {
                break after;
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            let (_, failures) = prober.finish().await?;
            return Err(anyhow!(
                "the certificate Secret was not regenerated and served within 30 s; failures: {failures:?}\n{}",
                faults.logs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recovered = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (created, failures) = prober.finish().await?;

    let mut problems = Vec::new();
    // The old CA stays trusted until it expires: a replica slow to notice keeps being trusted.
    let bundle = certificates(&after["ca-bundle.crt"]);
    let old_ca = certificates(&before["ca.crt"]);
    if !bundle.contains(&old_ca[0]) || bundle.len() != 2 {
        problems.push(format!(
            "the regenerated bundle should hold the new CA and the old one; it holds {} CAs",
            bundle.len()
        ));
    }
    if created < 10 {
        problems.push(format!("only {created} Pods created"));
    }
    problems.extend(failures.iter().map(|f| format!("a Pod create failed: {f}")));
    problems.extend(untrusted);
    if !problems.is_empty() {
        return Err(anyhow!("{}", problems.join("\n")));
    }
    every_replica_binds(faults, &after["ca.crt"], "regenerated").await?;
    eprintln!(
        "certificate Secret deleted: regenerated and served by both replicas after {recovered:?}; {created} Pods created meanwhile, 0 failed"
    );
    Ok(())
}
