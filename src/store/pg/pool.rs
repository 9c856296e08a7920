//! Connections to PostgreSQL, each on a thread of its own.
//!
//! In: work for a connection (a closure), from any thread. Out: its result. Guarantees: the
//! client never runs on a Tokio runtime's thread (the `postgres` client drives a runtime of
//! its own, which cannot start inside another); a connection that broke is made again for the
//! next piece of work, so a database that restarts is used again without a restart of ours;
//! a server that cannot be reached is [`StoreError::Unavailable`], not a panic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::store::StoreError;

/// Work for one connection.
type Job = Box<dyn FnOnce(&mut Slot) + Send>;

/// A thread's connection, made when first needed and again after it broke.
pub struct Slot {
    connector: Arc<super::tls::Connector>,
    client: Option<postgres::Client>,
    /// The pool's count of lost connections when this one was made.
    made_at: u64,
    lost: Arc<AtomicU64>,
}

impl Slot {
    fn client(&mut self) -> Result<&mut postgres::Client, StoreError> {
        // When one connection is lost, the server most likely went away for all of them (a
        // restart, a failover): every connection made before is made again at its next use,
        // rather than failing once each on a dead socket.
        let lost = self.lost.load(Ordering::Acquire);
        if self.made_at < lost {
            self.client = None;
        }
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.made_at = lost;
            // TLS as the URL says; a server that does not answer (a network gone, a host down)
            // is unavailable after a few seconds, not after the system's TCP timeout.
            self.client = Some(self.connector.connect().map_err(StoreError::unavailable)?);
        }
        Ok(self.client.as_mut().expect("just connected"))
    }

    /// Notes that this connection was lost (or could not be made).
    fn lose(&mut self) {
        self.client = None;
        self.made_at = self.lost.fetch_add(1, Ordering::AcqRel) + 1;
    }
}

/// A fixed number of connections, each on its own thread; work goes to the first free one.
pub struct Pool {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Pool {
    /// Starts `size` threads and checks that the server answers.
    pub fn connect(url: &str, size: usize) -> Result<Self, StoreError> {
        // The URL is checked (and the server reached) once here, so that a bad URL is an
        // error at start, not at the first event.
        let connector = Arc::new(
            super::tls::Connector::new(url)
                .map_err(|e| StoreError::Config(format!("store.postgres.url: {e}")))?,
        );
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let lost = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::with_capacity(size);
        for n in 0..size {
            let rx = rx.clone();
            let mut slot = Slot {
                connector: connector.clone(),
                client: None,
                made_at: 0,
                lost: lost.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("cardwire-pg-{n}"))
                    .spawn(move || loop {
                        let job = match rx.lock().expect("jobs lock").recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        };
                        job(&mut slot);
                    })
                    .map_err(|e| StoreError::Config(format!("cannot start a thread: {e}")))?,
            );
        }
        let pool = Self {
            jobs: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        };
        pool.run(|c| c.simple_query("SELECT 1").map(drop))?;
        Ok(pool)
    }

    /// Runs `work` on a connection and returns its result. A connection that fails is
    /// dropped and made again for the next call.
    pub fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |slot: &mut Slot| {
            let result = match slot.client() {
                Ok(client) => work(client).map_err(StoreError::from),
                Err(e) => Err(e),
            };
            // A connection lost on the way (the server stopped, the network failed) is the
            // database being unavailable, not a failed statement.
            let result = match result {
                Err(StoreError::Postgres(e))
                    if slot.client.as_ref().is_some_and(|c| c.is_closed()) =>
                {
                    slot.lose();
                    Err(StoreError::unavailable(e))
                }
                Err(StoreError::Unavailable(e)) => {
                    slot.lose();
                    Err(StoreError::Unavailable(e))
                }
                other => other,
            };
            let _ = tx.send(result);
        });
        self.send(job)?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// Queues work for the first free connection.
    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.jobs
            .lock()
            .expect("jobs lock")
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(job)
            .map_err(|_| StoreError::Closed)
    }
}

impl Pool {
    /// Hands `work` to the first free connection and returns at once: `work` gets the
    /// connection, or why there is none, and answers its callers itself (the group commit of
    /// [`super::PgStore`]'s events). A connection lost on the way is made again for the next
    /// work, as with [`Pool::run`].
    pub fn submit(
        &self,
        work: impl FnOnce(Result<&mut postgres::Client, StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        let job: Job = Box::new(move |slot: &mut Slot| {
            match slot.client() {
                Ok(client) => work(Ok(client)),
                Err(e) => {
                    slot.lose();
                    work(Err(e))
                }
            }
            if slot.client.as_ref().is_some_and(|c| c.is_closed()) {
                slot.lose();
            }
        });
        self.send(job)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the channel ends every thread once its current work is done.
        self.jobs.lock().expect("jobs lock").take();
        for t in self.threads.lock().expect("threads lock").drain(..) {
            let _ = t.join();
        }
    }
}
