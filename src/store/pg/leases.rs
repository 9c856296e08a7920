//! Several instances on one database: delivery leases, and the wake-ups between instances.
//!
//! In: a worker asking whether it may deliver a connection's cards; the holder's renewals;
//! notifications from the database (`LISTEN cardwire`). Out: yes or no per connection, the
//! lease id that every move of a card is checked against, and [`Wake`]s for the gateway.
//! Guarantees:
//! - one instance at a time holds a connection's lease (a row in `leases`, taken with
//!   `INSERT … ON CONFLICT DO NOTHING`, or over an expired one with `FOR UPDATE SKIP LOCKED`),
//!   so its cards go out one at a time and in order across instances;
//! - every new holder gets a new lease id, and moves of a card are checked against the id
//!   ([`super::PgStore`]'s records): a worker whose lease expired completes nothing that
//!   another has taken since;
//! - a lease is renewed every third of its term while its instance lives; an instance that
//!   has not renewed for two thirds of the term stops sending before the lease can expire
//!   ([`usable`]), so two instances never send for one connection at once; one that dies
//!   lets its leases expire, and the others take them;
//! - a notification is only a hint: the gateway also polls ([`super::super::Outbox::deliverable_connections`]),
//!   so a lost one only delays.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::ids::ConnectionId;
use crate::store::{StoreError, Wake};

/// The channel every instance listens on.
pub const CHANNEL: &str = "cardwire";

/// A lease this process holds (or held, until it finds out otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The lease's id (a new one for every holder).
    pub lease: i64,
    /// When the lease was last known to run a whole term from (taken or renewed).
    pub since: Instant,
    /// False once a renewal found the lease gone (expired and taken): moves still carry its
    /// id, which the database refuses, until the worker lets go.
    pub valid: bool,
}

/// What this process knows of leases.
#[derive(Debug, Default)]
pub struct Leases {
    /// Connection id → the lease held.
    pub held: HashMap<String, Held>,
    /// Connection id → until when another instance holds it (as last read): no question to
    /// the database before then, unless its holder lets go (a notification).
    pub elsewhere: HashMap<String, Instant>,
}

/// Whether a lease may be used to send at `now`: still ours, and renewed recently enough that
/// it cannot have expired (two thirds of the `term`, leaving a third for a late renewal).
pub fn usable(held: &Held, now: Instant, term: Duration) -> bool {
    held.valid && now.saturating_duration_since(held.since) < term * 2 / 3
}

impl Leases {
    /// The answer without asking the database, if there is one: `Some(true)` a usable lease
    /// is held, `Some(false)` another instance holds it, `None` ask.
    pub fn known(&self, con: &str, now: Instant, term: Duration) -> Option<bool> {
        if let Some(h) = self.held.get(con) {
            return usable(h, now, term).then_some(true);
        }
        self.elsewhere
            .get(con)
            .filter(|until| **until > now)
            .map(|_| false)
    }

    /// Notes what taking a lease came to: taken (`Ok(lease)`, its term counted from `asked`,
    /// the moment before asking) or held elsewhere for `Err(remaining)`.
    pub fn taken(&mut self, con: &str, asked: Instant, result: Result<i64, Duration>) -> bool {
        match result {
            Ok(lease) => {
                self.elsewhere.remove(con);
                self.held.insert(
                    con.to_string(),
                    Held {
                        lease,
                        since: asked,
                        valid: true,
                    },
                );
                true
            }
            Err(remaining) => {
                self.held.remove(con);
                // Asked again no sooner than a quarter of a second: a lease being taken over
                // right now reads as expiring now.
                let wait = remaining.max(Duration::from_millis(250));
                self.elsewhere.insert(con.to_string(), asked + wait);
                false
            }
        }
    }

    /// Notes a renewal that started at `asked` with the leases `before` (a snapshot) and
    /// renewed `renewed` (connection, lease): those renewed run a new term; those missing
    /// were lost. Leases taken after the snapshot are left alone.
    pub fn renewed(&mut self, before: &[(String, i64)], renewed: &[(String, i64)], asked: Instant) {
        for (con, lease) in before {
            let Some(h) = self.held.get_mut(con) else {
                continue;
            };
            if h.lease != *lease {
                continue;
            }
            if renewed.iter().any(|(c, l)| c == con && l == lease) {
                h.since = h.since.max(asked);
            } else {
                h.valid = false;
            }
        }
    }

    /// The lease id to check a move of `con`'s card against (`None`: no worker of this
    /// process holds it, as for the admin's moves).
    pub fn of(&self, con: &str) -> Option<i64> {
        self.held.get(con).map(|h| h.lease)
    }

    /// The connections among `cons` that this process does not hold a usable lease for: who
    /// holds them must be told of new cards.
    pub fn to_tell(&self, cons: &[String], now: Instant, term: Duration) -> Vec<String> {
        let mut out: Vec<String> = cons
            .iter()
            .filter(|c| self.known(c, now, term) != Some(true))
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// How long new cards wait to be told to their connections' holders: the notifications of
/// this long go out together, in a statement of their own. A `NOTIFY` made in an event's own
/// transaction serialises every such commit on the server (its queue takes one lock at
/// commit), which halved what two instances accepted.
pub const TELL_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// The connections whose holders are to be told of new cards, until the next round.
#[derive(Default)]
pub struct Tell {
    /// The connections, and whether the store is gone.
    state: std::sync::Mutex<(std::collections::BTreeSet<String>, bool)>,
    more: std::sync::Condvar,
}

impl Tell {
    /// Adds connections to tell about (after their cards committed).
    pub fn add(&self, cons: Vec<String>) {
        if cons.is_empty() {
            return;
        }
        let mut s = self.state.lock().expect("tell lock");
        s.0.extend(cons);
        self.more.notify_one();
    }

    /// Ends [`Tell::next`]'s wait for good.
    pub fn close(&self) {
        self.state.lock().expect("tell lock").1 = true;
        self.more.notify_all();
    }

    /// Waits for connections to tell about, gathers those added within [`TELL_EVERY`], and
    /// takes them; `None` once closed.
    pub fn next(&self) -> Option<Vec<String>> {
        let mut s = self.state.lock().expect("tell lock");
        while s.0.is_empty() && !s.1 {
            s = self.more.wait(s).expect("tell lock");
        }
        if s.1 {
            return None;
        }
        drop(s);
        std::thread::sleep(TELL_EVERY);
        let mut s = self.state.lock().expect("tell lock");
        Some(std::mem::take(&mut s.0).into_iter().collect())
    }
}

/// A notification's payload as a wake-up: `o <connection>` (cards queued, a lease let go),
/// `c` (connections changed).
pub fn parse(payload: &str) -> Option<Wake> {
    match payload.split_once(' ') {
        Some(("o", con)) => ConnectionId::parse(con).map(Wake::Cards),
        None if payload == "c" => Some(Wake::Connections),
        _ => None,
    }
}

/// Listens for notifications on a connection of its own until `stop` is dropped, and hands
/// them on as wake-ups. A lost connection is made again (a second, then up to 10 s apart);
/// after every (re)connection comes [`Wake::All`], for what was missed meanwhile. A `Cards`
/// notification also forgets that another instance held the connection (`leases`), so that
/// the worker asks again.
pub fn listen(
    url: &str,
    leases: std::sync::Arc<std::sync::Mutex<Leases>>,
    wakes: tokio::sync::mpsc::UnboundedSender<Wake>,
    stop: std::sync::mpsc::Receiver<()>,
) {
    use postgres::fallible_iterator::FallibleIterator;
    let mut backoff = Duration::from_secs(1);
    loop {
        let client = super::tls::Connector::new(url)
            .map_err(StoreError::Config)
            .and_then(|c| c.connect().map_err(StoreError::unavailable));
        let mut client = match client.and_then(|mut c| {
            c.batch_execute(&format!("LISTEN {CHANNEL}"))
                .map(|()| c)
                .map_err(StoreError::unavailable)
        }) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "cannot listen for other instances' notifications; trying again");
                match stop.recv_timeout(backoff) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        if wakes.send(Wake::All).is_err() {
            return;
        }
        loop {
            match stop.try_recv() {
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                _ => return,
            }
            let broken = {
                let mut notes = client.notifications();
                let mut iter = notes.timeout_iter(Duration::from_millis(250));
                loop {
                    match iter.next() {
                        Ok(Some(n)) => {
                            let Some(wake) = parse(n.payload()) else {
                                continue;
                            };
                            if let Wake::Cards(con) = &wake {
                                leases
                                    .lock()
                                    .expect("leases lock")
                                    .elsewhere
                                    .remove(con.as_str());
                            }
                            if wakes.send(wake).is_err() {
                                return;
                            }
                        }
                        Ok(None) => break false,
                        Err(_) => break true,
                    }
                }
            };
            if broken || client.is_closed() {
                break;
            }
        }
    }
}

/// Tells the other instances that `cons` got cards (sent when the transaction commits).
pub(super) fn notify(
    c: &mut impl postgres::GenericClient,
    cons: &[String],
) -> Result<(), postgres::Error> {
    if cons.is_empty() {
        return Ok(());
    }
    c.query(
        "SELECT pg_notify('cardwire', 'o ' || t) FROM unnest($1::text[]) t",
        &[&cons],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERM: Duration = Duration::from_secs(15);

    #[test]
    fn a_lease_is_used_only_while_it_cannot_have_expired() {
        let t = Instant::now();
        let held = Held {
            lease: 7,
            since: t,
            valid: true,
        };
        assert!(usable(&held, t, TERM));
        assert!(usable(&held, t + Duration::from_secs(9), TERM));
        // Two thirds of the term without a renewal: stop sending before it can expire.
        assert!(!usable(&held, t + Duration::from_secs(10), TERM));
        assert!(!usable(
            &Held {
                valid: false,
                ..held
            },
            t,
            TERM
        ));
    }

    #[test]
    fn what_is_known_saves_asking_the_database() {
        let t = Instant::now();
        let mut l = Leases::default();
        assert_eq!(l.known("a", t, TERM), None, "never asked: ask");
        assert!(l.taken("a", t, Ok(1)));
        assert_eq!(l.known("a", t, TERM), Some(true));
        assert_eq!(l.of("a"), Some(1));
        assert!(!l.taken("b", t, Err(Duration::from_secs(5))));
        assert_eq!(l.known("b", t + Duration::from_secs(4), TERM), Some(false));
        assert_eq!(
            l.known("b", t + Duration::from_secs(5), TERM),
            None,
            "its holder's term is over: ask again"
        );
        // Read as expiring now (being taken over): not asked again at once.
        l.taken("c", t, Err(Duration::ZERO));
        assert_eq!(
            l.known("c", t + Duration::from_millis(100), TERM),
            Some(false)
        );
        assert_eq!(l.known("c", t + Duration::from_millis(300), TERM), None);
        // Taking one held elsewhere before forgets that.
        assert!(l.taken("b", t, Ok(2)));
        assert_eq!(l.known("b", t, TERM), Some(true));
        assert_eq!(
            l.to_tell(&["a".into(), "b".into(), "d".into(), "d".into()], t, TERM),
            vec!["d".to_string()]
        );
    }

    #[test]
    fn a_renewal_that_misses_a_lease_marks_it_lost_and_leaves_newer_ones() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        let mut l = Leases::default();
        l.taken("a", t0, Ok(1));
        l.taken("b", t0, Ok(2));
        let before = vec![("a".to_string(), 1), ("b".to_string(), 2)];
        // Taken after the snapshot, with a new id: not judged by this renewal.
        l.taken("c", t1, Ok(3));
        l.renewed(&before, &[("a".to_string(), 1)], t1);
        assert_eq!(l.held["a"].since, t1);
        assert!(l.held["a"].valid);
        assert!(!l.held["b"].valid, "b's lease expired and was taken");
        assert_eq!(l.known("b", t1, TERM), None, "b must be taken again");
        assert_eq!(l.of("b"), Some(2), "moves still carry the old id, refused");
        assert!(l.held["c"].valid);
    }

    #[test]
    fn what_to_tell_is_gathered_and_taken_once() {
        let tell = std::sync::Arc::new(Tell::default());
        tell.add(vec!["b".into(), "a".into()]);
        tell.add(vec!["a".into()]);
        tell.add(Vec::new());
        assert_eq!(tell.next(), Some(vec!["a".to_string(), "b".to_string()]));
        let waiting = {
            let tell = tell.clone();
            std::thread::spawn(move || tell.next())
        };
        tell.add(vec!["c".into()]);
        assert_eq!(waiting.join().unwrap(), Some(vec!["c".to_string()]));
        tell.close();
        assert_eq!(tell.next(), None);
    }

    #[test]
    fn notifications_name_what_to_wake() {
        let con = ConnectionId::new();
        assert_eq!(parse(&format!("o {con}")), Some(Wake::Cards(con)));
        assert_eq!(parse("c"), Some(Wake::Connections));
        assert_eq!(parse("o not-an-id"), None);
        assert_eq!(parse("x"), None);
        assert_eq!(parse(""), None);
    }
}
