//! Every driver connects with the variables of its name set, with a plain and a reserved-character password.

use super::*;

/// A generated-looking password with URL-reserved characters, quotes, a space and a non-ASCII
/// letter.
pub(super) const RESERVED_PASSWORD: &str = "p@ss:w/rd?#%&=+; '\"é1";

/// Every driver with every set it reads, for a plain password and for one with URL-reserved
/// characters, quotes, a space and a non-ASCII letter: each connects, the composed
/// `DATABASE_URL` too, because it leaves the password to `PGPASSWORD` (a password inside it
/// would break it: expansion does not percent-encode), as the warning at `kubectl apply` says;
/// the JDBC URLs hold no password either.
pub async fn every_driver(environment: &mut Environment) -> Result<()> {
    let namespace = "e2e-drivers";
    scenarios::opted_in_namespace(&environment.plane, namespace)?;
    let runs = [
        (
            "plain",
            "plain_user",
            "Xk3vQ9pL2mN8rT5wY7zB",
            "Xk3vQ9pL2mN8rT5wY7zB",
        ),
        ("reserved", "reserved_user", RESERVED_PASSWORD, "w/rd"),
    ];
    let mut pods = Vec::new();
    for (app, user, password, _) in runs {
        environment
            .servers
            .shared
            .add_account(&dbbind_e2e::postgres::Account {
                user,
                password,
                database: app,
            })?;
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{app}-db")},
            "stringData": {"host": GENERIC_HOST, "port": "5432", "database": app,
                "username": user, "password": password}});
        kubectl(
            environment,
            &["apply", "-n", namespace, "-f", "-"],
            &secret.to_string(),
        )?;
        let annotations =
            json!({"dbbind.io/secret": format!("{app}-db"), "dbbind.io/env": EVERY_SET});
        let (pod, warnings) = apply_app(
            environment,
            namespace,
            app,
            annotations,
            &EVERY_DRIVER,
            json!({}),
        )
        .await?;
        if !warnings.contains("composed without the password") || warnings.contains(password) {
            return Err(anyhow!(
                "kubectl apply did not warn of the composed URL (or showed the password): {warnings}"
            ));
        }
        pods.push(pod);
    }
    for ((app, user, _, shown), pod) in runs.into_iter().zip(&pods) {
        let log = connected(environment, namespace, app, pod, &EVERY_DRIVER, (user, app)).await?;
        if log.contains(shown) {
            return Err(anyhow!("{app}: the app's log shows the password"));
        }
    }
    Ok(())
}
