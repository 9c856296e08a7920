//! Noise control on a fake clock: limits that fold, dedup, digests.

use std::sync::Arc;
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use serde_json::{json, Value};

use super::*;
use crate::config::Config;
use crate::event::Event;
use crate::pipeline::Pipeline;
use crate::render::CardKind;
use crate::rules::RuleSet;
use crate::store::prelude::*;

fn rule(yaml: &str) -> Rule {
    let config = Config::default();
    let rs = RuleSet::load(
        &[(std::path::PathBuf::from("t.yaml"), yaml.to_string())],
        &config.sources,
        |_, _| true,
    )
    .unwrap();
    rs.rules()[0].clone()
}

fn conn(digest: Option<Value>) -> Connection {
    Connection {
        digest,
        ..Connection::new(
            "c",
            "https://x.webhook.office.com/a",
            CardKind::Teams,
            vec![],
            Default::default(),
        )
    }
}

fn item(n: usize) -> Item {
    Item {
        rule: "r".into(),
        event: "push".into(),
        repository: "org/repo".into(),
        title: format!("push {n}"),
        headline: format!("commit {n}"),
        url: format!("https://x/{n}"),
        at_ms: 0,
        subject: None,
    }
}

fn renderer() -> &'static Renderer {
    static R: std::sync::OnceLock<Pipeline> = std::sync::OnceLock::new();
    &R.get_or_init(|| Pipeline::load(&Config::default()).unwrap())
        .renderer
}

/// Pushes one card through dedup, limit and decision, as ingest does.
fn offer<C: Clock + Clone>(noise: &Noise<C>, r: &Rule, c: &Connection, n: usize) -> Decision {
    let limited = r.limit.as_ref().and_then(|l| {
        noise
            .limit_allows(r, l, "org/repo")
            .err()
            .map(|due| ("org/repo".to_string(), due))
    });
    noise.decide(r, c, limited, || item(n)).unwrap()
}

#[tokio::test]
async fn fifty_events_against_five_a_minute_give_five_cards_then_one_summary_of_forty_five() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path(), None).unwrap();
    let clock = FakeRelativeClock::default();
    let noise = Noise::with_clock(store.clone(), clock.clone());
    let r = rule("- name: r\n  source: github\n  event: push\n  template: t\n  limit: {rate: 5/1m, per: '{{payload.repository.full_name}}'}\n");
    let c = conn(None);
    let mut sent = 0;
    for n in 0..50 {
        clock.advance(Duration::from_millis(20)); // 50 events in one second
        if offer(&noise, &r, &c, n) == Decision::Send {
            sent += 1;
        }
    }
    assert_eq!(sent, 5);
    assert_eq!(noise.stats("r").folded, 45);
    // Nothing yet: the limiter allows again 12 s after the burst.
    assert!(noise
        .tick(renderer(), std::slice::from_ref(&c))
        .unwrap()
        .is_empty());

    // A restart in the middle loses nothing: the folds are in sled.
    drop(noise);
    let noise = Noise::with_clock(store.clone(), clock.clone());
    clock.advance(Duration::from_secs(13)); // the first token returns 12 s after the burst began
    let woken = noise.tick(renderer(), std::slice::from_ref(&c)).unwrap();
    assert_eq!(woken, vec![c.id.clone()]);
    let (_, summary) = store.next_for(&c.id).unwrap().unwrap();
    let card: Value = serde_json::from_str(&summary.body).unwrap();
    let text = card.to_string();
    assert!(
        text.contains("45 more push events") && text.contains("org/repo"),
        "{text}"
    );
    assert!(
        text.contains("push 5") && text.contains("push 14") && !text.contains("push 15"),
        "names the first 10: {text}"
    );
    assert!(text.contains("35 more"), "counts the rest: {text}");
    // Exactly one summary.
    assert!(noise
        .tick(renderer(), std::slice::from_ref(&c))
        .unwrap()
        .is_empty());
    assert_eq!(store.queued(), 1);
}

#[tokio::test]
async fn a_summary_of_one_subjects_cards_changes_that_subjects_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path(), None).unwrap();
    let clock = FakeRelativeClock::default();
    let noise = Noise::with_clock(store.clone(), clock.clone());
    let r = rule("- name: r\n  source: github\n  event: push\n  template: t\n  limit: {rate: 1/1m, per: '{{payload.repository.full_name}}'}\n");
    let c = conn(None);
    let keyed = |n: usize, key: &str| Item {
        subject: Some((key.to_string(), crate::render::Update::Replace)),
        ..item(n)
    };
    let offer_keyed = |n: usize, key: &str| {
        let limited = noise
            .limit_allows(&r, r.limit.as_ref().unwrap(), "org/repo")
            .err()
            .map(|due| ("org/repo".to_string(), due));
        noise.decide(&r, &c, limited, || keyed(n, key)).unwrap()
    };
    assert_eq!(offer_keyed(0, "org/repo#1"), Decision::Send);
    assert_eq!(offer_keyed(1, "org/repo#1"), Decision::Folded);
    assert_eq!(offer_keyed(2, "org/repo#1"), Decision::Folded);
    clock.advance(Duration::from_secs(61));
    noise.tick(renderer(), std::slice::from_ref(&c)).unwrap();
    let (_, summary) = store.next_for(&c.id).unwrap().unwrap();
    assert_eq!(summary.key.as_deref(), Some("org/repo#1"));
    assert_eq!(summary.update, Some(crate::render::Update::Replace));
    // Folded cards of two subjects: a summary of its own.
    assert_eq!(
        shared_subject(&[keyed(1, "a"), keyed(2, "b")]),
        None,
        "two keys"
    );
    assert_eq!(
        shared_subject(&[keyed(1, "a"), item(2)]),
        None,
        "a card without one"
    );
    assert_eq!(shared_subject(&[]), None);
}

#[tokio::test]
async fn dedup_drops_repeats_inside_the_window_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path(), None).unwrap();
    let clock = FakeRelativeClock::default();
    let noise = Noise::with_clock(store, clock.clone());
    let r = rule("- name: d\n  source: github\n  event: push\n  template: t\n  dedup: {key: '{{payload.after}}', window: 10m}\n");
    let window = r.dedup.as_ref().unwrap().window;
    assert!(!noise.is_duplicate(&r, "abc", window).unwrap());
    clock.advance(Duration::from_secs(60));
    assert!(noise.is_duplicate(&r, "abc", window).unwrap());
    assert!(!noise.is_duplicate(&r, "def", window).unwrap());
    clock.advance(Duration::from_secs(600));
    assert!(
        !noise.is_duplicate(&r, "abc", window).unwrap(),
        "outside the window it counts again"
    );
    assert_eq!(noise.stats("d").deduped, 1);
}

#[tokio::test]
async fn teams_hourly_cap_folds_instead_of_being_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path(), None).unwrap();
    let clock = FakeRelativeClock::default();
    let noise = Noise::with_clock(store.clone(), clock.clone());
    let r = rule("- name: r\n  source: github\n  event: push\n  template: t\n");
    let c = conn(None);
    let sent = (0..130)
        .filter(|n| offer(&noise, &r, &c, *n) == Decision::Send)
        .count();
    assert_eq!(sent, 100, "at most 100 an hour per webhook");
    clock.advance(Duration::from_secs(40));
    let woken = noise.tick(renderer(), std::slice::from_ref(&c)).unwrap();
    assert_eq!(woken.len(), 1);
    let (_, summary) = store.next_for(&c.id).unwrap().unwrap();
    assert!(summary.body.contains("30 more"), "{}", summary.body);
}

#[tokio::test]
async fn a_connection_limit_folds_what_exceeds_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path(), None).unwrap();
    let clock = FakeRelativeClock::default();
    let noise = Noise::with_clock(store.clone(), clock.clone());
    let r = rule("- name: r\n  source: github\n  event: push\n  template: t\n");
    let mut c = conn(None);
    c.limit = Some("3/1h".into());
    let sent = (0..5)
        .filter(|n| offer(&noise, &r, &c, *n) == Decision::Send)
        .count();
    assert_eq!(sent, 3);
    clock.advance(Duration::from_secs(1201));
    assert_eq!(
        noise
            .tick(renderer(), std::slice::from_ref(&c))
            .unwrap()
            .len(),
        1
    );
    let (_, summary) = store.next_for(&c.id).unwrap().unwrap();
    assert!(
        summary.body.contains("2 more") && summary.body.contains("this connection's limit"),
        "{}",
        summary.body
    );
}

#[tokio::test]
async fn digests_hourly_and_at_nine_in_berlin_and_after_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path(), None).unwrap();
    let clock = FakeRelativeClock::default();
    let noise = Noise::with_clock(store.clone(), clock.clone());
    let r = rule("- name: r\n  source: github\n  event: push\n  template: t\n");
    let immediate =
        rule("- name: urgent\n  source: github\n  event: push\n  template: t\n  digest: false\n");
    let c = conn(Some(json!({"every": "1h"})));
    // The first tick sets the schedule; nothing is due yet.
    assert!(noise
        .tick(renderer(), std::slice::from_ref(&c))
        .unwrap()
        .is_empty());
    let due = store.digest_due(&c.id).unwrap().unwrap();
    assert!(due > noise.now_ms() && due - noise.now_ms() <= 3_600_000);
    assert_eq!(offer(&noise, &r, &c, 1), Decision::Digested);
    assert_eq!(offer(&noise, &r, &c, 2), Decision::Digested);
    assert_eq!(
        offer(&noise, &immediate, &c, 3),
        Decision::Send,
        "rules with digest: false stay immediate"
    );
    clock.advance(Duration::from_millis(due - noise.now_ms() + 1));
    assert_eq!(
        noise.tick(renderer(), std::slice::from_ref(&c)).unwrap(),
        vec![c.id.clone()]
    );
    let (_, digest) = store.next_for(&c.id).unwrap().unwrap();
    assert!(
        digest.body.contains("push 1")
            && digest.body.contains("push 2")
            && digest.body.contains("org/repo"),
        "{}",
        digest.body
    );
    // An empty period sends nothing.
    clock.advance(Duration::from_secs(3600));
    assert!(noise
        .tick(renderer(), std::slice::from_ref(&c))
        .unwrap()
        .is_empty());

    // A digest that fell due while cardwire was down goes out at start.
    offer(&noise, &r, &c, 4);
    assert!(store.digest_due(&c.id).unwrap().is_some());
    drop(noise);
    clock.advance(Duration::from_secs(5 * 3600));
    let noise = Noise::with_clock(store.clone(), clock.clone());
    // (The restarted clock's origin is the wall clock; move the due time into its past.)
    store
        .set_digest_due(&c.id, noise.now_ms() - 5 * 3_600_000)
        .unwrap();
    assert_eq!(
        noise.tick(renderer(), std::slice::from_ref(&c)).unwrap(),
        vec![c.id.clone()]
    );
    assert!(
        store.digest_due(&c.id).unwrap().unwrap() > noise.now_ms(),
        "the next is on the schedule, not a backlog"
    );

    // 09:00 Europe/Berlin on weekdays, across the DST change, is the schedule's own test
    // (schedule::tests); here: a connection with it gets its first due time from it.
    let berlin = conn(Some(
        json!({"at": "09:00", "days": ["mon", "tue", "wed", "thu", "fri"], "tz": "Europe/Berlin"}),
    ));
    noise
        .tick(renderer(), std::slice::from_ref(&berlin))
        .unwrap();
    let due =
        jiff::Timestamp::from_millisecond(store.digest_due(&berlin.id).unwrap().unwrap() as i64)
            .unwrap();
    let local = due.to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
    assert_eq!((local.hour(), local.minute()), (9, 0));
    assert!(!matches!(
        local.weekday(),
        jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
    ));
}

#[test]
fn an_item_takes_the_title_and_link_of_the_card() {
    let r = rule("- name: r\n  source: github\n  event: push\n  template: t\n");
    let e = Event::for_test(
        "github",
        "push",
        json!({"repository": {"full_name": "o/r"}}),
        &[],
    );
    let card = r#"{"title": "o/r: pushed to main", "potentialAction": [{"targets": [{"uri": "https://github.com/o/r/compare/a...b"}]}]}"#;
    let i = item_of(&r, &e, Some(card), None, 7);
    assert_eq!(
        (i.title.as_str(), i.url.as_str(), i.repository.as_str()),
        (
            "o/r: pushed to main",
            "https://github.com/o/r/compare/a...b",
            "o/r"
        )
    );
    let _ = Arc::new(0);
}

/// What a digest or summary names each card by: the thing's own title, numbered.
#[test]
fn a_headline_is_what_the_event_is_about() {
    use serde_json::json;
    let cases = [
        (
            json!({"issue": {"number": 7, "title": "Spelling error"}, "repository": {"full_name": "o/r"}}),
            "#7 Spelling error",
        ),
        (
            json!({"pull_request": {"number": 2, "title": "Fix  it "}}),
            "#2 Fix  it",
        ),
        (
            json!({"object_kind": "merge_request", "object_attributes": {"iid": 5, "title": "MR"}}),
            "!5 MR",
        ),
        (
            json!({"object_kind": "issue", "object_attributes": {"iid": 5, "title": "Bug"}}),
            "#5 Bug",
        ),
        (
            json!({"release": {"name": null, "tag_name": "v1.0"}}),
            "v1.0",
        ),
        (
            json!({"head_commit": {"message": "first line\n\nbody"}}),
            "first line",
        ),
        (
            json!({"commonAnnotations": {}, "commonLabels": {"alertname": "HighLatency"}}),
            "HighLatency",
        ),
        (
            json!({"issue": {"title": ""}, "sender": {"login": "x"}}),
            "",
        ),
        (json!({"pull_request": {"title": "t"}}), "t"),
    ];
    for (payload, want) in cases {
        assert_eq!(super::headline(&payload), want, "{payload}");
    }
    let long = "x".repeat(300);
    assert_eq!(
        super::headline(&json!({"issue": {"number": 1, "title": long}}))
            .chars()
            .count(),
        "#1 ".len() + 200
    );
}

/// Summaries and digests render for every kind from their shipped portable templates, each
/// valid for its kind.
#[tokio::test]
async fn summaries_and_digests_render_for_every_kind() {
    for kind in CardKind::ALL {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path(), None).unwrap();
        let clock = FakeRelativeClock::default();
        let noise = Noise::with_clock(store.clone(), clock.clone());
        let limited = rule("- name: r\n  source: github\n  event: push\n  template: t\n  limit: {rate: 1/1m, per: '{{payload.repository.full_name}}'}\n");
        let c = Connection { kind, ..conn(None) };
        for n in 0..5 {
            offer(&noise, &limited, &c, n);
        }
        clock.advance(Duration::from_secs(61));
        noise.tick(renderer(), std::slice::from_ref(&c)).unwrap();
        let summaries = store.queued_records().unwrap();
        let summary = summaries.last().unwrap();
        let body: Value = serde_json::from_str(&summary.body).unwrap();
        crate::render::validate::validate(kind, &body)
            .unwrap_or_else(|e| panic!("{}: {e:?} {body}", kind.as_str()));
        assert!(
            summary.body.contains("push 1"),
            "{}: {}",
            kind.as_str(),
            summary.body
        );

        let d = Connection {
            kind,
            ..conn(Some(json!({"every": "1h"})))
        };
        let r = rule("- name: d\n  source: github\n  event: push\n  template: t\n");
        noise.tick(renderer(), std::slice::from_ref(&d)).unwrap();
        offer(&noise, &r, &d, 7);
        let due = store.digest_due(&d.id).unwrap().unwrap();
        clock.advance(Duration::from_millis(due - noise.now_ms() + 1));
        noise.tick(renderer(), std::slice::from_ref(&d)).unwrap();
        let (_, digest) = store.next_for(&d.id).unwrap().unwrap();
        let body: Value = serde_json::from_str(&digest.body).unwrap();
        crate::render::validate::validate(kind, &body)
            .unwrap_or_else(|e| panic!("{}: {e:?} {body}", kind.as_str()));
        assert!(
            digest.body.contains("push 7"),
            "{}: {}",
            kind.as_str(),
            digest.body
        );
    }
}
