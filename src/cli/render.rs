//! `dbbind render`.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

use super::{EXIT_BAD_INPUT, EXIT_DENIED, OutputFormat};
use dbbind_core::decision::Decision;
use dbbind_core::manifest::{Source, render};
use dbbind_core::profile::ProfileSet;

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The manifest to render; `-` reads standard input. Multi-document YAML is welcome.
    #[arg(short = 'f', long = "filename", value_name = "MANIFEST")]
    pub filename: PathBuf,
    /// A file of Secrets the webhook would find in the namespace (repeatable).
    #[arg(long = "secret", value_name = "SECRET_YAML")]
    pub secrets: Vec<PathBuf>,
    /// Namespace for documents that name none (default: "default").
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: OutputFormat,
}

pub fn run(
    args: &RenderArgs,
    profiles: &ProfileSet,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> u8 {
    let manifest_name = args.filename.display().to_string();
    let manifest_text = match read_input(&args.filename) {
        Ok(text) => text,
        Err(error) => return bad_input(stderr, &format!("{manifest_name}: {error}")),
    };
    let mut secret_texts = Vec::new();
    for path in &args.secrets {
        match std::fs::read_to_string(path) {
            Ok(text) => secret_texts.push((path.display().to_string(), text)),
            Err(error) => return bad_input(stderr, &format!("{}: {error}", path.display())),
        }
    }
    let secret_sources: Vec<Source<'_>> = secret_texts
        .iter()
        .map(|(name, text)| Source { name, text })
        .collect();
    let manifest = Source {
        name: &manifest_name,
        text: &manifest_text,
    };

    let rendered = match render(
        &manifest,
        &secret_sources,
        args.namespace.as_deref(),
        profiles,
    ) {
        Ok(rendered) => rendered,
        Err(error) => return bad_input(stderr, &error.to_string()),
    };

    let mut denied = false;
    for document in &rendered {
        for warning in document.decision.warnings() {
            let _ = writeln!(stderr, "Warning: {}: {warning}", document.object);
        }
        if let Decision::Deny { denial, .. } = &document.decision {
            denied = true;
            let _ = writeln!(stderr, "Error: {} denied: {}", document.object, denial);
        }
    }
    // A partly rendered manifest would be applied by a pipeline as if it were whole.
    if denied {
        return EXIT_DENIED;
    }

    let documents: Vec<&Value> = rendered.iter().map(|d| &d.document).collect();
    let output = match args.output {
        OutputFormat::Yaml => documents
            .iter()
            .map(|document| serde_yaml_ng::to_string(document).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("---\n"),
        OutputFormat::Json => {
            let value = match documents.as_slice() {
                [single] => (*single).clone(),
                many => json!({"apiVersion": "v1", "kind": "List", "items": many}),
            };
            let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
            text.push('\n');
            text
        }
    };
    if stdout.write_all(output.as_bytes()).is_err() {
        return EXIT_BAD_INPUT;
    }
    0
}

fn read_input(path: &PathBuf) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
    }
}

fn bad_input(stderr: &mut dyn Write, message: &str) -> u8 {
    let _ = writeln!(stderr, "Error: {message}");
    EXIT_BAD_INPUT
}
