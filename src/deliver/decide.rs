//! Delivery's decisions, pure functions of what happened: what an answer means for its card
//! ([`classify`]: delivered, retry, throttled, dead, broken), what comes next ([`next_step`]),
//! how long `Retry-After` says to wait, the schedule's jitter, and how a Discord card without
//! a key goes to a forum channel ([`discord_send`]).

use std::time::Duration;

use rand::Rng;

use crate::render::CardKind;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target took the card.
    Delivered,
    /// Try again later; `pause` is how long the target asked the whole connection to wait
    /// (429 with Retry-After).
    Retry {
        /// What happened.
        why: String,
        /// Whether the target is throttling (429): the connection pauses.
        throttled: bool,
        /// The target's Retry-After, if it gave one.
        retry_after: Option<Duration>,
    },
    /// Trying this card again will not help (400, 413, ...).
    Failed(String),
    /// The webhook URL is gone (404, 410): the connection is broken.
    Gone(String),
}

impl Outcome {
    /// The outcome's name in metrics: delivered, retry, throttled, failed or gone.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry {
                throttled: true, ..
            } => "throttled",
            Self::Retry { .. } => "retry",
            Self::Failed(_) => "failed",
            Self::Gone(_) => "gone",
        }
    }
}

/// What happens after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Delivered: record it.
    Done,
    /// Throttled (429): the whole connection waits `wait`; the card keeps its place; the next
    /// 429 without Retry-After waits `next_backoff`.
    Pause {
        /// How long the connection waits.
        wait: Duration,
        /// The pause for the next 429 without Retry-After.
        next_backoff: Duration,
    },
    /// Try this card again after `wait` (the schedule's next step, jittered).
    Retry {
        /// How long the card waits.
        wait: Duration,
    },
    /// The webhook URL is gone: the connection is broken and its cards become dead letters.
    Break,
    /// Failed for good, or out of retries: the card becomes a dead letter.
    Bury,
}

impl Step {
    /// The live tail's name for it: delivered, retrying or dead.
    pub fn live_kind(self) -> &'static str {
        match self {
            Self::Done => "delivered",
            Self::Pause { .. } | Self::Retry { .. } => "retrying",
            Self::Break | Self::Bury => "dead",
        }
    }
}

/// The next step for a card after an attempt: `attempts` made so far (this one included), the
/// retry `schedule`, the pause for a 429 without Retry-After, and `jitter` applied to a
/// scheduled wait. Pauses double up to 10 minutes; a Retry-After is taken as given.
pub fn next_step(
    outcome: &Outcome,
    attempts: u32,
    schedule: &[Duration],
    throttle_backoff: Duration,
    jitter: impl FnOnce(Duration) -> Duration,
) -> Step {
    match outcome {
        Outcome::Delivered => Step::Done,
        Outcome::Retry {
            throttled: true,
            retry_after,
            ..
        } => Step::Pause {
            wait: retry_after.unwrap_or(throttle_backoff),
            next_backoff: (throttle_backoff * 2).min(Duration::from_secs(600)),
        },
        Outcome::Retry { .. } if attempts >= 1 && (attempts as usize) <= schedule.len() => {
            Step::Retry {
                wait: jitter(schedule[attempts as usize - 1]),
            }
        }
        Outcome::Gone(_) => Step::Break,
        Outcome::Retry { .. } | Outcome::Failed(_) => Step::Bury,
    }
}

/// Judges an answer. For the legacy connector (`teams`) only a 2xx with a numeric body, or a
/// JSON body with `"isSuccessStatusCode":true`, is a success; a 200 that says
/// `Microsoft Teams endpoint returned HTTP error NNN` is judged as status NNN. Workflows
/// (`workflow`) answer 202 and report nothing more.
///
/// Slack, Discord, Google Chat and Mattermost answer a 2xx for a posted message (`ok`, 204,
/// the message JSON). The answers that mean the webhook URL is gone for good break the
/// connection: Slack's 403/404/410 (`action_prohibited`, `no_service`, `channel_not_found`,
/// `channel_is_archived`, `team_disabled`, `invalid_token`), Discord's 401/403/404 (Unknown
/// Webhook), Google Chat's 403/404, Mattermost's 404 or `Invalid webhook`. A 429 pauses the
/// connection for `Retry-After`, or Discord's `retry_after` in the body.
pub fn classify(kind: CardKind, status: u16, retry_after: Option<&str>, body: &str) -> Outcome {
    let excerpt = excerpt(body);
    let mut status = status;
    if !kind.is_teams() {
        if (200..300).contains(&status) {
            return Outcome::Delivered;
        }
        let gone = match kind {
            CardKind::Slack => matches!(status, 403 | 404 | 410),
            CardKind::Discord => matches!(status, 401 | 403 | 404),
            CardKind::GoogleChat => matches!(status, 403 | 404),
            CardKind::Mattermost => status == 404 || body.contains("Invalid webhook"),
            CardKind::Teams | CardKind::Workflow => false,
        };
        if gone {
            return Outcome::Gone(format!("HTTP {status}: {excerpt}"));
        }
        if status == 429 {
            let in_body = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("retry_after").and_then(serde_json::Value::as_f64))
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(86_400.0)));
            return Outcome::Retry {
                why: format!("HTTP 429: {excerpt}"),
                throttled: true,
                retry_after: retry_after.and_then(parse_retry_after).or(in_body),
            };
        }
    }
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
        match inner_status(text) {
            Some(inner) => status = inner,
            None => {
                return Outcome::Retry {
                    why: format!("HTTP {status} without the connector's success answer: {excerpt}"),
                    throttled: false,
                    retry_after: None,
                }
            }
        }
    }
    let why = format!("HTTP {status}: {excerpt}");
    match status {
        429 => Outcome::Retry {
            why,
            throttled: true,
            retry_after: retry_after.and_then(parse_retry_after),
        },
        408 | 500..=599 if status != 501 => Outcome::Retry {
            why,
            throttled: false,
            retry_after: None,
        },
        404 | 410 => Outcome::Gone(why),
        _ => Outcome::Failed(why),
    }
}

/// The status inside the legacy connector's "200 with an error text".
pub(super) fn inner_status(text: &str) -> Option<u16> {
    let rest = text.split("returned HTTP error ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The longest wait a `Retry-After` can ask for: a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// `Retry-After`: seconds, or an HTTP date; at most [`MAX_RETRY_AFTER`] either way.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite())
            .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
            .min(MAX_RETRY_AFTER),
    )
}

/// A Discord card without a key (or whose update is `new`) as it goes to its connection: the
/// body. Outside a forum channel the card's `thread_name`
/// is dropped (Discord refuses it there). In a forum every message opens a thread, named by
/// its `thread_name` or its title. (Cards with a key: [`super::updates::discord_request`].)
pub fn discord_send(body: &str, forum: bool) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if !forum && !body.contains("\"thread_name\"") {
        return Cow::Borrowed(body);
    }
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(body) else {
        return Cow::Borrowed(body);
    };
    let name = v
        .as_object_mut()
        .and_then(|o| o.remove("thread_name"))
        .and_then(|t| t.as_str().map(str::to_string));
    if forum {
        open_forum_thread(&mut v, name);
    }
    Cow::Owned(v.to_string())
}

/// Names the forum thread a Discord message opens: `name` (the card's thread name), else the
/// embed's title, else "cardwire".
pub(super) fn open_forum_thread(v: &mut serde_json::Value, name: Option<String>) {
    let name = name
        .or_else(|| {
            v.pointer("/embeds/0/title")
                .and_then(serde_json::Value::as_str)
                .map(|t| crate::render::truncate_text(t, 100))
        })
        .unwrap_or_else(|| "cardwire".into());
    v["thread_name"] = serde_json::Value::String(name);
}

/// A wait from the schedule, ±20 %.
pub fn jittered(d: Duration, rng: &mut impl Rng) -> Duration {
    d.mul_f64(rng.random_range(0.8..=1.2))
}

/// An answer's body as an attempt records it: trimmed, at most 200 characters.
pub(super) fn excerpt(body: &str) -> String {
    crate::render::truncate_text(body.trim(), 200)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn discord_threads_only_in_a_forum() {
        let card = r#"{"embeds":[{"title":"T"}],"thread_name":"repo main"}"#;
        // Outside a forum: the thread name is dropped.
        assert!(!discord_send(card, false).contains("thread_name"));
        // A card without one is sent as it is.
        let plain = r#"{"embeds":[{"title":"T"}]}"#;
        assert!(matches!(
            discord_send(plain, false),
            std::borrow::Cow::Borrowed(_)
        ));
        // In a forum: it opens a thread by its name, or its title.
        assert!(discord_send(card, true).contains(r#""thread_name":"repo main""#));
        assert!(discord_send(plain, true).contains(r#""thread_name":"T""#));
    }

    fn retry(throttled: bool, after: Option<u64>) -> impl Fn(&Outcome) -> bool {
        move |o| matches!(o, Outcome::Retry { throttled: t, retry_after: a, .. } if *t == throttled && *a == after.map(Duration::from_secs))
    }

    #[test]
    fn the_next_step_after_each_outcome() {
        let schedule = [Duration::from_secs(10), Duration::from_secs(60)];
        let second = Duration::from_secs(1);
        let same = |d| d;
        let step = |o: &Outcome, attempts| next_step(o, attempts, &schedule, second, same);
        let failed = Outcome::Retry {
            why: "HTTP 500".into(),
            throttled: false,
            retry_after: None,
        };
        assert_eq!(step(&Outcome::Delivered, 1), Step::Done);
        assert_eq!(step(&failed, 1), Step::Retry { wait: schedule[0] });
        assert_eq!(step(&failed, 2), Step::Retry { wait: schedule[1] });
        assert_eq!(step(&failed, 3), Step::Bury, "out of retries");
        assert_eq!(step(&Outcome::Failed("HTTP 400".into()), 1), Step::Bury);
        assert_eq!(step(&Outcome::Gone("HTTP 410".into()), 1), Step::Break);
        // A 429: the connection pauses as asked, or doubles its own pause up to 10 minutes,
        // whatever the attempts, and the card keeps its place.
        let throttled = |after| Outcome::Retry {
            why: "HTTP 429".into(),
            throttled: true,
            retry_after: after,
        };
        assert_eq!(
            step(&throttled(Some(Duration::from_secs(30))), 9),
            Step::Pause {
                wait: Duration::from_secs(30),
                next_backoff: Duration::from_secs(2)
            }
        );
        assert_eq!(
            next_step(
                &throttled(None),
                1,
                &schedule,
                Duration::from_secs(400),
                same
            ),
            Step::Pause {
                wait: Duration::from_secs(400),
                next_backoff: Duration::from_secs(600)
            }
        );
        // The scheduled wait goes through the jitter.
        assert_eq!(
            next_step(&failed, 1, &schedule, second, |d| d * 2),
            Step::Retry {
                wait: Duration::from_secs(20)
            }
        );
        assert_eq!(
            [Step::Done, step(&failed, 1), step(&failed, 3)].map(Step::live_kind),
            ["delivered", "retrying", "dead"]
        );
    }

    #[test]
    fn answers_are_judged_as_teams_means_them() {
        use CardKind::*;
        assert_eq!(classify(Teams, 200, None, "1"), Outcome::Delivered);
        assert_eq!(
            classify(
                Teams,
                200,
                None,
                r#"{"isSuccessStatusCode":true,"statusCode":200}"#
            ),
            Outcome::Delivered
        );
        let legacy429 = classify(Teams, 200, None, "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with ContextId x");
        assert!(retry(true, None)(&legacy429), "{legacy429:?}");
        let legacy400 = classify(Teams, 200, None, "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 400 with ContextId x");
        assert!(matches!(legacy400, Outcome::Failed(_)), "{legacy400:?}");
        assert!(retry(false, None)(&classify(Teams, 200, None, "")));
        assert_eq!(classify(Workflow, 202, None, ""), Outcome::Delivered);
        assert!(retry(true, Some(2))(&classify(
            Workflow,
            429,
            Some("2"),
            ""
        )));
        assert!(retry(false, None)(&classify(Workflow, 503, None, "")));
        assert!(retry(false, None)(&classify(Workflow, 408, None, "")));
        assert!(matches!(
            classify(Workflow, 501, None, ""),
            Outcome::Failed(_)
        ));
        assert!(matches!(
            classify(Teams, 400, None, "Summary or Text is required"),
            Outcome::Failed(_)
        ));
        assert!(matches!(classify(Teams, 413, None, ""), Outcome::Failed(_)));
        assert!(matches!(classify(Teams, 410, None, ""), Outcome::Gone(_)));
        assert!(matches!(classify(Teams, 404, None, ""), Outcome::Gone(_)));
    }

    /// Each platform's answers, from its documentation (render::portable's sources in
    /// ../shared/reference/more-chats.md): success, a URL that is gone, throttling, failure.
    #[test]
    fn answers_are_judged_as_each_platform_means_them() {
        use CardKind::*;
        assert_eq!(classify(Slack, 200, None, "ok"), Outcome::Delivered);
        for (status, body) in [
            (404, "no_service"),
            (404, "channel_not_found"),
            (410, "channel_is_archived"),
            (403, "action_prohibited"),
        ] {
            assert!(
                matches!(classify(Slack, status, None, body), Outcome::Gone(_)),
                "{body}"
            );
        }
        assert!(matches!(
            classify(Slack, 400, None, "invalid_payload"),
            Outcome::Failed(_)
        ));
        assert!(retry(false, None)(&classify(
            Slack,
            500,
            None,
            "rollup_error"
        )));
        assert!(retry(true, Some(30))(&classify(Slack, 429, Some("30"), "")));

        assert_eq!(classify(Discord, 204, None, ""), Outcome::Delivered);
        assert!(matches!(
            classify(
                Discord,
                404,
                None,
                r#"{"message": "Unknown Webhook", "code": 10015}"#
            ),
            Outcome::Gone(_)
        ));
        let throttled = classify(
            Discord,
            429,
            None,
            r#"{"message": "You are being rate limited.", "retry_after": 1.5, "global": false}"#,
        );
        assert!(
            matches!(&throttled, Outcome::Retry { throttled: true, retry_after: Some(d), .. } if *d == Duration::from_millis(1500)),
            "{throttled:?}"
        );
        assert!(
            retry(true, Some(2))(&classify(Discord, 429, Some("2"), r#"{"retry_after": 9}"#)),
            "the header first"
        );
        assert!(matches!(
            classify(Discord, 400, None, r#"{"code": 50006}"#),
            Outcome::Failed(_)
        ));

        assert_eq!(
            classify(GoogleChat, 200, None, r#"{"name": "spaces/x/messages/y"}"#),
            Outcome::Delivered
        );
        assert!(matches!(
            classify(
                GoogleChat,
                403,
                None,
                r#"{"error": {"code": 403, "status": "PERMISSION_DENIED"}}"#
            ),
            Outcome::Gone(_)
        ));
        assert!(retry(true, None)(&classify(
            GoogleChat,
            429,
            None,
            r#"{"error": {"code": 429}}"#
        )));

        assert_eq!(classify(Mattermost, 200, None, "ok"), Outcome::Delivered);
        assert!(matches!(
            classify(
                Mattermost,
                400,
                None,
                r#"{"id": "web.incoming_webhook.invalid.app_error", "message": "Invalid webhook"}"#
            ),
            Outcome::Gone(_)
        ));
        assert!(matches!(
            classify(Mattermost, 400, None, "Couldn't find the channel"),
            Outcome::Failed(_)
        ));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        // A date years ahead waits a day, as a number of seconds that large does.
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("99999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let d = parse_retry_after(&soon).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(28),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn the_schedule_is_jittered_within_twenty_percent() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let base = Duration::from_secs(30);
        let waits: Vec<Duration> = (0..1000).map(|_| jittered(base, &mut rng)).collect();
        assert!(waits
            .iter()
            .all(|w| *w >= base.mul_f64(0.8) && *w <= base.mul_f64(1.2)));
        let spread =
            waits.iter().max().unwrap().as_secs_f64() - waits.iter().min().unwrap().as_secs_f64();
        assert!(spread > 10.0, "the jitter spreads retries: {spread}");
        let total: Duration = crate::config::DeliveryConfig::default()
            .retry_schedule
            .iter()
            .sum();
        assert!(
            (16..=18).contains(&(total.as_secs() / 3600)),
            "about 17 hours: {total:?}"
        );
    }
}
