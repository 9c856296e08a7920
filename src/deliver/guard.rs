//! The SSRF guard: webhook hosts are resolved here, and private, loopback and link-local
//! addresses are refused at connect time — so a name that resolves (or is re-pointed) to an
//! internal address cannot be used to reach it — unless `targets.allowed_hosts` names the host.

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::policy::is_private;

/// A connection refused because of the address it resolved to.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "blocked address: {host} resolves only to private, loopback or link-local addresses ({addrs})"
)]
pub struct Blocked {
    /// The host name.
    pub host: String,
    /// What it resolved to.
    pub addrs: String,
}

/// The resolver reqwest uses for every delivery.
#[derive(Debug, Clone, Default)]
pub struct AddressGuard {
    /// Hosts allowed to be private (lower case; `*.x` patterns as in `targets`).
    allowed: Vec<String>,
}

impl AddressGuard {
    /// A guard that lets the listed hosts resolve to private addresses.
    pub fn new(allowed_hosts: &[String]) -> Self {
        Self {
            allowed: allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Also lets `host` be private (the emulator's own host).
    pub fn allow(mut self, host: &str) -> Self {
        self.allowed.push(host.to_ascii_lowercase());
        self
    }

    /// Checks a URL whose host is an address literal, which is connected to without being
    /// resolved; names are checked when resolved.
    pub fn check_literal(&self, url: &str) -> Result<(), Blocked> {
        match url::Url::parse(url) {
            Ok(u) => self.check_url(&u),
            Err(_) => Ok(()),
        }
    }

    /// [`AddressGuard::check_literal`] for a URL already parsed.
    pub fn check_url(&self, url: &url::Url) -> Result<(), Blocked> {
        let Some(host) = url.host().map(|h| h.to_string()) else {
            return Ok(());
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.filter(bare, vec![SocketAddr::new(ip, 0)]).map(drop),
            Err(_) => Ok(()),
        }
    }

    fn allows(&self, host: &str) -> bool {
        self.allowed.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => p == host,
        })
    }

    /// Keeps the addresses that may be connected to.
    pub fn filter(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Blocked> {
        if self.allows(host) {
            return Ok(addrs);
        }
        let public: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| !is_private(a.ip()))
            .collect();
        if public.is_empty() {
            return Err(Blocked {
                host: host.to_string(),
                addrs: addrs
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(public)
    }
}

impl Resolve for AddressGuard {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_ascii_lowercase();
            let found: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, 0)],
                Err(_) => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            let ok = this
                .filter(&host, found)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(ok.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[tokio::test]
    async fn resolving_a_name_to_loopback_is_refused_unless_listed() {
        let name = || Name::from_str("localhost").unwrap();
        let refused = AddressGuard::new(&[]).resolve(name()).await;
        let err = refused
            .err()
            .expect("localhost resolves to loopback only")
            .to_string();
        assert!(err.contains("blocked address: localhost"), "{err}");
        let allowed = AddressGuard::new(&["localhost".into()])
            .resolve(name())
            .await;
        assert!(allowed.is_ok_and(|mut a| a.next().is_some_and(|s| s.ip().is_loopback())));
    }

    #[test]
    fn private_addresses_are_refused_unless_the_host_is_listed() {
        let g = AddressGuard::new(&["localhost".into(), "*.internal.example".into()]);
        let loopback: Vec<SocketAddr> = vec!["127.0.0.1:0".parse().unwrap()];
        let mixed: Vec<SocketAddr> = vec![
            "10.0.0.1:0".parse().unwrap(),
            "52.96.0.1:0".parse().unwrap(),
        ];
        assert!(g.filter("evil.example", loopback.clone()).is_err());
        assert!(g.filter("localhost", loopback.clone()).is_ok());
        assert!(g.filter("hooks.internal.example", loopback).is_ok());
        assert_eq!(
            g.filter("x.example", mixed).unwrap(),
            vec!["52.96.0.1:0".parse::<SocketAddr>().unwrap()]
        );
        let e = g
            .filter("rebind.example", vec!["169.254.169.254:0".parse().unwrap()])
            .unwrap_err();
        assert!(e.to_string().contains("169.254.169.254"));
        assert!(g.check_literal("http://10.0.0.5:8080/hook").is_err());
        assert!(g.check_literal("http://[::1]/hook").is_err());
        assert!(g.check_literal("https://example.com/hook").is_ok());
        assert!(g
            .clone()
            .allow("10.0.0.5")
            .check_literal("http://10.0.0.5:8080/hook")
            .is_ok());
    }
}
