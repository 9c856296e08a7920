//! The admin API's client: where a running gateway is, its token, and the calls the
//! `connections` and `deliveries` commands make.

use anyhow::{bail, Context as _};
use clap::Args;

/// Where a running gateway is and how to sign in to its admin API. Global, so that
/// `cardwire connections list --server URL --token T` works as well as
/// `cardwire connections --server URL --token T list`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The gateway's base URL.
    #[arg(
        long,
        global = true,
        env = "CARDWIRE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub(super) server: String,
    /// The admin token.
    #[arg(
        long,
        global = true,
        env = "CARDWIRE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub(super) token: Option<String>,
}

impl ServerArgs {
    pub(super) fn client(&self) -> anyhow::Result<AdminClient> {
        let Some(token) = self.token.as_deref() else {
            bail!("no admin token: give --token or set CARDWIRE_ADMIN_TOKEN");
        };
        AdminClient::new(&self.server, token)
    }
}

/// A client of a running gateway's admin API.
pub(super) struct AdminClient {
    pub(super) base: String,
    pub(super) token: String,
    pub(super) http: reqwest::Client,
}

impl AdminClient {
    pub(super) fn new(server: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base: server.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
        })
    }

    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            bail!("{status}: {}", v["detail"].as_str().unwrap_or(&text));
        }
        Ok(v)
    }

    /// Every delivery that `GET /api/deliveries?{query}` lists, page after page.
    pub(super) async fn all_deliveries(
        &self,
        query: &str,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut all = Vec::new();
        let mut path = format!("/api/deliveries?{query}");
        loop {
            let mut page = self.call(reqwest::Method::GET, &path, None).await?;
            if let Some(rows) = page["deliveries"].as_array_mut() {
                all.append(rows);
            }
            match page["next"].as_str() {
                Some(n) => path = format!("/api/deliveries?{query}&after={n}"),
                None => return Ok(all),
            }
        }
    }

    /// Queues a dead letter again.
    pub(super) async fn retry(&self, id: &str) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            &format!("/api/deliveries/{id}/retry"),
            None,
        )
        .await
        .map(drop)
    }
}
