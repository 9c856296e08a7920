//! The admin API for connections.

use serde_json::{json, Value};

use crate::utils::*;

#[tokio::test]
async fn the_admin_api_needs_the_token() {
    let g = Gateway::start().await;
    let res = g
        .client
        .get(g.url("/api/connections"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "unauthorized");
    let res = g
        .client
        .get(g.url("/api/connections"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn without_a_token_the_admin_api_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.admin_token = None;
    let g = Gateway::start_with(config).await;
    let res = g
        .client
        .get(g.url("/api/connections"))
        .bearer_auth("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "admin_disabled");
}

#[tokio::test]
async fn urls_are_checked_masked_and_removable() {
    let g = Gateway::start().await;
    let post = |body: Value| {
        g.client
            .post(g.url("/api/connections"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let res = post(json!({"name": "x", "url": "https://evil.example/hook", "kind": "teams"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "target_not_allowed");
    assert!(v["detail"].as_str().unwrap().contains("evil.example"));

    let res = post(json!({"name": "x", "url": "http://127.0.0.1:1/h", "kind": "telegram"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "invalid_body");
    assert!(v["detail"].as_str().unwrap().contains("kind"), "{v}");

    // Without a kind, the URL's host says; where it does not, the answer says what is missing.
    let res = post(json!({"name": "x", "url": "http://127.0.0.1:1/h"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert!(
        v["detail"].as_str().unwrap().contains("`kind` is needed"),
        "{v}"
    );
    let res = post(json!({"name": "mm", "url": "http://127.0.0.1:1/hooks/abc"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["kind"], "mattermost", "{v}");
    let res = g
        .client
        .delete(g.url(&format!("/api/connections/{}", v["id"].as_str().unwrap())))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);

    let secret = "http://127.0.0.1:1/webhookb2/very-secret-part/abcd";
    let id = g.connect(secret, "teams", &["github"]).await;
    assert!(id.starts_with("con_"));
    let list = g
        .client
        .get(g.url("/api/connections"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let text = list.text().await.unwrap();
    assert!(!text.contains("very-secret-part"), "{text}");
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list[0]["url"], "http://127.0.0.1/…abcd");
    assert_eq!(list[0]["channels"], json!(["github"]));

    let del = |id: String| {
        g.client
            .delete(g.url(&format!("/api/connections/{id}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    assert_eq!(del(id.clone()).await.unwrap().status(), 204);
    assert_eq!(del(id).await.unwrap().status(), 404);
    let list = g.admin_get("/api/connections").await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn healthz_answers() {
    let g = Gateway::start().await;
    for path in ["/healthz", "/readyz"] {
        let res = g.client.get(g.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.text().await.unwrap(), "ok", "{path}");
    }
    let res = g.client.get(g.url("/nowhere")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "not_found");
}
