//! How many cards are in each state: kept in memory as cards move, on either backend.

use serde::{Deserialize, Serialize};

/// How many cards are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// In the outbox (retrying included).
    pub queued: usize,
    /// In the outbox after at least one failed attempt.
    pub retrying: usize,
    /// Dead letters.
    pub dead: usize,
    /// Delivered records kept.
    pub delivered: usize,
}

/// Every move of a card, as both backends count it: the only writes of a count's field (a
/// test reads the backends' sources for any other). Never below zero: on PostgreSQL another
/// instance may have moved a card first (its counts are read again from the database now and
/// then).
impl Counts {
    /// Cards entered the queue: queued, or out of the dead letters (see [`Counts::revived`]).
    pub fn enqueued(&mut self, n: usize) {
        self.queued += n;
    }

    /// A card left the queue without being delivered or buried (taken back, dropped with its
    /// connection, its write failed); it was counted as retrying if `retrying`.
    pub fn left_queue(&mut self, retrying: bool) {
        self.queued = self.queued.saturating_sub(1);
        if retrying {
            self.retrying = self.retrying.saturating_sub(1);
        }
    }

    /// Cards dropped with their connection in one statement (PostgreSQL), `retrying` of them
    /// retrying.
    pub fn dropped(&mut self, n: usize, retrying: usize) {
        self.queued = self.queued.saturating_sub(n);
        self.retrying = self.retrying.saturating_sub(retrying);
    }

    /// A queued card's first attempt failed: it is retrying from now on.
    pub fn first_failure(&mut self) {
        self.retrying += 1;
    }

    /// A card was delivered: out of the queue if it was still there (`from_queue`), counted
    /// as retrying if it had failed before, and kept as a delivered record.
    pub fn delivered_one(&mut self, from_queue: bool, retrying: bool) {
        if from_queue {
            self.left_queue(retrying);
        }
        self.delivered += 1;
    }

    /// Delivered records pruned.
    pub fn pruned_delivered(&mut self, n: usize) {
        self.delivered = self.delivered.saturating_sub(n);
    }

    /// A card became a dead letter: out of the queue if it was there (`from_queue`; a card
    /// that failed to render is buried without being queued).
    pub fn buried_one(&mut self, from_queue: bool, retrying: bool) {
        if from_queue {
            self.left_queue(retrying);
        }
        self.dead += 1;
    }

    /// A connection's queued cards became dead letters together, in one statement
    /// (PostgreSQL), `retrying` of them retrying.
    pub fn buried_queued(&mut self, n: usize, retrying: usize) {
        self.dropped(n, retrying);
        self.dead += n;
    }

    /// Dead letters left for the queue (the queue's side is [`Counts::enqueued`]).
    pub fn revived(&mut self, n: usize) {
        self.dead = self.dead.saturating_sub(n);
    }

    /// The counts as the database counted them (PostgreSQL, now and then: other instances
    /// move cards too); the dead letters and delivered records when they were counted too.
    pub fn recounted(&mut self, queued: usize, retrying: usize, kept: Option<(usize, usize)>) {
        self.queued = queued;
        self.retrying = retrying;
        if let Some((dead, delivered)) = kept {
            self.dead = dead;
            self.delivered = delivered;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_move_keeps_the_counts_true() {
        let mut c = Counts::default();
        c.enqueued(3);
        c.first_failure();
        c.delivered_one(true, true);
        assert_eq!((c.queued, c.retrying, c.delivered), (2, 0, 1));
        c.buried_one(true, false);
        c.buried_one(false, false);
        assert_eq!((c.queued, c.dead), (1, 2));
        c.enqueued(2);
        c.revived(2);
        assert_eq!((c.queued, c.dead), (3, 0));
        c.first_failure();
        c.buried_queued(3, 1);
        assert_eq!((c.queued, c.retrying, c.dead), (0, 0, 3));
        // Another instance moved it first: never below zero.
        c.left_queue(true);
        c.dropped(5, 5);
        c.pruned_delivered(9);
        assert_eq!(
            c,
            Counts {
                queued: 0,
                retrying: 0,
                dead: 3,
                delivered: 0
            }
        );
    }

    /// Counts change only through the moves above: no backend writes a field itself, so that
    /// the two cannot drift apart.
    #[test]
    fn the_backends_change_counts_only_through_their_moves() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
        let mut files = vec![];
        for dir in [root.clone(), root.join("sled"), root.join("pg")] {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("counts.rs") {
                    files.push(path);
                }
            }
        }
        assert!(files.len() > 20, "{files:?}");
        let fields = ["queued", "retrying", "dead", "delivered"];
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for receiver in ["c.", "counts.", "counts.1."] {
                    for field in fields {
                        let at = format!("{receiver}{field}");
                        let Some(i) = code.find(&at) else { continue };
                        if i > 0
                            && code[..i].ends_with(|ch: char| {
                                ch.is_alphanumeric() || ch == '_' || ch == '.'
                            })
                        {
                            continue;
                        }
                        let rest = code[i + at.len()..].trim_start();
                        let writes = rest.starts_with("+=")
                            || rest.starts_with("-=")
                            || (rest.starts_with('=')
                                && !rest.starts_with("==")
                                && !rest.starts_with("=>"));
                        assert!(!writes, "{}:{}: {line}", path.display(), n + 1);
                    }
                }
            }
        }
    }
}
