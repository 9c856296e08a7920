//! Connecting a source with a button: a GitHub App made from a manifest on /sources, against
//! the GitHub emulator, whose webhook secret then verifies the source's deliveries.

use serde_json::Value;

use crate::utils::*;

/// A gateway on the emulators whose `github` source verifies with its app (`app: true`, no
/// secret of its own), at the emulated GitHub or at `github_url`.
async fn app_gateway_at(github_url: Option<&str>) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.connect.emulator = Some(true);
    let github = config.sources.get_mut("github").unwrap();
    github.secret = None;
    github.app = true;
    github.github_url = github_url.map(str::to_string);
    let mut g = Gateway::start_with(config).await;
    g.keep(dir);
    g
}

async fn app_gateway() -> Gateway {
    app_gateway_at(None).await
}

/// Presses Create a GitHub App for `github` with these form fields (the CSRF token first).
async fn press_create(
    g: &Gateway,
    b: &reqwest::Client,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    b.post(g.url("/sources/github/github-app"))
        .form(fields)
        .send()
        .await
        .unwrap()
}

/// Signs in for /sources: the session's CSRF token its form carries.
async fn sign_in(g: &Gateway, b: &reqwest::Client) -> String {
    let res = b
        .post(g.url("/connections/login"))
        .form(&[("token", ADMIN_TOKEN), ("next", "/sources")])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&res), "/sources");
    let html = page(b, &g.url("/sources")).await;
    attribute(&html, "name=\"csrf\" value=\"")
}

/// Text between `before` and the next `"` in `html`, its entities undone.
fn attribute(html: &str, before: &str) -> String {
    let at = html
        .find(before)
        .unwrap_or_else(|| panic!("no {before} in {html}"))
        + before.len();
    let raw = &html[at..at + html[at..].find('"').unwrap()];
    raw.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Signs in, presses Create a GitHub App for `github` and takes the manifest to the emulated
/// GitHub: the emulator's page and the state.
async fn to_github(g: &Gateway, b: &reqwest::Client) -> (String, String, String) {
    let csrf = sign_in(g, b).await;
    let res = press_create(
        g,
        b,
        &[
            ("csrf", csrf.as_str()),
            ("app_name", "cardwire test"),
            ("owner", "user"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    let action = attribute(&html, "action=\"");
    let manifest = attribute(&html, "name=\"manifest\" value=\"");
    assert!(
        action.starts_with(&g.url("/emulator/github/settings/apps/new?state=")),
        "{action}"
    );
    let m: Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(m["hook_attributes"]["url"], g.url("/hooks/github"));
    assert_eq!(m["public"], false);
    // The events the shipped GitHub rules take, and only those an app can have.
    let events: Vec<&str> = m["default_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        events.contains(&"push") && events.contains(&"pull_request"),
        "{events:?}"
    );
    assert_eq!(m["default_permissions"]["contents"], "read");
    let state = query(&action)["state"].clone();
    let res = b
        .post(&action)
        .form(&[("manifest", manifest.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("cardwire test") && page.contains("create-app"),
        "{page}"
    );
    (page, state, manifest)
}

/// The whole way to GitHub and Create, as `octocat`: the callback GitHub sends the browser to.
async fn create_on_github(g: &Gateway, b: &reqwest::Client) -> String {
    let (_, state, manifest) = to_github(g, b).await;
    let res = b
        .post(g.url("/emulator/github/settings/apps/decide"))
        .form(&[
            ("manifest", manifest.as_str()),
            ("state", state.as_str()),
            ("owner", "octocat"),
            ("decision", "create"),
        ])
        .send()
        .await
        .unwrap();
    location(&res)
}

#[tokio::test]
async fn a_github_app_made_from_its_manifest_verifies_the_sources_pushes() {
    let mut g = app_gateway().await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("teams"), "teams", &[]).await;
    let push = fixture("github/push.event.4.json");
    // Before the app: nothing is accepted.
    let res = g
        .client
        .post(g.url("/hooks/github"))
        .header("x-github-event", "push")
        .body(push.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "no_app");

    let b = browser();
    sign_in(&g, &b).await;
    let html = page(&b, &g.url("/sources")).await;
    assert!(html.contains("nothing yet"), "{html}");
    let callback = create_on_github(&g, &b).await;
    assert!(
        callback.starts_with(&g.url("/connect/github/callback?code=")),
        "{callback}"
    );
    let code = query(&callback)["code"].clone();
    let res = b.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let install = location(&res);
    assert!(install.ends_with("/installations/new"), "{install}");
    // The code is good once, at GitHub and at the callback.
    assert_eq!(b.get(&callback).send().await.unwrap().status(), 400);
    let again = g
        .client
        .post(g.url(&format!(
            "/emulator/github/api/v3/app-manifests/{code}/conversions"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 422);

    // Install it on two repositories: GitHub sends `installation`, signed with the app's
    // secret, and the browser back to /sources, which shows where it is installed.
    let html = page(&b, &install).await;
    assert!(
        html.contains("send-push") && html.contains("id=\"install\""),
        "{html}"
    );
    let res = b
        .post(install.replace("/installations/new", "/installations"))
        .form(&[
            ("action", "created"),
            ("repository", "Codertocat/Hello-World"),
            ("repository", "octo-org/octo-repo"),
        ])
        .send()
        .await
        .unwrap();
    let setup = location(&res);
    assert!(
        setup.starts_with(&g.url("/sources?installation_id=")),
        "{setup}"
    );
    assert!(setup.ends_with("&setup_action=install"), "{setup}");
    let html = page(&b, &g.url("/sources")).await;
    assert!(
        html.contains("octocat: Codertocat/Hello-World, octo-org/octo-repo"),
        "{html}"
    );
    let slug = install
        .split("/apps/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let sent = page_post(&b, &g.url(&format!("/emulator/github/apps/{slug}/push"))).await;
    assert!(sent.contains("answered 202"), "{sent}");
    rx.wait_for(1).await;
    // A push signed with another secret is refused.
    let res = g.github("push", &push, None).await;
    assert_eq!(res.status(), 401);
    // /sources says what verifies it; no secret is shown. An uninstalled app shows as removed.
    let res = b
        .post(install.replace("/installations/new", "/installations"))
        .form(&[("action", "deleted")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let html = page(&b, &g.url("/sources")).await;
    assert!(html.contains("the secret of the GitHub App"), "{html}");
    assert!(
        html.contains("installation removed") && html.contains("octocat: removed"),
        "{html}"
    );
    // A restart keeps the app's secret: an unsigned push is refused for its signature, not for
    // a missing app.
    g.restart().await;
    let res = g
        .client
        .post(g.url("/hooks/github"))
        .header("x-github-event", "push")
        .body(push)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_ne!(res.json::<Value>().await.unwrap()["error"], "no_app");
}

async fn page_post(b: &reqwest::Client, url: &str) -> String {
    let res = b.post(url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

#[tokio::test]
async fn cancel_a_forged_state_and_github_down_keep_nothing() {
    let g = app_gateway().await;
    let b = browser();
    let (_, state, manifest) = to_github(&g, &b).await;
    // Cancel on GitHub: back to /sources, nothing made.
    let res = b
        .post(g.url("/emulator/github/settings/apps/decide"))
        .form(&[
            ("manifest", manifest.as_str()),
            ("state", state.as_str()),
            ("decision", "cancel"),
        ])
        .send()
        .await
        .unwrap();
    assert!(location(&res).ends_with("/sources"));
    // A forged state, and a callback without one.
    for q in ["code=abc&state=forged", "code=abc"] {
        let res = b
            .get(g.url(&format!("/connect/github/callback?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{q}");
    }
    // A code GitHub never gave: its 404, named; the state is used up.
    let res = b
        .get(g.url(&format!("/connect/github/callback?code=nope&state={state}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("HTTP 404") && html.contains("Nothing was kept"),
        "{html}"
    );
    let html = page(&b, &g.url("/sources")).await;
    assert!(html.contains("nothing yet"), "no app kept: {html}");
}

#[tokio::test]
async fn github_unreachable_keeps_nothing_and_says_so() {
    // A GitHub Enterprise Server that does not answer.
    let g = app_gateway_at(Some("http://127.0.0.1:9")).await;
    let b = browser();
    let csrf = sign_in(&g, &b).await;
    let res = press_create(
        &g,
        &b,
        &[
            ("csrf", csrf.as_str()),
            ("owner", "org"),
            ("org", "octo-org"),
        ],
    )
    .await;
    let html = res.text().await.unwrap();
    let action = attribute(&html, "action=\"");
    assert!(
        action.starts_with("http://127.0.0.1:9/organizations/octo-org/settings/apps/new?state="),
        "{action}"
    );
    let state = query(&action)["state"].clone();
    let res = b
        .get(g.url(&format!("/connect/github/callback?code=c&state={state}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(html.contains("GitHub cannot be reached"), "{html}");
    // A stale form (another session's CSRF token) is refused.
    let res = press_create(&g, &b, &[("csrf", "forged"), ("owner", "user")]).await;
    assert_eq!(res.status(), 403);
}

/// The `github` source's app's webhook secret, as the database keeps it (opened with the
/// shared key).
async fn app_secret(pg: &crate::pg::Postgres) -> String {
    let url = pg.url();
    tokio::task::spawn_blocking(move || {
        use cardwire::store::SourceApps as _;
        let store = cardwire::store::pg::PgStore::open(
            &cardwire::store::pg::PgSettings {
                url,
                pool: 1,
                lease: cardwire::store::pg::LEASE,
            },
            PG_SECRETS_KEY,
            cardwire::store::Clock::System,
        )
        .unwrap();
        store.source_apps().unwrap()[0].webhook_secret.clone()
    })
    .await
    .unwrap()
}

/// Two instances on one PostgreSQL database: the app one of them made verifies at the other.
#[tokio::test(flavor = "multi_thread")]
async fn every_instance_on_postgres_verifies_with_the_app() {
    let pg = crate::pg::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let instance = |name: &str| {
        let mut config = test_config(&dir.path().join(name));
        config.store.postgres = Some(cardwire::config::PostgresConfig {
            url: pg.url(),
            pool: 4,
            lease: cardwire::store::pg::LEASE,
        });
        config.connect.secrets_key = Some(PG_SECRETS_KEY.into());
        config.connect.emulator = Some(true);
        let github = config.sources.get_mut("github").unwrap();
        github.secret = None;
        github.app = true;
        config
    };
    let a = Gateway::start_with(instance("a")).await;
    let b = Gateway::start_with(instance("b")).await;
    let browser = browser();
    let callback = create_on_github(&a, &browser).await;
    let res = browser.get(callback).send().await.unwrap();
    assert_eq!(res.status(), 303);
    // The app's secret as the database keeps it (sealed with the shared key).
    let secret = app_secret(&pg).await;
    let push = fixture("github/push.event.4.json");
    let signed = |g: &Gateway, secret: &str| {
        g.client
            .post(g.url("/hooks/github"))
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header(
                "x-hub-signature-256",
                cardwire::ingest::verify::sign(secret, &push),
            )
            .body(push.clone())
            .send()
    };
    // b never saw the flow: it reads the app from the database.
    assert_eq!(signed(&b, &secret).await.unwrap().status(), 202);
    assert_eq!(signed(&b, "another secret").await.unwrap().status(), 401);
    assert_eq!(signed(&a, &secret).await.unwrap().status(), 202);
    // The app made again on a: b takes the new secret once it is refused the old one's (it
    // reads the store again at most once a second: polled until it does).
    let res = browser
        .get(create_on_github(&a, &browser).await)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let renewed = app_secret(&pg).await;
    assert_ne!(renewed, secret);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while signed(&b, &renewed).await.unwrap().status() != 202 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b never took the new secret"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        signed(&b, &secret).await.unwrap().status(),
        401,
        "the old one is gone"
    );
}
