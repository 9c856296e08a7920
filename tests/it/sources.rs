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
    // The admin's `?explain=1` stands in for the app: it explains, whether or not one exists.
    let res = g
        .client
        .post(g.url("/hooks/github?explain=1"))
        .header("x-github-event", "push")
        .bearer_auth(ADMIN_TOKEN)
        .body(push.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["event"], "push");

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

    // Another browser's state, then the same state expired (older than 10 minutes), then
    // a state replayed after its use.
    let (_, state, _) = to_github(&g, &b).await;
    let at = |state: &str| g.url(&format!("/connect/github/callback?code=c&state={state}"));
    let res = browser().get(at(&state)).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("another browser"));
    let store = &g.server.as_ref().unwrap().app().store;
    let mut record = store.flow_state(&state).unwrap().unwrap();
    record.created_ms -= 11 * 60 * 1000;
    store.put_flow_state(&state, &record).unwrap();
    let res = b.get(at(&state)).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("expired"));
    let callback = create_on_github(&g, &b).await;
    assert_eq!(b.get(&callback).send().await.unwrap().status(), 303);
    let res = b.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 400, "replayed");
    assert!(res.text().await.unwrap().contains("already used"));
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

/// The database at `url`, opened with the instances' shared key (on a blocking thread).
fn opened(url: String) -> std::sync::Arc<cardwire::store::pg::PgStore> {
    cardwire::store::pg::PgStore::open(
        &cardwire::store::pg::PgSettings {
            url,
            pool: 1,
            lease: cardwire::store::pg::LEASE,
        },
        PG_SECRETS_KEY,
        cardwire::store::Clock::System,
    )
    .unwrap()
}

/// The settings of an instance `name` on the database `pg` with the emulators on, its data
/// folder under `dir`.
fn pg_instance(
    pg: &crate::pg::Postgres,
    dir: &std::path::Path,
    name: &str,
) -> cardwire::config::Config {
    let mut config = test_config(&dir.join(name));
    config.store.postgres = Some(cardwire::config::PostgresConfig {
        url: pg.url(),
        pool: 4,
        lease: cardwire::store::pg::LEASE,
        tls: None,
    });
    config.connect.secrets_key = Some(PG_SECRETS_KEY.into());
    config.connect.emulator = Some(true);
    config
}

/// The `github` source's app's webhook secret, as the database keeps it (opened with the
/// shared key).
async fn app_secret(pg: &crate::pg::Postgres) -> String {
    let url = pg.url();
    tokio::task::spawn_blocking(move || {
        use cardwire::store::SourceApps as _;
        opened(url).source_apps().unwrap()[0].webhook_secret.clone()
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
        let mut config = pg_instance(&pg, dir.path(), name);
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
    // GitHub's ping, signed with the app's secret, is answered (and makes no card).
    let ping = fixture("github/ping.event.1.json");
    let res = b
        .client
        .post(b.url("/hooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "ping")
        .header(
            "x-hub-signature-256",
            cardwire::ingest::verify::sign(&secret, &ping),
        )
        .body(ping)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    // /sources names the app and shows none of its secrets.
    let csrf_browser = crate::utils::browser();
    sign_in(&a, &csrf_browser).await;
    let html = page(&csrf_browser, &a.url("/sources")).await;
    assert!(html.contains("the secret of the GitHub App"), "{html}");
    assert!(!html.contains(&secret), "the webhook secret is shown");
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

/// A gateway on the emulators whose `gitlab` source has no token of its own.
async fn hook_gateway() -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.connect.emulator = Some(true);
    config.sources.get_mut("gitlab").unwrap().secret = None;
    let mut g = Gateway::start_with(config).await;
    g.keep(dir);
    g
}

const GITLAB_TOKEN: &str = cardwire::connect::gitlab_emulator::TOKEN;

/// Presses Add a GitLab hook for `gitlab` with these projects and token (`keep`: keep it).
async fn add_hooks(
    g: &Gateway,
    b: &reqwest::Client,
    csrf: &str,
    gitlab: &str,
    projects: &str,
    token: &str,
    keep: bool,
) -> (u16, String) {
    let mut form = vec![
        ("csrf", csrf),
        ("gitlab", gitlab),
        ("projects", projects),
        ("token", token),
    ];
    if keep {
        form.push(("keep", "1"));
    }
    let res = b
        .post(g.url("/sources/gitlab/gitlab-hooks"))
        .form(&form)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// A project's hooks as the emulated GitLab lists them.
async fn gitlab_hooks(g: &Gateway, project: u64) -> Vec<Value> {
    g.client
        .get(g.url(&format!("/emulator/gitlab/api/v4/projects/{project}/hooks")))
        .header("private-token", GITLAB_TOKEN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Presses `what` (`test` or `remove`) of hook `id` on /sources, with `token` typed if any.
async fn press_hook(
    g: &Gateway,
    b: &reqwest::Client,
    csrf: &str,
    id: u64,
    what: &str,
    token: Option<&str>,
) -> (u16, String) {
    // The GitLab the hook is on, as /sources' form names it.
    let html = page(b, &g.url("/sources")).await;
    let gitlab = attribute(&html, "name=\"gitlab\" value=\"");
    let mut form = vec![("csrf", csrf), ("gitlab", gitlab.as_str())];
    if let Some(t) = token {
        form.push(("token", t));
    }
    let res = b
        .post(g.url(&format!("/sources/gitlab/gitlab-hooks/{id}/{what}")))
        .form(&form)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn gitlab_push(g: &Gateway, token: Option<&str>) -> reqwest::Response {
    let mut req = g
        .client
        .post(g.url("/hooks/gitlab"))
        .header("content-type", "application/json")
        .header("x-gitlab-event", "Push Hook");
    if let Some(t) = token {
        req = req.header("x-gitlab-token", t);
    }
    req.body(fixture("gitlab/push.json")).send().await.unwrap()
}

#[tokio::test]
async fn gitlab_hooks_made_by_token_verify_the_sources_deliveries() {
    let mut g = hook_gateway().await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("teams"), "teams", &[]).await;
    // Before a hook: a source without a token takes unsigned deliveries, as before.
    assert_eq!(gitlab_push(&g, None).await.status(), 202);
    rx.wait_for(1).await;

    let b = browser();
    let csrf = sign_in(&g, &b).await;
    let html = page(&b, &g.url("/sources")).await;
    assert!(
        html.contains("id=\"add-hooks-gitlab\"") && html.contains(GITLAB_TOKEN),
        "the emulator's token is offered: {html}"
    );
    let gitlab = g.url("/emulator/gitlab");
    let (status, html) = add_hooks(
        &g,
        &b,
        &csrf,
        &gitlab,
        "mike/diaspora\nhttp://x/ignored\n",
        GITLAB_TOKEN,
        true,
    )
    .await;
    // A URL on another GitLab is no project of this one: GitLab's 404, after the first is made.
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("mike/diaspora: hook"), "{html}");
    let (status, html) = add_hooks(
        &g,
        &b,
        &csrf,
        &gitlab,
        "gitlab-org/gitlab-test",
        GITLAB_TOKEN,
        false,
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("GitLab hooks added"), "{html}");

    // On GitLab: a hook to /hooks/gitlab with exactly the events the shipped GitLab rules take,
    // TLS verification on, its token not shown.
    let hooks = gitlab_hooks(&g, 15).await;
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let h = &hooks[0];
    assert_eq!(h["url"], g.url("/hooks/gitlab"));
    assert_eq!(h["enable_ssl_verification"], true);
    for on in [
        "push_events",
        "tag_push_events",
        "merge_requests_events",
        "pipeline_events",
        "issues_events",
        "note_events",
        "deployment_events",
        "releases_events",
    ] {
        assert_eq!(h[on], true, "{on}: {h}");
    }
    for off in ["job_events", "wiki_page_events", "emoji_events"] {
        assert_eq!(h[off], false, "{off}: no shipped rule takes it: {h}");
    }
    assert!(h.get("token").is_none());
    let kept_id = h["id"].as_u64().unwrap();
    let other_id = gitlab_hooks(&g, 1).await[0]["id"].as_u64().unwrap();

    // /sources lists both hooks and says what verifies the source.
    let html = page(&b, &g.url("/sources")).await;
    assert!(
        html.contains("the tokens of its GitLab hooks (2)")
            && html.contains(&format!("id=\"test-hook-{kept_id}\""))
            && html.contains(&format!("id=\"remove-hook-{other_id}\"")),
        "{html}"
    );
    assert!(
        !html.contains(GITLAB_TOKEN) || html.contains("emulator"),
        "{html}"
    );

    // Send a test event: GitLab posts a real push with the hook's token; its card arrives.
    let (status, html) = press_hook(&g, &b, &csrf, kept_id, "test", None).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Test event sent"), "{html}");
    rx.wait_for(2).await;
    // The other hook's token was not kept: the button asks for one.
    let (status, html) = press_hook(&g, &b, &csrf, other_id, "test", None).await;
    assert_eq!(status, 400);
    assert!(html.contains("was not kept: type one"), "{html}");
    let (status, _) = press_hook(&g, &b, &csrf, other_id, "test", Some(GITLAB_TOKEN)).await;
    assert_eq!(status, 200);
    rx.wait_for(3).await;

    // Now unsigned and wrongly signed deliveries are refused.
    assert_eq!(gitlab_push(&g, None).await.status(), 401);
    assert_eq!(gitlab_push(&g, Some("guess")).await.status(), 401);

    // Remove: the kept token deletes the hook on GitLab; without one, it is only forgotten
    // here, and the page says to delete it on GitLab.
    let (status, html) = press_hook(&g, &b, &csrf, kept_id, "remove", None).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("It was deleted on GitLab"), "{html}");
    assert!(gitlab_hooks(&g, 15).await.is_empty());
    let (status, html) = press_hook(&g, &b, &csrf, kept_id, "remove", None).await;
    assert_eq!(status, 400, "once: {html}");
    // A restart keeps the remaining hook: deliveries are still checked against its token.
    g.restart().await;
    assert_eq!(gitlab_push(&g, None).await.status(), 401);
    let b = browser();
    let csrf = sign_in(&g, &b).await;
    let (status, html) = press_hook(&g, &b, &csrf, other_id, "remove", None).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("delete it on GitLab too"), "{html}");
    // No hook left: the source is as before.
    assert_eq!(gitlab_push(&g, None).await.status(), 202);
}

#[tokio::test]
async fn a_gitlab_failure_midway_keeps_the_hooks_made_and_names_the_rest() {
    let g = hook_gateway().await;
    let b = browser();
    let csrf = sign_in(&g, &b).await;
    let gitlab = g.url("/emulator/gitlab");
    // The third of five: a project where the token's user is a developer.
    let (status, html) = add_hooks(
        &g,
        &b,
        &csrf,
        &gitlab,
        "mike/diaspora\ngitlab-org/gitlab-test\njsmith/example\nno/such\nmike/other",
        GITLAB_TOKEN,
        false,
    )
    .await;
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("Some GitLab hooks added"), "{html}");
    assert!(
        html.contains("mike/diaspora: hook") && html.contains("gitlab-org/gitlab-test: hook"),
        "{html}"
    );
    assert!(
        html.contains("jsmith/example: 403: the token&#39;s user is not a maintainer")
            || html.contains("jsmith/example: 403: the token's user is not a maintainer"),
        "{html}"
    );
    assert!(html.contains("Not tried: no/such, mike/other."), "{html}");
    let listed = page(&b, &g.url("/sources")).await;
    assert!(
        listed.contains("the tokens of its GitLab hooks (2)"),
        "{listed}"
    );

    // Each of GitLab's refusals by name, nothing kept.
    for (projects, token, said) in [
        (
            "mike/diaspora",
            "glpat-wrong",
            "401: the token is not valid",
        ),
        (
            "mike/diaspora",
            cardwire::connect::gitlab_emulator::READ_ONLY_TOKEN,
            "403: the token lacks the api scope",
        ),
        ("no/such", GITLAB_TOKEN, "404: there is no project no/such"),
    ] {
        let (status, html) = add_hooks(&g, &b, &csrf, &gitlab, projects, token, true).await;
        assert_eq!(status, 422, "{said}: {html}");
        assert!(html.contains(said), "{said}: {html}");
        assert!(html.contains("Cannot add the hooks"), "{html}");
    }
    // GitLab down.
    let (status, html) = add_hooks(
        &g,
        &b,
        &csrf,
        "http://127.0.0.1:9",
        "mike/diaspora",
        GITLAB_TOKEN,
        true,
    )
    .await;
    assert_eq!(status, 502, "{html}");
    assert!(html.contains("GitLab cannot be reached"), "{html}");
    // A stale form, no token, no project, another kind of source.
    let (status, _) = add_hooks(
        &g,
        &b,
        "forged",
        &gitlab,
        "mike/diaspora",
        GITLAB_TOKEN,
        true,
    )
    .await;
    assert_eq!(status, 403);
    let (status, html) = add_hooks(&g, &b, &csrf, &gitlab, "mike/diaspora", "", true).await;
    assert_eq!(status, 400);
    assert!(
        html.contains("An access token with the api scope is needed"),
        "{html}"
    );
    let (status, html) = add_hooks(&g, &b, &csrf, &gitlab, " \n", GITLAB_TOKEN, true).await;
    assert_eq!(status, 400);
    assert!(html.contains("Name a project"), "{html}");
    let res = b
        .post(g.url("/sources/github/gitlab-hooks"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("gitlab", &gitlab),
            ("projects", "a/b"),
            ("token", GITLAB_TOKEN),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("GitLab hooks send to GitLab sources"));
    let listed = page(&b, &g.url("/sources")).await;
    assert!(
        listed.contains("the tokens of its GitLab hooks (2)"),
        "nothing more kept: {listed}"
    );
    assert_eq!(gitlab_hooks(&g, 15).await.len(), 1);
}

/// The tokens of the hooks the database keeps (opened with the shared key).
async fn hook_tokens(pg: &crate::pg::Postgres) -> Vec<String> {
    let url = pg.url();
    tokio::task::spawn_blocking(move || {
        use cardwire::store::SourceHooks as _;
        opened(url)
            .source_hooks()
            .unwrap()
            .into_iter()
            .map(|h| h.token)
            .collect()
    })
    .await
    .unwrap()
}

/// Two instances on one PostgreSQL database: a hook one of them made verifies at the other.
#[tokio::test(flavor = "multi_thread")]
async fn every_instance_on_postgres_verifies_with_the_hooks() {
    let pg = crate::pg::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let instance = |name: &str| {
        let mut config = pg_instance(&pg, dir.path(), name);
        config.sources.get_mut("gitlab").unwrap().secret = None;
        config
    };
    let a = Gateway::start_with(instance("a")).await;
    let b = Gateway::start_with(instance("b")).await;
    // b takes unsigned deliveries while no hook exists.
    assert_eq!(gitlab_push(&b, None).await.status(), 202);
    let browser = browser();
    let csrf = sign_in(&a, &browser).await;
    let (status, html) = add_hooks(
        &a,
        &browser,
        &csrf,
        &a.url("/emulator/gitlab"),
        "mike/diaspora",
        GITLAB_TOKEN,
        false,
    )
    .await;
    assert_eq!(status, 200, "{html}");
    let tokens = hook_tokens(&pg).await;
    assert_eq!(tokens.len(), 1);
    // b never saw the hook made: it reads it from the database (at most once a second), and
    // from then on refuses what the hook's token does not sign.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while gitlab_push(&b, None).await.status() != 401 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b never took the hook"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(gitlab_push(&b, Some(&tokens[0])).await.status(), 202);
    assert_eq!(gitlab_push(&b, Some("guess")).await.status(), 401);
    assert_eq!(gitlab_push(&a, Some(&tokens[0])).await.status(), 202);
}
