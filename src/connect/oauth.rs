//! Add to Slack and Add to Discord: the OAuth flows that hand back an incoming-webhook URL.
//!
//! In: `POST /connect/{slack,discord}/start` (the /connect form's channels and digest), then
//! the platform's redirect to `GET /connect/{slack,discord}/callback` with `code` and `state`,
//! or `error`. Out: a connection of kind `slack` or `discord`, and a 302 to
//! `/connect/done/{id}`, whose URL carries no secret.
//!
//! Guarantees, as for Connect to Office 365 ([`super::flow`]): the state is random, lives 10
//! minutes, is used once, is bound to the browser by an HttpOnly cookie and good only at its
//! own flow's callback; every failure is a 400 page and stores nothing. The code is exchanged
//! server side (HTTP Basic client authentication; Discord's form-encoded body); of the answer
//! only the webhook URL (sealed at rest), what names it for people (channel, workspace or
//! server, Slack's configuration URL) and, when Slack granted `chat:write`
//! (`connect.slack.updates`), the bot token (sealed at rest, for cards with a key) are kept:
//! every other token is dropped. Exchange errors are
//! shown by name and logged without the code, the tokens or the URL.
//!
//! Building the authorize URL and reading the token answers are pure functions in
//! [`super::providers`]; the handlers here stay thin.

use std::collections::HashMap;
use std::time::Duration;

use super::flow::{away, bad, begin, keep, take_state, Flows};
use super::providers::{
    authorize_url, client, read_discord, read_slack, redirect_uri, Client, Hook, Provider,
};
use crate::html::page;
use crate::store::{Bot, Connection, ConnectionOrigin};
use axum::extract::{FromRef, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

/// Exchanges a code at the provider's token endpoint.
async fn exchange(
    http: &reqwest::Client,
    p: Provider,
    client: &Client,
    code: &str,
    redirect_uri: &str,
) -> Result<Hook, String> {
    let mut form = vec![("code", code), ("redirect_uri", redirect_uri)];
    if p == Provider::Discord {
        form.insert(0, ("grant_type", "authorization_code"));
    }
    let res = http
        .post(&client.token_url)
        .basic_auth(&client.client_id, Some(&client.client_secret))
        .form(&form)
        .send()
        .await
        // Only the kind of failure: the error text could carry the endpoint's query.
        .map_err(|e| {
            if e.is_timeout() {
                "the token endpoint did not answer in time".to_string()
            } else {
                "the token endpoint cannot be reached".to_string()
            }
        })?;
    let status = res.status().as_u16();
    let body = res.text().await.unwrap_or_default();
    match p {
        Provider::Slack => read_slack(status, &body),
        Provider::Discord => read_discord(status, &body),
    }
}

/// The routes of both flows.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Flows: FromRef<S>,
{
    Router::new()
        .route(
            "/connect/slack/start",
            post(|s, h, b| start(s, h, b, Provider::Slack)),
        )
        .route(
            "/connect/slack/callback",
            get(|s, q, h| callback(s, q, h, Provider::Slack)),
        )
        .route(
            "/connect/discord/start",
            post(|s, h, b| start(s, h, b, Provider::Discord)),
        )
        .route(
            "/connect/discord/callback",
            get(|s, q, h| callback(s, q, h, Provider::Discord)),
        )
}

async fn start(
    State(app): State<Flows>,
    headers: HeaderMap,
    body: String,
    p: Provider,
) -> Response {
    let Some(client) = client(&app.config, p) else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not configured",
            &format!(
                "<h1>Add to {0} is not set up</h1><p>The administrator has not set \
                 <code>connect.{1}</code> (client_id, client_secret).</p>",
                p.title(),
                p.slug()
            ),
        );
    };
    let (state, browser) = match begin(&app, &headers, &body, Some(p.slug())) {
        Ok(started) => started,
        Err(res) => return res,
    };
    match authorize_url(p, &client, &state, &redirect_uri(&app.config, p)) {
        Ok(target) => away(&app.config, &target, &browser),
        Err(e) => bad(
            "Cannot connect",
            &format!("connect.{}.authorize_url is not a URL: {e}", p.slug()),
        ),
    }
}

async fn callback(
    State(app): State<Flows>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    p: Provider,
) -> Response {
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let record = match take_state(&app, &params, &headers, Some(p.slug()), p.title()) {
        Ok(r) => r,
        Err(res) => return res,
    };
    if let Some(error) = params.get("error") {
        tracing::info!(provider = p.slug(), error = %error, "connect flow answered with an error");
        return if error == "access_denied" {
            page(
                StatusCode::OK,
                "Not connected",
                &format!(
                    "<h1>Not connected</h1><p>You declined in {}, so nothing was connected.</p>\
                     <p><a href=\"/connect\">Start again</a></p>",
                    p.title()
                ),
            )
        } else {
            bad(
                "Not connected",
                &format!(
                    "{} answered with the error {error}. Nothing was connected.",
                    p.title()
                ),
            )
        };
    }
    let Some(code) = params.get("code").filter(|c| !c.is_empty()) else {
        return bad(
            "Cannot connect",
            &format!("The answer from {} carries no code.", p.title()),
        );
    };
    let Some(client) = client(&app.config, p) else {
        return bad(
            "Cannot connect",
            &format!("connect.{} is not set up any more.", p.slug()),
        );
    };
    let hook = match exchange(&app.http, p, &client, code, &redirect_uri(&app.config, p)).await {
        Ok(h) => h,
        Err(why) => {
            tracing::warn!(provider = p.slug(), error = %why, "the code exchange failed; nothing connected");
            return bad(
                "Not connected",
                &format!(
                    "{} refused the exchange: {why}. Nothing was connected.",
                    p.title()
                ),
            );
        }
    };
    let url = match app.policy.check_kind(&hook.url, p.kind()) {
        Ok(u) => u,
        Err(e) => {
            return bad(
                "Cannot connect",
                &format!("The webhook URL is not accepted: {e}."),
            )
        }
    };
    // Slack names the channel; Discord gives only its id (the webhook is named after the app).
    let name = match (&hook.channel, &hook.channel_id, &hook.team_name) {
        (Some(c), _, Some(t)) if p == Provider::Slack => format!("{c} ({t})"),
        (Some(c), _, _) => c.clone(),
        (None, Some(id), _) => format!("{} channel {id}", p.title()),
        (None, None, _) => format!("{} webhook", p.title()),
    };
    // The bot of an install that granted `chat:write`, in the channel its webhook posts to.
    let bot = match (hook.bot_token, &hook.channel_id) {
        (Some(token), Some(channel)) if p == Provider::Slack => Some(Bot {
            token,
            api: client.api(),
            channel: channel.clone(),
        }),
        _ => None,
    };
    let conn = Connection {
        digest: record.digest,
        bot,
        ..Connection::new(
            name,
            url.as_str(),
            p.kind(),
            record.channels,
            ConnectionOrigin {
                channel: hook.channel,
                channel_id: hook.channel_id,
                team_id: hook.team_id,
                team_name: hook.team_name,
                configuration_url: hook.configuration_url,
                ..ConnectionOrigin::via(p.slug())
            },
        )
    };
    keep(&app, conn).await
}

/// The HTTP client of the code exchanges: short timeouts, no redirects.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("cardwire/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with these settings builds")
}
