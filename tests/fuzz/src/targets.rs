//! The targets: one function per parser, each checking a property (see the crate's opening).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use cardwire::config::SourceConfig;
use cardwire::event::SourceKind;
use cardwire::needs::{Need, Step, MAX_DEPTH};
use cardwire::render::kind::CardKind;
use cardwire::yaml::Problems;
use serde_json::Value;

/// A target: takes the fuzzer's bytes, panics when a property fails.
pub type Target = fn(&[u8]);

/// Every target, by the name of its binary and of its folders (`seeds`, `found/<name>`).
pub const ALL: [(&str, Target); 8] = [
    ("needs", needs),
    ("ndjson", ndjson),
    ("verify", verify),
    ("retry_after", retry_after),
    ("callback", callback),
    ("config", config),
    ("rules", rules),
    ("templates", templates),
];

/// Paths rules and templates read, as `needs` picks them: bit `i` of the first byte takes
/// path `i`, whole when bit `i` of the second is set.
const PATHS: [&str; 8] = [
    "ref",
    "repository.full_name",
    "commits.*.message",
    "sender",
    "pull_request.head.ref",
    "alerts.*.labels.alertname",
    "commits.0.id",
    "object_attributes",
];

fn steps(path: &str) -> Vec<Step> {
    path.split('.')
        .map(|s| match s {
            "*" => Step::Each,
            k => Step::Key(k.to_string()),
        })
        .collect()
}

/// Whether `part` is `full` with members left out (arrays keep their elements, in order).
fn part_of(part: &Value, full: &Value) -> bool {
    match (part, full) {
        (Value::Object(p), Value::Object(f)) => p
            .iter()
            .all(|(k, v)| f.get(k).is_some_and(|fv| part_of(v, fv))),
        (Value::Array(p), Value::Array(f)) => {
            p.len() == f.len() && p.iter().zip(f).all(|(a, b)| part_of(a, b))
        }
        _ => part == full,
    }
}

/// The value at a path of object keys (`None` through anything else).
fn at<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(v, |v, k| v.as_object()?.get(k))
}

/// The projection parser against a full parse.
pub fn needs(data: &[u8]) {
    let [pick, whole, body @ ..] = data else {
        return;
    };
    if cardwire::needs::too_deep(body, MAX_DEPTH).is_some() {
        return; // refused before any parse (400 too_deep)
    }
    let mut need = Need::new();
    for (i, path) in PATHS.iter().enumerate() {
        if pick & (1 << i) != 0 {
            need.add(&steps(path), whole & (1 << i) != 0);
        }
    }
    let full = serde_json::from_slice::<Value>(body);
    let part = need.compile().parse(body);
    match (&full, &part) {
        (Ok(full), Ok(part)) => {
            assert!(
                part_of(part, full),
                "not a part of the payload: {part} of {full}"
            );
            for (i, path) in PATHS.iter().enumerate() {
                let kept_whole = pick & (1 << i) != 0 && whole & (1 << i) != 0;
                if kept_whole && !path.contains('*') && !path.contains('0') {
                    assert_eq!(at(part, path), at(full, path), "{path} not kept whole");
                }
            }
            let all = Need::whole().compile().parse(body).expect("parsed in full");
            assert_eq!(&all, full, "the whole projection differs from a full parse");
        }
        (Err(_), Err(_)) => {}
        (full, part) => panic!(
            "a full parse gives {:?} but the projection {:?}",
            full.as_ref().map(|_| "a value"),
            part.as_ref().map(|_| "a value"),
        ),
    }
}

/// NDJSON splitting, chunked as the first bytes say, against splitting the whole body.
pub fn ndjson(data: &[u8]) {
    use cardwire::ingest::lines::{split_whole, Piece, Splitter};
    let [limit, cuts @ ..] = data else {
        return;
    };
    let limit = *limit as usize;
    // Up to 4 chunk lengths (one byte each), then the body.
    let n = cuts.first().map_or(0, |c| (*c % 5) as usize);
    let Some((sizes, body)) = cuts
        .get(1..)
        .and_then(|r| (r.len() >= n).then(|| r.split_at(n)))
    else {
        return;
    };
    let expected: Vec<(usize, Option<Vec<u8>>)> =
        split_whole(body, limit).iter().map(Piece::owned).collect();
    let mut got = Vec::new();
    let mut out = |p: Piece<'_>| {
        got.push(p.owned());
        Ok::<(), ()>(())
    };
    let mut split = Splitter::new(limit);
    let mut rest = body;
    let mut size = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = size
            .next()
            .map_or(rest.len(), |s| (*s as usize).max(1))
            .min(rest.len());
        let (chunk, more) = rest.split_at(n);
        split.push(chunk, &mut out).unwrap();
        rest = more;
    }
    split.finish(&mut out).unwrap();
    assert_eq!(got, expected, "chunked {sizes:?}");
}

/// The parts of a `verify` input: signature, bearer, GitLab token, body (split at NULs).
fn parts(data: &[u8]) -> (&[u8], &[u8], &[u8], &[u8]) {
    let mut it = data.splitn(4, |b| *b == 0);
    let mut next = || it.next().unwrap_or_default();
    (next(), next(), next(), next())
}

const SECRET: &str = "It's a Secret to Everybody";
const TOKEN: &str = "s3cr3t-t0ken";
/// The secret the `verify` seeds are signed with.
pub const SECRET_FOR_SEEDS: &str = SECRET;
/// The bearer token of the `verify` seeds.
pub const TOKEN_FOR_SEEDS: &str = TOKEN;

/// Signatures and tokens, against checking them by hand.
pub fn verify(data: &[u8]) {
    use axum::http::{HeaderMap, HeaderValue};
    use cardwire::ingest::verify::Unverified;
    use hmac::Mac;
    let (sig, bearer, gitlab, body) = parts(data);
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("x-hub-signature-256", sig),
        ("authorization", bearer),
        ("x-gitlab-token", gitlab),
    ] {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.insert(name, v);
        }
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let source = |kind, secret: Option<&str>, token: Option<&str>| SourceConfig {
        kind,
        secret: secret.map(str::to_string),
        token: token.map(str::to_string),
        event_header: None,
        event_field: None,
        app: false,
        github_url: None,
        gitlab_url: None,
    };

    let github = source(SourceKind::Github, Some(SECRET), None);
    let ok = Unverified::new("github", &github, &headers)
        .verify(body)
        .is_ok();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let right = mac.finalize().into_bytes().to_vec();
    let expected = text("x-hub-signature-256")
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h.trim()).ok())
        .is_some_and(|given| given == right);
    assert_eq!(ok, expected, "signature");

    let gitlab_source = source(SourceKind::Gitlab, Some(SECRET), None);
    let ok = Unverified::new("gitlab", &gitlab_source, &headers)
        .verify(body)
        .is_ok();
    assert_eq!(ok, text("x-gitlab-token") == Some(SECRET), "GitLab token");

    let generic = source(SourceKind::Generic, None, Some(TOKEN));
    let ok = Unverified::new("deploys", &generic, &headers)
        .verify(body)
        .is_ok();
    let expected = text("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == TOKEN);
    assert_eq!(ok, expected, "bearer token");
}

/// `Retry-After`: at most a day; whole seconds as written.
pub fn retry_after(data: &[u8]) {
    use cardwire::deliver::{parse_retry_after, MAX_RETRY_AFTER};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let got = parse_retry_after(text);
    if let Some(d) = got {
        assert!(d <= MAX_RETRY_AFTER, "{text:?} waits {d:?}");
    }
    if let Ok(secs) = text.trim().parse::<u32>() {
        let want = std::time::Duration::from_secs(secs.into()).min(MAX_RETRY_AFTER);
        assert_eq!(got, Some(want), "{text:?}");
    }
    // What classifying an answer with it makes of it, for every kind.
    for kind in CardKind::ALL {
        let _ = cardwire::deliver::classify(kind, 429, Some(text), "");
    }
}

/// The Connect callback's query: an error, or everything a connection needs.
pub fn callback(data: &[u8]) {
    use cardwire::connect::flow::{read_callback, CallbackAnswer};
    let params: HashMap<String, String> = url::form_urlencoded::parse(data).into_owned().collect();
    match read_callback(&params) {
        Ok(CallbackAnswer::Declined) => assert_eq!(params["error"], "AccessDenied"),
        Ok(CallbackAnswer::Error(e)) => assert_eq!(params["error"], e),
        Ok(CallbackAnswer::Connect {
            webhook_url,
            app_type,
            group_name,
            user_object_id,
        }) => {
            assert!(!params.contains_key("error"));
            assert!(!webhook_url.is_empty() && !user_object_id.is_empty());
            assert!(matches!(app_type.as_str(), "mail" | "groups" | "teams"));
            assert!(app_type == "mail" || group_name.as_deref().is_some_and(|g| !g.is_empty()));
        }
        Err(why) => assert!(why.ends_with('.') && why.len() > 10, "{why:?}"),
    }
}

/// Problems point inside the text: a line it has (or the one after its end), a column from 1.
/// Lines end as YAML ends them: `\r\n`, `\r` or `\n`.
fn inside(problems: &Problems, text: &str) {
    let lines = text.replace("\r\n", "\n").split(['\n', '\r']).count();
    for p in &problems.0 {
        assert!(
            p.pos.line >= 1 && p.pos.line <= lines + 1 && p.pos.col >= 1,
            "{p} is outside the file ({lines} lines)"
        );
        assert!(!p.message.is_empty());
    }
}

/// The config file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(problems) = cardwire::config::Config::from_text(Path::new("cardwire.yaml"), text) {
        assert!(!problems.0.is_empty());
        inside(&problems, text);
    }
}

fn sources() -> BTreeMap<String, SourceConfig> {
    let kinds = [
        ("github", SourceKind::Github),
        ("gitlab", SourceKind::Gitlab),
        ("alertmanager", SourceKind::Alertmanager),
        ("deploys", SourceKind::Generic),
    ];
    kinds
        .into_iter()
        .map(|(name, kind)| {
            (
                name.to_string(),
                SourceConfig {
                    kind,
                    secret: None,
                    token: None,
                    event_header: None,
                    event_field: None,
                    app: false,
                    github_url: None,
                    gitlab_url: None,
                },
            )
        })
        .collect()
}

/// A rule file.
pub fn rules(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files = [(PathBuf::from("rules/fuzz.yaml"), text.to_string())];
    if let Err(problems) = cardwire::rules::RuleSet::load(&files, &sources(), |_, _| true) {
        assert!(!problems.0.is_empty());
        inside(&problems, text);
    }
}

/// A template (first byte: portable card, or one kind's own), rendered with a real payload.
pub fn templates(data: &[u8]) {
    let [pick, rest @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let kinds = CardKind::ALL;
    let own = kinds[*pick as usize % kinds.len()];
    let portable = pick & 0x80 != 0;
    let file = if portable {
        "fuzz.card.hbs".to_string()
    } else {
        format!("fuzz.{}.hbs", own.as_str())
    };
    let renderer = match cardwire::render::Renderer::load(
        "templates",
        &[(PathBuf::from(&file), text.to_string())],
    ) {
        Ok(r) => r,
        Err(problems) => {
            inside(&problems, text);
            return;
        }
    };
    let payload: Value =
        serde_json::from_str(include_str!("../../fixtures/github/push.event.4.json")).unwrap();
    let ctx = serde_json::json!({"payload": payload, "source": "github", "event": "push"});
    for kind in if portable {
        &kinds[..]
    } else {
        std::slice::from_ref(&own)
    } {
        if let Ok(card) = renderer.render("fuzz", *kind, &ctx) {
            assert!(
                serde_json::from_str::<Value>(&card).is_ok(),
                "a {kind:?} card that is not JSON: {card}"
            );
        }
    }
}
