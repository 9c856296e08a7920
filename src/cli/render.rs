//! `cardwire render`: the cards a payload would produce, one JSON line per matching rule.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use clap::Args;

use super::shared::*;
use crate::render::CardKind;

/// `cardwire render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The configured source the payload comes from.
    #[arg(long)]
    source: String,
    /// The JSON payload file (`-` for standard input).
    #[arg(long)]
    payload: PathBuf,
    /// A request header, as `Name: value` (repeatable), e.g. `X-GitHub-Event: push`.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The card kind.
    #[arg(long, value_enum, default_value_t = KindArg::Teams)]
    kind: KindArg,
    /// Instead of cards, say for every rule of the source whether it matched, and why not.
    #[arg(long)]
    explain: bool,
}

pub(super) fn render(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let (config, pipeline) = match load(args.config.config.as_deref()) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let Some(source) = config.sources.get(&args.source) else {
        let names: Vec<&str> = config.sources.keys().map(String::as_str).collect();
        bail!(
            "no source named {:?}; configured: {}",
            args.source,
            names.join(", ")
        );
    };
    let text = if args.payload == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(&args.payload)
            .with_context(|| format!("cannot read {}", args.payload.display()))?
    };
    let payload: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.payload.display()))?;
    let headers = parse_headers(&args.headers)?;
    let event = crate::ingest::verify::Verified::trusted(&args.source, source, &headers)
        .event(payload)
        .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
    if args.explain {
        for e in pipeline.rules.explain(&event) {
            match e.reason {
                None => println!("✓ {}", e.rule),
                Some(why) => println!("✗ {}: {why}", e.rule),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let kind = CardKind::from(args.kind);
    let mut failed = false;
    // The card staging would queue (crate::stage::card_of): the template's, or when it fails
    // what render_errors sends instead (shown, with the error on stderr and exit status 1).
    for rule in pipeline.rules.matches(&event) {
        match crate::stage::card_of(&pipeline, rule, &event, kind, config.render_errors) {
            Ok(crate::stage::Carded::Card(body, subject)) => {
                let body: serde_json::Value = serde_json::from_str(&body)?;
                let mut line =
                    serde_json::json!({"rule": rule.name, "kind": kind.as_str(), "body": body});
                if let Some((key, update)) = subject {
                    line["subject"] = serde_json::json!({
                        "key": &*key, "update": update.as_str(),
                        "effect": crate::deliver::updates::update_effect(kind, update),
                    });
                }
                println!("{line}");
            }
            Ok(crate::stage::Carded::Fallback(body, why)) => {
                let body: serde_json::Value = serde_json::from_str(&body)?;
                println!(
                    "{}",
                    serde_json::json!({"rule": rule.name, "kind": kind.as_str(), "body": body, "fallback": why})
                );
                eprintln!(
                    "rule {:?}: template {} failed ({}); the fallback card above goes instead",
                    rule.name, why.template, why.reason
                );
                failed = true;
            }
            Ok(crate::stage::Carded::Failed(e)) => {
                eprintln!("rule {:?}: {e}", rule.name);
                failed = true;
            }
            Err(e) => {
                eprintln!("rule {:?}: {e}", rule.name);
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub(super) fn parse_headers(raw: &[String]) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for h in raw {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("header {h:?} is not `Name: value`"))?;
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("{name:?} is not a header name"))?,
            HeaderValue::from_str(value.trim())
                .with_context(|| format!("{value:?} is not a header value"))?,
        );
    }
    Ok(headers)
}
