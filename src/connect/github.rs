//! A GitHub App made from a manifest for a source: where GitHub is, the manifest that asks for
//! exactly what the source's rules read, and how the conversion's answer reads.
//!
//! In: the settings, the loaded rules, a source's name; GitHub's answer to
//! `POST /app-manifests/{code}/conversions`. Out: the manifest and where the browser posts it;
//! the app to keep. Guarantees: pure functions (the flow's handlers are in
//! [`crate::admin::sources`], GitHub's stand-in in [`super::github_emulator`]); the app's events are
//! those the source's enabled rules take (so it sends nothing no rule reads), with the read
//! permissions they need.

use serde_json::{json, Value};

use crate::config::Config;

/// Where GitHub's pages are for `source`: its `github_url`, `https://github.com`, or the
/// emulator's while it is on.
pub fn web_url(config: &Config, source: &str) -> String {
    let configured = config
        .sources
        .get(source)
        .and_then(|s| s.github_url.clone());
    match configured {
        Some(u) => u.trim_end_matches('/').to_string(),
        None if config.emulator() => format!("{}/emulator/github", config.public_url()),
        None => "https://github.com".into(),
    }
}

/// GitHub's REST API beside its pages: `https://api.github.com` for github.com, `…/api/v3`
/// for a GitHub Enterprise Server (and the emulator).
pub fn api_url(web: &str) -> String {
    if web == "https://github.com" {
        "https://api.github.com".into()
    } else {
        format!("{web}/api/v3")
    }
}

/// The read permission a webhook event needs, for the events a GitHub App can take.
pub fn permission(event: &str) -> Option<&'static str> {
    Some(match event {
        "push" | "create" | "delete" | "release" => "contents",
        "pull_request" | "pull_request_review" | "pull_request_review_comment" => "pull_requests",
        "issues" | "issue_comment" => "issues",
        "workflow_run" | "workflow_job" => "actions",
        "check_run" | "check_suite" => "checks",
        "deployment" | "deployment_status" => "deployments",
        "dependabot_alert" => "vulnerability_alerts",
        "code_scanning_alert" => "security_events",
        "discussion" | "discussion_comment" => "discussions",
        _ => return None,
    })
}

/// The app's manifest: its name, its webhook (`{public_url}/hooks/{source}`), where GitHub
/// sends the browser back, private, with `events` (those of them an app can take) and their
/// read permissions.
pub fn manifest(config: &Config, source: &str, name: &str, events: &[String]) -> Value {
    let public = config.public_url();
    let mut taken: Vec<&str> = events
        .iter()
        .map(String::as_str)
        .filter(|e| permission(e).is_some())
        .collect();
    taken.sort_unstable();
    taken.dedup();
    let mut permissions = serde_json::Map::new();
    permissions.insert("metadata".into(), json!("read"));
    for e in &taken {
        if let Some(p) = permission(e) {
            permissions.insert(p.into(), json!("read"));
        }
    }
    json!({
        "name": name,
        "url": public,
        "description": format!("Chat cards from {source}'s events, by cardwire."),
        "hook_attributes": {"url": format!("{public}/hooks/{source}"), "active": true},
        "redirect_url": format!("{public}/connect/github/callback"),
        "setup_url": format!("{public}/sources"),
        "public": false,
        "default_events": taken,
        "default_permissions": permissions,
    })
}

/// Where the browser posts the manifest: an account's or an organization's new-app page, with
/// the flow's state.
pub fn new_app_url(web: &str, org: Option<&str>, state: &str) -> Result<url::Url, url::ParseError> {
    let mut u = match org {
        Some(o) => url::Url::parse(&format!("{web}/organizations/"))?.join(&format!(
            "{}/settings/apps/new",
            url::form_urlencoded::byte_serialize(o.as_bytes()).collect::<String>()
        ))?,
        None => url::Url::parse(&format!("{web}/settings/apps/new"))?,
    };
    u.query_pairs_mut().append_pair("state", state);
    Ok(u)
}

/// The app in GitHub's conversion answer (`201` with `id`, `slug`, `owner`, `name`,
/// `html_url`, `client_id`, `client_secret`, `webhook_secret`, `pem`), for `source`; `Err`
/// names what GitHub said (`HTTP 404: Not Found`) or what is missing.
pub fn read_conversion(
    source: &str,
    status: u16,
    body: &str,
    now_ms: u64,
) -> Result<crate::store::SourceApp, String> {
    let v: Value = serde_json::from_str(body)
        .map_err(|_| format!("HTTP {status}, not an answer of GitHub's API"))?;
    if !(200..300).contains(&status) {
        return Err(format!(
            "HTTP {status}: {}",
            v.get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
        ));
    }
    let text = |k: &str| {
        v.pointer(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("the answer has no {}", k.trim_start_matches('/')))
    };
    Ok(crate::store::SourceApp {
        source: source.to_string(),
        id: v
            .get("id")
            .and_then(Value::as_u64)
            .ok_or("the answer has no id")?,
        slug: text("/slug")?,
        name: text("/name")?,
        owner: text("/owner/login")?,
        html_url: text("/html_url")?,
        client_id: text("/client_id")?,
        client_secret: text("/client_secret")?,
        webhook_secret: text("/webhook_secret")?,
        pem: text("/pem")?,
        created_ms: now_ms,
        installations: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            public_url: Some("https://cw.example".into()),
            ..Config::default()
        }
    }

    #[test]
    fn the_manifest_asks_for_what_the_rules_read_and_no_more() {
        let events: Vec<String> = [
            "push",
            "pull_request",
            "pull_request_review",
            "ping",
            "push",
        ]
        .map(String::from)
        .to_vec();
        let m = manifest(&config(), "github", "cardwire (cw.example)", &events);
        assert_eq!(
            m["hook_attributes"]["url"],
            "https://cw.example/hooks/github"
        );
        assert_eq!(
            m["redirect_url"],
            "https://cw.example/connect/github/callback"
        );
        assert_eq!(m["public"], false);
        assert_eq!(
            m["default_events"],
            json!(["pull_request", "pull_request_review", "push"])
        );
        assert_eq!(
            m["default_permissions"],
            json!({"metadata": "read", "contents": "read", "pull_requests": "read"})
        );
    }

    #[test]
    fn github_com_enterprise_server_and_organizations() {
        assert_eq!(api_url("https://github.com"), "https://api.github.com");
        assert_eq!(api_url("https://ghe.example"), "https://ghe.example/api/v3");
        assert_eq!(
            new_app_url("https://github.com", None, "st")
                .unwrap()
                .as_str(),
            "https://github.com/settings/apps/new?state=st"
        );
        assert_eq!(
            new_app_url("https://ghe.example", Some("octo org"), "st")
                .unwrap()
                .as_str(),
            "https://ghe.example/organizations/octo+org/settings/apps/new?state=st"
        );
    }

    #[test]
    fn the_conversion_reads_githubs_answer() {
        // The shape of GitHub's "Create a GitHub App from a manifest" example answer.
        let ok = r#"{"id": 1, "slug": "octoapp", "node_id": "MDxOkludGVncmF0aW9uMQ==",
            "owner": {"login": "github", "id": 1, "type": "Organization"}, "name": "Octocat App",
            "description": "", "external_url": "https://example.com", "html_url": "https://github.com/apps/octoapp",
            "created_at": "2017-07-08T16:18:44-04:00", "updated_at": "2017-07-08T16:18:44-04:00",
            "client_id": "Iv1.8a61f9b3a7aba766", "client_secret": "1726be1638095a19edd134c77bde3aa2ece1e5d8",
            "webhook_secret": "e340154128314309424b7c8e90325147d99fdafa", "pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"}"#;
        let app = read_conversion("github", 201, ok, 7).unwrap();
        assert_eq!(
            (app.id, app.slug.as_str(), app.owner.as_str()),
            (1, "octoapp", "github")
        );
        assert_eq!(
            app.webhook_secret,
            "e340154128314309424b7c8e90325147d99fdafa"
        );
        assert_eq!(app.source, "github");
        assert_eq!(
            read_conversion("github", 404, r#"{"message": "Not Found"}"#, 7).unwrap_err(),
            "HTTP 404: Not Found"
        );
        assert!(read_conversion("github", 502, "<html>", 7)
            .unwrap_err()
            .contains("HTTP 502"));
        assert!(read_conversion("github", 201, r#"{"id": 1}"#, 7)
            .unwrap_err()
            .contains("slug"));
    }
}
