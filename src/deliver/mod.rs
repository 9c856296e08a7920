//! Delivery: the outbox's cards POSTed to their connections.
//!
//! In: outbox records in sled and wake-ups from ingest. Out: HTTP requests, and each card's
//! outcome written back — deleted when delivered, rescheduled after a transient failure,
//! buried as a dead letter when it fails for good or runs out of retries. Guarantees: one
//! worker per connection sends that connection's cards in the order they were accepted; a
//! slow or failing connection delays only itself; every attempt of a card carries the same
//! `Idempotency-Key`; a card is deleted only after its success was seen, so a stop at any
//! point leaves it queued (at least once, never zero times).

pub mod api;
pub mod policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connect::Connections;
use crate::error::ErrorChain;
use crate::ids::ConnectionId;
use crate::render::CardKind;
use crate::store::{now_ms, Connection, DeadLetter, OutboxRecord, Store};

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target took the card.
    Delivered,
    /// Try again later.
    Retry(String),
    /// Trying again will not help.
    Failed(String),
}

/// Judges an answer. For the legacy connector (`teams`) only a 2xx with a numeric body, or a
/// JSON body with `"isSuccessStatusCode":true`, is a success: it answers 200 with an error
/// text when Teams refused the card. Workflows (`workflow`) answer 202 and report nothing more.
pub fn classify(kind: CardKind, status: u16, body: &str) -> Outcome {
    let excerpt = excerpt(body);
    if (200..300).contains(&status) {
        if kind == CardKind::Workflow {
            return Outcome::Delivered;
        }
        let text = body.trim();
        if !text.is_empty() && text.parse::<f64>().is_ok() {
            return Outcome::Delivered;
        }
        if serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("isSuccessStatusCode").and_then(|b| b.as_bool()))
            == Some(true)
        {
            return Outcome::Delivered;
        }
        return Outcome::Retry(format!(
            "HTTP {status} without the connector's success answer: {excerpt}"
        ));
    }
    match status {
        408 | 429 | 500..=599 if status != 501 => {
            Outcome::Retry(format!("HTTP {status}: {excerpt}"))
        }
        _ => Outcome::Failed(format!("HTTP {status}: {excerpt}")),
    }
}

fn excerpt(body: &str) -> String {
    crate::render::truncate_text(body.trim(), 200)
}

/// The outbox workers.
pub struct Deliverer {
    store: Arc<Store>,
    connections: Arc<Connections>,
    client: reqwest::Client,
    schedule: Vec<Duration>,
    workers: Mutex<HashMap<ConnectionId, Arc<Notify>>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Deliverer {
    /// A deliverer with its HTTP client.
    pub fn new(
        store: Arc<Store>,
        connections: Arc<Connections>,
        timeout: Duration,
        schedule: Vec<Duration>,
    ) -> Result<Arc<Self>, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cardwire/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Arc::new(Self {
            store,
            connections,
            client,
            schedule,
            workers: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }))
    }

    /// Starts workers for every connection that has cards queued (after a restart).
    pub fn resume(self: &Arc<Self>) -> Result<usize, crate::store::StoreError> {
        let queued = self.store.queued_connections()?;
        for con in &queued {
            self.wake(con);
        }
        Ok(queued.len())
    }

    /// Tells the connection's worker that it has work, starting it if needed.
    pub fn wake(self: &Arc<Self>, con: &ConnectionId) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let mut workers = self.workers.lock().expect("workers lock");
        if let Some(n) = workers.get(con) {
            n.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        workers.insert(con.clone(), notify.clone());
        drop(workers);
        let this = self.clone();
        let con = con.clone();
        self.tasks
            .spawn(async move { this.work(con, notify).await });
    }

    /// Stops the workers; an attempt in flight is abandoned and its card stays queued.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    async fn work(self: Arc<Self>, con: ConnectionId, notify: Arc<Notify>) {
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            let Some(conn) = self.connections.get(&con) else {
                break;
            };
            let next = match self.store.next_for(&con) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(connection = %con, error = %ErrorChain(&e), "cannot read the outbox; retrying in 1 s");
                    if self.pause(Duration::from_secs(1)).await.is_err() {
                        break;
                    }
                    continue;
                }
            };
            if conn.paused {
                // Held until the connection is resumed (which wakes this worker).
                tokio::select! {
                    _ = notify.notified() => continue,
                    _ = self.shutdown.cancelled() => break,
                }
            }
            let Some((key, mut rec)) = next else {
                tokio::select! {
                    _ = notify.notified() => continue,
                    _ = self.shutdown.cancelled() => break,
                }
            };
            let now = now_ms();
            if rec.not_before_ms > now {
                let wait = Duration::from_millis(rec.not_before_ms - now);
                if self.pause(wait).await.is_err() {
                    break;
                }
                continue;
            }
            let outcome = tokio::select! {
                o = self.attempt(&conn, &rec) => o,
                _ = self.shutdown.cancelled() => break,
            };
            rec.attempts += 1;
            let result = match outcome {
                Outcome::Delivered => {
                    tracing::debug!(connection = %con, delivery = %rec.id, attempts = rec.attempts, "card delivered");
                    self.connections.delivered(&con);
                    self.store.complete(&key)
                }
                Outcome::Retry(why) if (rec.attempts as usize) <= self.schedule.len() => {
                    let wait = self.schedule[rec.attempts as usize - 1];
                    tracing::warn!(connection = %con, delivery = %rec.id, attempt = rec.attempts, retry_in = ?wait, error = %why, "delivery failed; will retry");
                    rec.not_before_ms = now_ms() + wait.as_millis() as u64;
                    rec.last_error = Some(why);
                    self.store.update(&key, &rec)
                }
                Outcome::Retry(why) | Outcome::Failed(why) => {
                    tracing::error!(connection = %con, delivery = %rec.id, attempts = rec.attempts, error = %why, "delivery failed for good; card moved to dead letters");
                    rec.last_error = Some(why.clone());
                    self.store.bury(
                        &key,
                        &DeadLetter {
                            record: rec,
                            reason: why,
                            dead_ms: now_ms(),
                        },
                    )
                }
            };
            if let Err(e) = result {
                tracing::error!(connection = %con, error = %ErrorChain(&e), "cannot record a delivery outcome");
            }
        }
        self.workers.lock().expect("workers lock").remove(&con);
    }

    /// Waits `d`, or until shutdown (Err).
    async fn pause(&self, d: Duration) -> Result<(), ()> {
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = self.shutdown.cancelled() => Err(()),
        }
    }

    async fn attempt(&self, conn: &Connection, rec: &OutboxRecord) -> Outcome {
        let sent = self
            .client
            .post(&conn.url)
            .header(CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", rec.id.as_str())
            .body(rec.body.clone())
            .send()
            .await;
        match sent {
            Ok(res) => {
                let status = res.status().as_u16();
                let body = res.text().await.unwrap_or_default();
                classify(conn.kind, status, &body)
            }
            // The error text can contain the URL, which is a secret: keep only its kind.
            Err(e) => Outcome::Retry(transport_error(&e)),
        }
    }
}

fn transport_error(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    format!("transport: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_connector_answers() {
        use CardKind::*;
        assert_eq!(classify(Teams, 200, "1"), Outcome::Delivered);
        assert_eq!(
            classify(
                Teams,
                200,
                r#"{"isSuccessStatusCode":true,"statusCode":200}"#
            ),
            Outcome::Delivered
        );
        assert!(matches!(
            classify(Teams, 200, "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429"),
            Outcome::Retry(_)
        ));
        assert!(matches!(classify(Teams, 200, ""), Outcome::Retry(_)));
        assert_eq!(classify(Workflow, 202, ""), Outcome::Delivered);
        assert!(matches!(classify(Workflow, 429, ""), Outcome::Retry(_)));
        assert!(matches!(classify(Workflow, 503, ""), Outcome::Retry(_)));
        assert!(matches!(classify(Workflow, 501, ""), Outcome::Failed(_)));
        assert!(matches!(
            classify(Teams, 400, "Summary or Text is required"),
            Outcome::Failed(_)
        ));
        assert!(matches!(classify(Teams, 410, ""), Outcome::Failed(_)));
    }
}
