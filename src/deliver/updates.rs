//! Keyed cards' decisions, pure functions: what a connection can do to a message it made
//! ([`can`]), what a card's `update` comes to there ([`effective`], and in words for `check`
//! and the playground: [`update_effect`]), what one delivery does with the reference found
//! ([`plan`]), and the reference a chat's answer gives ([`answered_ref`]).
//!
//! `replace` edits the first message where the chat can, else replies in its thread, else
//! posts anew; `reply` replies where the chat can, else posts anew; `new` always posts.

use crate::ids::DeliveryId;
use crate::render::{CardKind, Update};
use crate::store::MessageRef;

/// What a connection can do to a message it made earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Can {
    /// Edit it in place.
    pub edit: bool,
    /// Reply in its thread.
    pub reply: bool,
}

/// What a connection of `kind` can do: `token` when it carries a bot token (Slack, through
/// Add to Slack; Mattermost, pasted), `forum` for a Discord webhook into a forum channel.
///
/// - Teams (connectors and Workflows): nothing; only a bot or Microsoft Graph edits a message.
/// - Slack and Mattermost: both with a bot token (chat.update / posts' patch, `thread_ts` /
///   `root_id`); an incoming webhook neither.
/// - Discord: a webhook edits its own messages; replies only in a forum (a thread per key).
/// - Google Chat: a webhook replies in a thread by key; it cannot edit.
pub fn can(kind: CardKind, token: bool, forum: bool) -> Can {
    match kind {
        CardKind::Teams | CardKind::Workflow => Can {
            edit: false,
            reply: false,
        },
        CardKind::Slack | CardKind::Mattermost => Can {
            edit: token,
            reply: token,
        },
        CardKind::Discord => Can {
            edit: true,
            reply: forum,
        },
        CardKind::GoogleChat => Can {
            edit: false,
            reply: true,
        },
    }
}

/// What `update` comes to where the connection can do `can`.
pub fn effective(update: Update, can: Can) -> Update {
    match update {
        Update::Replace if can.edit => Update::Replace,
        Update::Replace | Update::Reply if can.reply => Update::Reply,
        _ => Update::New,
    }
}

/// What a later card with the same key does on `kind`, in words (`check`, the playground).
pub fn update_effect(kind: CardKind, update: Update) -> String {
    let with = |token: bool, forum: bool| effective(update, can(kind, token, forum));
    let says = |u: Update| match u {
        Update::Replace => "edits the first message",
        Update::Reply => "replies in the first message's thread",
        Update::New => "posts a new message",
    };
    match kind {
        CardKind::Slack | CardKind::Mattermost if with(true, false) != with(false, false) => {
            format!(
                "{} with a bot token ({}); {} through a webhook alone",
                says(with(true, false)),
                if kind == CardKind::Slack {
                    "Add to Slack gives one"
                } else {
                    "pasted with the connection"
                },
                says(with(false, false)),
            )
        }
        CardKind::Discord if with(false, true) != with(false, false) => format!(
            "{}; in a forum channel, {}",
            says(with(false, false)),
            says(with(false, true))
        ),
        CardKind::Teams | CardKind::Workflow if update != Update::New => format!(
            "{} (Teams' webhooks can neither edit nor reply)",
            says(Update::New)
        ),
        _ => says(with(false, false)).to_string(),
    }
}

/// What one delivery of a keyed card does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// A new message, whose reference is kept.
    Post,
    /// Edit the referenced message.
    Edit(MessageRef),
    /// Reply in the referenced message's thread.
    Reply(MessageRef),
    /// This very delivery was sent before a stop, and its reference recorded: nothing to send.
    Sent(MessageRef),
}

/// What a delivery (`delivery`) of a card whose update is `update` (already [`effective`])
/// does with the reference `found` of its key.
pub fn plan(update: Update, found: Option<MessageRef>, delivery: &DeliveryId) -> Plan {
    match found {
        Some(r) if r.delivery == *delivery => Plan::Sent(r),
        Some(r) if update == Update::Replace => Plan::Edit(r),
        Some(r) if update == Update::Reply => Plan::Reply(r),
        _ => Plan::Post,
    }
}

/// The message a chat's answer to a post names: (id, place). Discord (`?wait=true`): the
/// message's `id`, and its `channel_id` where it opened a forum thread; Google Chat: the
/// message's `name` and its thread's; Slack's chat.postMessage: `ts` and `channel`;
/// Mattermost's posts: `id`.
pub fn answered_ref(kind: CardKind, answer: &str, forum: bool) -> Option<(String, Option<String>)> {
    let v: serde_json::Value = serde_json::from_str(answer).ok()?;
    let s = |p: &str| v.pointer(p).and_then(|x| x.as_str()).map(str::to_string);
    match kind {
        CardKind::Discord => Some((s("/id")?, if forum { s("/channel_id") } else { None })),
        CardKind::GoogleChat => Some((s("/name")?, s("/thread/name"))),
        CardKind::Slack => Some((s("/ts")?, s("/channel"))),
        CardKind::Mattermost => Some((s("/id")?, s("/channel_id"))),
        CardKind::Teams | CardKind::Workflow => None,
    }
}

/// Whether a chat's answer to an edit or a reply says its message (or thread) is gone, or
/// can no longer be changed: the card is posted anew and its reference replaced. Discord:
/// `10008 Unknown Message`, `10003 Unknown Channel` (a forum thread deleted); Slack:
/// `message_not_found`, `cant_update_message`, `edit_window_closed`, `thread_not_found`;
/// Mattermost: 404 on the post.
pub fn message_gone(kind: CardKind, status: u16, answer: &str) -> bool {
    let v: Option<serde_json::Value> = serde_json::from_str(answer).ok();
    match kind {
        CardKind::Discord => {
            status == 404
                && v.and_then(|v| v.get("code")?.as_u64())
                    .is_some_and(|c| c == 10008 || c == 10003)
        }
        CardKind::Slack => v
            .and_then(|v| v.get("error")?.as_str().map(str::to_string))
            .is_some_and(|e| {
                matches!(
                    e.as_str(),
                    "message_not_found"
                        | "cant_update_message"
                        | "edit_window_closed"
                        | "thread_not_found"
                )
            }),
        // The post gone (404 on its patch), or a reply's root gone (400 naming it).
        CardKind::Mattermost => {
            status == 404 || (status == 400 && answer.to_ascii_lowercase().contains("root"))
        }
        _ => false,
    }
}

/// An HTTP method a chat's request takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `POST`.
    Post,
    /// `PATCH`.
    Patch,
    /// `PUT`.
    Put,
}

/// How one request of a keyed card goes: `PATCH` or `POST`, where (the webhook URL with a
/// path and a query added, or a chat API's URL with a bot token), its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method: `POST`, or an edit's `PATCH` (Discord) or `PUT` (Mattermost).
    pub verb: Verb,
    /// Added to the webhook URL's path (`/messages/{id}`).
    pub path: String,
    /// Added to the URL's query.
    pub query: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: String,
    /// A chat API's URL and the bot token it takes, instead of the webhook URL.
    pub api: Option<(String, String)>,
}

impl Request {
    /// A plain POST of `body` to the webhook URL, with `query` added.
    pub fn webhook(body: String, query: Vec<(&'static str, String)>) -> Self {
        Self {
            verb: Verb::Post,
            path: String::new(),
            query,
            body,
            api: None,
        }
    }
}

/// The request for a Discord keyed card (`Post`, `Edit` or `Reply`; never `Sent`). A post
/// waits for the answer (`?wait=true`), which names the message; in a forum it opens a
/// thread named by the card's thread name, else its title. An edit PATCHes the message
/// (`?thread_id=` in a forum) with what an edit takes (no `username`, `avatar_url`,
/// `thread_name`); a reply joins the forum thread.
pub fn discord_request(plan: &Plan, body: &str, forum: bool) -> Request {
    let mut v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| serde_json::json!({}));
    let name = v
        .as_object_mut()
        .and_then(|o| o.remove("thread_name"))
        .and_then(|t| t.as_str().map(str::to_string));
    let thread = |r: &MessageRef| {
        r.place
            .iter()
            .map(|t| ("thread_id", t.clone()))
            .collect::<Vec<_>>()
    };
    match plan {
        Plan::Edit(r) => {
            if let Some(o) = v.as_object_mut() {
                for k in ["username", "avatar_url", "tts", "applied_tags"] {
                    o.remove(k);
                }
            }
            Request {
                verb: Verb::Patch,
                path: format!("/messages/{}", r.message),
                query: thread(r),
                body: v.to_string(),
                api: None,
            }
        }
        Plan::Reply(r) if r.place.is_some() => Request {
            verb: Verb::Post,
            path: String::new(),
            query: thread(r),
            body: v.to_string(),
            api: None,
        },
        _ => {
            if forum {
                super::decide::open_forum_thread(&mut v, name);
            }
            Request {
                verb: Verb::Post,
                path: String::new(),
                query: vec![("wait", "true".into())],
                body: v.to_string(),
                api: None,
            }
        }
    }
}

/// The request for a Slack keyed card through the connection's bot (`Post`, `Edit` or
/// `Reply`): the webhook's body (`text`, `blocks`, `attachments`) sent to `chat.postMessage`
/// in the bot's channel (with `thread_ts` for a reply), or to `chat.update` for the message's
/// channel and `ts`.
pub fn slack_request(plan: &Plan, body: &str, bot: &crate::store::Bot) -> Request {
    let mut v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| serde_json::json!({}));
    let method = match plan {
        Plan::Edit(r) => {
            v["channel"] = serde_json::json!(r.place.as_deref().unwrap_or(&bot.channel));
            v["ts"] = serde_json::json!(r.message);
            "chat.update"
        }
        Plan::Reply(r) => {
            v["channel"] = serde_json::json!(r.place.as_deref().unwrap_or(&bot.channel));
            v["thread_ts"] = serde_json::json!(r.message);
            "chat.postMessage"
        }
        _ => {
            v["channel"] = serde_json::json!(bot.channel);
            "chat.postMessage"
        }
    };
    Request {
        verb: Verb::Post,
        path: String::new(),
        query: Vec::new(),
        body: v.to_string(),
        api: Some((format!("{}{method}", bot.api), bot.token.clone())),
    }
}

/// Whether an earlier attempt may have reached the chat without its answer reaching cardwire
/// (it timed out, or its answer broke off): a new post may then show twice.
pub fn maybe_sent(attempts: &[crate::store::Attempt]) -> bool {
    attempts.iter().any(|a| {
        a.status.is_none()
            && ["timed out", "broken response body", "request failed"]
                .iter()
                .any(|w| a.result.ends_with(w))
    })
}

/// The prop a Mattermost post carries with the id of the delivery that made it, so that a
/// post whose answer was lost can be found again.
pub const MATTERMOST_DELIVERY_PROP: &str = "cardwire_delivery";

/// The post that delivery `delivery` made, in an answer of `GET
/// /api/v4/channels/{id}/posts?since=…` (`{"order": [...], "posts": {id: post}}`).
pub fn mattermost_post_of(answer: &str, delivery: &str) -> Option<(String, Option<String>)> {
    let v: serde_json::Value = serde_json::from_str(answer).ok()?;
    let prop = format!("/props/{MATTERMOST_DELIVERY_PROP}");
    let post = v
        .get("posts")?
        .as_object()?
        .values()
        .find(|p| p.pointer(&prop).and_then(serde_json::Value::as_str) == Some(delivery))?;
    Some((
        post.get("id")?.as_str()?.to_string(),
        post.get("channel_id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string),
    ))
}

/// The request for a Mattermost keyed card through the connection's bot: the webhook's body
/// (`text`, `attachments`) as a post of the bot's channel (`POST /api/v4/posts` with
/// `message` and `props.attachments`, and the delivery's id as [`MATTERMOST_DELIVERY_PROP`];
/// `root_id` for a reply), or a patch of the post (`PUT /api/v4/posts/{id}/patch`).
pub fn mattermost_request(
    plan: &Plan,
    body: &str,
    bot: &crate::store::Bot,
    delivery: &str,
) -> Request {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| serde_json::json!({}));
    let mut post = serde_json::json!({
        "message": v.get("text").cloned().unwrap_or_else(|| serde_json::json!("")),
        "props": {
            "attachments": v.get("attachments").cloned().unwrap_or_else(|| serde_json::json!([])),
            MATTERMOST_DELIVERY_PROP: delivery,
        },
    });
    let (verb, path) = match plan {
        Plan::Edit(r) => (Verb::Put, format!("posts/{}/patch", r.message)),
        Plan::Reply(r) => {
            post["channel_id"] = serde_json::json!(bot.channel);
            post["root_id"] = serde_json::json!(r.message);
            (Verb::Post, "posts".to_string())
        }
        _ => {
            post["channel_id"] = serde_json::json!(bot.channel);
            (Verb::Post, "posts".to_string())
        }
    };
    Request {
        verb,
        path: String::new(),
        query: Vec::new(),
        body: post.to_string(),
        api: Some((format!("{}{path}", bot.api), bot.token.clone())),
    }
}

/// What a Mattermost REST answer means: 2xx delivered; 401 and 403 (a token revoked, a bot
/// no longer in its channel) and 404 (the channel gone) break the connection; 400 and 413
/// make the card a dead letter; 429 pauses the connection; 5xx and 408 are retried.
pub fn mattermost_api_outcome(
    status: u16,
    retry_after: Option<&str>,
    answer: &str,
) -> super::decide::Outcome {
    use super::decide::{parse_retry_after, Outcome};
    let why = format!(
        "Mattermost API: HTTP {status}: {}",
        super::decide::excerpt(answer)
    );
    match status {
        200..=299 => Outcome::Delivered,
        429 => Outcome::Retry {
            why,
            throttled: true,
            retry_after: retry_after.and_then(parse_retry_after),
        },
        401 | 403 | 404 => Outcome::Gone(why),
        408 | 500..=599 => Outcome::Retry {
            why,
            throttled: false,
            retry_after: None,
        },
        _ => Outcome::Failed(why),
    }
}

/// What a Slack Web API answer means: HTTP 200 with `"ok": true` is delivered; `"ok": false`
/// names its error: the bot cannot post there any more (`not_in_channel`,
/// `channel_not_found`, `is_archived`, `not_authed`, `invalid_auth`, `token_revoked`,
/// `account_inactive`, `missing_scope`: the connection is broken), the card is refused
/// (`msg_too_long`, `invalid_blocks`, `no_text`, …: a dead letter), or Slack failed
/// (`internal_error`, `fatal_error`, `service_unavailable`, `request_timeout`: retried). A 429
/// (`ratelimited`) pauses the connection for its `Retry-After`.
pub fn slack_api_outcome(
    status: u16,
    retry_after: Option<&str>,
    answer: &str,
) -> super::decide::Outcome {
    use super::decide::{parse_retry_after, Outcome};
    let excerpt = super::decide::excerpt(answer);
    let v: Option<serde_json::Value> = serde_json::from_str(answer).ok();
    let error = v
        .as_ref()
        .and_then(|v| v.get("error")?.as_str().map(str::to_string));
    if status == 429 || error.as_deref() == Some("ratelimited") {
        return Outcome::Retry {
            why: format!("HTTP {status}: {excerpt}"),
            throttled: true,
            retry_after: retry_after.and_then(parse_retry_after),
        };
    }
    if status >= 500 || status == 408 {
        return Outcome::Retry {
            why: format!("HTTP {status}: {excerpt}"),
            throttled: false,
            retry_after: None,
        };
    }
    if v.as_ref().and_then(|v| v.get("ok")?.as_bool()) == Some(true) {
        return Outcome::Delivered;
    }
    let why = format!("Slack API: {}", error.as_deref().unwrap_or(&excerpt));
    match error.as_deref() {
        Some(
            "not_in_channel"
            | "channel_not_found"
            | "is_archived"
            | "not_authed"
            | "invalid_auth"
            | "token_revoked"
            | "account_inactive"
            | "missing_scope"
            | "ekm_access_denied"
            | "team_access_not_granted",
        ) => Outcome::Gone(why),
        Some("internal_error" | "fatal_error" | "service_unavailable" | "request_timeout") => {
            Outcome::Retry {
                why,
                throttled: false,
                retry_after: None,
            }
        }
        _ => Outcome::Failed(why),
    }
}

/// A Google Chat keyed card's body: in its key's thread (`thread.threadKey`) when its
/// update replies, out of any thread when it is `new`. A key longer than 100 characters is
/// replaced by 128 bits of its SHA-256 (in hex), the same for every card of it.
pub fn google_chat_body(body: &str, key: &str, update: Update) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.to_string();
    };
    match update {
        Update::New => {
            if let Some(o) = v.as_object_mut() {
                o.remove("thread");
            }
        }
        Update::Replace | Update::Reply => {
            let thread_key = if key.chars().count() <= 100 {
                key.to_string()
            } else {
                use sha2::Digest;
                let d = sha2::Sha256::digest(key.as_bytes());
                format!("cardwire-{}", hex::encode(&d[..16]))
            };
            v["thread"] = serde_json::json!({ "threadKey": thread_key });
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(delivery: &DeliveryId) -> MessageRef {
        MessageRef {
            connection: crate::ids::ConnectionId::new(),
            key: "octo/repo#1".into(),
            message: "m1".into(),
            place: None,
            delivery: delivery.clone(),
            at_ms: 1,
        }
    }

    #[test]
    fn each_chat_falls_back_from_replace_to_reply_to_new() {
        use CardKind::*;
        let eff = |kind, update, token, forum| effective(update, can(kind, token, forum));
        // Teams can do nothing but post.
        for k in [Teams, Workflow] {
            for u in [Update::Replace, Update::Reply, Update::New] {
                assert_eq!(eff(k, u, true, true), Update::New, "{k:?} {u:?}");
            }
        }
        // Slack and Mattermost: everything with a token, nothing without.
        for k in [Slack, Mattermost] {
            assert_eq!(eff(k, Update::Replace, true, false), Update::Replace);
            assert_eq!(eff(k, Update::Reply, true, false), Update::Reply);
            assert_eq!(eff(k, Update::Replace, false, false), Update::New);
            assert_eq!(eff(k, Update::Reply, false, false), Update::New);
        }
        // Discord edits anywhere, replies in a forum only.
        assert_eq!(eff(Discord, Update::Replace, false, false), Update::Replace);
        assert_eq!(eff(Discord, Update::Reply, false, false), Update::New);
        assert_eq!(eff(Discord, Update::Reply, false, true), Update::Reply);
        // Google Chat: replace is a reply in the key's thread.
        assert_eq!(
            eff(GoogleChat, Update::Replace, false, false),
            Update::Reply
        );
        assert_eq!(eff(GoogleChat, Update::Reply, false, false), Update::Reply);
        // `new` is new everywhere.
        for k in CardKind::ALL {
            assert_eq!(eff(k, Update::New, true, true), Update::New);
        }
    }

    #[test]
    fn the_effect_in_words_names_what_each_chat_needs() {
        let e = |k, u| update_effect(k, u);
        assert_eq!(
            e(CardKind::Slack, Update::Replace),
            "edits the first message with a bot token (Add to Slack gives one); posts a new message through a webhook alone"
        );
        assert!(e(CardKind::Mattermost, Update::Reply)
            .starts_with("replies in the first message's thread with a bot token (pasted"));
        assert_eq!(
            e(CardKind::Discord, Update::Reply),
            "posts a new message; in a forum channel, replies in the first message's thread"
        );
        assert_eq!(
            e(CardKind::Discord, Update::Replace),
            "edits the first message"
        );
        assert_eq!(
            e(CardKind::GoogleChat, Update::Replace),
            "replies in the first message's thread"
        );
        assert!(e(CardKind::Workflow, Update::Replace).contains("neither edit nor reply"));
        assert_eq!(e(CardKind::Teams, Update::New), "posts a new message");
    }

    #[test]
    fn a_delivery_posts_edits_replies_or_knows_it_was_sent() {
        let me = DeliveryId::new();
        let earlier = reference(&DeliveryId::new());
        assert_eq!(plan(Update::Replace, None, &me), Plan::Post);
        assert_eq!(
            plan(Update::Replace, Some(earlier.clone()), &me),
            Plan::Edit(earlier.clone())
        );
        assert_eq!(
            plan(Update::Reply, Some(earlier.clone()), &me),
            Plan::Reply(earlier.clone())
        );
        assert_eq!(plan(Update::New, Some(earlier), &me), Plan::Post);
        // Its own reference: it was sent before a stop, and is not sent again.
        let mine = reference(&me);
        for u in [Update::Replace, Update::Reply, Update::New] {
            assert_eq!(plan(u, Some(mine.clone()), &me), Plan::Sent(mine.clone()));
        }
    }

    #[test]
    fn answers_name_their_message() {
        let discord = r#"{"id":"111","channel_id":"222","content":"x"}"#;
        assert_eq!(
            answered_ref(CardKind::Discord, discord, false),
            Some(("111".into(), None))
        );
        assert_eq!(
            answered_ref(CardKind::Discord, discord, true),
            Some(("111".into(), Some("222".into())))
        );
        let chat = r#"{"name":"spaces/A/messages/B","thread":{"name":"spaces/A/threads/C"}}"#;
        assert_eq!(
            answered_ref(CardKind::GoogleChat, chat, false),
            Some((
                "spaces/A/messages/B".into(),
                Some("spaces/A/threads/C".into())
            ))
        );
        let slack = r#"{"ok":true,"channel":"C1","ts":"1405894322.002768"}"#;
        assert_eq!(
            answered_ref(CardKind::Slack, slack, false),
            Some(("1405894322.002768".into(), Some("C1".into())))
        );
        let mattermost = r#"{"id":"p1","channel_id":"ch1","message":"m"}"#;
        assert_eq!(
            answered_ref(CardKind::Mattermost, mattermost, false),
            Some(("p1".into(), Some("ch1".into())))
        );
        assert_eq!(answered_ref(CardKind::Discord, "", false), None);
        assert_eq!(answered_ref(CardKind::Teams, "1", false), None);
    }

    #[test]
    fn gone_messages_are_told_from_gone_webhooks() {
        let d = |status, body| message_gone(CardKind::Discord, status, body);
        assert!(d(404, r#"{"message": "Unknown Message", "code": 10008}"#));
        assert!(d(404, r#"{"message": "Unknown Channel", "code": 10003}"#));
        // The webhook itself gone is the connection's end, not the message's.
        assert!(!d(404, r#"{"message": "Unknown Webhook", "code": 10015}"#));
        assert!(!d(429, r#"{"code": 10008}"#));
        let s = |body: &str| message_gone(CardKind::Slack, 200, body);
        for e in [
            "message_not_found",
            "cant_update_message",
            "edit_window_closed",
        ] {
            let answer = format!(r#"{{"ok":false,"error":"{e}"}}"#);
            assert!(s(&answer), "{e}");
        }
        assert!(!s(r#"{"ok":false,"error":"invalid_auth"}"#));
        assert!(message_gone(CardKind::Mattermost, 404, ""));
        assert!(!message_gone(CardKind::Teams, 404, ""));
    }

    #[test]
    fn discord_posts_wait_edits_patch_and_replies_join_the_thread() {
        let body = r#"{"embeds":[{"title":"PR #1"}],"username":"cw","thread_name":"octo/repo#1","allowed_mentions":{"parse":[]}}"#;
        let post = discord_request(&Plan::Post, body, false);
        assert!(post.verb == Verb::Post && post.path.is_empty());
        assert_eq!(post.query, vec![("wait", "true".to_string())]);
        assert!(!post.body.contains("thread_name") && post.body.contains("username"));
        // In a forum the post opens the thread, named by the card's thread name or its title.
        let post = discord_request(&Plan::Post, body, true);
        assert!(post.body.contains(r#""thread_name":"octo/repo#1""#));
        let untitled = discord_request(&Plan::Post, r#"{"embeds":[{"title":"T"}]}"#, true);
        assert!(untitled.body.contains(r#""thread_name":"T""#));
        let mut r = reference(&DeliveryId::new());
        let edit = discord_request(&Plan::Edit(r.clone()), body, false);
        assert_eq!(edit.verb, Verb::Patch);
        assert_eq!(edit.path, "/messages/m1");
        assert!(edit.query.is_empty());
        assert!(!edit.body.contains("username") && !edit.body.contains("thread_name"));
        assert!(edit.body.contains("allowed_mentions"));
        r.place = Some("777".into());
        let edit = discord_request(&Plan::Edit(r.clone()), body, true);
        assert_eq!(edit.query, vec![("thread_id", "777".to_string())]);
        let reply = discord_request(&Plan::Reply(r), body, true);
        assert!(reply.verb == Verb::Post && reply.path.is_empty());
        assert_eq!(reply.query, vec![("thread_id", "777".to_string())]);
        assert!(!reply.body.contains("thread_name"));
    }

    #[test]
    fn google_chat_threads_by_key_or_not_at_all() {
        let body = r#"{"text":"x","thread":{"threadKey":"old"}}"#;
        let v = |b: String| serde_json::from_str::<serde_json::Value>(&b).unwrap();
        assert_eq!(
            v(google_chat_body(body, "octo/repo#1", Update::Replace))["thread"]["threadKey"],
            "octo/repo#1"
        );
        assert!(v(google_chat_body(body, "k", Update::New))
            .get("thread")
            .is_none());
        let long = "k".repeat(300);
        let a = v(google_chat_body(body, &long, Update::Reply));
        let key = a["thread"]["threadKey"].as_str().unwrap();
        assert!(key.len() <= 100 && key.starts_with("cardwire-"));
        assert_eq!(
            v(google_chat_body(body, &long, Update::Reply))["thread"]["threadKey"],
            key,
            "the same key, the same thread"
        );
    }

    #[test]
    fn slack_goes_through_its_bot_posting_editing_and_replying() {
        let bot = crate::store::Bot {
            token: "xoxb-1".into(),
            api: "https://slack.com/api/".into(),
            channel: "C1".into(),
        };
        let body = r##"{"text":"PR #1","attachments":[{"color":"#2DA44E","blocks":[]}]}"##;
        let v = |r: &Request| serde_json::from_str::<serde_json::Value>(&r.body).unwrap();
        let post = slack_request(&Plan::Post, body, &bot);
        assert_eq!(
            post.api,
            Some((
                "https://slack.com/api/chat.postMessage".into(),
                "xoxb-1".into()
            ))
        );
        assert_eq!(v(&post)["channel"], "C1");
        assert_eq!(v(&post)["attachments"][0]["color"], "#2DA44E");
        let mut r = reference(&DeliveryId::new());
        r.message = "1405894322.002768".into();
        r.place = Some("C9".into());
        let edit = slack_request(&Plan::Edit(r.clone()), body, &bot);
        assert_eq!(
            edit.api.clone().unwrap().0,
            "https://slack.com/api/chat.update"
        );
        assert_eq!(
            (v(&edit)["channel"].clone(), v(&edit)["ts"].clone()),
            ("C9".into(), "1405894322.002768".into())
        );
        let reply = slack_request(&Plan::Reply(r), body, &bot);
        assert_eq!(
            reply.api.clone().unwrap().0,
            "https://slack.com/api/chat.postMessage"
        );
        assert_eq!(v(&reply)["thread_ts"], "1405894322.002768");
    }

    #[test]
    fn slacks_api_errors_get_their_classes() {
        use super::super::decide::Outcome;
        let o = |status, body: &str| slack_api_outcome(status, Some("3"), body);
        assert_eq!(
            o(200, r#"{"ok":true,"channel":"C1","ts":"1.2"}"#),
            Outcome::Delivered
        );
        for e in [
            "not_in_channel",
            "channel_not_found",
            "invalid_auth",
            "token_revoked",
            "account_inactive",
        ] {
            assert!(
                matches!(o(200, &format!(r#"{{"ok":false,"error":"{e}"}}"#)), Outcome::Gone(w) if w == format!("Slack API: {e}")),
                "{e}"
            );
        }
        for e in ["msg_too_long", "invalid_blocks", "no_text"] {
            assert!(
                matches!(
                    o(200, &format!(r#"{{"ok":false,"error":"{e}"}}"#)),
                    Outcome::Failed(_)
                ),
                "{e}"
            );
        }
        assert!(matches!(
            o(429, r#"{"ok":false,"error":"ratelimited"}"#),
            Outcome::Retry { throttled: true, retry_after: Some(d), .. } if d == std::time::Duration::from_secs(3)
        ));
        assert!(matches!(
            o(200, r#"{"ok":false,"error":"internal_error"}"#),
            Outcome::Retry {
                throttled: false,
                ..
            }
        ));
        assert!(matches!(
            o(503, "<html>"),
            Outcome::Retry {
                throttled: false,
                ..
            }
        ));
        assert!(matches!(o(200, "not json"), Outcome::Failed(_)));
    }

    #[test]
    fn mattermost_goes_through_its_bot_as_posts() {
        let bot = crate::store::Bot {
            token: "t".into(),
            api: "https://mm.example.com/api/v4/".into(),
            channel: "ch1".into(),
        };
        let body = r##"{"text":"PR #1","attachments":[{"color":"#2DA44E","title":"T"}]}"##;
        let v = |r: &Request| serde_json::from_str::<serde_json::Value>(&r.body).unwrap();
        let post = mattermost_request(&Plan::Post, body, &bot, "dlv_1");
        assert_eq!(v(&post)["props"][MATTERMOST_DELIVERY_PROP], "dlv_1");
        assert_eq!(post.verb, Verb::Post);
        assert_eq!(
            post.api.clone().unwrap().0,
            "https://mm.example.com/api/v4/posts"
        );
        assert_eq!(v(&post)["channel_id"], "ch1");
        assert_eq!(v(&post)["message"], "PR #1");
        assert_eq!(v(&post)["props"]["attachments"][0]["title"], "T");
        let r = reference(&DeliveryId::new());
        let edit = mattermost_request(&Plan::Edit(r.clone()), body, &bot, "dlv_1");
        assert_eq!(edit.verb, Verb::Put);
        assert_eq!(
            edit.api.clone().unwrap().0,
            "https://mm.example.com/api/v4/posts/m1/patch"
        );
        assert!(v(&edit).get("channel_id").is_none());
        let reply = mattermost_request(&Plan::Reply(r), body, &bot, "dlv_1");
        assert_eq!(v(&reply)["root_id"], "m1");
        use super::super::decide::Outcome;
        let o = |status| mattermost_api_outcome(status, Some("2"), "{}");
        assert_eq!(o(201), Outcome::Delivered);
        assert!(matches!(o(401), Outcome::Gone(_)) && matches!(o(403), Outcome::Gone(_)));
        assert!(matches!(o(400), Outcome::Failed(_)));
        assert!(matches!(
            o(429),
            Outcome::Retry {
                throttled: true,
                ..
            }
        ));
        assert!(matches!(
            o(502),
            Outcome::Retry {
                throttled: false,
                ..
            }
        ));
        assert!(message_gone(
            CardKind::Mattermost,
            400,
            r#"{"id":"api.post.create_post.root_id.app_error"}"#
        ));
    }

    #[test]
    fn an_attempt_without_an_answer_may_have_posted_and_mattermost_can_say() {
        let a = |status: Option<u16>, result: &str| crate::store::Attempt {
            at_ms: 1,
            status,
            result: result.into(),
        };
        assert!(maybe_sent(&[a(None, "transport: timed out")]));
        assert!(maybe_sent(&[
            a(Some(500), "HTTP 500"),
            a(None, "transport: broken response body")
        ]));
        assert!(!maybe_sent(&[a(None, "transport: could not connect")]));
        assert!(!maybe_sent(&[a(Some(502), "HTTP 502: bad gateway")]));
        assert!(!maybe_sent(&[]));
        let answer = r#"{"order": ["p2", "p1"], "posts": {
            "p1": {"id": "p1", "channel_id": "c1", "props": {"cardwire_delivery": "dlv_A"}},
            "p2": {"id": "p2", "channel_id": "c1", "props": {}}}}"#;
        assert_eq!(
            mattermost_post_of(answer, "dlv_A"),
            Some(("p1".into(), Some("c1".into())))
        );
        assert_eq!(mattermost_post_of(answer, "dlv_B"), None);
        assert_eq!(mattermost_post_of("nope", "dlv_A"), None);
    }
}
