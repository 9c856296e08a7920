//! The live tail behind `GET /api/stream`: events received, rules matched, cards queued and
//! delivery outcomes, as they happen, to whoever is listening.
//!
//! A bounded broadcast channel: nothing is built or sent while nobody listens, and a listener
//! that falls behind is told how many notices it missed rather than slowing the pipeline. The
//! tail is for watching, not for bookkeeping: the deliveries API is the record.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How many notices a slow listener may fall behind before it misses some.
const BACKLOG: usize = 1024;

/// One notice: its type (`received`, `matched`, `queued`, `delivered`, `retrying`, `dead`) and
/// its JSON.
pub type Notice = Arc<(&'static str, String)>;

/// The live tail's sender.
#[derive(Clone)]
pub struct Live {
    tx: broadcast::Sender<Notice>,
    closed: CancellationToken,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
            closed: CancellationToken::new(),
        }
    }
}

impl Live {
    /// Whether anyone listens (build notices only then).
    pub fn listening(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Sends a notice to every listener.
    pub fn emit(&self, kind: &'static str, notice: Value) {
        if self.listening() {
            let _ = self.tx.send(Arc::new((kind, notice.to_string())));
        }
    }

    /// A new listener.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.tx.subscribe()
    }

    /// Resolves when the server is stopping (streams end then, so shutdown is not held up).
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// Ends every stream.
    pub fn close(&self) {
        self.closed.cancel();
    }
}
