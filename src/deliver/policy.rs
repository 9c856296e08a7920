//! Which webhook URLs cards may go to.
//!
//! By default only https URLs on the chat services' webhook hosts (Microsoft Teams and
//! Power Automate, Slack, Discord, Google Chat); `targets.allowed_hosts` adds hosts and
//! `targets.allow_http` admits plain http. A private, loopback or link-local address is refused
//! unless it is listed by name.

use std::net::IpAddr;

use url::{Host, Url};

use crate::config::TargetsConfig;
use crate::render::CardKind;

/// The webhook hosts accepted without configuration.
pub const BUILTIN_HOSTS: &[&str] = &[
    "outlook.office.com",
    "outlook.office365.com",
    "*.webhook.office.com",
    "*.logic.azure.com",
    "*.api.powerplatform.com",
    "hooks.slack.com",
    "discord.com",
    "discordapp.com",
    // Discord's test clients hand out webhook URLs on their own hosts.
    "ptb.discord.com",
    "canary.discord.com",
    "chat.googleapis.com",
];

/// Why a URL is not an acceptable target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// It does not parse.
    #[error("not a URL: {0}")]
    NotAUrl(String),
    /// Its scheme is not allowed.
    #[error("the scheme must be https{}", if *.0 { " or http" } else { " (set targets.allow_http for http)" })]
    Scheme(bool),
    /// It carries a user name or password.
    #[error("the URL must not carry credentials before the host")]
    Credentials,
    /// Its host is not on the list.
    #[error("host {0:?} is not an allowed webhook host (add it to targets.allowed_hosts)")]
    Host(String),
    /// It is not a webhook URL of the connection's chat platform.
    #[error("{0}")]
    Platform(String),
    /// It points at a private, loopback or link-local address.
    #[error("address {0} is private, loopback or link-local (list it in targets.allowed_hosts to allow it)")]
    Private(IpAddr),
}

/// The checked list of acceptable targets.
#[derive(Debug, Clone)]
pub struct TargetPolicy {
    allow_http: bool,
    extra: Vec<String>,
    prefixes: Vec<String>,
}

impl TargetPolicy {
    /// The policy from config.
    pub fn new(config: &TargetsConfig) -> Self {
        Self {
            allow_http: config.allow_http,
            extra: config
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            prefixes: Vec::new(),
        }
    }

    /// Also accepts every URL that starts with `prefix` (the emulator's own inboxes).
    pub fn allow_prefix(mut self, prefix: String) -> Self {
        self.prefixes.push(prefix);
        self
    }

    /// Checks a URL; returns it parsed.
    pub fn check(&self, raw: &str) -> Result<Url, TargetError> {
        let url = Url::parse(raw.trim()).map_err(|e| TargetError::NotAUrl(e.to_string()))?;
        if self
            .prefixes
            .iter()
            .any(|p| url.as_str().starts_with(p.as_str()))
        {
            return Ok(url);
        }
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(TargetError::Scheme(self.allow_http)),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetError::Credentials);
        }
        let host = match url.host() {
            Some(Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(TargetError::NotAUrl("no host".into())),
        };
        let listed = self.extra.iter().any(|p| host_matches(p, &host));
        let builtin = BUILTIN_HOSTS.iter().any(|p| host_matches(p, &host));
        // Built-in hosts are names, so an address literal passes only when listed, which is
        // also what allows a private one. Names that resolve to private addresses are checked
        // when delivering.
        if !listed && !builtin {
            return Err(TargetError::Host(host));
        }
        Ok(url)
    }
}

impl TargetPolicy {
    /// Checks a URL for a connection of `kind`: as [`TargetPolicy::check`], and one of that
    /// platform's webhook URLs ([`platform_url`]), unless its host is listed in
    /// `targets.allowed_hosts` (a proxy, a self-hosted chat: Mattermost has no host of its
    /// own) or it is one of the emulator's.
    pub fn check_kind(&self, raw: &str, kind: CardKind) -> Result<Url, TargetError> {
        let url = self.check(raw)?;
        let own = self
            .prefixes
            .iter()
            .any(|p| url.as_str().starts_with(p.as_str()));
        let listed = url.host_str().is_some_and(|h| {
            self.extra
                .iter()
                .any(|p| host_matches(p, &h.to_ascii_lowercase()))
        });
        if !own && !listed {
            platform_url(kind, &url).map_err(TargetError::Platform)?;
        }
        Ok(url)
    }
}

/// Whether `url` is a webhook URL of `kind`'s platform: Teams' connector hosts, Power
/// Automate's, `hooks.slack.com/services/…`, Discord's `/api/webhooks/…`, Google Chat's
/// `/v1/spaces/…/messages`. A Mattermost server has no known host: it must be listed.
pub fn platform_url(kind: CardKind, url: &Url) -> Result<(), String> {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let path = url.path();
    let on = |patterns: &[&str]| patterns.iter().any(|p| host_matches(p, &host));
    let (fits, shape) = match kind {
        CardKind::Teams => (
            on(&[
                "outlook.office.com",
                "outlook.office365.com",
                "*.webhook.office.com",
            ]),
            "an Office 365 connector URL (https://….webhook.office.com/…)",
        ),
        CardKind::Workflow => (
            on(&["*.logic.azure.com", "*.api.powerplatform.com"]),
            "a Power Automate URL (https://….logic.azure.com/… or ….api.powerplatform.com/…)",
        ),
        CardKind::Slack => (
            host == "hooks.slack.com" && path.starts_with("/services/"),
            "https://hooks.slack.com/services/…",
        ),
        CardKind::Discord => (
            on(&[
                "discord.com",
                "discordapp.com",
                "ptb.discord.com",
                "canary.discord.com",
            ]) && path.starts_with("/api/webhooks/"),
            "https://discord.com/api/webhooks/…",
        ),
        CardKind::GoogleChat => (
            host == "chat.googleapis.com"
                && path.starts_with("/v1/spaces/")
                && path.ends_with("/messages"),
            "https://chat.googleapis.com/v1/spaces/…/messages?key=…&token=…",
        ),
        CardKind::Mattermost => (
            false,
            "a Mattermost server's /hooks/… URL, with its host in targets.allowed_hosts",
        ),
    };
    if fits {
        Ok(())
    } else {
        Err(format!("a {} webhook URL is {shape}", kind.as_str()))
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            host.len() > suffix.len()
                && host.ends_with(suffix)
                && host[..host.len() - suffix.len()].ends_with('.')
        }
        None => pattern == host,
    }
}

/// Loopback, private, link-local, unspecified and similar non-public addresses.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // 100.64/10, shared
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link-local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow_http: bool, hosts: &[&str]) -> TargetPolicy {
        TargetPolicy::new(&TargetsConfig {
            allow_http,
            allowed_hosts: hosts.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn builtin_hosts_over_https_only() {
        let p = policy(false, &[]);
        assert!(p
            .check("https://contoso.webhook.office.com/webhookb2/abc")
            .is_ok());
        assert!(p
            .check("https://prod-01.westus.logic.azure.com:443/workflows/x?sig=y")
            .is_ok());
        assert!(p
            .check("https://x.environment.api.powerplatform.com:443/powerautomate/a")
            .is_ok());
        assert_eq!(
            p.check("http://outlook.office.com/webhook/x"),
            Err(TargetError::Scheme(false))
        );
        assert_eq!(
            p.check("https://evil.com/x"),
            Err(TargetError::Host("evil.com".into()))
        );
        assert_eq!(
            p.check("https://webhook.office.com.evil.com/x"),
            Err(TargetError::Host("webhook.office.com.evil.com".into()))
        );
        assert_eq!(
            p.check("https://u:p@outlook.office.com/x"),
            Err(TargetError::Credentials)
        );
        assert!(matches!(p.check("not a url"), Err(TargetError::NotAUrl(_))));
    }

    #[test]
    fn each_kind_takes_its_own_platforms_urls() {
        let p = policy(false, &["chat.example.com"]);
        let ok = |u: &str, k: CardKind| p.check_kind(u, k).is_ok();
        assert!(ok(
            "https://hooks.slack.com/services/T0/B0/x",
            CardKind::Slack
        ));
        assert!(!ok(
            "https://hooks.slack.com/workflows/T0/x",
            CardKind::Slack
        ));
        assert!(!ok("https://discord.com/api/webhooks/1/t", CardKind::Slack));
        assert!(ok(
            "https://discord.com/api/webhooks/1/t",
            CardKind::Discord
        ));
        assert!(ok(
            "https://discordapp.com/api/webhooks/1/t",
            CardKind::Discord
        ));
        assert!(ok(
            "https://ptb.discord.com/api/webhooks/1/t",
            CardKind::Discord
        ));
        assert!(!ok("https://discord.com/channels/1/2", CardKind::Discord));
        assert!(ok(
            "https://chat.googleapis.com/v1/spaces/AAA/messages?key=k&token=t",
            CardKind::GoogleChat
        ));
        assert!(!ok(
            "https://chat.googleapis.com/v1/spaces/AAA",
            CardKind::GoogleChat
        ));
        assert!(ok(
            "https://x.webhook.office.com/webhookb2/a",
            CardKind::Teams
        ));
        assert!(!ok(
            "https://x.webhook.office.com/webhookb2/a",
            CardKind::Workflow
        ));
        // Mattermost has no host of its own: a listed host; a listed host takes any kind.
        assert!(!ok(
            "https://hooks.slack.com/hooks/abc",
            CardKind::Mattermost
        ));
        assert!(ok(
            "https://chat.example.com/hooks/abc",
            CardKind::Mattermost
        ));
        assert!(ok("https://chat.example.com/slack-proxy", CardKind::Slack));
        let e = p.check_kind("https://discord.com/api/webhooks/1/t", CardKind::Slack);
        assert_eq!(
            e.unwrap_err().to_string(),
            "a slack webhook URL is https://hooks.slack.com/services/…"
        );
        // The emulator's own URLs pass for every kind.
        let p = policy(false, &[]).allow_prefix("http://127.0.0.1:8080/emulator/".into());
        assert!(p
            .check_kind(
                "http://127.0.0.1:8080/emulator/slack/services/T/B/x",
                CardKind::Slack
            )
            .is_ok());
    }

    #[test]
    fn listed_hosts_and_private_addresses() {
        let p = policy(true, &["127.0.0.1", "*.example.com"]);
        assert!(p.check("http://127.0.0.1:9000/hook").is_ok());
        assert!(p.check("https://a.example.com/h").is_ok());
        assert!(p.check("https://example.com/h").is_err());
        assert!(matches!(
            p.check("http://10.0.0.1/h"),
            Err(TargetError::Host(_))
        ));
        assert!(is_private("192.168.1.1".parse().unwrap()));
        assert!(is_private("::ffff:127.0.0.1".parse().unwrap()));
        assert!(is_private("fe80::1".parse().unwrap()));
        assert!(!is_private("52.96.0.1".parse().unwrap()));
    }
}
