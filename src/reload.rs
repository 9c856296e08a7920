//! Hot reload of rules and templates, and `GET /api/rules`, which shows what is in force.
//!
//! In: changes under the rules and templates folders (watched with `notify`), or SIGHUP.
//! Out: a new [`Pipeline`] swapped in whole, or — when the change does not load — the errors
//! logged and kept for `GET /api/rules` while the last good set keeps serving. Guarantees: an
//! event is matched and rendered with one pipeline from start to end (ingest takes a snapshot),
//! so a reload never drops or double-processes an event in flight; a valid change is in force
//! within about a second (changes are gathered for 250 ms, then loaded once).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{FromRef, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::gate::Admin;
use crate::pipeline::{Origin, Pipeline};

/// What reloading reaches: the settings (where rules and templates are), the pipeline to swap,
/// the metrics, noise control (per-rule counts for `GET /api/rules`), the last rejection.
#[derive(Clone)]
pub struct Reloader {
    /// The settings.
    pub config: Arc<Config>,
    /// The rules and templates in force.
    pub pipeline: Arc<arc_swap::ArcSwap<Pipeline>>,
    /// The metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Noise control.
    pub noise: Arc<crate::noise::Noise>,
    /// The last change that did not load.
    pub last_rejected: Arc<arc_swap::ArcSwapOption<Rejected>>,
}

/// A change that did not load.
#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    /// When it was tried (Unix milliseconds).
    pub at_ms: u64,
    /// Every problem, as `file:line:col: message`.
    pub errors: Vec<String>,
}

/// Loads the pipeline again and swaps it in, or records why not. Returns whether it loaded.
pub async fn reload(app: &Reloader) -> bool {
    let config = app.config.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let loaded = Pipeline::load(&config);
        // What the load used and dropped goes back to the system now.
        crate::alloc::release_free_pages();
        loaded
    })
    .await;
    match loaded {
        Ok(Ok(pipeline)) => {
            tracing::info!(
                rules = pipeline.rules.rules().len(),
                "rules and templates reloaded"
            );
            app.pipeline.store(Arc::new(pipeline));
            app.metrics.reload(true);
            true
        }
        Ok(Err(problems)) => {
            let errors: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
            for e in &errors {
                tracing::error!(problem = %e, "rejected a change to rules or templates");
            }
            tracing::error!(
                problems = errors.len(),
                "the change was rejected; the previous rules and templates stay in force"
            );
            app.metrics.reload(false);
            app.last_rejected.store(Some(Arc::new(Rejected {
                at_ms: crate::store::now_ms(),
                errors,
            })));
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "reloading panicked; the previous rules and templates stay in force");
            false
        }
    }
}

/// Watches the rule and template folders (those on disk) and listens for SIGHUP; reloads on
/// either until `stop`.
pub fn spawn(app: Reloader, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut dirs: Vec<PathBuf> = Vec::new();
    if app.config.watch_files {
        let p = app.pipeline.load();
        for origin in [&p.rules_origin, &p.templates_origin] {
            if let Origin::Dir(d) = origin {
                dirs.push(d.clone());
            }
        }
    }
    let watch_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res {
            if !matches!(event.kind, notify::EventKind::Access(_)) {
                let _ = watch_tx.send(());
            }
        }
    });
    let watcher = match watcher {
        Ok(mut w) => {
            use notify::Watcher as _;
            for d in &dirs {
                match w.watch(d, notify::RecursiveMode::Recursive) {
                    Ok(()) => tracing::info!(dir = %d.display(), "watching for changes"),
                    Err(e) => {
                        tracing::warn!(dir = %d.display(), error = %e, "cannot watch; reload with SIGHUP")
                    }
                }
            }
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch files; reload with SIGHUP");
            None
        }
    };
    #[cfg(unix)]
    {
        let tx = tx.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP: reloading rules and templates");
                        let _ = tx.send(());
                    }
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
    drop(tx);
    tokio::spawn(async move {
        let _watcher = watcher; // dropped (and unwatched) when this task ends
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { return },
                _ = stop.cancelled() => return,
            }
            // Gather the burst of events one save makes (editors write, rename, chmod).
            while let Ok(Some(())) =
                tokio::time::timeout(Duration::from_millis(250), rx.recv()).await
            {}
            reload(&app).await;
        }
    })
}

/// The routes under /api/rules.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Reloader: FromRef<S>,
    crate::gate::Gate: FromRef<S>,
{
    Router::new().route("/api/rules", get(list_rules))
}

async fn list_rules(_: Admin, State(app): State<Reloader>) -> Json<Value> {
    let p = app.pipeline.load();
    let rules: Vec<Value> = p
        .rules
        .rules()
        .iter()
        .map(|r| {
            let mut rule = json!({
                "name": r.name,
                "source": r.source,
                "event": r.event,
                "actions": r.actions,
                "if": r.expr.as_ref().map(|x| x.source.clone()),
                "template": r.template,
                "channel": r.channel,
                "enabled": r.enabled,
                "stop": r.stop,
                "digest": r.digest,
                "file": r.file.display().to_string(),
                "stats": app.noise.stats(&r.name),
            });
            if let Some(why) = &r.inactive {
                rule["inactive"] = json!(why);
            }
            rule
        })
        .collect();
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    };
    Json(json!({
        "loaded_at_ms": ms(p.loaded_at),
        "digest": p.digest,
        "rules_from": p.rules_origin.to_string(),
        "templates_from": p.templates_origin.to_string(),
        "rules": rules,
        "last_rejected": app.last_rejected.load().as_deref(),
    }))
}
