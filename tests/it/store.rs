//! The store's contract, the same on both backends: every test here runs once on sled (in a
//! temp dir) and once on PostgreSQL (a real server, see `pg`), through `SharedStore`, as the
//! layers above hold it. Plus what only PostgreSQL has: migrations and several instances on
//! one database.

use std::sync::Arc;
use std::time::Duration;

use cardwire::ids::{ConnectionId, DeliveryId, EventId};
use cardwire::render::CardKind;
use cardwire::store::pg::{migrations, PgSettings, PgStore, LEASE};
use cardwire::store::prelude::*;
use cardwire::store::recent::{RecentEvent, RecentPayload};
use cardwire::store::{
    now_ms, Bucket, Clock, Connection, Counts, DeadLetter, FlowState, Item, MessageRef,
    OutboxRecord, Store, StoreError, Wake,
};

use crate::pg::Postgres;

/// A key for secrets at rest, as `connect.secrets_key` gives it (base64 of 32 bytes).
const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// What keeps a backend alive while a test uses it.
enum Holder {
    Sled(#[allow(dead_code)] tempfile::TempDir),
    Pg(#[allow(dead_code)] Postgres),
}

/// Both backends, fresh: sled, then PostgreSQL (over TLS, its certificate and host name
/// checked: the contract holds there as on a managed database).
fn backends() -> Vec<(&'static str, SharedStore, Holder)> {
    let dir = tempfile::tempdir().unwrap();
    let sled: SharedStore = Store::open(dir.path(), Some(KEY)).unwrap();
    let pg = Postgres::start_tls(&crate::pg::TestCa::new("store CA"), &["127.0.0.1"]);
    let store: SharedStore = pg_store(&pg.tls_url("verify-full"));
    vec![
        ("sled", sled, Holder::Sled(dir)),
        ("postgres", store, Holder::Pg(pg)),
    ]
}

fn pg_store(url: &str) -> Arc<PgStore> {
    pg_store_with(url, LEASE)
}

fn pg_store_with(url: &str, lease: Duration) -> Arc<PgStore> {
    PgStore::open(
        &PgSettings {
            url: url.to_string(),
            pool: 4,
            lease,
        },
        KEY,
        Clock::System,
    )
    .unwrap()
}

fn card(con: &ConnectionId, n: u32) -> OutboxRecord {
    OutboxRecord::new(
        EventId::new(),
        con.clone(),
        format!("rule-{n}"),
        CardKind::Teams,
        format!("{{\"n\":{n}}}"),
        now_ms(),
    )
}

fn connection(name: &str) -> Connection {
    Connection::new(
        name,
        format!("https://example.webhook.office.com/webhookb2/{name}"),
        CardKind::Teams,
        vec!["github".into()],
        Default::default(),
    )
}

fn bodies(cards: &[(cardwire::store::OutboxKey, OutboxRecord)]) -> Vec<String> {
    cards.iter().map(|(_, r)| r.body.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_are_kept_with_their_secrets_and_removed_with_their_cards() {
    for (name, store, _hold) in backends() {
        let a = connection("a");
        let mut b = connection("b");
        b.origin.user_object_id = Some("user-1".into());
        b.bot = Some(cardwire::store::Bot {
            token: "xoxb-secret".into(),
            api: "https://slack.com/api/".into(),
            channel: "C1".into(),
        });
        store.put_connection(&a).unwrap();
        store.put_connection(&b).unwrap();
        let all = store.connections().unwrap();
        // In id order (oldest first; two made in the same millisecond in either order).
        let mut both = vec![a.clone(), b.clone()];
        both.sort_by(|x, y| x.id.cmp(&y.id));
        assert_eq!(all, both, "{name}: in id order, secrets opened");
        b.paused = true;
        store.put_connection(&b).unwrap();
        let again = store.connections().unwrap();
        assert!(
            again.iter().any(|c| c.id == b.id && c.paused),
            "{name}: replaced"
        );
        assert_eq!(again.len(), 2, "{name}");

        store.set_last_delivery(&a.id, 42).unwrap();
        store.set_last_delivery(&a.id, 43).unwrap();
        assert_eq!(
            store.last_deliveries().unwrap(),
            vec![(a.id.clone(), 43)],
            "{name}"
        );

        store.enqueue(&card(&a.id, 1)).unwrap();
        store.enqueue(&card(&b.id, 2)).unwrap();
        assert!(store.remove_connection(&a.id).unwrap(), "{name}");
        assert!(
            !store.remove_connection(&a.id).unwrap(),
            "{name}: gone already"
        );
        assert_eq!(store.connections().unwrap(), vec![b.clone()], "{name}");
        assert!(
            store.next_for(&a.id).unwrap().is_none(),
            "{name}: its cards went too"
        );
        assert_eq!(
            store.queued_connections().unwrap(),
            vec![b.id.clone()],
            "{name}"
        );
        assert!(store.last_deliveries().unwrap().is_empty(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flow_state_is_taken_once() {
    for (name, store, _hold) in backends() {
        let state = FlowState {
            browser: "sha".into(),
            channels: vec!["github".into()],
            digest: None,
            created_ms: now_ms(),
            provider: Some("slack".into()),
        };
        store.put_flow_state("s1", &state).unwrap();
        assert_eq!(
            store.flow_state("s1").unwrap().unwrap().provider.as_deref(),
            Some("slack"),
            "{name}"
        );
        assert!(store.take_flow_state("s1").unwrap().is_some(), "{name}");
        assert!(
            store.take_flow_state("s1").unwrap().is_none(),
            "{name}: single use"
        );
        assert!(store.flow_state("nope").unwrap().is_none(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_delivery_id_is_claimed_once() {
    for (name, store, _hold) in backends() {
        let (first, second) = (EventId::new(), EventId::new());
        assert_eq!(store.claim_delivery("d1", &first).unwrap(), None, "{name}");
        assert_eq!(
            store.claim_delivery("d1", &second).unwrap(),
            Some(first.clone()),
            "{name}: the first event's id"
        );
        // A backend may find a claim only when it writes (PostgreSQL: no round trip for
        // this rare case); the write then answers with the first event (see the next test).
        let found = store.reserve_delivery("d1", &second).unwrap();
        assert!(
            found.is_none() || found == Some(first.clone()),
            "{name}: {found:?}"
        );
        // A reservation holds off a concurrent redelivery until it is claimed or released.
        assert_eq!(
            store.reserve_delivery("d2", &first).unwrap(),
            None,
            "{name}"
        );
        assert_eq!(
            store.reserve_delivery("d2", &second).unwrap(),
            Some(first.clone()),
            "{name}"
        );
        store.release_delivery("d2").unwrap();
        assert_eq!(
            store.reserve_delivery("d2", &second).unwrap(),
            None,
            "{name}"
        );
        store.release_delivery("d1").unwrap();
        assert_eq!(
            store.claim_delivery("d1", &second).unwrap(),
            None,
            "{name}: released"
        );
        assert_eq!(
            store.prune_seen(Duration::from_secs(3600)).unwrap(),
            0,
            "{name}"
        );
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            store.prune_seen(Duration::ZERO).unwrap(),
            1,
            "{name}: pruned by age"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_reference_is_kept_with_its_delivery_seen_again_and_pruned() {
    let backends = backends();
    for (name, store, _hold) in &backends {
        let c = connection("refs");
        store.put_connection(&c).unwrap();
        let other = connection("other");
        store.put_connection(&other).unwrap();
        let reference = |rec: &OutboxRecord, message: &str| MessageRef {
            connection: c.id.clone(),
            key: "octo/repo#1".into(),
            message: message.into(),
            place: Some("C1".into()),
            delivery: rec.id.clone(),
            at_ms: now_ms(),
        };
        assert_eq!(store.message_ref(&c.id, "octo/repo#1").unwrap(), None);
        // The first card posts: its reference with it.
        store.enqueue(&card(&c.id, 1)).unwrap();
        let (key, rec) = store.next_batch(&c.id, 10).unwrap().remove(0);
        let first = reference(&rec, "m1");
        store.deliver_with_ref(&key, &rec, &first, true).unwrap();
        assert_eq!(
            store.message_ref(&c.id, "octo/repo#1").unwrap(),
            Some(first.clone()),
            "{name}"
        );
        assert!(store.next_batch(&c.id, 10).unwrap().is_empty(), "{name}");
        assert_eq!(store.counts().delivered, 1, "{name}");
        // The next edits it: the same message, its delivery the latest.
        store.enqueue(&card(&c.id, 2)).unwrap();
        let (key, rec) = store.next_batch(&c.id, 10).unwrap().remove(0);
        let second = reference(&rec, "m1");
        store.deliver_with_ref(&key, &rec, &second, false).unwrap();
        let found = store.message_ref(&c.id, "octo/repo#1").unwrap().unwrap();
        assert_eq!(found.delivery, rec.id, "{name}: the latest delivery");
        assert_eq!(found.message, "m1", "{name}");
        // Per connection and key.
        assert_eq!(
            store.message_ref(&other.id, "octo/repo#1").unwrap(),
            None,
            "{name}"
        );
        assert_eq!(
            store.message_ref(&c.id, "octo/repo#2").unwrap(),
            None,
            "{name}"
        );
        assert_eq!(store.counts().delivered, 2, "{name}");
        assert!(store.message_refs_kept().unwrap() >= 1, "{name}");
        // Kept while used within `keep`, gone after.
        assert_eq!(
            store.prune_message_refs(Duration::from_secs(3600)).unwrap(),
            0,
            "{name}"
        );
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            store.prune_message_refs(Duration::ZERO).unwrap() >= 1,
            "{name}"
        );
        assert_eq!(
            store.message_ref(&c.id, "octo/repo#1").unwrap(),
            None,
            "{name}: pruned"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sources_app_is_kept_with_its_secrets_sealed_one_a_source() {
    let app = |secret: &str| cardwire::store::SourceApp {
        source: "github".into(),
        id: 7,
        slug: "cardwire-test".into(),
        name: "cardwire test".into(),
        owner: "octocat".into(),
        html_url: "https://github.com/apps/cardwire-test".into(),
        client_id: "Iv1.0123".into(),
        client_secret: "client-secret-in-clear".into(),
        webhook_secret: secret.into(),
        pem: "-----BEGIN RSA PRIVATE KEY-----pem-in-clear".into(),
        created_ms: 1,
        installations: Vec::new(),
    };
    for (name, store, hold) in backends() {
        assert!(store.source_apps().unwrap().is_empty(), "{name}");
        store.put_source_app(&app("webhook-secret-one")).unwrap();
        store.put_source_app(&app("webhook-secret-two")).unwrap();
        assert_eq!(
            store.source_apps().unwrap(),
            vec![app("webhook-secret-two")],
            "{name}: one a source, the newest"
        );
        store.flush().unwrap();
        // Sealed at rest: none of its secrets in clear where the store keeps it.
        let text = at_rest(&hold, "source_apps");
        for secret in [
            "webhook-secret-two",
            "client-secret-in-clear",
            "pem-in-clear",
        ] {
            assert!(!text.contains(secret), "{name}: {secret} in clear");
        }
        assert!(
            text.contains("cardwire-test") || matches!(hold, Holder::Sled(_)),
            "{name}"
        );
    }
}

/// What the store keeps, as bytes on disk: the sled folder's files, or the records of a
/// PostgreSQL table.
fn at_rest(hold: &Holder, table: &'static str) -> String {
    let bytes: Vec<u8> = match hold {
        Holder::Sled(dir) => crate::utils::walk(dir.path())
            .iter()
            .flat_map(|f| std::fs::read(f).unwrap())
            .collect(),
        Holder::Pg(pg) => {
            let url = pg.url();
            std::thread::spawn(move || {
                let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                db.query(&format!("SELECT record FROM {table}"), &[])
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<String>()
                    .into_bytes()
            })
            .join()
            .unwrap()
        }
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

fn gitlab_hook(
    project: &str,
    hook_id: u64,
    api_token: Option<&str>,
) -> cardwire::store::SourceHook {
    cardwire::store::SourceHook {
        source: "gitlab".into(),
        gitlab_url: "https://gitlab.example".into(),
        project: project.into(),
        project_id: hook_id * 10,
        hook_id,
        events: vec!["push_events".into(), "merge_requests_events".into()],
        token: format!("hook-token-in-clear-{hook_id}"),
        api_token: api_token.map(str::to_string),
        created_ms: 1,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sources_hooks_are_kept_each_with_its_tokens_sealed() {
    for (name, store, hold) in backends() {
        assert!(store.source_hooks().unwrap().is_empty(), "{name}");
        let (a, b) = (
            gitlab_hook("group/a", 1, Some("glpat-api-token-in-clear")),
            gitlab_hook("group/b", 2, None),
        );
        store.put_source_hook(&b).unwrap();
        store.put_source_hook(&a).unwrap();
        assert_eq!(
            store.source_hooks().unwrap(),
            vec![a.clone(), b.clone()],
            "{name}: each kept, by id"
        );
        store.flush().unwrap();
        let text = at_rest(&hold, "source_hooks");
        for secret in ["hook-token-in-clear", "glpat-api-token-in-clear"] {
            assert!(!text.contains(secret), "{name}: {secret} in clear");
        }
        assert!(store.remove_source_hook(&a.key()).unwrap(), "{name}");
        assert!(!store.remove_source_hook(&a.key()).unwrap(), "{name}: once");
        assert_eq!(store.source_hooks().unwrap(), vec![b], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_reference_outlives_the_process_and_is_seen_by_every_instance() {
    // sled: written, the store closed, opened again.
    let dir = tempfile::tempdir().unwrap();
    let c = connection("refs");
    let rec = card(&c.id, 1);
    let reference = MessageRef {
        connection: c.id.clone(),
        key: "k".into(),
        message: "m1".into(),
        place: None,
        delivery: rec.id.clone(),
        at_ms: now_ms(),
    };
    {
        let store = Store::open(dir.path(), Some(KEY)).unwrap();
        store.put_connection(&c).unwrap();
        store.enqueue(&rec).unwrap();
        let (key, rec) = store.next_batch(&c.id, 1).unwrap().remove(0);
        store
            .deliver_with_ref(&key, &rec, &reference, true)
            .unwrap();
        store.flush().unwrap();
    }
    let store = Store::open(dir.path(), Some(KEY)).unwrap();
    assert_eq!(
        store.message_ref(&c.id, "k").unwrap(),
        Some(reference.clone())
    );
    // Moved to where references are kept for days, and still found.
    assert_eq!(store.move_refs().unwrap(), 1);
    assert_eq!(store.move_refs().unwrap(), 0);
    assert_eq!(
        store.message_ref(&c.id, "k").unwrap(),
        Some(reference.clone())
    );
    drop(store);
    let store = Store::open(dir.path(), Some(KEY)).unwrap();
    assert_eq!(
        store.message_ref(&c.id, "k").unwrap(),
        Some(reference.clone())
    );
    // PostgreSQL: one instance records, another sees it, whether the first recorded at once
    // (a new message) or with its batch (a use of an older one), once it is recorded.
    let pg = Postgres::start();
    let (a, b) = (pg_store(&pg.url()), pg_store(&pg.url()));
    a.put_connection(&c).unwrap();
    a.enqueue(&rec).unwrap();
    let (key, rec) = a.next_batch(&c.id, 1).unwrap().remove(0);
    a.deliver_with_ref(&key, &rec, &reference, true).unwrap();
    assert_eq!(
        b.message_ref(&c.id, "k").unwrap(),
        Some(reference.clone()),
        "at once"
    );
    let again = card(&c.id, 2);
    a.enqueue(&again).unwrap();
    let (key, again) = a.next_batch(&c.id, 1).unwrap().remove(0);
    let used = MessageRef {
        delivery: again.id.clone(),
        ..reference.clone()
    };
    a.deliver_with_ref(&key, &again, &used, false).unwrap();
    a.flush().unwrap();
    assert_eq!(b.message_ref(&c.id, "k").unwrap(), Some(used));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_is_queued_with_its_claim_or_not_at_all() {
    for (name, store, _hold) in backends() {
        let con = ConnectionId::new();
        let (e1, e2) = (EventId::new(), EventId::new());
        store.reserve_delivery("gh-1", &e1).unwrap();
        let mut cards = vec![card(&con, 1), card(&con, 2)];
        assert_eq!(
            store
                .enqueue_event(Some(("gh-1", &e1)), &mut cards)
                .unwrap(),
            Ok(())
        );
        assert_eq!(
            cards[0].claim.as_deref(),
            Some("gh-1"),
            "{name}: each card names it"
        );
        // The same upstream id again, from an event that did not see the claim: nothing
        // of it is queued.
        let mut again = vec![card(&con, 3)];
        assert_eq!(
            store
                .enqueue_event(Some(("gh-1", &e2)), &mut again)
                .unwrap(),
            Err(e1.clone()),
            "{name}"
        );
        let queued = store.next_batch(&con, 10).unwrap();
        assert_eq!(
            bodies(&queued),
            ["{\"n\":1}", "{\"n\":2}"],
            "{name}: in order, once"
        );
        assert_eq!(store.counts().queued, 2, "{name}");
        let mut plain = vec![card(&con, 4)];
        assert_eq!(
            store.enqueue_event(None, &mut plain).unwrap(),
            Ok(()),
            "{name}"
        );
        assert_eq!(store.queued_records().unwrap().len(), 3, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cards_move_between_queued_dead_and_delivered_and_are_found_by_id() {
    for (name, store, _hold) in backends() {
        let con = ConnectionId::new();
        let cards: Vec<OutboxRecord> = (0..5).map(|n| card(&con, n)).collect();
        for c in &cards {
            store.enqueue(c).unwrap();
        }
        let batch = store.next_batch(&con, 3).unwrap();
        assert_eq!(
            bodies(&batch),
            ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}"],
            "{name}"
        );
        let (k0, mut r0) = batch[0].clone();
        assert_eq!(
            store.queued_record(r0.id.as_str()).unwrap().as_ref(),
            Some(&r0),
            "{name}"
        );

        // A failed attempt: saved, counted as retrying.
        r0.attempts = 1;
        r0.last_error = Some("503".into());
        store.update(&k0, &r0).unwrap();
        assert_eq!(
            store.next_for(&con).unwrap().unwrap().1.attempts,
            1,
            "{name}"
        );
        assert_eq!(store.counts().retrying, 1, "{name}");

        // Delivered: out of the queue, its record kept without the body.
        r0.attempts = 2;
        store.deliver(&k0, &r0).unwrap();
        assert!(
            store.queued_record(r0.id.as_str()).unwrap().is_none(),
            "{name}"
        );
        let kept = store.delivered_record(r0.id.as_str()).unwrap().unwrap();
        assert_eq!(kept.record.body, "", "{name}");
        assert_eq!(kept.record.attempts, 2, "{name}");
        assert_eq!(store.delivered().unwrap().len(), 1, "{name}");

        // Buried, then revived: back in the queue with its attempts reset.
        let (k1, r1) = store.next_for(&con).unwrap().unwrap();
        store
            .bury(
                &k1,
                &DeadLetter {
                    record: r1.clone(),
                    reason: "410 gone".into(),
                    dead_ms: now_ms(),
                },
            )
            .unwrap();
        assert_eq!(
            store.dead_letter(r1.id.as_str()).unwrap().unwrap().reason,
            "410 gone"
        );
        assert!(
            store.queued_record(r1.id.as_str()).unwrap().is_none(),
            "{name}"
        );
        let c = store.counts();
        assert_eq!((c.queued, c.dead, c.delivered), (3, 1, 1), "{name}: {c:?}");
        assert_eq!(
            store.revive(std::slice::from_ref(&r1.id)).unwrap(),
            vec![con.clone()],
            "{name}"
        );
        assert!(
            store.dead_letter(r1.id.as_str()).unwrap().is_none(),
            "{name}"
        );
        assert_eq!(
            store
                .queued_record(r1.id.as_str())
                .unwrap()
                .unwrap()
                .attempts,
            0
        );

        // A card that never rendered stays dead when revived.
        let mut blank = card(&con, 9);
        blank.body = String::new();
        store
            .put_dead(&DeadLetter {
                record: blank.clone(),
                reason: "render: failed".into(),
                dead_ms: now_ms(),
            })
            .unwrap();
        assert!(
            store
                .revive(std::slice::from_ref(&blank.id))
                .unwrap()
                .is_empty(),
            "{name}"
        );
        assert!(
            store.dead_letter(blank.id.as_str()).unwrap().is_some(),
            "{name}"
        );

        // A broken connection: everything queued for it goes to the dead letters, in order.
        assert_eq!(store.bury_all(&con, "404").unwrap(), 4, "{name}");
        assert!(store.next_for(&con).unwrap().is_none(), "{name}");
        let dead = store.dead_letters().unwrap();
        assert_eq!(dead.len(), 5, "{name}");
        let c = store.counts();
        assert_eq!((c.queued, c.dead), (0, 5), "{name}: {c:?}");

        // Pages: ids after a cursor, in id order, filtered.
        let page = store.dead_page(None, 2, &|_| true).unwrap();
        assert_eq!(page.len(), 2, "{name}");
        let rest = store
            .dead_page(Some(page[1].record.id.as_str()), 10, &|_| true)
            .unwrap();
        assert_eq!(rest.len(), 3, "{name}");
        assert!(page[1].record.id < rest[0].record.id, "{name}");
        let only = store
            .dead_page(None, 10, &|r: &OutboxRecord| r.rule == "rule-9")
            .unwrap();
        assert_eq!(only.len(), 1, "{name}");
        assert_eq!(store.delivered_page(None, 10, &|_| true).unwrap().len(), 1);

        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(store.prune_delivered(Duration::ZERO).unwrap(), 1, "{name}");
        assert!(store.delivered().unwrap().is_empty(), "{name}");
        assert_eq!(store.counts().delivered, 0, "{name}");
        assert!(
            store.revive(&[DeliveryId::new()]).unwrap().is_empty(),
            "{name}"
        );
    }
}

/// The counts are what a recount finds after every move a card can make, on both backends:
/// queued (alone and with an event's claim), taken back, failed, delivered, buried, put dead,
/// revived, buried with its connection, dropped with it, pruned.
#[tokio::test(flavor = "multi_thread")]
async fn counts_follow_every_move_of_a_card_as_a_recount_says() {
    for (name, store, _hold) in backends() {
        let recount = |step: &str| {
            let queued = store.queued_records().unwrap();
            let truth = Counts {
                queued: queued.len(),
                retrying: queued.iter().filter(|r| r.attempts > 0).count(),
                dead: store.dead_letters().unwrap().len(),
                delivered: store.delivered().unwrap().len(),
            };
            assert_eq!(store.counts(), truth, "{name}: after {step}");
        };
        let fail = |con: &ConnectionId| {
            let (k, mut r) = store.next_for(con).unwrap().unwrap();
            r.attempts = 1;
            store.update(&k, &r).unwrap();
        };
        let dead = |record: OutboxRecord| DeadLetter {
            record,
            reason: "410 gone".into(),
            dead_ms: now_ms(),
        };
        let (a, b) = (connection("a"), connection("b"));
        store.put_connection(&a).unwrap();
        store.put_connection(&b).unwrap();
        for n in 0..5 {
            store.enqueue(&card(&a.id, n)).unwrap();
            store.enqueue(&card(&b.id, n)).unwrap();
        }
        recount("queued");
        let event = EventId::new();
        let mut cards = [card(&a.id, 10), card(&a.id, 11)];
        assert!(store
            .enqueue_event(Some(("count-1", &event)), &mut cards)
            .unwrap()
            .is_ok());
        recount("an event queued with its claim");
        let mut again = [card(&a.id, 12)];
        assert!(store
            .enqueue_event(Some(("count-1", &EventId::new())), &mut again)
            .unwrap()
            .is_err());
        recount("a redelivery's card taken back");
        fail(&a.id);
        recount("a first failure");
        let (k, mut r) = store.next_for(&a.id).unwrap().unwrap();
        r.attempts = 2;
        store.deliver(&k, &r).unwrap();
        recount("delivered after a failure");
        let (k, r) = store.next_for(&a.id).unwrap().unwrap();
        store.deliver(&k, &r).unwrap();
        recount("delivered");
        // Buried by its second attempt: the record carries that attempt, as delivery's do.
        fail(&a.id);
        let (k, mut r) = store.next_for(&a.id).unwrap().unwrap();
        r.attempts = 2;
        store.bury(&k, &dead(r.clone())).unwrap();
        recount("a retrying card buried");
        store.put_dead(&dead(card(&b.id, 99))).unwrap();
        recount("a dead letter put");
        store.revive(std::slice::from_ref(&r.id)).unwrap();
        recount("revived");
        fail(&a.id);
        store.bury_all(&a.id, "the connection is broken").unwrap();
        recount("a connection's cards buried, a retrying one among them");
        fail(&b.id);
        store.remove_connection(&b.id).unwrap();
        recount("a connection removed with its cards, a retrying one among them");
        store.prune_delivered(Duration::ZERO).unwrap();
        recount("delivered records pruned");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn noise_state_holds_dedup_keys_folds_and_digests() {
    for (name, store, _hold) in backends() {
        assert!(store.dedup_claim("k", 1_000, 2_000).unwrap(), "{name}");
        assert!(
            !store.dedup_claim("k", 1_500, 2_500).unwrap(),
            "{name}: held"
        );
        assert!(
            store.dedup_claim("k", 2_000, 3_000).unwrap(),
            "{name}: expired"
        );
        assert!(
            !store.dedup_claim("k", 2_999, 4_000).unwrap(),
            "{name}: held again"
        );

        let con = ConnectionId::new();
        let bucket = |id: &str, due_ms: u64| Bucket {
            id: id.into(),
            rule: "r".into(),
            per: String::new(),
            connection: con.clone(),
            kind: CardKind::Slack,
            due_ms,
            first_ms: 1,
            reason: "limit".into(),
        };
        let item = |n: u64| Item {
            rule: "r".into(),
            event: "push".into(),
            repository: "o/r".into(),
            title: format!("t{n}"),
            headline: String::new(),
            url: "https://example.com".into(),
            at_ms: n,
            subject: None,
        };
        for n in 0..3 {
            store.put_fold(&bucket("b1", 100), &item(n)).unwrap();
        }
        store.put_fold(&bucket("b2", 500), &item(9)).unwrap();
        assert_eq!(
            store.fold_bucket("b1").unwrap().unwrap().due_ms,
            100,
            "{name}"
        );
        assert_eq!(store.fold_buckets().unwrap().len(), 2, "{name}");
        let due: Vec<String> = store
            .fold_buckets_due(200)
            .unwrap()
            .into_iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(due, ["b1"], "{name}");
        let titles: Vec<String> = store
            .take_folds("b1")
            .unwrap()
            .into_iter()
            .map(|i| i.title)
            .collect();
        assert_eq!(titles, ["t0", "t1", "t2"], "{name}: in the order folded");
        assert!(
            store.take_folds("b1").unwrap().is_empty(),
            "{name}: taken once"
        );
        assert!(store.fold_bucket("b1").unwrap().is_none(), "{name}");

        for n in 0..3 {
            store.put_digest_item(&con, &item(n)).unwrap();
        }
        assert_eq!(store.take_digest_items(&con).unwrap().len(), 3, "{name}");
        assert!(store.take_digest_items(&con).unwrap().is_empty(), "{name}");
        assert_eq!(store.digest_due(&con).unwrap(), None, "{name}");
        store.set_digest_due(&con, 77).unwrap();
        store.set_digest_due(&con, 78).unwrap();
        assert_eq!(store.digest_due(&con).unwrap(), Some(78), "{name}");
        store.clear_digest_due(&con).unwrap();
        assert_eq!(store.digest_due(&con).unwrap(), None, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_recent_events_are_the_newest_fifty_newest_first() {
    for (name, store, _hold) in backends() {
        for n in 0..60 {
            store.put_recent(RecentEvent {
                id: EventId::new(),
                source: "github".into(),
                event: "push".into(),
                headers: vec![("x-github-event".into(), "push".into())],
                payload: RecentPayload::Raw(bytes::Bytes::from(format!("{{\"n\":{n}}}"))),
                received_ms: n,
            });
        }
        let recent = store.recent().unwrap();
        assert_eq!(recent.len(), 50, "{name}");
        assert_eq!(recent[0]["payload"]["n"], 59, "{name}");
        assert_eq!(recent[49]["payload"]["n"], 10, "{name}");
        assert_eq!(recent[0]["headers"]["x-github-event"], "push", "{name}");
    }
}

// --- PostgreSQL only ---

/// Migrations: a fresh database has them pending, `open` applies them once, instances
/// opening together take turns (the advisory lock), and a database from a newer cardwire is
/// refused.
#[test]
fn migrations_run_once_under_a_lock_and_a_newer_schema_is_refused() {
    let pg = Postgres::start();
    let url = pg.database("fresh");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let before = migrations::status(&mut client).unwrap();
    assert_eq!(before.pending.len(), migrations::MIGRATIONS.len());
    assert!(before.applied.is_empty());

    // Four instances start at once on the fresh database.
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                PgStore::open(
                    &PgSettings {
                        url,
                        pool: 2,
                        lease: LEASE,
                    },
                    KEY,
                    Clock::System,
                )
                .map(drop)
            })
        })
        .collect();
    for o in opened {
        o.join().unwrap().unwrap();
    }
    let after = migrations::status(&mut client).unwrap();
    assert!(after.up_to_date(), "{after:?}");
    let rows: i64 = client
        .query_one("SELECT count(*) FROM cardwire_migrations", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        rows as usize,
        migrations::MIGRATIONS.len(),
        "each applied once"
    );

    client
        .execute(
            "INSERT INTO cardwire_migrations (version, name) VALUES (9999, 'from the future')",
            &[],
        )
        .unwrap();
    let refused = PgStore::open(
        &PgSettings {
            url,
            pool: 1,
            lease: LEASE,
        },
        KEY,
        Clock::System,
    );
    match refused {
        Err(StoreError::Schema(why)) => assert!(why.contains("newer"), "{why}"),
        other => panic!("a newer schema was used: {:?}", other.map(|_| ())),
    }
}

/// Two instances on one database: a card queued by one is seen by the other, an upstream
/// delivery id claimed by both at once is claimed by one, and a flow state is taken once.
#[test]
fn instances_on_one_database_share_one_truth() {
    let pg = Postgres::start();
    let (a, b) = (pg_store(&pg.url()), pg_store(&pg.url()));
    let con = ConnectionId::new();
    a.enqueue(&card(&con, 1)).unwrap();
    assert_eq!(bodies(&b.next_batch(&con, 5).unwrap()), ["{\"n\":1}"]);

    // 20 rounds of the same upstream id staged on both instances at once.
    for round in 0..20 {
        let key = format!("race-{round}");
        let (ea, eb) = (EventId::new(), EventId::new());
        let run = |store: Arc<PgStore>, event: EventId, key: String| {
            let con = con.clone();
            std::thread::spawn(move || {
                let mut cards = vec![card(&con, 100 + round)];
                store
                    .enqueue_event(Some((&key, &event)), &mut cards)
                    .unwrap()
            })
        };
        let ta = run(a.clone(), ea, key.clone());
        let tb = run(b.clone(), eb, key.clone());
        let (ra, rb) = (ta.join().unwrap(), tb.join().unwrap());
        assert!(ra.is_ok() != rb.is_ok(), "round {round}: {ra:?} {rb:?}");
    }
    assert_eq!(
        b.next_batch(&con, 100).unwrap().len(),
        21,
        "one card per round"
    );

    let state = FlowState {
        browser: "x".into(),
        channels: vec![],
        digest: None,
        created_ms: now_ms(),
        provider: None,
    };
    a.put_flow_state("s", &state).unwrap();
    assert!(b.take_flow_state("s").unwrap().is_some());
    assert!(a.take_flow_state("s").unwrap().is_none());

    // Backpressure counts every instance's cards: b reads a's in the background once asked
    // (asking never waits on the database).
    let other = ConnectionId::new();
    for n in 0..3 {
        a.enqueue(&card(&other, n)).unwrap();
    }
    let truth = a.queued_records().unwrap().len();
    assert_eq!(truth, 1 + 20 + 3);
    until("b counts the cards a queued", || b.counts().queued == truth);
}

/// A database that goes away: calls fail as unavailable (not a panic, not a hang), and work
/// again once it is back, without reopening the store.
#[test]
fn a_database_that_restarts_is_used_again() {
    let pg = Postgres::start();
    let store = pg_store(&pg.url());
    let con = ConnectionId::new();
    store.enqueue(&card(&con, 1)).unwrap();
    let first_server = pg.postmaster().expect("the server's pid");
    pg.kill();
    match store.enqueue(&card(&con, 2)) {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected unavailable, got {other:?}"),
    }
    pg.restart();
    assert_ne!(pg.postmaster(), Some(first_server), "a new server process");
    store.enqueue(&card(&con, 3)).unwrap();
    assert_eq!(
        bodies(&store.next_batch(&con, 5).unwrap()),
        ["{\"n\":1}", "{\"n\":3}"]
    );
}

/// Waits (at most 10 s) for a wake-up that `want` accepts, skipping others.
async fn wake_until(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Wake>,
    want: impl Fn(&Wake) -> bool,
) -> Wake {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(w)) if want(&w) => return w,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the wake-ups ended"),
            Err(_) => panic!("no such wake-up within 10 s"),
        }
    }
}

/// Polls `f` until it is true (at most 10 s): for what another instance's clock decides.
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One instance at a time delivers a connection's cards: the first takes its lease, the
/// second is refused while it is held, told when it is let go, and takes it then.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_is_delivered_by_one_instance_at_a_time() {
    let pg = Postgres::start();
    let (a, b) = (pg_store(&pg.url()), pg_store(&pg.url()));
    let mut b_wakes = b.wakeups().expect("PostgreSQL wakes other instances");
    wake_until(&mut b_wakes, |w| *w == Wake::All).await;
    let (con, other) = (ConnectionId::new(), ConnectionId::new());
    a.enqueue(&card(&con, 1)).unwrap();
    b.enqueue(&card(&other, 1)).unwrap();

    assert!(a.lease(&con).unwrap(), "a free lease is taken");
    assert!(a.lease(&con).unwrap(), "and kept");
    assert!(!b.lease(&con).unwrap(), "held by a");
    assert!(b.lease(&other).unwrap(), "another connection is free");
    assert_eq!(
        b.deliverable_connections().unwrap(),
        vec![other.clone()],
        "b's backstop leaves a's connection alone"
    );
    let mut both = vec![con.clone(), other.clone()];
    both.sort();
    assert_eq!(a.queued_connections().unwrap(), both);

    // Cards queued by b for a connection a holds: a is told.
    let mut a_wakes = a.wakeups().unwrap();
    b.enqueue(&card(&con, 2)).unwrap();
    wake_until(&mut a_wakes, |w| *w == Wake::Cards(con.clone())).await;

    // a lets go: b is told, and takes it. b's wake-ups hold older notifications for the
    // connection (a's and b's own cards), so the first one awaited need not be the release
    // (taking it for the release failed a fresh-clone run): b asks until it takes it, which it
    // does only once told (it knows a holds it for the lease's 15 s, past this 10 s wait).
    a.release(&con).unwrap();
    until("b takes the lease once told it is free", || {
        b.lease(&con).unwrap()
    });
    assert!(!a.lease(&con).unwrap(), "now b's");

    // A change to a connection tells every instance to read them again.
    a.put_connection(&connection("shared")).unwrap();
    wake_until(&mut b_wakes, |w| *w == Wake::Connections).await;
}

/// A lease that expired (its instance could not renew it in time) and was taken by another
/// instance completes nothing: the late worker's moves are refused and the card stays queued
/// for the new holder, who sends it (at least once).
#[tokio::test(flavor = "multi_thread")]
async fn a_late_worker_cannot_complete_a_card_that_another_took() {
    let pg = Postgres::start();
    // A long term: the lease lapses here because the test says so (below), not by the clock,
    // and a's renewal (every 10 s) does not race the takeover.
    let (a, b) = (
        pg_store_with(&pg.url(), Duration::from_secs(30)),
        pg_store_with(&pg.url(), Duration::from_secs(30)),
    );
    let con = ConnectionId::new();
    a.enqueue(&card(&con, 1)).unwrap();
    a.enqueue(&card(&con, 2)).unwrap();
    assert!(a.lease(&con).unwrap());
    let batch = a.next_batch(&con, 10).unwrap();
    assert_eq!(batch.len(), 2);

    // a's renewals stop reaching the database (as if cut off): its lease runs out, b takes
    // the connection over.
    let url = pg.url();
    crate::pg::outside(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.execute("UPDATE leases SET expires_ms = 0", &[]).unwrap();
    });
    assert!(b.lease(&con).unwrap(), "an expired lease is taken over");

    let (key, mut rec) = batch[0].clone();
    rec.attempts = 1;
    match a.update(&key, &rec) {
        Err(StoreError::LeaseLost(c)) => assert_eq!(c, con.as_str()),
        other => panic!("a late retry was recorded: {other:?}"),
    }
    let (key2, rec2) = batch[1].clone();
    let letter = DeadLetter {
        record: rec2.clone(),
        reason: "late".into(),
        dead_ms: now_ms(),
    };
    assert!(matches!(
        a.bury(&key2, &letter),
        Err(StoreError::LeaseLost(_))
    ));
    assert!(matches!(
        a.bury_all(&con, "late"),
        Err(StoreError::LeaseLost(_))
    ));
    // A delivery sent late is not recorded: the card stays the new holder's.
    a.deliver(&batch[0].0, &batch[0].1).unwrap();
    a.flush().unwrap();
    let left = b.next_batch(&con, 10).unwrap();
    assert_eq!(bodies(&left), ["{\"n\":1}", "{\"n\":2}"], "nothing moved");
    assert_eq!(left[0].1.attempts, 0, "the late attempt is not on the card");
    assert!(b.dead_letters().unwrap().is_empty());
    assert!(!a.lease(&con).unwrap(), "a knows it lost the lease");

    // The holder's moves go through.
    b.deliver(&left[0].0, &left[0].1).unwrap();
    b.flush().unwrap();
    assert_eq!(b.delivered().unwrap().len(), 1);
    assert_eq!(bodies(&b.next_batch(&con, 10).unwrap()), ["{\"n\":2}"]);
}

/// An instance that dies lets go of nothing: its leases expire after their term and another
/// instance takes them; one that stops cleanly lets go at once. A renewal that finds a lease
/// gone marks it lost.
#[tokio::test(flavor = "multi_thread")]
async fn the_leases_of_an_instance_that_dies_expire_and_are_taken() {
    let pg = Postgres::start();
    let term = Duration::from_secs(3);
    let (a, b) = (
        pg_store_with(&pg.url(), term),
        pg_store_with(&pg.url(), term),
    );
    let con = ConnectionId::new();
    a.enqueue(&card(&con, 1)).unwrap();
    assert!(a.lease(&con).unwrap());
    // Renewed while a lives: still a's after two terms.
    std::thread::sleep(term * 2);
    assert!(!b.lease(&con).unwrap(), "renewed by a");
    assert!(a.lease(&con).unwrap());

    // a dies (dropped without its clean stop): nobody renews its lease.
    drop(a);
    assert!(!b.lease(&con).unwrap(), "a's term is not over yet");
    assert!(b.deliverable_connections().unwrap().is_empty());
    until("b takes a's connection", || b.lease(&con).unwrap());
    assert_eq!(b.deliverable_connections().unwrap(), vec![con.clone()]);

    // b is cut off long enough for c to take over: b's renewal finds it gone.
    let c = pg_store_with(&pg.url(), term);
    let url = pg.url();
    // (Again until it holds: b's renewal may extend the lease between the two.)
    until("c takes the lapsed lease", || {
        let url = url.clone();
        crate::pg::outside(move || {
            let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            db.execute("UPDATE leases SET expires_ms = 0", &[]).unwrap();
        });
        c.lease(&con).unwrap()
    });
    until("b's renewal notices", || !b.lease(&con).unwrap());

    // c stops cleanly: its leases are free at once, and b is told (not left waiting for a
    // term that c's row no longer has).
    c.flush().unwrap();
    until("b is told that c let go", || b.lease(&con).unwrap());
}

/// Rate limits in the database are one limit for every instance (GCRA: a burst, then one an
/// interval); sled keeps them in memory and says so.
#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_are_shared_by_instances() {
    let pg = Postgres::start();
    let (a, b) = (pg_store(&pg.url()), pg_store(&pg.url()));
    let now = 1_000_000;
    // 5 a minute: one every 12 s, bursts of 5, spread over two instances.
    for (n, store) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        assert_eq!(
            store
                .limit_take("rule|r|5/60000ms/5|", now, 12_000, 5)
                .unwrap(),
            Some(Ok(())),
            "card {n}"
        );
    }
    let refused = b.limit_take("rule|r|5/60000ms/5|", now, 12_000, 5).unwrap();
    assert_eq!(
        refused,
        Some(Err(now + 12_000)),
        "the sixth waits an interval"
    );
    assert_eq!(
        a.limit_take("rule|r|5/60000ms/5|", now + 12_000, 12_000, 5)
            .unwrap(),
        Some(Ok(())),
        "one more after an interval"
    );
    assert_eq!(
        a.limit_take("rule|other|5/60000ms/5|", now, 12_000, 5)
            .unwrap(),
        Some(Ok(())),
        "keys are apart"
    );
    let dir = tempfile::tempdir().unwrap();
    let sled = Store::open(dir.path(), Some(KEY)).unwrap();
    assert_eq!(sled.limit_take("k", now, 12_000, 5).unwrap(), None);
}

/// `cardwire migrate --from-sled`: everything a sled folder holds arrives in PostgreSQL (URLs
/// sealed again with the shared key, queues in order), the folder is left whole, and a
/// database that holds state already is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_sled_folder_is_imported_whole_and_left_whole() {
    use cardwire::store::pg::import::import;
    let dir = tempfile::tempdir().unwrap();
    // The folder's own key (made by sled), not the shared one.
    let sled = Store::open(dir.path(), None).unwrap();
    let c = connection("moved");
    sled.put_connection(&c).unwrap();
    sled.set_last_delivery(&c.id, 1_234).unwrap();
    for n in 1..=3 {
        sled.enqueue(&card(&c.id, n)).unwrap();
    }
    let dead = DeadLetter {
        record: card(&c.id, 9),
        reason: "gone".into(),
        dead_ms: 5,
    };
    sled.put_dead(&dead).unwrap();
    // Two keyed cards delivered: one reference moved to its files, one still in the main log.
    let reference = |rec: &OutboxRecord, key: &str| MessageRef {
        connection: c.id.clone(),
        key: key.into(),
        message: format!("m-{key}"),
        place: None,
        delivery: rec.id.clone(),
        at_ms: now_ms(),
    };
    let done = card(&c.id, 7);
    let key = sled.enqueue(&done).unwrap();
    sled.deliver_with_ref(&key, &done, &reference(&done, "k1"), true)
        .unwrap();
    assert_eq!(sled.move_refs().unwrap(), 1);
    let done2 = card(&c.id, 8);
    let key = sled.enqueue(&done2).unwrap();
    sled.deliver_with_ref(&key, &done2, &reference(&done2, "k2"), true)
        .unwrap();
    let event = EventId::new();
    assert_eq!(sled.claim_delivery("gh-1", &event).unwrap(), None);
    assert!(sled
        .dedup_claim("rule|k", now_ms(), now_ms() + 600_000)
        .unwrap());
    let bucket = Bucket {
        id: "limit|r||x".into(),
        rule: "r".into(),
        per: String::new(),
        connection: c.id.clone(),
        kind: CardKind::Teams,
        due_ms: 42,
        first_ms: 1,
        reason: "limit".into(),
    };
    let item = Item {
        rule: "r".into(),
        event: "push".into(),
        repository: "o/r".into(),
        title: "folded".into(),
        headline: String::new(),
        url: "https://example.com/1".into(),
        at_ms: 1,
        subject: None,
    };
    sled.put_fold(&bucket, &item).unwrap();
    sled.put_digest_item(&c.id, &item).unwrap();
    let app = cardwire::store::SourceApp {
        source: "github".into(),
        id: 1,
        slug: "s".into(),
        name: "n".into(),
        owner: "o".into(),
        html_url: "https://github.com/apps/s".into(),
        client_id: "c".into(),
        client_secret: "cs".into(),
        webhook_secret: "ws".into(),
        pem: "p".into(),
        created_ms: 1,
        installations: Vec::new(),
    };
    sled.put_source_app(&app).unwrap();
    let hook = gitlab_hook("group/a", 1, Some("glpat-kept"));
    sled.put_source_hook(&hook).unwrap();
    sled.set_digest_due(&c.id, 77).unwrap();

    let pg = Postgres::start();
    let to = pg_store(&pg.url());
    let sled2 = sled.clone();
    let to2 = to.clone();
    let imported = tokio::task::spawn_blocking(move || import(&sled2, &to2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        imported.to_string(),
        "1 connections, 3 queued cards, 1 dead letters, 2 delivered records, 1 delivery ids, 2 message references, 1 GitHub Apps, 1 GitLab hooks, 1 dedup keys, 1 folded cards, 1 digest items"
    );
    let moved = to.connections().unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(
        moved[0].url, c.url,
        "opened with the folder's key, sealed with the shared one"
    );
    assert_eq!(to.last_deliveries().unwrap(), vec![(c.id.clone(), 1_234)]);
    assert_eq!(
        bodies(&to.next_batch(&c.id, 10).unwrap()),
        ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]
    );
    assert_eq!(to.dead_letters().unwrap()[0].reason, "gone");
    assert_eq!(to.delivered().unwrap().len(), 2);
    assert_eq!(
        to.source_apps().unwrap(),
        vec![app],
        "its secrets opened and sealed again"
    );
    assert_eq!(
        to.source_hooks().unwrap(),
        vec![hook],
        "the hook's tokens too"
    );
    for k in ["k1", "k2"] {
        let moved = to.message_ref(&c.id, k).unwrap().unwrap();
        assert_eq!(moved.message, format!("m-{k}"), "{k}");
    }
    assert_eq!(
        to.claim_delivery("gh-1", &EventId::new()).unwrap(),
        Some(event),
        "a redelivery after the move is still a repeat"
    );
    assert!(!to.dedup_claim("rule|k", now_ms(), now_ms() + 1).unwrap());
    assert_eq!(to.fold_buckets_due(42).unwrap(), vec![bucket.clone()]);
    assert_eq!(to.take_folds(&bucket.id).unwrap(), vec![item.clone()]);
    assert_eq!(to.take_digest_items(&c.id).unwrap(), vec![item.clone()]);
    assert_eq!(to.digest_due(&c.id).unwrap(), Some(77));
    let counts = to.counts();
    assert_eq!((counts.queued, counts.dead, counts.delivered), (3, 1, 2));

    // The folder is whole: what was folded is still there.
    assert_eq!(sled.fold_buckets().unwrap().len(), 1);
    assert_eq!(sled.queued_records().unwrap().len(), 3);
    // A second import would mix two states: refused.
    let again = tokio::task::spawn_blocking(move || import(&sled, &to))
        .await
        .unwrap();
    match again {
        Err(StoreError::Config(why)) => {
            assert!(why.contains("already holds 1 connections"), "{why}")
        }
        other => panic!("imported twice: {other:?}"),
    }
}

/// Each digest and each summary is sent by one instance: of two taking a connection's digest
/// items (or a fold bucket) at once, one gets them all and the other none.
#[test]
fn digest_items_and_folds_are_taken_by_one_instance() {
    let pg = Postgres::start();
    let (a, b) = (pg_store(&pg.url()), pg_store(&pg.url()));
    let con = ConnectionId::new();
    let item = |n: u64| Item {
        rule: "r".into(),
        event: "push".into(),
        repository: "o/r".into(),
        title: format!("item {n}"),
        headline: String::new(),
        url: String::new(),
        at_ms: n,
        subject: None,
    };
    for round in 0..20 {
        for n in 0..3 {
            a.put_digest_item(&con, &item(n)).unwrap();
        }
        let bucket = Bucket {
            id: format!("limit|r|{round}|{con}"),
            rule: "r".into(),
            per: String::new(),
            connection: con.clone(),
            kind: CardKind::Teams,
            due_ms: 1,
            first_ms: 1,
            reason: "limit".into(),
        };
        for n in 0..3 {
            b.put_fold(&bucket, &item(n)).unwrap();
        }
        let take = |s: Arc<PgStore>, con: ConnectionId, id: String| {
            std::thread::spawn(move || {
                (
                    s.take_digest_items(&con).unwrap().len(),
                    s.take_folds(&id).unwrap().len(),
                )
            })
        };
        let ta = take(a.clone(), con.clone(), bucket.id.clone());
        let tb = take(b.clone(), con.clone(), bucket.id.clone());
        let (ra, rb) = (ta.join().unwrap(), tb.join().unwrap());
        let mut digests = [ra.0, rb.0];
        digests.sort();
        let mut folds = [ra.1, rb.1];
        folds.sort();
        assert_eq!(digests, [0, 3], "round {round}: one digest of 3");
        assert_eq!(folds, [0, 3], "round {round}: one summary of 3");
    }
}
