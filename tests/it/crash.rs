//! Crash safety: the real binary accepts 1000 events for a connection of every kind (Teams,
//! Workflows, Slack, Discord, Google Chat, Mattermost), is killed with SIGKILL in the middle of
//! delivering them, starts again on the same data, and every card arrives — none lost; a card
//! may come twice across the crash, and its Idempotency-Key says so.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;

use crate::utils::*;

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("cardwire.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:0\ndata_dir: data\nrules_dir: {root}/rules\ntemplates_dir: {root}/templates\n\
             admin_token: {ADMIN_TOKEN}\nsources:\n  github: {{kind: github}}\n  gitlab: {{kind: gitlab}}\n  alertmanager: {{kind: alertmanager}}\n\
             targets:\n  allow_http: true\n  allowed_hosts: [\"127.0.0.1\"]\n\
             delivery:\n  pacing: false\n  retry_schedule: [100ms, 100ms, 100ms]\n",
            root = root().display()
        ),
    )
    .unwrap();
    path
}

fn serve(
    config: &std::path::Path,
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cardwire"));
    cmd.args(["serve", "--config"])
        .arg(config)
        .env_remove("CARDWIRE_ADMIN_TOKEN");
    spawn_serve(cmd)
}

/// Every kind of connection.
const KINDS: [&str; 6] = [
    "teams",
    "workflow",
    "slack",
    "discord",
    "google_chat",
    "mattermost",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_in_the_middle_of_delivery_loses_no_card() {
    const EVENTS: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let rx = Receiver::start().await;
    rx.delay(Duration::from_millis(2));
    let (mut child, addr, log) = tokio::task::block_in_place(|| serve(&config));
    let client = reqwest::Client::new();
    // One connection of every kind, each on its own path of the receiver: every platform's
    // delivery is killed in the middle.
    for kind in KINDS {
        let secret = rx.url(&format!("{kind}/the-secret-part-of-the-url"));
        let res = client
            .post(format!("http://{addr}/api/connections"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({"name": kind, "url": secret, "kind": kind}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{kind}");
    }

    let body = fixture("github/push.event.4.json");
    let accepted: Vec<u16> = futures_util::stream::iter(0..EVENTS)
        .map(|n| {
            let (client, body, addr) = (client.clone(), body.clone(), addr.clone());
            async move {
                client
                    .post(format!("http://{addr}/hooks/github"))
                    .header("X-GitHub-Event", "push")
                    .header("X-GitHub-Delivery", format!("crash-{n}"))
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(
        accepted.iter().all(|s| *s == 202),
        "every event accepted before the crash"
    );

    // Kill it while it delivers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while rx.received().len() < 50 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let distinct = |kind: &str| -> usize {
        rx.received()
            .iter()
            .filter(|r| r.path.starts_with(&format!("/{kind}/")))
            .map(|r| r.headers["idempotency-key"].to_str().unwrap().to_string())
            .collect::<HashSet<String>>()
            .len()
    };
    for kind in KINDS {
        let before = distinct(kind);
        assert!(
            before < EVENTS,
            "{kind}: the crash came too late to test anything ({before} delivered)"
        );
    }

    let (mut child, _addr, log2) = tokio::task::block_in_place(|| serve(&config));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while KINDS.iter().any(|k| distinct(k) < EVENTS) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = tokio::task::block_in_place(|| child.wait().unwrap());
    assert!(status.success());
    for kind in KINDS {
        assert_eq!(
            distinct(kind),
            EVENTS,
            "{kind}: every accepted card delivered after the crash"
        );
    }

    // The logs never name the webhook URL.
    let logs: Vec<String> = log.try_iter().chain(log2.try_iter()).collect();
    assert!(!logs.is_empty());
    assert!(
        logs.iter().all(|l| !l.contains("the-secret-part")),
        "a log line names the URL"
    );
}

/// SIGTERM while a card is in flight: the attempt finishes and is recorded before exit (well
/// within 10 s), so the card is not sent again after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_attempt_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let rx = Receiver::start().await;
    rx.delay(Duration::from_millis(1500));
    let (mut child, addr, _log) = tokio::task::block_in_place(|| serve(&config));
    let client = reqwest::Client::new();
    client
        .post(format!("http://{addr}/api/connections"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"name": "slow", "url": rx.url("slow"), "kind": "teams"}))
        .send()
        .await
        .unwrap();
    let res = client
        .post(format!("http://{addr}/hooks/github"))
        .header("X-GitHub-Event", "push")
        .body(fixture("github/push.event.4.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    rx.wait_for(1).await; // the attempt is now in flight (the receiver answers in 1.5 s)
    let asked = std::time::Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::block_in_place(|| child.wait().unwrap());
    assert!(status.success());
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "exited after {:?}",
        asked.elapsed()
    );
    // After the restart, the card is on record as delivered and nothing is queued: nothing can
    // be sent again (recorded state, not a wait for nothing to arrive).
    let (mut child, addr, _log) = tokio::task::block_in_place(|| serve(&config));
    let list = |state: &'static str| {
        let addr = addr.clone();
        async move {
            let path = format!("/api/deliveries?state={state}");
            let v = crate::utils::api_get(&addr, &path, ADMIN_TOKEN).await;
            v["deliveries"].as_array().unwrap().len()
        }
    };
    assert_eq!(
        (
            list("delivered").await,
            list("queued").await,
            list("retrying").await
        ),
        (1, 0, 0)
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    tokio::task::block_in_place(|| child.wait().unwrap());
    assert_eq!(
        rx.received().len(),
        1,
        "the finished attempt was recorded; nothing was sent twice"
    );
}
