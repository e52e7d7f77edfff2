//! One scenario run on the node: its Secret provisioned, its Deployment bound, each way it reads the binding connected, the result compared with the golden render.

use super::*;

/// What a scenario showed, for the demo's report.
pub struct Report {
    pub pod: String,
    /// The pod's phase on the node (`Running`).
    pub phase: String,
    /// The app container's binding variables as it saw them, passwords masked.
    pub variables: Vec<String>,
    /// The binding files as it saw them: mode, owner, path.
    pub files: Vec<String>,
    /// Per binding and way of reading it, what PostgreSQL says:
    /// `psql read db through postgres: PostgreSQL saw app on app (TLS)`.
    pub connections: Vec<String>,
}

/// Runs one scenario end to end on the real node: the example applied as written, but with the
/// suite's app image and checks, `hostNetwork` and `hostAliases`; its pod compared with the
/// golden render, then Running, and every way its app container reads the binding proven by
/// the database itself.
pub async fn run(
    environment: &Environment,
    client: &kube::Client,
    scenario: &Scenario,
) -> Result<Report> {
    let plane = &environment.plane;
    let postgres = environment.servers.get(scenario.server);
    let namespace = format!("e2e-{}", scenario.name);
    opted_in_namespace(plane, &namespace)?;
    let golden = golden_template(scenario)?;
    let mut documents =
        crate::yaml_documents(&std::fs::read_to_string(example_path(scenario.name))?)?;
    let mut app_ways = Vec::new();
    for document in &mut documents {
        if document["kind"] == "Deployment" {
            app_ways = for_the_node(document, scenario, &golden)?;
        }
        if document["kind"] == "Secret" {
            trust_the_suites_ca(document, &environment.servers.ca.cert_pem);
        }
    }
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": documents});
    let applied = plane.kubectl_outcome(
        &["apply", "-n", &namespace, "-f", "-"],
        Some(&list.to_string()),
    )?;
    if !applied.success {
        return Err(anyhow!("kubectl apply failed: {}", applied.stderr));
    }
    let pod = match workload::wait_for_pod(client, &namespace, scenario.deployment).await {
        Ok(pod) => pod,
        Err(error) => {
            return Err(anyhow!(
                "{error}\n{}",
                workload::diagnose(plane, &namespace)
            ));
        }
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    if !name.starts_with(&format!("{}-", scenario.deployment))
        || pod.metadata.generate_name.is_none()
    {
        return Err(anyhow!(
            "pod {name} was not created by the Deployment's ReplicaSet"
        ));
    }
    compare_with_golden(&pod, &golden)?;
    let node = &environment.node;
    let phase = workload::wait_running(plane, node, client, &namespace, &name).await?;

    // A URL the drivers refuse: psql, pgx and psycopg must say so, and are then not expected
    // among the connections.
    let refused = URLS_REFUSED
        .iter()
        .find(|(name, _)| *name == scenario.name)
        .map(|(_, message)| *message);
    if let Some(message) = refused {
        for said in [
            format!("failed to parse as URL ({message}"),
            format!("psycopg: error: {message}"),
        ] {
            workload::wait_for_log(node, &namespace, &name, "app", &said).await?;
        }
        // psql's "error: …" too, so twice with psycopg's. Not "psql: error: …": psql writes its
        // name apart, and the ways run at once, so another way's line can land in between.
        let said = format!("error: {message}");
        workload::wait_for_log_times(node, &namespace, &name, "app", &said, 2).await?;
    }
    let connecting: Vec<&Way> = app_ways
        .iter()
        .filter(|way| refused.is_none() || !matches!(way.kind, "url" | "pgx-url" | "psycopg-url"))
        .collect();
    // The database's own word: who is connected, under each way's label.
    let expected: Vec<Expected> = connecting
        .iter()
        .map(|way| {
            let (_, _, user, database) = scenario
                .bindings
                .iter()
                .find(|(_, binding, _, _)| *binding == way.binding)
                .copied()
                .unwrap_or_default();
            Expected {
                label: way.label(scenario.name, "app"),
                user: user.to_owned(),
                database: database.to_owned(),
            }
        })
        .collect();
    let log = || node.container_log(&namespace, &name, "app");
    let seen = workload::wait_for_connections(postgres, &expected, log).await?;
    let mut connections: Vec<String> = connecting
        .iter()
        .zip(&seen)
        .map(|(way, seen)| {
            let tls = if seen.tls { " (TLS)" } else { "" };
            let (driver, set) = way.driver_and_set();
            format!(
                "{driver} read {} through {set}: PostgreSQL saw {} on {}{tls}",
                way.binding, seen.user, seen.database
            )
        })
        .collect();
    if let Some(message) = refused {
        connections.push(format!(
            "psql, pgx and psycopg refused the Secret's URL: {message}"
        ));
    }
    let (variables, files) = app::received(&log());
    // Composed strings reach the container expanded by the kubelet, and never hold a password.
    for variable in &variables {
        if let Some((name, value)) = variable.split_once('=')
            && name.ends_with("_URL")
            && (value.contains("$(") || value.contains("PASSWORD"))
        {
            return Err(anyhow!(
                "{name} reached the container unexpanded or with a password reference: {value}"
            ));
        }
    }
    Ok(Report {
        pod: format!("{namespace}/{name}"),
        phase,
        variables,
        files,
        connections,
    })
}

/// An example Secret's CA (`ca.crt`) is a placeholder: here it becomes the CA of the suite's
/// database servers, so the app verifies the server against what the Secret says.
pub(super) fn trust_the_suites_ca(secret: &mut Value, ca_pem: &str) {
    use base64::Engine as _;
    if let Some(data) = secret["data"].as_object_mut()
        && data.contains_key("ca.crt")
    {
        let encoded = base64::engine::general_purpose::STANDARD.encode(ca_pem);
        data.insert("ca.crt".to_owned(), Value::String(encoded));
    }
}

/// The ways a container of the golden render reads each binding: the variable sets it has,
/// and the binding's files when it mounts them.
pub(super) fn ways_of(container: &Value, scenario: &Scenario) -> Vec<Way> {
    let names_in = |field: &str| -> Vec<&str> {
        container[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry["name"].as_str())
            .collect()
    };
    let (names, mounts) = (names_in("env"), names_in("volumeMounts"));
    let mut ways = Vec::new();
    for (prefix, binding, _, _) in scenario.bindings {
        let has = |name: &str| names.contains(&format!("{prefix}{name}").as_str());
        let mut kinds = Vec::new();
        if has("POSTGRES_HOST") {
            kinds.push("postgres");
        }
        if prefix.is_empty() && has("PGHOST") {
            kinds.push("libpq");
        }
        if has("DATABASE_URL") || has("POSTGRES_URL") {
            kinds.push("url");
        }
        if has("SPRING_DATASOURCE_URL") {
            kinds.push("spring");
        }
        if has("QUARKUS_DATASOURCE_JDBC_URL") {
            kinds.push("pgjdbc-quarkus");
        }
        if has("POSTGRES_JDBC_URL") {
            kinds.push("pgjdbc-jdbc");
        }
        if mounts.contains(&format!("dbbind-{binding}").as_str()) {
            kinds.push("files");
        }
        ways.extend(kinds.into_iter().map(|kind| Way {
            binding: (*binding).to_owned(),
            prefix: (*prefix).to_owned(),
            kind,
        }));
    }
    ways
}

/// Makes the example's Deployment run here: every container runs the app image (the app
/// container its checks, init containers a one-shot connection, sidecars a sleep), on the
/// host's network with the scenario's database hosts aliased to its server. The annotations,
/// env and volumes stay as written. Returns the app container's ways.
pub(super) fn for_the_node(
    deployment: &mut Value,
    scenario: &Scenario,
    golden: &Value,
) -> Result<Vec<Way>> {
    let spec = &mut deployment["spec"]["template"]["spec"];
    workload::on_host_network(spec, Servers::address(scenario.server), scenario.hosts);
    if !scenario.pooled_hosts.is_empty()
        && let Some(aliases) = spec["hostAliases"].as_array_mut()
    {
        aliases.push(serde_json::json!({"ip": POOLER_ADDRESS, "hostnames": scenario.pooled_hosts}));
    }
    let golden_container = |list: &str, name: &Value| -> Value {
        golden["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == *name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut app_ways = Vec::new();
    for list in ["initContainers", "containers"] {
        for container in spec[list].as_array_mut().into_iter().flatten() {
            let name = container["name"].as_str().unwrap_or_default().to_owned();
            let ways = ways_of(&golden_container(list, &container["name"]), scenario);
            let script = match (list, name.as_str()) {
                ("initContainers", _) => {
                    let ways: Vec<Way> = ways.into_iter().filter(Way::through_psql).collect();
                    app::script(scenario.name, &name, &ways, Mode::Once)
                }
                (_, "app") => {
                    let ways = app::with_drivers(ways);
                    app_ways = ways.clone();
                    app::script(scenario.name, &name, &ways, Mode::Hold)
                }
                _ => "sleep 3600".to_owned(),
            };
            workload::run_script(container, script);
        }
    }
    if app_ways.is_empty() {
        return Err(anyhow!(
            "{}: the app container reads no binding",
            scenario.name
        ));
    }
    Ok(app_ways)
}

/// The pod template of the example's golden render (tests/golden).
pub(super) fn golden_template(scenario: &Scenario) -> Result<Value> {
    let golden_path = repo_root().join(format!("tests/golden/{}.yaml", scenario.name));
    let golden: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&golden_path)?)
        .map_err(|e| anyhow!("{}: {e}", golden_path.display()))?;
    Ok(golden["spec"]["template"].clone())
}

/// The pod's containers, volumes and dbbind annotations are exactly what `dbbind render`
/// produced for the example (tests/golden), plus what the API server adds on its own.
pub(super) fn compare_with_golden(pod: &Pod, template: &Value) -> Result<()> {
    let actual = serde_json::to_value(pod).map_err(|e| anyhow!("{e}"))?;
    for list in ["initContainers", "containers"] {
        for expected in template["spec"][list].as_array().into_iter().flatten() {
            let name = &expected["name"];
            let found = actual["spec"][list]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"] == *name);
            let Some(found) = found else {
                return Err(anyhow!("pod lacks {list} {name}"));
            };
            for field in ["env", "volumeMounts"] {
                let mut want = expected[field].clone();
                let mut got = found[field].clone();
                // The API server adds the service-account token mount.
                retain_dbbind_mounts(&mut want, field);
                retain_dbbind_mounts(&mut got, field);
                if want != got {
                    return Err(anyhow!(
                        "{list} {name} {field} differs from the golden render:\n got  {got}\n want {want}"
                    ));
                }
            }
        }
    }
    let dbbind_volumes = |spec: &Value| -> Vec<Value> {
        spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["name"].as_str().is_some_and(|n| n.starts_with("dbbind-")))
            .cloned()
            .collect()
    };
    if dbbind_volumes(&template["spec"]) != dbbind_volumes(&actual["spec"]) {
        return Err(anyhow!("dbbind volumes differ from the golden render"));
    }
    for key in ["dbbind.io/status", "dbbind.io/bindings"] {
        if template["metadata"]["annotations"][key] != actual["metadata"]["annotations"][key] {
            return Err(anyhow!("annotation {key} differs from the golden render"));
        }
    }
    Ok(())
}

pub(super) fn retain_dbbind_mounts(value: &mut Value, field: &str) {
    if field == "volumeMounts"
        && let Some(mounts) = value.as_array_mut()
    {
        mounts.retain(|m| m["name"].as_str().is_some_and(|n| n.starts_with("dbbind-")));
        if mounts.is_empty() {
            *value = Value::Null;
        }
    }
}
