//! The environment variables one binding injects (docs/design.md §3).

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};

use crate::binding::{ResolvedBinding, ValueSource};
use crate::field::Field;
use crate::message::{Denial, Warning};

/// The variables of one binding, in injection order: the `postgres` set, the `libpq` set, then
/// `DATABASE_URL`, which may refer to the variables before it.
pub fn binding_env(
    binding: &ResolvedBinding,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<EnvVar>, Denial> {
    let request = &binding.request;
    let prefix = request.env_prefix();
    let mut vars = Vec::new();
    if request.env.postgres {
        for (field, source) in &binding.fields {
            vars.push(env_var(
                format!("{prefix}{}", field.postgres_env()),
                binding,
                source,
            ));
        }
    }
    if request.env.libpq {
        for (field, source) in &binding.fields {
            if let Some(name) = field.libpq_env() {
                vars.push(env_var(format!("{prefix}{name}"), binding, source));
            }
        }
    }
    if request.env.database_url {
        let name = format!("{prefix}DATABASE_URL");
        match binding.source(Field::Uri) {
            Some(source) => vars.push(env_var(name, binding, source)),
            None => {
                let url = composed_url(binding, &prefix)?;
                warnings.push(Warning::new(format!(
                    "binding {:?}: {name} is composed from the other variables by Kubernetes variable expansion, which does not percent-encode: a user name or password with URL-reserved characters breaks it",
                    request.name()
                )));
                vars.push(EnvVar {
                    name,
                    value: Some(url),
                    value_from: None,
                });
            }
        }
    }
    Ok(vars)
}

fn env_var(name: String, binding: &ResolvedBinding, source: &ValueSource) -> EnvVar {
    match source {
        ValueSource::SecretKey { key, optional } => EnvVar {
            name,
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: binding.request.secret.clone(),
                    key: key.clone(),
                    optional: optional.then_some(true),
                }),
                ..EnvVarSource::default()
            }),
        },
        ValueSource::Literal(value) => EnvVar {
            name,
            // The kubelet expands `$(VAR)` in values; `$$` keeps a literal `$` literal.
            value: Some(value.replace('$', "$$")),
            value_from: None,
        },
    }
}

/// `postgresql://$(USER):$(PASSWORD)@$(HOST):$(PORT)/$(DB)?sslmode=$(SSLMODE)` over the
/// variables this binding injects, so no value is ever copied.
fn composed_url(binding: &ResolvedBinding, prefix: &str) -> Result<String, Denial> {
    let request = &binding.request;
    let name_of: fn(Field) -> Option<&'static str> = if request.env.postgres {
        |field| Some(field.postgres_env())
    } else if request.env.libpq {
        Field::libpq_env
    } else {
        return Err(Denial::about_secret(format!(
            "annotation {:?}: \"database-url\" needs \"postgres\" or \"libpq\" as well, because Secret {:?} has no URI key to read DATABASE_URL from and it is composed from those variables",
            request.annotation("env"),
            request.secret
        )));
    };
    let var = |field: Field| {
        binding
            .source(field)
            .and(name_of(field))
            .map(|name| format!("$({prefix}{name})"))
    };
    let (Some(host), Some(user), Some(password)) =
        (var(Field::Host), var(Field::User), var(Field::Password))
    else {
        return Err(Denial::about_secret(format!(
            "binding {:?}: cannot compose DATABASE_URL: Secret {:?} provides no URI, and host, user and password are not all available",
            request.name(),
            request.secret
        )));
    };
    let mut url = format!("postgresql://{user}:{password}@{host}");
    if let Some(port) = var(Field::Port) {
        url.push(':');
        url.push_str(&port);
    }
    url.push('/');
    if let Some(database) = var(Field::Database) {
        url.push_str(&database);
    }
    if let Some(sslmode) = var(Field::Sslmode) {
        url.push_str("?sslmode=");
        url.push_str(&sslmode);
    }
    Ok(url)
}
