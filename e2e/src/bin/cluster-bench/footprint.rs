//! The API server's and dbbind's footprint with many Secrets: memory, objects cached, the Secrets themselves.

use super::*;

/// One `dbbind serve` start: what it cached, its memory once ready, how long ready took.
pub(super) struct Footprint {
    pub(super) scope: &'static str,
    pub(super) in_cluster: usize,
    pub(super) cached: u64,
    pub(super) rss_kib: u64,
    pub(super) ready_after: Duration,
}

impl Footprint {
    pub(super) fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.2} s |",
            self.scope,
            self.in_cluster,
            self.cached,
            mib(self.rss_kib),
            self.ready_after.as_secs_f64()
        )
    }
}

/// Starts dbbind with `flags`, waits for ready, lets it settle, and reports its memory.
pub(super) async fn measure(
    plane: &ControlPlane,
    binary: &Path,
    flags: &[&str],
    scope: &'static str,
    expected: usize,
) -> Result<Footprint> {
    let mut dbbind = Dbbind::start_binary(plane, binary, flags)?;
    let ready_after = dbbind.ready_after;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cached = dbbind.cached_secrets()?;
    let rss_kib = dbbind.rss_kib()?;
    dbbind.terminate()?;
    if cached as usize != expected {
        return Err(anyhow!(
            "{scope}: {cached} Secrets cached, {expected} expected"
        ));
    }
    Ok(Footprint {
        scope,
        in_cluster: total_secrets(plane).await?,
        cached,
        rss_kib,
        ready_after,
    })
}

pub(super) async fn total_secrets(plane: &ControlPlane) -> Result<usize> {
    let client = plane.client().await?;
    let mut count = 0;
    let mut params = kube::api::ListParams::default().limit(5000);
    loop {
        let page = Api::<Secret>::all(client.clone())
            .list_metadata(&params)
            .await?;
        count += page.items.len();
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(count),
        }
    }
}

/// The generic fixture Secret (`orders-db-conn`), to be created in any namespace.
pub(super) fn fixture_secret() -> Result<Secret> {
    let mut secret: Secret = serde_yaml_ng::from_slice(&std::fs::read(
        repo_root().join("tests/fixtures/secrets/generic-external.yaml"),
    )?)?;
    secret.metadata.namespace = None;
    Ok(secret)
}

pub(super) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub(super) async fn namespace(client: &kube::Client, name: &str, opted_in: bool) -> Result<()> {
    let mut labels = serde_json::Map::new();
    if opted_in {
        let (key, value) = OPTED_IN.split_once('=').unwrap_or_default();
        labels.insert(key.to_owned(), json!(value));
    }
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    Ok(())
}

/// `count` Secrets of eight keys and two labels, created 32 at a time.
pub(super) async fn create_secrets(
    client: &kube::Client,
    namespace: &str,
    count: usize,
) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for index in 0..count {
        let permit = Arc::clone(&limit)
            .acquire_owned()
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let api = api.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let secret: Secret = serde_json::from_value(json!({
                "metadata": {
                    "name": format!("app-{index}-db"),
                    "labels": {"app.kubernetes.io/name": format!("app-{index}"), "team": format!("team-{}", index % 20)},
                },
                "stringData": {
                    "host": format!("db-{index}.example.internal"), "port": "5432",
                    "dbname": format!("app_{index}"), "username": format!("app_{index}"),
                    "password": format!("pw-{index:016x}-not-a-real-one"), "sslmode": "require",
                    "uri": format!("postgresql://app_{index}@db-{index}.example.internal:5432/app_{index}"),
                    "jdbc-uri": format!("jdbc:postgresql://db-{index}.example.internal:5432/app_{index}"),
                },
            }))?;
            api.create(&PostParams::default(), &secret).await?;
            Ok::<(), Error>(())
        });
        while let Some(done) = tasks.try_join_next() {
            done.map_err(|e| anyhow!("{e}"))??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| anyhow!("{e}"))??;
    }
    progress(&format!(
        "{count} Secrets in {namespace} in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}
