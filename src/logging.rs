//! Logs with tracing: JSON in a cluster, text on a terminal. What is logged never includes a
//! Secret value: dbbind never holds one (see [`dbbind_core::secret`]).

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    #[default]
    Text,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid log filter {filter:?}: {source}")]
    Filter {
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot install the log subscriber: {0}")]
    Install(String),
}

/// Logging's flags of `dbbind serve`.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Logging")]
pub struct LogFlags {
    /// json in a cluster, text on a terminal.
    #[arg(long, env = "DBBIND_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// A tracing env-filter directive, e.g. info or dbbind=debug,kube=info.
    #[arg(long, env = "DBBIND_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// Installs the global subscriber. `filter` is an env-filter directive (`info`,
/// `dbbind=debug,kube=info`).
pub fn init(format: LogFormat, filter: &str) -> Result<(), LoggingError> {
    let filter = EnvFilter::try_new(filter).map_err(|source| LoggingError::Filter {
        filter: filter.to_owned(),
        source,
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|error| LoggingError::Install(error.to_string()))
}
