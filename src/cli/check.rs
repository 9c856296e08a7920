//! `cardwire check`: the config, rules and templates checked, every template rendered with
//! the vendored payloads, the cards each connection's kind cannot take.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use axum::http::{HeaderMap, HeaderValue};
use clap::Args;

use super::client::*;
use super::shared::*;
use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::render::CardKind;

/// `cardwire check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print a JSON Schema (for editors) and exit: of rule files (`rules`, the default) or of
    /// the portable card a `.card.hbs` template renders (`card`).
    #[arg(long, value_name = "WHICH", num_args = 0..=1, default_missing_value = "rules")]
    print_schema: Option<SchemaWhich>,
    /// Also check a running gateway's connections (through its admin API: --server, --token):
    /// each rule's template must render the kind of every connection its cards go to.
    #[arg(long)]
    connections: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// A connection as `check --connections` reads it from `GET /api/connections`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ConnectionSeen {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its kind of card.
    pub kind: CardKind,
    /// The channels it listens to (none: all).
    #[serde(default)]
    pub channels: Vec<String>,
}

/// Every (rule, connection) whose cards would have no template of the connection's kind: a
/// line each, naming the rule's file, the rule, the template, the kind and the connection.
pub fn kind_gaps(
    rules: &[crate::rules::Rule],
    has: impl Fn(&str, CardKind) -> bool,
    connections: &[ConnectionSeen],
) -> Vec<String> {
    let mut gaps = Vec::new();
    for rule in rules.iter().filter(|r| r.enabled && r.inactive.is_none()) {
        for c in connections.iter().filter(|c| rule.sends_to(&c.channels)) {
            if !has(&rule.template, c.kind) {
                gaps.push(format!(
                    "{}:{}:{}: rule {:?}: template {:?} has no {kind} card, and connection {} ({:?}, {kind}) takes this rule's cards: add templates/{t}.card.hbs (every kind) or templates/{t}.{kind}.hbs",
                    rule.file.display(),
                    rule.template_at.line,
                    rule.template_at.col,
                    rule.name,
                    rule.template,
                    c.id,
                    c.name,
                    kind = c.kind.as_str(),
                    t = rule.template,
                ));
            }
        }
    }
    gaps
}

/// Which JSON Schema `check --print-schema` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SchemaWhich {
    /// Rule files.
    Rules,
    /// The portable card.
    Card,
}

/// What `check` says of a config that keeps its state in PostgreSQL: what every instance on
/// the database must share.
pub fn shared_state_note(digest: &str) -> String {
    format!(
        "state in PostgreSQL: every instance on this database needs the same connect.secrets_key (webhook URLs are sealed with it) and the same rules and templates (GET /api/rules answers their digest; this set's is {digest})"
    )
}

/// Which kinds the rules' templates render, and how: `kinds: 24 templates: teams, workflow by
/// their own template; slack, discord, google_chat, mattermost by the MessageCard template`, one
/// line per way of rendering.
pub(super) fn kinds_summary(pipeline: &crate::pipeline::Pipeline) -> Vec<String> {
    let templates: std::collections::BTreeSet<&str> = pipeline
        .rules
        .rules()
        .iter()
        .map(|r| r.template.as_str())
        .collect();
    let mut ways: std::collections::BTreeMap<String, usize> = Default::default();
    for t in &templates {
        let mut by: Vec<(&str, Vec<&str>)> = Vec::new();
        for kind in CardKind::ALL {
            let how = pipeline
                .renderer
                .how(t, kind)
                .unwrap_or("nothing (no template)");
            match by.iter_mut().find(|(h, _)| *h == how) {
                Some((_, kinds)) => kinds.push(kind.as_str()),
                None => by.push((how, vec![kind.as_str()])),
            }
        }
        let way = by
            .iter()
            .map(|(how, kinds)| {
                let line = format!("{} by {how}", kinds.join(", "));
                if kinds.len() > 1 {
                    line.replace("by its own template", "by their own templates")
                } else {
                    line
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        *ways.entry(way).or_default() += 1;
    }
    ways.into_iter()
        .map(|(way, n)| {
            format!(
                "kinds: {n} {}: {way}",
                if n == 1 { "template" } else { "templates" }
            )
        })
        .collect()
}

pub(super) fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    if let Some(which) = args.print_schema {
        let schema = match which {
            SchemaWhich::Rules => crate::rules::schema::SCHEMA,
            SchemaWhich::Card => crate::render::portable::SCHEMA,
        };
        println!("{}", schema.trim_end());
        return Ok(ExitCode::SUCCESS);
    }
    match load(args.config.config.as_deref()) {
        Ok((config, pipeline)) => {
            let (problems, keyed) = render_samples(&config, &pipeline);
            if !problems.is_empty() {
                return Ok(print_problems(crate::yaml::Problems(problems)));
            }
            println!(
                "ok: {} rules from {}, templates from {}",
                pipeline.rules.rules().len(),
                pipeline.rules_origin,
                pipeline.templates_origin
            );
            if let Some(inactive) = pipeline.rules.inactive_summary() {
                println!("{inactive}");
            }
            for line in pipeline
                .rules
                .unused_sources(config.sources.keys().map(String::as_str))
            {
                println!("warning: {line}");
            }
            for line in kinds_summary(&pipeline) {
                println!("{line}");
            }
            for line in updates_summary(&keyed) {
                println!("{line}");
            }
            if config.store.postgres.is_some() {
                println!("{}", shared_state_note(&pipeline.digest));
            }
            if !args.connections {
                return Ok(ExitCode::SUCCESS);
            }
            let api = args.server.client()?;
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let listed = runtime
                .block_on(api.call(reqwest::Method::GET, "/api/connections", None))
                .context("cannot read the gateway's connections")?;
            let connections: Vec<ConnectionSeen> = serde_json::from_value(listed)
                .context("the gateway's connections are not what this version reads")?;
            let gaps = kind_gaps(
                pipeline.rules.rules(),
                |t, k| pipeline.renderer.has(t, k),
                &connections,
            );
            if gaps.is_empty() {
                println!(
                    "connections: {} at {}, each rendered by every rule that sends to it",
                    connections.len(),
                    args.server.server
                );
                Ok(ExitCode::SUCCESS)
            } else {
                for g in &gaps {
                    eprintln!("{g}");
                }
                eprintln!(
                    "{} rule and connection pairs without a template of the connection's kind; such cards go out as fallback cards",
                    gaps.len()
                );
                Ok(ExitCode::from(1))
            }
        }
        Err(code) => Ok(code),
    }
}

/// What keyed cards do, per `update` and per kind: the rules whose cards carry a key, then
/// each kind's effect ([`crate::deliver::updates::update_effect`]), kinds with the same
/// effect on one line.
pub(super) fn updates_summary(
    keyed: &std::collections::BTreeMap<String, crate::render::Update>,
) -> Vec<String> {
    let mut by_update: std::collections::BTreeMap<&str, (crate::render::Update, Vec<&str>)> =
        Default::default();
    for (rule, update) in keyed {
        by_update
            .entry(update.as_str())
            .or_insert((*update, Vec::new()))
            .1
            .push(rule);
    }
    let mut out = Vec::new();
    for (name, (update, rules)) in by_update {
        out.push(format!(
            "updates: {} {} (update: {name}): {}",
            rules.len(),
            if rules.len() == 1 {
                "rule keys its cards"
            } else {
                "rules key their cards"
            },
            rules.join(", ")
        ));
        let mut effects: Vec<(String, Vec<&str>)> = Vec::new();
        for kind in CardKind::ALL {
            let effect = crate::deliver::updates::update_effect(kind, update);
            match effects.iter_mut().find(|(e, _)| *e == effect) {
                Some((_, kinds)) => kinds.push(kind.as_str()),
                None => effects.push((effect, vec![kind.as_str()])),
            }
        }
        for (effect, kinds) in effects {
            out.push(format!(
                "  a later card with the same key on {}: {effect}",
                kinds.join(", ")
            ));
        }
    }
    out
}

/// Renders every rule's templates, in both kinds, with every built-in sample payload the rule
/// takes; a failure is a problem at the template's line and column. Also answers which rules'
/// cards carry a key, and their update.
pub(super) fn render_samples(
    config: &Config,
    pipeline: &Pipeline,
) -> (
    Vec<crate::yaml::Problem>,
    std::collections::BTreeMap<String, crate::render::Update>,
) {
    use crate::yaml::{Pos, Problem};
    let templates = match &pipeline.templates_origin {
        crate::pipeline::Origin::Dir(d) => d.clone(),
        crate::pipeline::Origin::Embedded(n) => PathBuf::from(n),
    };
    let mut problems = Vec::new();
    let mut keyed = std::collections::BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for sample in crate::samples::all() {
        for (name, source) in config.sources.iter().filter(|(_, s)| s.kind == sample.kind) {
            let mut headers = HeaderMap::new();
            let header = match sample.kind {
                crate::event::SourceKind::Github => Some("x-github-event"),
                crate::event::SourceKind::Gitlab => Some("x-gitlab-event"),
                _ => None,
            };
            if let (Some(h), Ok(v)) = (header, HeaderValue::from_str(&sample.event)) {
                headers.insert(h, v);
            }
            let Ok(event) = crate::ingest::verify::Verified::trusted(name, source, &headers)
                .event(sample.payload.clone())
            else {
                continue;
            };
            for rule in pipeline.rules.matches(&event) {
                // Every kind the template renders: its own files and, with a portable
                // template, every kind.
                for kind in CardKind::ALL
                    .into_iter()
                    .filter(|k| pipeline.renderer.has(&rule.template, *k))
                {
                    let e = match pipeline.renderer.render_card_with(
                        &rule.template,
                        kind,
                        event.template_context(),
                    ) {
                        Ok(r) => {
                            if let Some((_, update)) = r.subject {
                                keyed.insert(rule.name.clone(), rule.update.unwrap_or(update));
                            }
                            continue;
                        }
                        Err(e) => e,
                    };
                    // One report per template and problem, naming the first sample that shows it.
                    if !seen.insert((rule.template.clone(), kind, e.to_string())) {
                        continue;
                    }
                    let file = if pipeline.renderer.is_portable(&rule.template, kind) {
                        templates.join(format!("{}.card.hbs", rule.template))
                    } else {
                        templates.join(format!("{}.{}.hbs", rule.template, kind.as_str()))
                    };
                    let (pos, message) = match &e {
                        crate::render::RenderError::Template {
                            pos: Some((line, col)),
                            message,
                            ..
                        } => (
                            Pos {
                                line: *line,
                                col: *col,
                            },
                            message.clone(),
                        ),
                        other => (Pos { line: 1, col: 1 }, other.to_string()),
                    };
                    problems.push(Problem::new(
                        file,
                        pos,
                        format!(
                            "rule {:?}: with the sample payload {}: {message}",
                            rule.name, sample.name
                        ),
                    ));
                }
            }
        }
    }
    (problems, keyed)
}
