//! Pacing: what a platform counts requests against ([`pace_key`]), how long Discord's bucket
//! says to hold ([`bucket_wait`]), and the budget of invalid answers Discord tolerates
//! ([`InvalidBudget`]).

use std::collections::VecDeque;
use std::time::Duration;

use crate::render::CardKind;

/// What pacing counts requests against: the webhook URL, except Google Chat, whose limit is
/// per space (`/v1/spaces/{space}/messages`), shared by every webhook in it.
pub fn pace_key(kind: CardKind, url: &str) -> String {
    if kind == CardKind::GoogleChat {
        if let Some(space) = url::Url::parse(url).ok().and_then(|u| {
            let mut parts = u.path_segments()?;
            (parts.next() == Some("v1") && parts.next() == Some("spaces"))
                .then(|| parts.next().map(str::to_string))
                .flatten()
        }) {
            return format!("google_chat space {space}");
        }
    }
    url.to_string()
}

/// How long to hold a connection after an answer that says its rate-limit bucket is empty:
/// Discord's `X-RateLimit-Remaining: 0` with `X-RateLimit-Reset-After` (seconds, decimals),
/// learned from every answer instead of guessed. At most a minute.
pub fn bucket_wait(remaining: Option<&str>, reset_after: Option<&str>) -> Option<Duration> {
    let remaining: u64 = remaining?.trim().parse().ok()?;
    let reset: f64 = reset_after?.trim().parse().ok()?;
    (remaining == 0 && reset.is_finite() && reset > 0.0)
        .then(|| Duration::from_secs_f64(reset.min(60.0)))
}

/// Discord bans an address that makes 10,000 invalid requests (401, 403, 429 but those of a
/// shared bucket) in 10 minutes. cardwire keeps to a tenth of that: past `limit` such answers
/// in the window, Discord deliveries wait until the oldest leaves it.
#[derive(Debug)]
pub struct InvalidBudget {
    window_ms: u64,
    limit: usize,
    seen: VecDeque<u64>,
}

impl InvalidBudget {
    /// Discord's window (10 minutes), a tenth of its limit.
    pub fn discord() -> Self {
        Self::new(10 * 60 * 1000, 1_000)
    }

    /// At most `limit` invalid answers in any `window_ms`.
    pub fn new(window_ms: u64, limit: usize) -> Self {
        Self {
            window_ms,
            limit,
            seen: VecDeque::new(),
        }
    }

    /// Whether an answer counts: 401, 403, or a 429 not of a shared bucket.
    pub fn counts(status: u16, scope: Option<&str>) -> bool {
        matches!(status, 401 | 403) || (status == 429 && scope != Some("shared"))
    }

    /// Notes an invalid answer at `now_ms`.
    pub fn record(&mut self, now_ms: u64) {
        self.seen.push_back(now_ms);
    }

    /// How long to wait before the next request at `now_ms` (zero: go).
    pub fn wait(&mut self, now_ms: u64) -> Duration {
        while self
            .seen
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= self.window_ms)
        {
            self.seen.pop_front();
        }
        if self.seen.len() < self.limit {
            return Duration::ZERO;
        }
        let oldest = self.seen[self.seen.len() - self.limit];
        Duration::from_millis((oldest + self.window_ms).saturating_sub(now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_chat_is_paced_per_space_the_others_per_url() {
        let a = "https://chat.googleapis.com/v1/spaces/AAA/messages?key=k&token=t1";
        let b = "https://chat.googleapis.com/v1/spaces/AAA/messages?key=k&token=t2";
        let c = "https://chat.googleapis.com/v1/spaces/BBB/messages?key=k&token=t1";
        assert_eq!(
            pace_key(CardKind::GoogleChat, a),
            pace_key(CardKind::GoogleChat, b)
        );
        assert_ne!(
            pace_key(CardKind::GoogleChat, a),
            pace_key(CardKind::GoogleChat, c)
        );
        let s = "https://hooks.slack.com/services/T/B/x";
        assert_eq!(pace_key(CardKind::Slack, s), s);
        // Not Google Chat's shape (a test receiver): the URL.
        assert_eq!(
            pace_key(CardKind::GoogleChat, "http://127.0.0.1:9/chat"),
            "http://127.0.0.1:9/chat"
        );
    }

    #[test]
    fn an_empty_bucket_holds_until_its_reset() {
        assert_eq!(
            bucket_wait(Some("0"), Some("1.25")),
            Some(Duration::from_millis(1250))
        );
        assert_eq!(bucket_wait(Some("3"), Some("1.25")), None);
        assert_eq!(bucket_wait(Some("0"), None), None);
        assert_eq!(bucket_wait(None, Some("2")), None);
        assert_eq!(bucket_wait(Some("0"), Some("NaN")), None);
        assert_eq!(
            bucket_wait(Some("0"), Some("86400")),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn the_invalid_request_budget_stays_far_from_discords_ban() {
        assert!(InvalidBudget::counts(401, None));
        assert!(InvalidBudget::counts(403, None));
        assert!(InvalidBudget::counts(429, Some("user")));
        assert!(!InvalidBudget::counts(429, Some("shared")));
        assert!(!InvalidBudget::counts(404, None));
        let mut b = InvalidBudget::new(1_000, 3);
        for t in [0, 100, 200] {
            assert_eq!(b.wait(t), Duration::ZERO);
            b.record(t);
        }
        // A fourth would pass the limit: wait until the first leaves the window.
        assert_eq!(b.wait(300), Duration::from_millis(700));
        assert_eq!(b.wait(1_000), Duration::ZERO);
        // Discord's: 1,000 in 10 minutes, a tenth of the 10,000 that bans.
        let mut d = InvalidBudget::discord();
        for t in 0..1_000 {
            d.record(t);
        }
        assert!(d.wait(1_000) > Duration::from_secs(590));
    }
}
