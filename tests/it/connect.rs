//! The Connect to Office 365 flow against the emulator, over HTTP: every branch of the state
//! and callback handling, the URL checks, the 302 and its headers, masking, encryption at rest,
//! pausing, and the /connections pages.

use std::time::Duration;

use serde_json::{json, Value};

use crate::utils::*;

/// Starts the flow: the Connect button's target, in the emulator.
async fn start(g: &Gateway, b: &reqwest::Client, form: &[(&str, &str)]) -> String {
    let res = b
        .post(g.url("/connect/start"))
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let cookie = res.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    location(&res)
}

/// The emulator's answer for a decision: the callback URL Office 365 would redirect to.
async fn decide(
    g: &Gateway,
    b: &reqwest::Client,
    picker: &str,
    target: &str,
    decision: &str,
) -> String {
    let q = query(picker);
    let res = b
        .post(g.url("/emulator/connectors/Connect"))
        .form(&[
            ("state", q["state"].as_str()),
            ("app_id", q["app_id"].as_str()),
            ("callback_url", q["callback_url"].as_str()),
            ("target", target),
            ("decision", decision),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    location(&res)
}

#[tokio::test]
async fn the_whole_flow_connects_a_group_and_its_cards_arrive() {
    let g = emulated().await;
    let b = browser();

    let page = b.get(g.url("/connect")).send().await.unwrap();
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<meta name="referrer" content="no-referrer">"#));
    assert!(
        html.contains("Office 365 emulator") && html.contains("value=\"github\""),
        "{html}"
    );

    let picker = start(&g, &b, &[("channel", "github"), ("digest", "hourly")]).await;
    assert!(
        picker.starts_with(&g.url("/emulator/connectors/Connect?")),
        "{picker}"
    );
    let q = query(&picker);
    assert!(q["state"].len() >= 22, "128 bits or more");
    assert_eq!(q["callback_url"], g.url("/connect/callback"));
    assert!(!q["callback_url"].contains('?'));
    assert!(!q["app_id"].is_empty());

    let html = b.get(&picker).send().await.unwrap().text().await.unwrap();
    assert!(
        html.contains("Engineering") && html.contains("Your inbox"),
        "{html}"
    );

    let callback = decide(&g, &b, &picker, "teams:Engineering", "allow").await;
    let p = query(&callback);
    assert_eq!(
        (p["app_type"].as_str(), p["group_name"].as_str()),
        ("teams", "Engineering")
    );
    assert_eq!(p["webhook_url"], g.url("/emulator/inbox/engineering"));
    assert!(!p["user_objectId"].is_empty());

    let res = b.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(res.headers()["referrer-policy"], "no-referrer");
    let done = location(&res);
    assert!(done.starts_with("/connect/done/con_"), "{done}");
    assert!(
        !done.contains("webhook") && !done.contains("inbox"),
        "the done URL carries no webhook data"
    );
    let html = crate::utils::page(&b, &g.url(&done)).await;
    assert!(
        html.contains("Connected") && html.contains("Engineering"),
        "{html}"
    );

    let list = g.admin_get("/api/connections").await;
    let c = &list[0];
    assert_eq!(
        (
            c["via"].as_str(),
            c["app_type"].as_str(),
            c["group_name"].as_str()
        ),
        (Some("connect"), Some("teams"), Some("Engineering"))
    );
    assert_eq!(c["channels"], json!(["github"]));
    assert_eq!(c["digest"], json!({"every": "1h"}));
    assert_eq!(c["kind"], "teams");
    assert_eq!(
        c["url"], "http://127.0.0.1/…ring",
        "masked: scheme, host, last 4 characters"
    );
    assert!(
        c.get("user_object_id").is_none(),
        "the user id is never shown"
    );

    // The state is single use.
    let again = b.get(&callback).send().await.unwrap();
    assert_eq!(again.status(), 400);

    // With the digest off again, a GitHub event reaches the group's inbox at once.
    let id = c["id"].as_str().unwrap();
    let res = g
        .client
        .patch(g.url(&format!("/api/connections/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"digest": null}))
        .send()
        .await
        .unwrap();
    assert!(res.json::<Value>().await.unwrap()["digest"].is_null());
    // A GitHub event reaches the group's inbox.
    assert_eq!(
        g.github("push", &fixture("github/push.event.4.json"), None)
            .await
            .status(),
        202
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let inbox = g.get_text("/emulator/inbox/engineering").await;
        if inbox.contains("Codertocat/Hello-World") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no card in the inbox: {inbox}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn deny_and_other_errors_store_nothing() {
    let g = emulated().await;
    let b = browser();
    let picker = start(&g, &b, &[]).await;
    let callback = decide(&g, &b, &picker, "mail:", "deny").await;
    assert_eq!(query(&callback)["error"], "AccessDenied");
    let res = b.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("You declined"));

    let picker = start(&g, &b, &[]).await;
    let state = query(&picker)["state"].clone();
    let res = b
        .get(g.url(&format!(
            "/connect/callback?state={state}&error=ServerError"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("ServerError"));
    assert_eq!(g.admin_get("/api/connections").await, json!([]));
}

#[tokio::test]
async fn the_inbox_connects_without_a_group_name() {
    let g = emulated().await;
    let b = browser();
    let picker = start(&g, &b, &[]).await;
    let callback = decide(&g, &b, &picker, "mail:", "allow").await;
    let p = query(&callback);
    assert_eq!(p["app_type"], "mail");
    assert!(!p.contains_key("group_name"));
    assert_eq!(b.get(&callback).send().await.unwrap().status(), 302);
    let c = &g.admin_get("/api/connections").await[0];
    assert_eq!(
        (c["name"].as_str(), c["group_name"].as_str()),
        (Some("Inbox"), None)
    );
}

#[tokio::test]
async fn missing_unknown_foreign_and_expired_states_are_refused() {
    let g = emulated().await;
    let b = browser();
    let ok = |state: &str| {
        g.url(&format!(
            "/connect/callback?state={state}&webhook_url={}&app_type=teams&group_name=X&user_objectId=u",
            url::form_urlencoded::byte_serialize(g.url("/emulator/inbox/x").as_bytes()).collect::<String>()
        ))
    };
    // Missing and unknown.
    let res = b
        .get(g.url("/connect/callback?webhook_url=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("no state"));
    assert_eq!(
        b.get(ok("made-up-state")).send().await.unwrap().status(),
        400
    );

    // Foreign: another browser cannot use it, and the owner still can.
    let picker = start(&g, &b, &[]).await;
    let state = query(&picker)["state"].clone();
    let other = browser();
    let res = other.get(ok(&state)).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("another browser"));
    assert_eq!(b.get(ok(&state)).send().await.unwrap().status(), 302);

    // Expired: a state older than 10 minutes.
    let picker = start(&g, &b, &[]).await;
    let state = query(&picker)["state"].clone();
    let store = &g.server.as_ref().unwrap().app().store;
    let mut record = store.flow_state(&state).unwrap().unwrap();
    record.created_ms -= 11 * 60 * 1000;
    store.put_flow_state(&state, &record).unwrap();
    let res = b.get(ok(&state)).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("expired"));
    assert_eq!(
        g.admin_get("/api/connections")
            .await
            .as_array()
            .unwrap()
            .len(),
        1,
        "only the owner's use stored one"
    );
}

#[tokio::test]
async fn missing_parameters_and_bad_urls_are_refused() {
    let g = emulated().await;
    let b = browser();
    for (query_tail, want) in [
        ("app_type=teams&group_name=X&user_objectId=u", "webhook_url"),
        ("webhook_url=https://outlook.office.com/webhook/a&group_name=X&user_objectId=u", "app_type"),
        ("webhook_url=https://outlook.office.com/webhook/a&app_type=teams&user_objectId=u", "group_name"),
        ("webhook_url=https://evil.example/hook&app_type=teams&group_name=X&user_objectId=u", "evil.example"),
        ("webhook_url=http://10.1.2.3/hook&app_type=teams&group_name=X&user_objectId=u", "10.1.2.3"),
        ("webhook_url=https://outlook.office.com/webhook/a&app_type=fax&group_name=X&user_objectId=u", "fax"),
    ] {
        let picker = start(&g, &b, &[]).await;
        let state = query(&picker)["state"].clone();
        let res = b.get(g.url(&format!("/connect/callback?state={state}&{query_tail}"))).send().await.unwrap();
        assert_eq!(res.status(), 400, "{query_tail}");
        let html = res.text().await.unwrap();
        assert!(html.contains(want), "{want} not named in: {html}");
    }
    assert_eq!(g.admin_get("/api/connections").await, json!([]));
}

#[tokio::test]
async fn the_emulator_refuses_tampered_requests_and_non_https_callbacks() {
    let g = emulated().await;
    let b = browser();
    let picker = start(&g, &b, &[]).await;
    let mut u = url::Url::parse(&picker).unwrap();
    let q = query(&picker);
    u.query_pairs_mut()
        .clear()
        .append_pair("state", &q["state"])
        .append_pair("app_id", "11111111-1111-1111-1111-111111111111")
        .append_pair("callback_url", &q["callback_url"]);
    let res = b.get(u.as_str()).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("Invalid Request"));
    u.query_pairs_mut()
        .clear()
        .append_pair("state", &q["state"])
        .append_pair("app_id", &q["app_id"])
        .append_pair("callback_url", "https://attacker.example/cb");
    assert!(b
        .get(u.as_str())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("Invalid Request"));

    // Without allow_http, an http callback to a host that is not loopback gets nothing back
    // (a loopback one does: the quick start's defaults, see browser.rs).
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.connect.emulator = Some(true);
    config.targets.allow_http = false;
    config.public_url = Some("http://cardwire.example.com".into());
    let strict = Gateway::start_with(config).await;
    let picker = start(&strict, &b, &[]).await;
    let q = query(&picker);
    let res = b
        .post(strict.url("/emulator/connectors/Connect"))
        .form(&[
            ("state", q["state"].as_str()),
            ("app_id", q["app_id"].as_str()),
            ("callback_url", q["callback_url"].as_str()),
            ("target", "mail:"),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Nothing was sent back"));
}

#[tokio::test]
async fn secrets_are_encrypted_at_rest() {
    let mut g = emulated().await;
    let b = browser();
    let picker = start(&g, &b, &[]).await;
    let callback = decide(&g, &b, &picker, "teams:Operations", "allow").await;
    let user = query(&callback)["user_objectId"].clone();
    assert_eq!(b.get(&callback).send().await.unwrap().status(), 302);
    let rx = Receiver::start().await;
    let secret_url = rx.url("webhookb2/a-very-secret-path");
    g.connect(&secret_url, "teams", &[]).await;
    // A Mattermost bot's token, sealed like the URLs.
    let res = g
        .client
        .post(g.url("/api/connections"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "mm", "url": rx.url("hooks/a-secret-hook"), "kind": "mattermost",
                      "bot": {"token": "secrettokenabcdefghij01234", "channel": "4yqrg8o1h7dm5f3k9b2n6c0e1p"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let data_dir = g.config.data_dir.clone();
    g.stop().await;
    let mut found = Vec::new();
    for entry in walk(&data_dir) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for needle in [
            "a-very-secret-path",
            "/emulator/inbox/operations",
            "a-secret-hook",
            "secrettokenabcdefghij01234",
            user.as_str(),
        ] {
            if text.contains(needle) {
                found.push(format!("{needle} in {}", entry.display()));
            }
        }
    }
    assert!(found.is_empty(), "{found:?}");
    // And they open again after a restart.
    g.restart().await;
    let list = g.admin_get("/api/connections").await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert!(list.as_array().unwrap().iter().any(|c| c["bot"] == true));
}

#[tokio::test]
async fn a_paused_connection_receives_nothing_and_counts_what_it_skipped() {
    let g = emulated().await;
    let rx = Receiver::start().await;
    let id = g.connect(&rx.url("t"), "teams", &[]).await;
    let patch = |body: Value| {
        g.client
            .patch(g.url(&format!("/api/connections/{id}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let res = patch(json!({"paused": true})).await.unwrap();
    assert_eq!(res.status(), 200);
    g.github("push", &fixture("github/push.event.4.json"), Some("p1"))
        .await;
    g.wait_settled().await;
    assert!(g.deliveries(&format!("connection={id}")).await.is_empty());
    assert!(rx.received().is_empty());
    let c = g.admin_get(&format!("/api/connections/{id}")).await;
    assert_eq!(
        (c["paused"].as_bool(), c["skipped"].as_u64()),
        (Some(true), Some(1))
    );
    // Resumed: new events flow again.
    patch(json!({"paused": false})).await.unwrap();
    g.github("push", &fixture("github/push.event.5.json"), Some("p2"))
        .await;
    rx.wait_for(1).await;
    g.admin_get_until(&format!("/api/connections/{id}"), |c| {
        c["last_delivery_ms"].as_u64().is_some()
    })
    .await;
    // Channels change; an unknown key is refused with its name.
    let res = patch(json!({"channels": ["alerts"]})).await.unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap()["channels"],
        json!(["alerts"])
    );
    let res = patch(json!({"pause": true})).await.unwrap();
    assert_eq!(res.status(), 422);
    assert!(res.json::<Value>().await.unwrap()["detail"]
        .as_str()
        .unwrap()
        .contains("pause"));
}

#[tokio::test]
async fn the_connections_pages_need_the_token_and_pause_with_a_csrf_token() {
    let g = emulated().await;
    let rx = Receiver::start().await;
    let id = g.connect(&rx.url("t"), "teams", &[]).await;
    let b = browser();
    let html = page(&b, &g.url("/connections")).await;
    assert!(
        html.contains("Admin token") && !html.contains(&id),
        "signed out, nothing is listed"
    );
    let res = b
        .post(g.url("/connections/login"))
        .form(&[("token", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = b
        .post(g.url("/connections/login"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let html = page(&b, &g.url("/connections")).await;
    assert!(
        html.contains(&id) && html.contains("the admin API"),
        "{html}"
    );
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let res = b
        .post(g.url(&format!("/connections/{id}/pause")))
        .form(&[("csrf", "stale")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = b
        .post(g.url(&format!("/connections/{id}/pause")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        g.admin_get(&format!("/api/connections/{id}")).await["paused"],
        true
    );
    let detail = b
        .get(g.url(&format!("/connections/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        detail.contains("Last delivery") && detail.contains("paused"),
        "{detail}"
    );
    let res = b
        .post(g.url(&format!("/connections/{id}/remove")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(g.admin_get("/api/connections").await, json!([]));
}

#[tokio::test]
async fn a_pasted_workflows_url_needs_the_admin_token() {
    let g = emulated().await;
    let b = browser();
    let url = "https://prod-00.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=secret";
    let res = b
        .post(g.url("/connect/paste"))
        .form(&[
            ("name", "wf"),
            ("url", url),
            ("channels", "github"),
            ("token", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = b
        .post(g.url("/connect/paste"))
        .form(&[
            ("name", "wf"),
            ("url", "https://evil.example/x"),
            ("channels", ""),
            ("token", ADMIN_TOKEN),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = b
        .post(g.url("/connect/paste"))
        .form(&[
            ("name", "wf"),
            ("url", url),
            ("channels", "github"),
            ("token", ADMIN_TOKEN),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let c = &g.admin_get("/api/connections").await[0];
    assert_eq!(
        (c["kind"].as_str(), c["via"].as_str()),
        (Some("workflow"), Some("paste"))
    );
    assert!(!c["url"].as_str().unwrap().contains("sig=secret"));

    // A Slack URL pasted: its host says the kind; a kind chosen on the form must be the
    // URL's platform (Mattermost's are the listed hosts).
    let res = b
        .post(g.url("/connect/paste"))
        .form(&[
            ("name", "wrong"),
            ("url", "https://hooks.slack.com/services/T0/B1/secret"),
            ("kind", "mattermost"),
            ("channels", ""),
            ("token", ADMIN_TOKEN),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(html.contains("a mattermost webhook URL is"), "{html}");
    for (url, kind, want) in [
        ("https://hooks.slack.com/services/T0/B0/secret", "", "slack"),
        ("https://discord.com/api/webhooks/1/secret", "", "discord"),
        (
            "https://discord.com/api/webhooks/2/secret",
            "discord",
            "discord2",
        ),
    ] {
        let res = b
            .post(g.url("/connect/paste"))
            .form(&[
                ("name", want),
                ("url", url),
                ("kind", kind),
                ("channels", ""),
                ("token", ADMIN_TOKEN),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 302);
        let all = g.admin_get("/api/connections").await;
        let c = all
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == want)
            .unwrap()
            .clone();
        assert_eq!(c["kind"], want.trim_end_matches('2'), "{c}");
    }
}
