//! `limits:` slow and idle clients: half-sent headers and kept-alive idle connections are
//! closed after `header_timeout`, bodies that trickle in are refused with `408 body_timeout`,
//! more connections than `max_connections` wait to be accepted, and a signed push meanwhile is
//! answered as usual.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::utils::*;

async fn gateway(max_connections: usize) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.limits.header_timeout = Duration::from_secs(1);
    config.limits.body_timeout = Duration::from_secs(1);
    config.limits.body_min_rate = 1024;
    config.limits.max_connections = max_connections;
    let mut g = Gateway::start_with(config).await;
    g.keep(dir);
    g
}

/// Half a request's headers, and then nothing.
async fn half_headers(g: &Gateway) -> TcpStream {
    let mut s = TcpStream::connect(g.addr()).await.unwrap();
    s.write_all(b"POST /hooks/github HTTP/1.1\r\nHost: cardwire\r\nX-GitHub-Event: pu")
        .await
        .unwrap();
    s
}

/// Reads until the server closes the connection (at most 15 s); what it sent.
async fn closed(mut s: TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_idle_clients_are_closed_and_others_are_served() {
    let g = gateway(1024).await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("teams"), "teams", &["github"]).await;
    let mut half = Vec::new();
    for _ in 0..300 {
        half.push(half_headers(&g).await);
    }
    // Bodies announced at 100 KB, sent 10 bytes every 200 ms.
    let mut trickles = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(g.addr()).await.unwrap();
        s.write_all(
            b"POST /hooks/github HTTP/1.1\r\nHost: cardwire\r\nX-GitHub-Event: push\r\n\
              Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"pad\": \"",
        )
        .await
        .unwrap();
        trickles.push(tokio::spawn(async move {
            let mut answer = Vec::new();
            loop {
                tokio::select! {
                    n = s.read_buf(&mut answer) => {
                        if n.unwrap_or(0) == 0 {
                            break;
                        }
                    }
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        if s.write_all(b"xxxxxxxxxx").await.is_err() {
                            let _ = s.read_to_end(&mut answer).await;
                            break;
                        }
                    }
                }
            }
            String::from_utf8_lossy(&answer).into_owned()
        }));
    }
    // Meanwhile, a signed push is served.
    let res = g
        .github(
            "push",
            &fixture("github/push.event.4.json"),
            Some("meanwhile"),
        )
        .await;
    assert_eq!(res.status(), 202);
    rx.wait_for(1).await;

    for s in half {
        closed(s).await;
    }
    for t in trickles {
        let answer = tokio::time::timeout(Duration::from_secs(15), t)
            .await
            .expect("a trickling body was never cut off")
            .unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 408") && answer.contains("body_timeout"),
            "{answer}"
        );
    }

    // A kept-alive connection left idle is closed too.
    let mut idle = TcpStream::connect(g.addr()).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: cardwire\r\n\r\n")
        .await
        .unwrap();
    let answer = closed(idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn past_max_connections_new_ones_wait_and_are_served() {
    let g = gateway(20).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(half_headers(&g).await);
    }
    // The 21st waits for a place (the held ones are closed after header_timeout), then is
    // answered: not refused.
    let res = reqwest::Client::new()
        .get(g.url("/healthz"))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .expect("a connection past the cap was refused");
    assert_eq!(res.status(), 200);
    // It got its place from a held connection closed for its timeout: by the time it was
    // answered, the server had closed some of them (without the cap it is answered at once,
    // while all are open).
    let mut buf = [0u8; 64];
    let already = held
        .iter()
        .filter(|s| matches!(s.try_read(&mut buf), Ok(0)))
        .count();
    assert!(
        already >= 1,
        "answered while every held connection was open"
    );
    for s in held {
        closed(s).await;
    }
}
