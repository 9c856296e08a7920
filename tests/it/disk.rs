//! A full disk, on a real small filesystem (a 32 MiB tmpfs the test mounts): events are refused
//! with `503 storage_full` and health fails while the room kept (`limits.min_free_disk`) is
//! used up, delivery drains the queue meanwhile, and everything comes back by itself when
//! space returns; a disk filled past the room (sled's log fails) is opened again by
//! `cardwire serve` once there is space, and every event answered 202 is delivered.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::utils::*;

/// A tmpfs of `size` mounted on a new folder, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        // As root, or through sudo that asks for no password.
        let mount = |cmd: &mut Command| {
            cmd.args([
                "mount",
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
            ])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        };
        assert!(
            mount(Command::new("env").arg("--")) || mount(Command::new("sudo").arg("-n")),
            "this test mounts a {size} tmpfs: run the suite as root, or with sudo that needs no password (as .ci/run does)"
        );
        Self { path, _dir: dir }
    }

    /// Bytes free, as an unprivileged writer sees them.
    fn free(&self) -> u64 {
        let s = rustix::fs::statvfs(&self.path).unwrap();
        s.f_bavail * s.f_frsize
    }

    /// Fills the disk with a file until `leave` bytes are free (0: until it is full).
    fn fill(&self, leave: u64) -> PathBuf {
        let filler = self.path.join(format!("filler-{}", self.free()));
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            let free = self.free();
            if free <= leave {
                break;
            }
            let n = chunk.len().min((free - leave) as usize);
            if f.write_all(&chunk[..n]).and_then(|_| f.sync_all()).is_err() {
                break; // full
            }
        }
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let umount = |cmd: &mut Command| {
            cmd.args(["umount", "-l"])
                .arg(&self.path)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let _ = umount(Command::new("env").arg("--")) || umount(Command::new("sudo").arg("-n"));
    }
}

fn config(disk: &Path, min_free: &str) -> PathBuf {
    let path = disk.parent().unwrap().join("cardwire.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:0\ndata_dir: {data}\nrules_dir: {root}/rules\ntemplates_dir: {root}/templates\n\
             admin_token: {ADMIN_TOKEN}\nsources:\n  github: {{kind: github}}\n\
             targets:\n  allow_http: true\n  allowed_hosts: [\"127.0.0.1\"]\n\
             delivery:\n  pacing: false\n  retry_schedule: [100ms, 100ms, 100ms]\n\
             limits:\n  min_free_disk: {min_free}\n",
            data = disk.join("data").display(),
            root = root().display()
        ),
    )
    .unwrap();
    path
}

/// The gateway's process, killed if the test fails before stopping it.
struct Child(Option<std::process::Child>);

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn serve(config: &Path) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cardwire"));
    cmd.args(["serve", "--config"])
        .arg(config)
        .env_remove("CARDWIRE_ADMIN_TOKEN");
    let (child, addr, log) = spawn_serve(cmd);
    (Child(Some(child)), addr, log)
}

/// Posts a push; returns the status, the Retry-After header and the body.
async fn push(client: &reqwest::Client, addr: &str, n: usize) -> (u16, Option<String>, String) {
    let res = client
        .post(format!("http://{addr}/hooks/github"))
        .header("X-GitHub-Event", "push")
        .header("X-GitHub-Delivery", format!("disk-{n}"))
        .body(fixture("github/push.event.4.json"))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, res.text().await.unwrap())
}

async fn get(client: &reqwest::Client, addr: &str, path: &str) -> (u16, String) {
    let res = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The Idempotency-Keys (delivery ids) of the cards the receiver got.
fn received_keys(rx: &Receiver) -> HashSet<String> {
    rx.received()
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_string())
        .collect()
}

/// The distinct cards the receiver got.
fn distinct(rx: &Receiver) -> usize {
    received_keys(rx).len()
}

/// The event id of a 202's body.
fn event_id(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// Delivered cards on record: event id -> delivery id (one card an event here).
async fn delivered(
    client: &reqwest::Client,
    addr: &str,
) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let mut after = String::new();
    loop {
        let page: serde_json::Value = client
            .get(format!(
                "http://{addr}/api/deliveries?state=delivered&limit=500{after}"
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = page["deliveries"].as_array().unwrap();
        for row in rows {
            out.insert(
                row["event"].as_str().unwrap().to_string(),
                row["id"].as_str().unwrap().to_string(),
            );
        }
        match page["next"].as_str() {
            Some(next) if !rows.is_empty() => after = format!("&after={next}"),
            _ => return out,
        }
    }
}

async fn until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect(client: &reqwest::Client, addr: &str, rx: &Receiver) {
    let res = client
        .post(format!("http://{addr}/api/connections"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"name": "ops", "url": rx.url("ops"), "kind": "teams"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

fn stop(mut child: Child) {
    let mut child = child.0.take().unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_events_drains_delivery_and_recovers_by_itself() {
    const QUEUED: usize = 100;
    let disk = SmallDisk::mount("32m");
    let config = config(&disk.path, "4MiB");
    let rx = Receiver::start().await;
    // Slow enough (20 s for the queue) that most of it is still there when the disk fills,
    // however slowly the events are posted; the delay is lifted once the disk is full.
    rx.delay(Duration::from_millis(200));
    let (child, addr, _log) = tokio::task::block_in_place(|| serve(&config));
    let client = reqwest::Client::new();
    connect(&client, &addr, &rx).await;
    for n in 0..QUEUED {
        assert_eq!(push(&client, &addr, n).await.0, 202);
    }

    // The room kept is used up (2 MiB left of the 4 MiB kept).
    let filler = disk.fill(2 << 20);
    let sent_when_full = distinct(&rx);
    assert!(
        sent_when_full < QUEUED,
        "the queue drained before the disk filled: nothing to test"
    );
    // The free space is read at most every 250 ms: an event may still pass meanwhile (and is
    // then delivered like the others).
    let mut queued = QUEUED;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (status, retry, body) = loop {
        let answer = push(&client, &addr, 1000 + queued).await;
        if answer.0 != 202 || std::time::Instant::now() > deadline {
            break answer;
        }
        queued += 1;
    };
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry.as_deref(), Some("30"));
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "storage_full");
    for path in ["/healthz", "/readyz"] {
        let (status, body) = get(&client, &addr, path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert!(body.contains("storage_full"), "{path}: {body}");
    }
    let (_, metrics) = get(&client, &addr, "/metrics").await;
    let errors = metrics
        .lines()
        .find(|l| l.starts_with("cardwire_store_errors_total{kind=\"storage_full\"}"))
        .unwrap_or_else(|| panic!("no storage_full errors counted:\n{metrics}"));
    assert!(!errors.ends_with(" 0"), "{errors}");

    // Delivery drains the queue in the room kept, while events are still refused.
    rx.delay(Duration::ZERO);
    until("the queue drained while the disk was full", 60, || {
        distinct(&rx) == queued
    })
    .await;
    assert!(disk.free() < 4 << 20, "space came back by itself: not full");
    assert_eq!(push(&client, &addr, 1001).await.0, 503);

    // Space returns: events are accepted again, with no restart.
    std::fs::remove_file(&filler).unwrap();
    let mut accepted = None;
    for attempt in 0..100 {
        let (status, _, _) = push(&client, &addr, 2000).await;
        if status == 202 {
            accepted = Some(attempt);
            break;
        }
        assert_eq!(status, 503);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(accepted.is_some(), "still refused after space returned");
    for n in 2001..2020 {
        assert_eq!(push(&client, &addr, n).await.0, 202);
    }
    assert_eq!(get(&client, &addr, "/healthz").await, (200, "ok".into()));
    until("every accepted event delivered", 30, || {
        distinct(&rx) == queued + 20
    })
    .await;
    tokio::task::block_in_place(|| stop(child));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_filled_past_the_room_kept_is_opened_again_and_loses_nothing() {
    let disk = SmallDisk::mount("32m");
    // No room kept: the disk fills under sled's own writes.
    let config = config(&disk.path, "0");
    let rx = Receiver::start().await;
    let (child, addr, log) = tokio::task::block_in_place(|| serve(&config));
    let client = reqwest::Client::new();
    connect(&client, &addr, &rx).await;
    let filler = disk.fill(1 << 20);
    let mut accepted = Vec::new();
    let mut refused = None;
    for n in 0..5000 {
        let (status, retry, body) = push(&client, &addr, n).await;
        if status == 202 {
            accepted.push(event_id(&body));
            continue;
        }
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("storage_full"), "{body}");
        assert_eq!(retry.as_deref(), Some("30"));
        refused = Some(n);
        break;
    }
    let refused = refused.expect("1 MiB took 5000 events: the disk never filled");
    assert!(!accepted.is_empty());

    // sled has stopped writing: the gateway stops serving and opens its store again, which
    // succeeds once there is space.
    let mut lines = Vec::new();
    let mut wait_for = |what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !lines.iter().any(|l: &String| l.contains(what)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match log.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => panic!("no log line {what:?} in 30 s:\n{}", lines.join("\n")),
            }
        }
    };
    tokio::task::block_in_place(|| wait_for("opening it again"));
    std::fs::remove_file(&filler).unwrap();
    tokio::task::block_in_place(|| wait_for("the store is open again"));

    // Same address; the refused event is taken now, and every accepted one is delivered.
    let (status, _, body) = push(&client, &addr, refused).await;
    assert_eq!(status, 202, "{body}");
    accepted.push(event_id(&body));
    assert_eq!(get(&client, &addr, "/healthz").await, (200, "ok".into()));
    // Each accepted event's card is on record as delivered, and the receiver got it (a card
    // may have gone out twice: one whose outcome was not recorded before the store failed,
    // or the refused event's, read by its worker before its write failed).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let delivered = delivered(&client, &addr).await;
        let missing: Vec<&String> = accepted
            .iter()
            .filter(|e| !delivered.contains_key(*e))
            .collect();
        if missing.is_empty() {
            let received = received_keys(&rx);
            for (event, card) in &delivered {
                if accepted.contains(event) {
                    assert!(
                        received.contains(card),
                        "{card} of {event} on record, not received"
                    );
                }
            }
            break missing;
        }
        if tokio::time::Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    lines.extend(log.try_iter());
    assert!(
        missing.is_empty(),
        "accepted but not delivered (refused: disk-{refused}): {missing:?}; log:\n{}",
        lines.join("\n")
    );
    tokio::task::block_in_place(|| stop(child));
}
