//! The chat platforms with an "Add to …" flow (Slack, Discord): who they are, the OAuth client
//! each flow uses, where its button goes, and how their token answers read.
//!
//! In: the settings; a token endpoint's answer. Out: the authorize URL; the webhook and what
//! names it. Guarantees: pure functions (the flow's handlers are in [`super::oauth`], the
//! platforms' stand-ins in [`super::chat_emulator`]); an error answer is named as the platform
//! names it (`invalid_code`, `invalid_grant: …`).

use serde_json::Value;

use crate::config::Config;
use crate::render::CardKind;

/// A platform with an "Add to …" flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Slack: OAuth v2, scope `incoming-webhook`.
    Slack,
    /// Discord: OAuth2, scope `webhook.incoming`.
    Discord,
}

impl Provider {
    /// Both, in the order /connect shows them.
    pub const ALL: [Provider; 2] = [Provider::Slack, Provider::Discord];

    /// Its name in paths and in the config (`slack`, `discord`).
    pub fn slug(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Discord => "discord",
        }
    }

    /// Its name for people.
    pub fn title(self) -> &'static str {
        match self {
            Self::Slack => "Slack",
            Self::Discord => "Discord",
        }
    }

    /// The kind of card its webhooks take.
    pub fn kind(self) -> CardKind {
        match self {
            Self::Slack => CardKind::Slack,
            Self::Discord => CardKind::Discord,
        }
    }

    /// The scope that asks for an incoming webhook; Slack's with `chat:write` too when its
    /// bot is to edit and thread cards (`updates`).
    pub fn scope(self, updates: bool) -> &'static str {
        match self {
            Self::Slack if updates => "incoming-webhook,chat:write",
            Self::Slack => "incoming-webhook",
            Self::Discord => "webhook.incoming",
        }
    }

    fn configured(self, config: &Config) -> Option<&crate::config::OAuthClient> {
        match self {
            Self::Slack => config.connect.slack.as_ref(),
            Self::Discord => config.connect.discord.as_ref(),
        }
    }

    /// The platform's own authorize page and token endpoint.
    fn real(self) -> (&'static str, &'static str) {
        match self {
            Self::Slack => (
                "https://slack.com/oauth/v2/authorize",
                "https://slack.com/api/oauth.v2.access",
            ),
            Self::Discord => (
                "https://discord.com/oauth2/authorize",
                "https://discord.com/api/oauth2/token",
            ),
        }
    }

    /// The emulator's authorize page and token endpoint, under its public URL.
    pub fn emulated(self, public_url: &str) -> (String, String) {
        match self {
            Self::Slack => (
                format!("{public_url}/emulator/slack/oauth/v2/authorize"),
                format!("{public_url}/emulator/slack/api/oauth.v2.access"),
            ),
            Self::Discord => (
                format!("{public_url}/emulator/discord/oauth2/authorize"),
                format!("{public_url}/emulator/discord/api/oauth2/token"),
            ),
        }
    }
}

/// A provider's OAuth client as the flow uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// Slack: the workspace an install is restricted to.
    pub team: Option<String>,
    /// The authorize page.
    pub authorize_url: String,
    /// The token endpoint.
    pub token_url: String,
    /// Slack: whether the install asks for `chat:write` (a bot token for keyed cards).
    pub updates: bool,
}

impl Client {
    /// Slack's Web API, where its token endpoint is (`https://slack.com/api/`, or the
    /// emulator's).
    pub fn api(&self) -> String {
        match self.token_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/"),
            None => self.token_url.clone(),
        }
    }
}

/// The client a provider's flow uses: the configured one (its URLs default to the platform's,
/// or the emulator's while it is on), or, while the emulator is on, a development client that
/// the emulator knows. `None`: the flow is not offered.
pub fn client(config: &Config, p: Provider) -> Option<Client> {
    let emulator = config.emulator();
    let (authorize, token) = if emulator {
        p.emulated(&config.public_url())
    } else {
        let (a, t) = p.real();
        (a.to_string(), t.to_string())
    };
    match p.configured(config) {
        Some(c) => Some(Client {
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.clone(),
            team: c.team.clone(),
            authorize_url: c.authorize_url.clone().unwrap_or(authorize),
            token_url: c.token_url.clone().unwrap_or(token),
            updates: c.updates && p == Provider::Slack,
        }),
        None if emulator => Some(Client {
            client_id: match p {
                Provider::Slack => "1000000000.2000000000".into(),
                Provider::Discord => "100000000000000000".into(),
            },
            client_secret: "emulator-secret".into(),
            team: None,
            authorize_url: authorize,
            token_url: token,
            updates: p == Provider::Slack,
        }),
        None => None,
    }
}

/// The registered redirect URL of a provider's flow.
pub fn redirect_uri(config: &Config, p: Provider) -> String {
    format!("{}/connect/{}/callback", config.public_url(), p.slug())
}

/// Where the "Add to …" button sends the browser.
pub fn authorize_url(
    p: Provider,
    client: &Client,
    state: &str,
    redirect_uri: &str,
) -> Result<url::Url, url::ParseError> {
    let mut u = url::Url::parse(&client.authorize_url)?;
    {
        let mut q = u.query_pairs_mut();
        if p == Provider::Discord {
            q.append_pair("response_type", "code");
        }
        q.append_pair("client_id", &client.client_id)
            .append_pair("scope", p.scope(client.updates));
        if p == Provider::Slack {
            q.append_pair("user_scope", "");
        }
        q.append_pair("state", state)
            .append_pair("redirect_uri", redirect_uri);
        if let (Provider::Slack, Some(team)) = (p, &client.team) {
            q.append_pair("team", team);
        }
    }
    Ok(u)
}

/// What a token answer gives: the webhook and what names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hook {
    /// The webhook URL (a secret).
    pub url: String,
    /// The channel's name (`#deploys`), where the answer says.
    pub channel: Option<String>,
    /// The channel's id.
    pub channel_id: Option<String>,
    /// The workspace's (`team.id`) or server's (`guild_id`) id.
    pub team_id: Option<String>,
    /// The workspace's or the webhook's name.
    pub team_name: Option<String>,
    /// Slack: where the webhook's settings live.
    pub configuration_url: Option<String>,
    /// Slack: the bot token, when the install granted `chat:write` (a secret).
    pub bot_token: Option<String>,
}

fn text_at(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Reads Slack's `oauth.v2.access` answer: `{"ok": true, "incoming_webhook": {...}, "team":
/// {...}, ...}`, or `{"ok": false, "error": "invalid_code"}` (the error's name).
pub fn read_slack(status: u16, body: &str) -> Result<Hook, String> {
    let v: Value =
        serde_json::from_str(body).map_err(|_| format!("HTTP {status}, not a Slack API answer"))?;
    if v.get("ok").and_then(Value::as_bool) != Some(true) {
        return Err(text_at(&v, "/error").unwrap_or_else(|| format!("HTTP {status}, not ok")));
    }
    let url = text_at(&v, "/incoming_webhook/url")
        .ok_or("the answer has no incoming_webhook.url (was the scope incoming-webhook?)")?;
    Ok(Hook {
        url,
        channel: text_at(&v, "/incoming_webhook/channel"),
        channel_id: text_at(&v, "/incoming_webhook/channel_id"),
        team_id: text_at(&v, "/team/id"),
        team_name: text_at(&v, "/team/name"),
        configuration_url: text_at(&v, "/incoming_webhook/configuration_url"),
        // A bot token that may post: `chat:write` among the scopes granted.
        bot_token: text_at(&v, "/access_token").filter(|_| {
            text_at(&v, "/token_type").as_deref() == Some("bot")
                && text_at(&v, "/scope")
                    .is_some_and(|s| s.split(',').any(|s| s.trim() == "chat:write"))
        }),
    })
}

/// Reads Discord's token answer: 200 with `{"access_token": ..., "webhook": {"url", "id",
/// "channel_id", "guild_id", "name", ...}}`, or an OAuth error `{"error": "invalid_grant",
/// "error_description": "..."}` (named with its description).
pub fn read_discord(status: u16, body: &str) -> Result<Hook, String> {
    let v: Value = serde_json::from_str(body)
        .map_err(|_| format!("HTTP {status}, not a Discord API answer"))?;
    if let Some(error) = text_at(&v, "/error") {
        return Err(match text_at(&v, "/error_description") {
            Some(d) => format!("{error}: {d}"),
            None => error,
        });
    }
    if !(200..300).contains(&status) {
        return Err(text_at(&v, "/message")
            .map(|m| format!("HTTP {status}: {m}"))
            .unwrap_or_else(|| format!("HTTP {status}")));
    }
    let url = text_at(&v, "/webhook/url")
        .ok_or("the answer has no webhook.url (was the scope webhook.incoming?)")?;
    Ok(Hook {
        url,
        channel: None,
        channel_id: text_at(&v, "/webhook/channel_id"),
        team_id: text_at(&v, "/webhook/guild_id"),
        team_name: text_at(&v, "/webhook/name"),
        configuration_url: None,
        bot_token: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client {
            client_id: "123.456".into(),
            client_secret: "s".into(),
            team: Some("T0001".into()),
            authorize_url: "https://slack.com/oauth/v2/authorize".into(),
            token_url: "https://slack.com/api/oauth.v2.access".into(),
            updates: false,
        }
    }

    #[test]
    fn the_buttons_go_where_each_platform_documents() {
        let slack = authorize_url(
            Provider::Slack,
            &client(),
            "st",
            "https://cw.example/connect/slack/callback",
        )
        .unwrap();
        assert_eq!(
            slack.as_str(),
            "https://slack.com/oauth/v2/authorize?client_id=123.456&scope=incoming-webhook&user_scope=&state=st&redirect_uri=https%3A%2F%2Fcw.example%2Fconnect%2Fslack%2Fcallback&team=T0001"
        );
        // With updates, the bot's scope too.
        let updates = Client {
            updates: true,
            ..client()
        };
        let slack =
            authorize_url(Provider::Slack, &updates, "st", "https://cw.example/cb").unwrap();
        assert!(slack
            .as_str()
            .contains("&scope=incoming-webhook%2Cchat%3Awrite&"));
        let discord = authorize_url(
            Provider::Discord,
            &Client {
                authorize_url: "https://discord.com/oauth2/authorize".into(),
                team: None,
                ..client()
            },
            "st",
            "https://cw.example/connect/discord/callback",
        )
        .unwrap();
        assert_eq!(
            discord.as_str(),
            "https://discord.com/oauth2/authorize?response_type=code&client_id=123.456&scope=webhook.incoming&state=st&redirect_uri=https%3A%2F%2Fcw.example%2Fconnect%2Fdiscord%2Fcallback"
        );
    }

    #[test]
    fn slacks_answers_are_read_by_their_documented_shape() {
        // The shape of slackapi/java-slack-sdk json-logs/samples/api/oauth.v2.access.json,
        // with a real-world incoming_webhook.
        let ok = r##"{"ok": true, "app_id": "A0KRD7HC3", "authed_user": {"id": "U1234", "scope": "", "access_token": "xoxp-1", "token_type": "user"},
            "scope": "incoming-webhook", "token_type": "bot", "access_token": "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
            "bot_user_id": "U0KRQLJ9H", "team": {"id": "T9TK3CUKW", "name": "Slack Softball Team"}, "enterprise": null,
            "incoming_webhook": {"url": "https://hooks.slack.com/services/T9TK3CUKW/B0222/XXXX", "channel": "#storefront",
              "channel_id": "C333", "configuration_url": "https://gumyum.slack.com/services/B222"}}"##;
        let hook = read_slack(200, ok).unwrap();
        assert_eq!(
            hook,
            Hook {
                url: "https://hooks.slack.com/services/T9TK3CUKW/B0222/XXXX".into(),
                channel: Some("#storefront".into()),
                channel_id: Some("C333".into()),
                team_id: Some("T9TK3CUKW".into()),
                team_name: Some("Slack Softball Team".into()),
                configuration_url: Some("https://gumyum.slack.com/services/B222".into()),
                // Granted `incoming-webhook` only: the bot may not post.
                bot_token: None,
            }
        );
        let with_chat = ok.replace(
            r#""scope": "incoming-webhook""#,
            r#""scope": "incoming-webhook,chat:write""#,
        );
        assert_eq!(
            read_slack(200, &with_chat).unwrap().bot_token.as_deref(),
            Some("xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy")
        );
        assert_eq!(client().api(), "https://slack.com/api/");
        for name in [
            "invalid_code",
            "code_already_used",
            "bad_redirect_uri",
            "bad_client_secret",
        ] {
            assert_eq!(
                read_slack(200, &format!(r#"{{"ok": false, "error": "{name}"}}"#)),
                Err(name.to_string())
            );
        }
        assert!(read_slack(502, "<html>bad gateway</html>")
            .unwrap_err()
            .contains("HTTP 502"));
        assert!(read_slack(200, r#"{"ok": true, "team": {"id": "T"}}"#)
            .unwrap_err()
            .contains("incoming_webhook.url"));
    }

    #[test]
    fn discords_answers_are_read_by_their_documented_shape() {
        // The example of discord-api-docs developers/topics/oauth2.mdx (webhook.incoming).
        let ok = r#"{"token_type": "Bearer", "access_token": "GNaVzEtATqdh173tNHEXY9ZYAuhiYxvy", "scope": "webhook.incoming",
            "expires_in": 604800, "refresh_token": "PvPL7ELyMDc1836457XCDh1Y8jPbRm",
            "webhook": {"application_id": "310954232226357250", "name": "testwebhook",
              "url": "https://discord.com/api/webhooks/347114750880120863/kKDdjXa1g9tKNs0-_yOwLyALC9gydEWP6gr9sHabuK1vuofjhQDDnlOclJeRIvYK-pj_",
              "channel_id": "345626669224982402", "token": "kKDdjXa1g9tKNs0-_yOwLyALC9gydEWP6gr9sHabuK1vuofjhQDDnlOclJeRIvYK-pj_",
              "type": 1, "avatar": null, "guild_id": "290926792226357250", "id": "347114750880120863"}}"#;
        let hook = read_discord(200, ok).unwrap();
        assert_eq!(hook.channel_id.as_deref(), Some("345626669224982402"));
        assert_eq!(hook.team_id.as_deref(), Some("290926792226357250"));
        assert_eq!(hook.team_name.as_deref(), Some("testwebhook"));
        assert!(hook
            .url
            .starts_with("https://discord.com/api/webhooks/347114750880120863/"));
        assert_eq!(
            read_discord(
                400,
                r#"{"error": "invalid_grant", "error_description": "Invalid \"code\" in request."}"#
            ),
            Err("invalid_grant: Invalid \"code\" in request.".to_string())
        );
        assert_eq!(
            read_discord(401, r#"{"error": "invalid_client"}"#),
            Err("invalid_client".to_string())
        );
        assert_eq!(
            read_discord(
                429,
                r#"{"message": "You are being rate limited.", "retry_after": 1.5, "global": false}"#
            ),
            Err("HTTP 429: You are being rate limited.".to_string())
        );
    }
}
