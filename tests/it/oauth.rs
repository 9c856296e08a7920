//! Add to Slack and Add to Discord against their emulators, over HTTP: the whole flow to a
//! card in the channel, cancel, forged, foreign, replayed and expired states, a state taken to
//! the other flow's callback, a failed exchange, and the emulators' own answers.

use std::time::Duration;

use serde_json::{json, Value};

use crate::utils::*;

/// The two flows: (path segment, kind, the channel the test picks and its inbox).
const FLOWS: [(&str, &str, &str, &str); 2] = [
    (
        "slack",
        "slack",
        "C0EMUDEPLOY",
        "/emulator/slack/inbox/deploys",
    ),
    (
        "discord",
        "discord",
        "345626669224982402",
        "/emulator/discord/inbox/deploys",
    ),
];

/// Presses "Add to …" on /connect; returns the authorize page's URL.
pub async fn start(g: &Gateway, b: &reqwest::Client, flow: &str, form: &[(&str, &str)]) -> String {
    let res = b
        .post(g.url(&format!("/connect/{flow}/start")))
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
    assert_eq!(res.headers()["referrer-policy"], "no-referrer");
    location(&res)
}

/// Answers the emulated authorize page, picking the first workspace or server: the callback
/// URL the platform redirects to.
pub async fn decide(b: &reqwest::Client, authorize: &str, channel: &str, decision: &str) -> String {
    let place = if authorize.contains("/slack/") {
        "T0EMULATED"
    } else {
        "290926792226357250"
    };
    decide_in(b, authorize, place, channel, decision).await
}

/// Answers the emulated authorize page in a workspace (Slack) or server (Discord).
async fn decide_in(
    b: &reqwest::Client,
    authorize: &str,
    place: &str,
    channel: &str,
    decision: &str,
) -> String {
    let q = query(authorize);
    let page = b.get(authorize).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("emulator") && html.contains("#deploys"),
        "{html}"
    );
    let action = authorize.split('?').next().unwrap();
    let res = b
        .post(action)
        .form(&[
            ("client_id", q["client_id"].as_str()),
            ("state", q["state"].as_str()),
            ("redirect_uri", q["redirect_uri"].as_str()),
            ("scope", q["scope"].as_str()),
            ("place", place),
            ("channel", channel),
            ("decision", decision),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    location(&res)
}

async fn connections(g: &Gateway) -> Vec<Value> {
    g.admin_get("/api/connections")
        .await
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn both_flows_connect_a_channel_and_its_cards_arrive_in_the_platforms_layout() {
    let mut g = emulated().await;
    let b = browser();
    let html = b
        .get(g.url("/connect"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("formaction=\"/connect/slack/start\"")
            && html.contains("formaction=\"/connect/discord/start\""),
        "{html}"
    );
    for (flow, kind, channel, _) in FLOWS {
        let authorize = start(&g, &b, flow, &[("channel", "github")]).await;
        let q = query(&authorize);
        assert!(
            authorize.starts_with(&g.url(&format!("/emulator/{flow}/"))),
            "{authorize}"
        );
        assert!(q["state"].len() >= 22, "128 bits or more");
        assert_eq!(
            q["redirect_uri"],
            g.url(&format!("/connect/{flow}/callback"))
        );
        assert_eq!(
            q["scope"],
            if flow == "slack" {
                "incoming-webhook,chat:write"
            } else {
                "webhook.incoming"
            }
        );

        // The second workspace or server: what is kept is what was picked.
        let place = if flow == "slack" {
            "T0SECONDWS"
        } else {
            "290926792226357251"
        };
        let callback = decide_in(&b, &authorize, place, channel, "allow").await;
        let p = query(&callback);
        assert_eq!(p["state"], q["state"]);
        assert!(!p["code"].is_empty());

        let res = b.get(&callback).send().await.unwrap();
        assert_eq!(res.status(), 302, "{flow}: {}", res.text().await.unwrap());
        assert_eq!(res.headers()["referrer-policy"], "no-referrer");
        let done = location(&res);
        assert!(done.starts_with("/connect/done/con_"), "{done}");
        let html = crate::utils::page(&b, &g.url(&done)).await;
        assert!(
            html.contains("Connected")
                && html.contains(if flow == "slack" { "#deploys" } else { channel }),
            "{html}"
        );

        // The code is good once: the callback again is refused (its state is used up).
        assert_eq!(b.get(&callback).send().await.unwrap().status(), 400);

        let all = connections(&g).await;
        let c = all.iter().find(|c| c["kind"] == kind).unwrap();
        assert_eq!(c["via"], flow);
        assert_eq!(c["channels"], json!(["github"]));
        assert!(c["url"].as_str().unwrap().starts_with("http://127.0.0.1/…"));
        if flow == "slack" {
            assert_eq!(c["channel"], "#deploys");
            assert_eq!(c["channel_id"], channel);
            assert_eq!(c["team_id"], "T0SECONDWS");
            assert_eq!(c["team_name"], "Second Workspace");
            assert!(c["configuration_url"].as_str().is_some());
            // Its bot (`chat:write`) edits and threads cards with a key; its token is kept
            // sealed, never shown.
            assert_eq!(c["bot"], true);
        } else {
            assert_eq!(c["channel_id"], channel);
            assert_eq!(c["team_id"], "290926792226357251");
        }
        // No token of the exchange was kept anywhere the API shows.
        let shown = c.to_string();
        assert!(
            !shown.contains("xox") && !shown.contains("access_token"),
            "{shown}"
        );
    }

    // The webhooks the emulated platforms handed out outlive a restart, as real ones do
    // (on the same address: the URLs name it).
    g.config.listen = g.addr();
    g.config.public_url = Some(g.url(""));
    g.restart().await;
    assert_eq!(
        g.github("push", &fixture("github/push.event.4.json"), None)
            .await
            .status(),
        202
    );
    for (flow, _, _, inbox) in FLOWS {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let html = g.get_text(inbox).await;
            if html.contains("Codertocat/Hello-World") {
                // Laid out as the platform shows it.
                assert!(html.contains(&format!("card {flow}")), "{html}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{flow}: no card in {inbox}: {html}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The inbox shows a card when it arrives; cardwire records the delivery once the answer is
    // back (on PostgreSQL, with the next batch of records): polled, as the inbox was (asserted
    // at once, it failed a fresh-clone run on PostgreSQL).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let all = connections(&g).await;
        if all.iter().all(|c| c["last_delivery_ms"].is_u64()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{all:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cancel_forged_foreign_replayed_expired_and_crossed_states_store_nothing() {
    let g = emulated().await;
    for (flow, _, channel, _) in FLOWS {
        let b = browser();
        // Cancel: "you declined", nothing stored.
        let authorize = start(&g, &b, flow, &[]).await;
        let back = decide(&b, &authorize, channel, "cancel").await;
        assert_eq!(query(&back)["error"], "access_denied");
        let res = b.get(&back).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let html = res.text().await.unwrap();
        assert!(html.contains("You declined"), "{html}");

        let callback = |state: &str| {
            g.url(&format!(
                "/connect/{flow}/callback?code=anything&state={state}"
            ))
        };
        // Missing and forged states.
        let res = b
            .get(g.url(&format!("/connect/{flow}/callback?code=x")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        assert!(res.text().await.unwrap().contains("no state"));
        let res = b
            .get(callback("forged-state-0123456789abcdef"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        assert!(res.text().await.unwrap().contains("unknown"));

        // Foreign: another browser's callback is refused, and the state stays its owner's.
        let authorize = start(&g, &b, flow, &[]).await;
        let good = decide(&b, &authorize, channel, "allow").await;
        let res = browser().get(&good).send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert!(res.text().await.unwrap().contains("another browser"));

        // Replayed: the owner's first use connects, the second is refused.
        assert_eq!(b.get(&good).send().await.unwrap().status(), 302);
        let res = b.get(&good).send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert!(res.text().await.unwrap().contains("already used"));

        // Expired: a state older than 10 minutes.
        let authorize = start(&g, &b, flow, &[]).await;
        let state = query(&authorize)["state"].clone();
        let store = &g.server.as_ref().unwrap().app().store;
        let mut record = store.flow_state(&state).unwrap().unwrap();
        record.created_ms -= 11 * 60 * 1000;
        store.put_flow_state(&state, &record).unwrap();
        let res = b.get(callback(&state)).send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert!(res.text().await.unwrap().contains("expired"));

        // Crossed: a state started for this flow is refused at the other flows' callbacks.
        let authorize = start(&g, &b, flow, &[]).await;
        let state = query(&authorize)["state"].clone();
        let other = if flow == "slack" { "discord" } else { "slack" };
        for path in [
            format!("/connect/{other}/callback?code=x&state={state}"),
            format!("/connect/callback?state={state}&webhook_url=x&app_type=teams&group_name=g&user_objectId=u"),
        ] {
            let res = b.get(g.url(&path)).send().await.unwrap();
            assert_eq!(res.status(), 400, "{path}");
            assert!(res.text().await.unwrap().contains("another way"), "{path}");
        }

        // A failed exchange: a code the platform never issued is named, nothing stored.
        let authorize = start(&g, &b, flow, &[]).await;
        let state = query(&authorize)["state"].clone();
        let res = b.get(callback(&state)).send().await.unwrap();
        assert_eq!(res.status(), 400);
        let html = res.text().await.unwrap();
        assert!(
            html.contains(if flow == "slack" {
                "invalid_code"
            } else {
                "invalid_grant"
            }),
            "{html}"
        );
    }
    // One connection per flow: the replayed one's first use.
    let all = connections(&g).await;
    assert_eq!(all.len(), 2, "{all:?}");
}

#[tokio::test]
async fn the_token_endpoints_answer_as_the_platforms_document() {
    let g = emulated().await;
    let http = reqwest::Client::new();
    let slack = g.url("/emulator/slack/api/oauth.v2.access");
    let redirect = g.url("/connect/slack/callback");
    // Wrong client and secret, unknown code: Slack's `ok: false` with the error's name.
    for (user, pass, code, error) in [
        ("nobody", "emulator-secret", "c", "invalid_client_id"),
        ("1000000000.2000000000", "wrong", "c", "bad_client_secret"),
        (
            "1000000000.2000000000",
            "emulator-secret",
            "c",
            "invalid_code",
        ),
    ] {
        let v: Value = http
            .post(&slack)
            .basic_auth(user, Some(pass))
            .form(&[("code", code), ("redirect_uri", redirect.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v, json!({"ok": false, "error": error}));
    }
    // Discord takes only a form: JSON is refused; a wrong client is 401.
    let discord = g.url("/emulator/discord/api/oauth2/token");
    let res = http
        .post(&discord)
        .json(&json!({"grant_type": "authorization_code", "code": "c"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
    let res = http
        .post(&discord)
        .basic_auth("nobody", Some("x"))
        .form(&[("grant_type", "authorization_code"), ("code", "c")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"error": "invalid_client"})
    );
    // Webhooks it never created: Slack's 404 no_service, Discord's Unknown Webhook.
    let res = http
        .post(g.url("/emulator/slack/services/T0/B0/nope"))
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.text().await.unwrap(), "no_service");
    let res = http
        .post(g.url("/emulator/discord/api/webhooks/1/nope"))
        .json(&json!({"content": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], 10015);
    // An authorize request that does not match the app is refused on the platform's page.
    let res = http
        .get(g.url(
            "/emulator/slack/oauth/v2/authorize?client_id=nobody&scope=incoming-webhook&state=s&redirect_uri=x",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("Invalid client_id"));
    // Slack's `team` restricts the install to one workspace: the picker offers only it.
    let authorize = |team: &str| {
        let mut u = url::Url::parse(&g.url("/emulator/slack/oauth/v2/authorize")).unwrap();
        u.query_pairs_mut()
            .append_pair("client_id", "1000000000.2000000000")
            .append_pair("scope", "incoming-webhook")
            .append_pair("state", "s")
            .append_pair("redirect_uri", &g.url("/connect/slack/callback"))
            .append_pair("team", team);
        u.to_string()
    };
    let html = http
        .get(authorize("T0SECONDWS"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Second Workspace") && !html.contains("Emulated Workspace"),
        "{html}"
    );
    let res = http.get(authorize("T0NOSUCHWS")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("Unknown workspace"));
}

#[tokio::test]
async fn without_a_client_or_the_emulator_there_is_no_button() {
    let g = Gateway::start().await;
    let html = g.get_text("/connect").await;
    assert!(
        !html.contains("Add to Slack") && !html.contains("Add to Discord"),
        "{html}"
    );
    let res = browser()
        .post(g.url("/connect/slack/start"))
        .form(&[("digest", "none")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.text().await.unwrap().contains("connect.slack"));
}
