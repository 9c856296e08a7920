//! `POST /hooks/{source}`: verification, errors, dedup and NDJSON streaming.

use serde_json::{json, Value};

use crate::utils::*;

async fn error_of(res: reqwest::Response) -> (u16, String, String) {
    let status = res.status().as_u16();
    let v: Value = res.json().await.expect("error bodies are JSON");
    (
        status,
        v["error"].as_str().unwrap().to_string(),
        v["detail"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn signature_missing_or_wrong_is_401() {
    let g = Gateway::start().await;
    let body = fixture("github/push.event.4.json");
    let res = g
        .client
        .post(g.url("/hooks/github"))
        .header("X-GitHub-Event", "push")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let (status, code, detail) = error_of(res).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    assert!(detail.contains("X-Hub-Signature-256"), "{detail}");

    let res = g
        .client
        .post(g.url("/hooks/github"))
        .header("X-GitHub-Event", "push")
        .header(
            "X-Hub-Signature-256",
            cardwire::ingest::verify::sign("wrong secret", &body),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, _, detail) = error_of(res).await;
    assert_eq!(status, 401);
    assert!(detail.contains("does not match"), "{detail}");
}

#[tokio::test]
async fn gitlab_token_is_checked() {
    let g = Gateway::start().await;
    let res = g
        .client
        .post(g.url("/hooks/gitlab"))
        .header("X-Gitlab-Event", "Push Hook")
        .header("X-Gitlab-Token", "nope")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = g
        .client
        .post(g.url("/hooks/gitlab"))
        .header("X-Gitlab-Event", "Push Hook")
        .header("X-Gitlab-Token", GITLAB_SECRET)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
}

#[tokio::test]
async fn invalid_json_is_400_with_the_parse_error() {
    let g = Gateway::start().await;
    let (status, code, detail) = error_of(g.github("push", b"{\"ref\": ", None).await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_json"));
    assert!(detail.contains("line 1"), "{detail}");
}

#[tokio::test]
async fn oversize_body_is_413() {
    let g = Gateway::start().await;
    // max_body is 1 MiB in the test config.
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let (status, code, _) = error_of(g.github("push", big.as_bytes(), None).await).await;
    assert_eq!((status, code.as_str()), (413, "body_too_large"));
    // Also without a Content-Length (chunked), the limit holds.
    let stream =
        futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024])));
    let res = g
        .client
        .post(g.url("/hooks/github"))
        .header("X-GitHub-Event", "push")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
}

#[tokio::test]
async fn unknown_source_is_404() {
    let g = Gateway::start().await;
    let res = g
        .client
        .post(g.url("/hooks/bitbucket"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let (status, code, detail) = error_of(res).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    assert!(detail.contains("bitbucket"));
}

#[tokio::test]
async fn missing_event_header_is_400() {
    let g = Gateway::start().await;
    let body = b"{}";
    let res = g
        .client
        .post(g.url("/hooks/github"))
        .header(
            "X-Hub-Signature-256",
            cardwire::ingest::verify::sign(GITHUB_SECRET, body),
        )
        .body(&body[..])
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(res).await;
    assert_eq!((status, code.as_str()), (400, "missing_event"));
}

#[tokio::test]
async fn a_repeated_delivery_id_is_accepted_once() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("teams"), "teams", &[]).await;
    let body = fixture("github/push.event.4.json");
    let first = g
        .github("push", &body, Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"))
        .await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = g
        .github("push", &body, Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"))
        .await;
    assert_eq!(again.status(), 202);
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    assert!(first["id"].as_str().unwrap().starts_with("evt_"));
    // A different delivery of the same payload is a new event.
    let other: Value = g
        .github("push", &body, Some("another"))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(other["id"], first["id"]);
    rx.wait_for(2).await;
    g.wait_settled().await;
    assert_eq!(
        g.deliveries("").await.len(),
        2,
        "one card per accepted event"
    );
    assert_eq!(
        rx.received().len(),
        2,
        "the repeated delivery produced a second card"
    );
}

#[tokio::test]
async fn ping_is_accepted_and_sends_nothing() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("teams"), "teams", &[]).await;
    let res = g
        .github("ping", &fixture("github/ping.event.0.json"), None)
        .await;
    assert_eq!(res.status(), 202);
    // Decided before the 202: no rule takes a ping, so no card was made.
    assert!(g.deliveries("").await.is_empty());
    assert!(rx.received().is_empty());
}

#[tokio::test]
async fn ndjson_lines_are_processed_one_by_one() {
    let g = Gateway::start().await;
    let body =
        "{\"type\": \"deploy\", \"n\": 1}\nnot json\n\n{\"type\": \"deploy\", \"n\": 2}\r\n[1, 2]";
    let res = g
        .client
        .post(g.url("/hooks/generic"))
        .header("Content-Type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["accepted"], 3, "{v}");
    assert_eq!(v["ids"].as_array().unwrap().len(), 3);
    assert_eq!(v["errors"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["errors"][0]["line"], 2);
    assert!(v["errors"][0]["error"]
        .as_str()
        .unwrap()
        .starts_with("not JSON"));
}

#[tokio::test]
async fn ndjson_streams_more_than_the_body_limit_with_bounded_lines() {
    let g = Gateway::start().await;
    // 3 MiB in all, over the 1 MiB max_body, in lines of about 1 KiB; one line is too long.
    let line = format!("{{\"type\": \"x\", \"pad\": \"{}\"}}\n", "p".repeat(1000));
    let count = 3 * 1024;
    let chunks: Vec<Result<String, std::io::Error>> = (0..count)
        .map(|i| {
            if i == 10 {
                Ok(format!(
                    "{{\"pad\": \"{}\"}}\n",
                    "q".repeat(2 * 1024 * 1024)
                ))
            } else {
                Ok(line.clone())
            }
        })
        .collect();
    let res = g
        .client
        .post(g.url("/hooks/generic"))
        .header("Content-Type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["accepted"], count - 1);
    assert_eq!(
        v["errors"],
        json!([{"line": 11, "error": "the line is over the 1048576-byte limit (max_body)"}])
    );
}

/// One depth limit for every source: a push nested past it and a generic event nested
/// 400,000 levels (which the rules would mostly skip) are both `400 too_deep`, naming the
/// limit and where it was passed; the deepest allowed is accepted; an NDJSON line past it is
/// that line's error, the others accepted.
#[tokio::test]
async fn bodies_nested_past_the_limit_are_too_deep_for_every_source() {
    let g = Gateway::start().await;
    let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let max = cardwire::needs::MAX_DEPTH;

    // A push whose payload nests past the limit in a member no rule reads (the payload's own
    // object is the first level).
    let mut push: Value = serde_json::from_slice(&fixture("github/push.event.4.json")).unwrap();
    push["extra"] = serde_json::from_str(&nested(max - 1)).unwrap();
    let deep = serde_json::to_string(&push)
        .unwrap()
        .replacen("\"extra\":[", "\"extra\":[[", 1)
        .replacen("]]", "]]]", 1);
    let (status, error, detail) = error_of(g.github("push", deep.as_bytes(), None).await).await;
    assert_eq!((status, error.as_str()), (400, "too_deep"), "{detail}");
    assert!(
        detail.contains(&format!("deeper than {max} levels")),
        "{detail}"
    );
    let ok = serde_json::to_vec(&push).unwrap();
    assert_eq!(
        g.github("push", &ok, None).await.status(),
        202,
        "{max} levels is allowed"
    );

    let generic = |body: String| {
        g.client
            .post(g.url("/hooks/generic"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    // 400,000 levels: 800 KB, under the test config's max_body.
    let very_deep = format!(r#"{{"type": "deep", "x": {}}}"#, nested(400_000));
    let (status, error, detail) = error_of(generic(very_deep).await.unwrap()).await;
    assert_eq!((status, error.as_str()), (400, "too_deep"));
    assert!(detail.contains("at byte "), "{detail}");
    let allowed = format!(r#"{{"type": "deep", "x": {}}}"#, nested(max - 1));
    assert_eq!(generic(allowed).await.unwrap().status(), 202);

    let lines = format!(
        "{{\"type\": \"a\"}}\n{{\"type\": \"b\", \"x\": {}}}\n{{\"type\": \"c\"}}\n",
        nested(max + 5)
    );
    let res = g
        .client
        .post(g.url("/hooks/generic"))
        .header("Content-Type", "application/x-ndjson")
        .body(lines)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["accepted"], 2, "{v}");
    assert_eq!(v["errors"][0]["line"], 2, "{v}");
    assert!(
        v["errors"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("too_deep:"),
        "{v}"
    );
}
