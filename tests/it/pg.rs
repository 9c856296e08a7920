//! A real PostgreSQL server for the tests: Debian's `postgresql` package (`.ci/run` installs
//! it), a cluster made with `initdb` in a temporary folder and started with `pg_ctl` on a free
//! loopback port, stopped and removed when the handle drops. No container, no shared server:
//! every test that needs one gets its own, so tests stay independent and run in parallel.
//!
//! The server refuses to run as root; under root (CI) the cluster's folder is handed to the
//! `postgres` user that the package creates, and the server runs as that user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running PostgreSQL server, stopped on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    durable: bool,
    /// With TLS on: the CA file its certificate is signed by.
    pub ca_file: Option<PathBuf>,
}

/// A CA made for a test, and certificates it signs.
pub struct TestCa {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        TestCa { key, cert }
    }

    /// Its certificate (PEM).
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names` (host names or IP addresses) and its key (PEM).
    pub fn server(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

impl Postgres {
    /// Makes a cluster and starts it; panics with what is missing when PostgreSQL is not
    /// installed.
    pub fn start() -> Postgres {
        Self::start_with(false)
    }

    /// [`Postgres::start`]; with `durable`, every commit reaches the disk (`fsync`), as in
    /// production; without, the tests' servers skip it (nothing here survives a power loss).
    pub fn start_with(durable: bool) -> Postgres {
        Self::start_as(durable, None)
    }

    /// [`Postgres::start`] with TLS on (`ssl=on`): a certificate for `names` signed by `ca`,
    /// whose certificate is then [`Postgres::ca_file`].
    pub fn start_tls(ca: &TestCa, names: &[&str]) -> Postgres {
        Self::start_as(false, Some(ca.server(names)).map(|(c, k)| (ca.pem(), c, k)))
    }

    fn start_as(durable: bool, tls: Option<(String, String, String)>) -> Postgres {
        let bin = bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL's server programs are not installed (looked for initdb under \
                 /usr/lib/postgresql/*/bin and on PATH): `apt-get install postgresql`, as .ci/run does"
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("cardwire-pg-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        let as_root = is_root();
        if as_root {
            // The postgres user must reach the folder and own the cluster.
            run(Command::new("chmod").arg("755").arg(dir.path()));
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path()));
        }
        run(pg_command(&bin, "initdb", as_root)
            .args([
                "-A",
                "trust",
                "-U",
                "cardwire",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data));
        let ca_file = tls.map(|(ca, cert, key)| {
            let (ca_file, cert_file, key_file) = (
                dir.path().join("ca.crt"),
                data.join("server.crt"),
                data.join("server.key"),
            );
            std::fs::write(&ca_file, ca).unwrap();
            std::fs::write(&cert_file, cert).unwrap();
            std::fs::write(&key_file, key).unwrap();
            // The server refuses a key others can read, or one it does not own.
            run(Command::new("chmod").arg("600").arg(&key_file));
            if as_root {
                run(Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&cert_file)
                    .arg(&key_file));
            }
            let conf = data.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf).unwrap();
            text.push_str(
                "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            );
            std::fs::write(&conf, text).unwrap();
            ca_file
        });
        let mut pg = Postgres {
            dir,
            bin,
            port: 0,
            durable,
            ca_file,
        };
        // A free port can be taken by another test between the check and the start: a few
        // tries, each on a port of its own.
        for attempt in 1.. {
            pg.port = free_port();
            match pg.try_start() {
                Ok(()) => break,
                Err(e) if attempt >= 5 => panic!("PostgreSQL did not start: {e}\n{}", pg.log()),
                Err(_) => continue,
            }
        }
        pg.wait_ready();
        pg
    }

    /// `pg_ctl start` on the cluster, on `self.port`.
    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync={} -c max_connections=200",
            self.port,
            self.dir.path().display(),
            if self.durable { "on" } else { "off" }
        );
        let out = pg_command(&self.bin, "pg_ctl", is_root())
            .args(["-w", "-t", "60", "-l"])
            .arg(self.dir.path().join("log"))
            .arg("-o")
            .arg(options)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("start")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// [`Postgres::url`] over TLS, checked as `mode` says against its CA.
    pub fn tls_url(&self, mode: &str) -> String {
        let ca = self.ca_file.as_ref().expect("started with TLS");
        format!("{}?sslmode={mode}&sslrootcert={}", self.url(), ca.display())
    }

    /// The URL of its `postgres` database, as `store.postgres.url` takes it.
    pub fn url(&self) -> String {
        format!("postgres://cardwire@127.0.0.1:{}/postgres", self.port)
    }

    /// A new empty database on this server; its URL.
    pub fn database(&self, name: &str) -> String {
        let (url, sql) = (self.url(), format!("CREATE DATABASE \"{name}\""));
        outside(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            client.batch_execute(&sql).expect("create database");
        });
        format!("postgres://cardwire@127.0.0.1:{}/{name}", self.port)
    }

    /// The server's main process (from its `postmaster.pid`).
    pub fn postmaster(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The server's log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Stops the server at once (`immediate`: as if the machine lost it), keeping the cluster.
    pub fn kill(&self) {
        let _ = pg_command(&self.bin, "pg_ctl", is_root())
            .args(["-m", "immediate", "-w", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Starts the cluster again after [`Postgres::kill`], on the same port.
    pub fn restart(&self) {
        if let Err(e) = self.try_start() {
            panic!("PostgreSQL did not start again: {e}\n{}", self.log());
        }
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let url = self.url();
            match outside(move || postgres::Client::connect(&url, postgres::NoTls).map(drop)) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("PostgreSQL did not accept connections: {e}\n{}", self.log())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where `initdb` and `pg_ctl` are: the newest of Debian's versioned folders, else PATH.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(newest) = versions.pop() {
        return Some(newest);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join("initdb").exists())
}

/// Runs `f` on a thread of its own: the `postgres` client drives a runtime of its own, which
/// cannot start on a thread of the test's runtime.
pub fn outside<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().expect("the thread panicked")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// One of the server's programs, as the `postgres` user when the tests run as root.
fn pg_command(bin: &Path, program: &str, as_root: bool) -> Command {
    let program = bin.join(program);
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(c: &mut Command) {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The suite's own server when it runs on PostgreSQL (`CARDWIRE_TEST_STORE=postgres`): one
/// for the whole test process, a fresh database for each gateway. It outlives every test, so
/// a watchdog process stops it (and removes its folder) once the test process is gone, however
/// that ends.
pub struct SharedPg {
    url_base: String,
    next: std::sync::atomic::AtomicU64,
    /// The watchdogs: they outlive this process on purpose, and are never waited for.
    _watchdogs: Vec<std::process::Child>,
}

/// Whether this run keeps the gateways' state in PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("CARDWIRE_TEST_STORE").is_ok_and(|v| v == "postgres")
}

impl SharedPg {
    /// The server, started on first use.
    pub fn get() -> &'static SharedPg {
        static SHARED: std::sync::OnceLock<SharedPg> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            let pg = Postgres::start();
            let data = pg.dir.path().join("data");
            let stop = format!(
                "while [ -d /proc/{pid} ]; do sleep 1; done; {pg_ctl} -D '{data}' -m immediate -w stop >/dev/null 2>&1",
                pid = std::process::id(),
                pg_ctl = pg.bin.join("pg_ctl").display(),
                data = data.display(),
            );
            let dir = pg.dir.path().to_path_buf();
            let mut watchdog = if is_root() {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--", "sh", "-c"]).arg(&stop);
                c
            } else {
                let mut c = Command::new("sh");
                c.arg("-c").arg(&stop);
                c
            };
            let server_watchdog = watchdog
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("the PostgreSQL watchdog");
            // The folder goes after the server, by a second watchdog of the test's own user.
            let folder_watchdog = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "while [ -d /proc/{pid} ]; do sleep 1; done; sleep 3; rm -rf '{dir}'",
                    pid = std::process::id(),
                    dir = dir.display()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("the folder's watchdog");
            let url_base = format!("postgres://cardwire@127.0.0.1:{}", pg.port);
            // Neither stopped nor removed when the handle would drop: the watchdogs do it.
            std::mem::forget(pg);
            SharedPg {
                url_base,
                next: std::sync::atomic::AtomicU64::new(0),
                _watchdogs: vec![server_watchdog, folder_watchdog],
            }
        })
    }

    /// A fresh, empty database; its URL.
    pub fn database(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("gateway_{n}");
        let (admin, sql) = (
            format!("{}/postgres", self.url_base),
            format!("CREATE DATABASE \"{name}\""),
        );
        outside(move || {
            let mut client = postgres::Client::connect(&admin, postgres::NoTls).expect("connect");
            client.batch_execute(&sql).expect("create database");
        });
        format!("{}/{name}", self.url_base)
    }
}
