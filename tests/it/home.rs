//! The pages a person lands on: `/` (with the queue behind the admin session), `/docs`, and the
//! 404 a browser gets for an unknown path while APIs keep their JSON errors.

use serde_json::Value;

use crate::utils::*;

const HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// Regression: `GET /` answered 404 with JSON.
#[tokio::test]
async fn the_home_page_says_what_this_is_and_shows_the_queue_when_signed_in() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    // Throttled for an hour: the card stays in the outbox as retrying.
    rx.throttle("3600");
    g.connect(&rx.url("webhookb2/a"), "teams", &["github"])
        .await;
    assert_eq!(
        g.github("push", &fixture("github/push.event.4.json"), Some("h1"))
            .await
            .status(),
        202
    );
    let b = browser();
    let res = b
        .get(g.url("/"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["referrer-policy"], "no-referrer");
    let html = res.text().await.unwrap();
    assert!(html.contains(env!("CARGO_PKG_VERSION")), "{html}");
    for link in [
        "/connect",
        "/connections",
        "/playground",
        "/metrics",
        "/docs",
    ] {
        assert!(
            html.contains(&format!("href=\"{link}\"")),
            "no link to {link}: {html}"
        );
    }
    assert!(
        !html.contains("id=\"queued\"") && html.contains("id=\"token\""),
        "signed out: no counts, a sign-in form"
    );

    // Signed in (the form leads back home): the queue's counts and the connections.
    let res = b
        .post(g.url("/connections/login"))
        .form(&[("token", ADMIN_TOKEN), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/");
    // The card was throttled and waits to be retried: it counts as retrying (recorded state).
    g.admin_get_until("/api/deliveries?state=retrying", |v| {
        v["deliveries"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let html = page(&b, &g.url("/")).await;
    let field = |id: &str| {
        let at = html
            .find(&format!("id=\"{id}\">"))
            .unwrap_or_else(|| panic!("no #{id}: {html}"));
        let rest = &html[at + id.len() + 6..];
        rest[..rest.find('<').unwrap()].to_string()
    };
    assert_eq!(field("retrying"), "1", "{html}");
    assert_eq!(field("dead"), "0");
    assert_eq!(field("connections"), "1 (0 paused, 0 broken)");

    // The docs are README, built in.
    let docs = page(&b, &g.url("/docs")).await;
    assert!(
        docs.contains("<h2 id=\"quick-start-five-minutes\">Quick start (five minutes)</h2>"),
        "{}",
        &docs[..500.min(docs.len())]
    );
}

/// Regression: an unknown path answered JSON to a browser. A browser gets an HTML 404 with a
/// link home; API paths and non-browser clients keep the JSON error body.
#[tokio::test]
async fn unknown_paths_get_html_in_a_browser_and_json_elsewhere() {
    let g = Gateway::start().await;
    let b = browser();
    let res = b
        .get(g.url("/no/such/page"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(
        html.contains("href=\"/\"") && html.contains("/no/such/page"),
        "{html}"
    );
    for (path, accept) in [
        ("/api/nope", HTML),
        ("/no/such/page", "application/json"),
        ("/hooks/x/y", HTML),
    ] {
        let res = b
            .get(g.url(path))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{path}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"], "not_found", "{path}");
        assert!(v["detail"].is_string());
    }
}
