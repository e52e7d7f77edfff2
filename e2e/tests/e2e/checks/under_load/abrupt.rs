//! Abrupt events under load: a process killed, a flood of idle connections.

use super::*;

/// The process of the replica the API server is calling killed (SIGKILL): the kubelet restarts
/// its container. Under load.
///
/// The one failure no webhook behind a Service can prevent, and the only one excused: until
/// the kubelet notices the dead container (its next relist, up to a second) and the endpoint is
/// marked not ready, the pod's address still counts as ready; a connection the API server
/// dials meanwhile may pick it and be refused, and the API server neither retries a POST nor
/// tries another endpoint (a create whose request was in flight at the kill fails the same
/// way). So a failure is excused only if it is the API server's call to the killed replica's
/// address, refused or cut, sent between the kill and the moment its endpoint was seen not
/// ready; anything else — a denial, a timeout, the other replica, a create sent after the
/// endpoint update, a pod created unbound — fails the check.
pub async fn killed_process(environment: &mut Environment) -> Result<()> {
    let window = std::sync::Mutex::new(None::<(String, Instant, Instant)>);
    let excused = |failure: &Failure| {
        let Ok(window) = window.lock() else {
            return false;
        };
        let Some((ip, killed, not_ready)) = window.as_ref() else {
            return false;
        };
        let message = &failure.message;
        let to_the_killed_replica = message.contains("failed calling webhook \"bind.dbbind.io\"")
            && (message.contains(&format!("dial tcp {ip}:8443: connect: connection refused"))
                || message.contains("connection reset by peer")
                || message.contains(": EOF"));
        to_the_killed_replica
            && failure.sent + Duration::from_millis(100) >= *killed
            && failure.sent <= *not_ready + Duration::from_millis(500)
    };
    let expect = Expect {
        bound: true,
        excused: &excused,
    };
    under_load(environment, "process-killed", expect, async |environment| {
        let victim = busiest_replica(environment).await?;
        let client = environment.plane.client().await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), release::NAMESPACE);
        let pod = pods.get(&victim.name).await?;
        let restarts = |pod: &Pod| -> i32 {
            pod.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map(|all| all.iter().map(|c| c.restart_count).sum())
                .unwrap_or_default()
        };
        let before = restarts(&pod);
        let pid = container_pid(environment, &pod)?;
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
        let killed_at = Instant::now();
        if !killed.success() {
            return Err(anyhow!("cannot kill process {pid}"));
        }
        // Until the endpoint is not ready, the API server may still dial the dead address.
        let not_ready_at = loop {
            if !ready_endpoints(environment)?.contains(&victim.ip) {
                break Instant::now();
            }
            if killed_at.elapsed() > Duration::from_secs(30) {
                return Err(anyhow!(
                    "{}'s endpoint still ready 30 s after its process was killed",
                    victim.name
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if let Ok(mut window) = window.lock() {
            *window = Some((victim.ip.clone(), killed_at, not_ready_at));
        }
        loop {
            let now = pods.get(&victim.name).await?;
            let ready = Release::replicas(&client).await?;
            if restarts(&now) > before && ready.len() == 2 {
                break;
            }
            if killed_at.elapsed() > Duration::from_secs(120) {
                return Err(anyhow!(
                    "{}'s container was not restarted and ready within 120 s",
                    victim.name
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(format!(
            "process {pid} of {} ({}) killed, its endpoint not ready after {:.2} s, its container restarted and ready after {:.1} s",
            victim.name,
            victim.ip,
            (not_ready_at - killed_at).as_secs_f64(),
            killed_at.elapsed().as_secs_f64()
        ))
    })
    .await
    .map(|_| ())
}

/// 5,000 TCP connections that never start TLS, opened to the replica the API server is
/// calling and held, under load: at the cap, each new connection takes the place of the
/// oldest unfinished handshake, so the API server's connections are served throughout.
pub async fn idle_flood(environment: &mut Environment) -> Result<()> {
    const CONNECTIONS: usize = 5_000;
    dbbind_e2e::tools::enough_open_files(CONNECTIONS + 2_000)?;
    under_load(environment, "idle-connections", ALL_BOUND, async |environment| {
        let target = busiest_replica(environment).await?;
        let address = format!("{}:8443", target.ip);
        let started = Instant::now();
        // 100 connects under way at a time, as fast as the two cores allow.
        let mut connecting = tokio::task::JoinSet::new();
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(100));
        for _ in 0..CONNECTIONS {
            let (address, gate) = (address.clone(), std::sync::Arc::clone(&gate));
            connecting.spawn(async move {
                let _permit = gate.acquire_owned().await;
                tokio::net::TcpStream::connect(&address).await
            });
        }
        let mut held = Vec::with_capacity(CONNECTIONS);
        let mut refused = 0;
        while let Some(connected) = connecting.join_next().await {
            match connected {
                Ok(Ok(stream)) => held.push(stream),
                _ => refused += 1,
            }
        }
        let opened = started.elapsed();
        // Held for a while: the stream's creates go on meanwhile.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let mut closed_by_dbbind = 0;
        for stream in &held {
            let mut byte = [0u8; 1];
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(1), stream.peek(&mut byte)).await {
                closed_by_dbbind += 1;
            }
        }
        let memory = rss_mib(environment, &target).await?;
        drop(held);
        Ok(format!(
            "{CONNECTIONS} idle TCP connections to {} opened in {:.1} s ({refused} refused), {closed_by_dbbind} closed by dbbind after 6 s; its RSS {memory} MiB",
            target.name,
            opened.as_secs_f64(),
        ))
    })
    .await
    .map(|_| ())
}
