//! Which webhook URLs cards may go to.
//!
//! By default only https URLs on the chat services' webhook hosts (Microsoft Teams and
//! Power Automate, Slack, Discord, Google Chat); `targets.allowed_hosts` adds hosts and
//! `targets.allow_http` admits plain http. A private, loopback or link-local address is refused
//! unless it is listed by name.

use std::net::IpAddr;

use url::{Host, Url};

use crate::config::TargetsConfig;

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
