//! Admission latency: pod creates through the API server, and h2load against dbbind directly.

use super::*;

pub(super) struct Latencies(Vec<Duration>);

impl Latencies {
    pub(super) fn mean_ms(&self) -> f64 {
        let total: Duration = self.0.iter().sum();
        total.as_secs_f64() * 1000.0 / self.0.len().max(1) as f64
    }

    pub(super) fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
}

/// Creates `count` pods with these annotations one after another; the latency of each create.
pub(super) async fn create_pods(
    client: &kube::Client,
    namespace: &str,
    annotations: &[(&str, &str)],
    count: usize,
) -> Result<Latencies> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let annotations: serde_json::Map<String, serde_json::Value> = annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"generateName": "bench-", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/orders:1.0"}]},
    }))?;
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let sent = Instant::now();
        api.create(&PostParams::default(), &pod).await?;
        latencies.push(sent.elapsed());
    }
    Ok(Latencies(latencies))
}

/// One h2load run: throughput, per-request latencies, body bytes per response, failures.
pub(super) struct H2load {
    pub(super) rate: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) bytes: f64,
    pub(super) failed: u64,
}

impl H2load {
    pub(super) fn row(&self, name: &str, floor: &H2load) -> String {
        format!(
            "| {name} | {:.0} | {:.2} | {:.2} ms | {:.2} ms | {:.0} | {:.2} | {} |",
            self.rate,
            floor.rate / self.rate,
            self.p50_ms,
            self.p99_ms,
            self.bytes,
            self.bytes / floor.bytes,
            self.failed
        )
    }
}

/// The load's bind body must really be answered with a patch, or the comparison is void.
pub(super) fn answers_with_a_patch(url: &str, body: &str) -> Result<()> {
    let output = Command::new("curl")
        .args([
            "-sk",
            "--http2",
            "-H",
            "content-type: application/json",
            "--data-binary",
        ])
        .arg(format!("@{}", repo_root().join(body).display()))
        .arg(url)
        .output()?;
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let response = &answer["response"];
    if response["allowed"] == true && response["patch"].is_string() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&output.stdout);
        Err(anyhow!(
            "{url} did not answer the bind body with a patch: {}",
            text.chars().take(300).collect::<String>()
        ))
    }
}

pub(super) fn h2load(url: &str, body: &str) -> Result<H2load> {
    let log = tempfile::NamedTempFile::new()?;
    let output = Command::new("h2load")
        .args([
            "-n",
            "20000",
            "-c",
            "8",
            "-m",
            "1",
            "-H",
            "content-type: application/json",
            "-d",
        ])
        .arg(repo_root().join(body))
        .arg(format!("--log-file={}", log.path().display()))
        .arg(url)
        .output()
        .map_err(|e| anyhow!("h2load (Debian's nghttp2-client): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    parse_h2load(&text, &std::fs::read_to_string(log.path())?)
        .ok_or_else(|| anyhow!("cannot read h2load's report:\n{text}"))
}

pub(super) fn parse_h2load(report: &str, log: &str) -> Option<H2load> {
    let after = |line_start: &str| {
        report
            .lines()
            .find_map(|l| l.trim().strip_prefix(line_start))
    };
    let finished = after("finished in ")?;
    let rate: f64 = finished
        .split(", ")
        .nth(1)?
        .strip_suffix(" req/s")?
        .parse()
        .ok()?;
    // requests: 20000 total, 20000 started, 20000 done, 20000 succeeded, 0 failed, 0 errored, 0 timeout
    let requests: Vec<u64> = after("requests: ")?
        .split(", ")
        .filter_map(|part| part.split(' ').next()?.parse().ok())
        .collect();
    // traffic: 4.30MB (4510000) total, 212.00KB (217088) headers (space savings 94.63%), 3.96MB (4150000) data
    let data: f64 = after("traffic: ")?
        .rsplit('(')
        .next()?
        .split(')')
        .next()?
        .parse()
        .ok()?;
    let mut micros: Vec<u64> = log
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2)?.parse().ok())
        .collect();
    micros.sort_unstable();
    let pct = |p: f64| {
        let index = ((micros.len() as f64 - 1.0) * p).round() as usize;
        micros.get(index).map_or(0.0, |m| *m as f64 / 1000.0)
    };
    Some(H2load {
        rate,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        bytes: data / *requests.get(2)? as f64,
        failed: requests.get(4)? + requests.get(5)?,
    })
}
