//! A local stand-in for the Office 365 side of the connector protocol, for development and
//! tests (`connect.emulator: true`; on by default without a config file).
//!
//! - `GET /emulator/connectors/Connect?state&app_id&callback_url` is the picker: the configured
//!   groups and an inbox. A wrong `app_id` or `callback_url` shows "Invalid Request", as the real
//!   service does. Allow redirects to `callback_url` with `state`, `webhook_url`, `group_name`
//!   (not for the inbox), `app_type` and `user_objectId`; Deny with `error=AccessDenied`. Like
//!   Office 365, it answers only an https callback, with two exceptions for local use: a
//!   loopback callback (`http://127.0.0.1:8080/…`, the defaults) and `targets.allow_http`.
//! - `POST /emulator/inbox/{group}` takes cards like a legacy connector (answers `1`), and
//!   `GET /emulator/inbox/{group}` shows what the group received, rendered readably.
//!
//! Its inbox URLs are accepted as targets while it is on, whatever `targets` says.

use std::sync::Arc;

use axum::extract::{Form, FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::Value;

use super::inboxes::{self, Inboxes};
use crate::config::Config;
use crate::html::{esc, markdown, page};

/// What the emulator reaches: the settings (groups, the registration) and the inboxes.
#[derive(Clone)]
pub struct Emulator {
    /// The settings.
    pub config: Arc<Config>,
    /// The inboxes, when the emulator is on.
    pub inboxes: Option<Arc<Inboxes>>,
}

/// A group name as it appears in an inbox URL.
pub fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches('-').to_string()
}

/// The prefix of the emulator's inbox URLs.
pub fn inbox_prefix(app_public_url: &str) -> String {
    format!("{app_public_url}/emulator/inbox/")
}

/// The routes under /emulator.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Emulator: FromRef<S>,
{
    Router::new()
        .route("/emulator/connectors/Connect", get(picker).post(decide))
        .route(
            "/emulator/inbox/{group}",
            get(show_inbox).post(receive_card),
        )
}

/// The query of the picker.
#[derive(Debug, Deserialize)]
struct ConnectQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    callback_url: String,
}

fn invalid_request() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Invalid Request",
        "<h1>Invalid Request</h1><p class=\"muted\">Office 365 emulator: the app_id or callback_url of this \
         request does not match the connector's registration.</p>",
    )
}

/// Whether the request matches the registration (app id and redirect URL).
fn registered(app: &Emulator, q: &ConnectQuery) -> bool {
    let app_id = app.config.connect.app_id_or_dev(true).unwrap_or_default();
    q.app_id == app_id && q.callback_url == super::flow::callback_url(&app.config)
}

async fn picker(State(app): State<Emulator>, Query(q): Query<ConnectQuery>) -> Response {
    if !registered(&app, &q) {
        return invalid_request();
    }
    let groups: String = app
        .config
        .connect
        .emulator_groups
        .iter()
        .map(|g| {
            format!(
                "<label><input type=\"radio\" name=\"target\" value=\"{app_type}:{name}\"> {name} <span class=\"muted\">({kind})</span></label>",
                app_type = esc(&g.app_type),
                name = esc(&g.name),
                kind = if g.app_type == "teams" { "Teams channel" } else { "Office 365 group" },
            )
        })
        .collect();
    let hidden = format!(
        "<input type=\"hidden\" name=\"state\" value=\"{}\"><input type=\"hidden\" name=\"app_id\" value=\"{}\">\
         <input type=\"hidden\" name=\"callback_url\" value=\"{}\">",
        esc(&q.state),
        esc(&q.app_id),
        esc(&q.callback_url)
    );
    let body = format!(
        "<p class=\"banner\">Office 365 <strong>emulator</strong> — a stand-in for Microsoft's picker.</p>\
         <h1>Connect {name} to…</h1><p class=\"muted\">{desc}</p>\
         <form method=\"post\" action=\"/emulator/connectors/Connect\">{hidden}\
         <fieldset><legend>Where should cards go?</legend>{groups}\
         <label><input type=\"radio\" name=\"target\" value=\"mail:\" checked> Your inbox</label></fieldset>\
         <button type=\"submit\" name=\"decision\" value=\"allow\" id=\"allow\">Allow</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\" class=\"secondary\">Deny</button></form>",
        name = esc(&app.config.connect.name),
        desc = esc(&app.config.connect.short_description),
    );
    page(StatusCode::OK, "Office 365 emulator", &body)
}

/// The picker's answer.
#[derive(Debug, Deserialize)]
struct Decision {
    #[serde(default)]
    state: String,
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    callback_url: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    decision: String,
}

async fn decide(State(app): State<Emulator>, Form(d): Form<Decision>) -> Response {
    let q = ConnectQuery {
        state: d.state.clone(),
        app_id: d.app_id.clone(),
        callback_url: d.callback_url.clone(),
    };
    if !registered(&app, &q) {
        return invalid_request();
    }
    let Ok(mut back) = url::Url::parse(&d.callback_url) else {
        return invalid_request();
    };
    if !answers(&back, app.config.targets.allow_http) {
        // The real service sends nothing back to a callback that is not https.
        return page(
            StatusCode::OK,
            "Nothing sent",
            "<h1>Nothing was sent back</h1><p class=\"muted\">Office 365 emulator: the connector's callback URL \
             is http on a host that is not loopback, so, like Office 365, the emulator does not answer it \
             (use an https public_url, or set targets.allow_http for local development).</p>",
        );
    }
    {
        let mut pairs = back.query_pairs_mut();
        pairs.append_pair("state", &d.state);
        if d.decision == "allow" {
            let (app_type, group) = d.target.split_once(':').unwrap_or(("mail", ""));
            let (app_type, group) = match app_type {
                "teams" | "groups" if !group.is_empty() => (app_type, Some(group)),
                _ => ("mail", None),
            };
            let inbox = group.map(slug).unwrap_or_else(|| "inbox".to_string());
            pairs.append_pair(
                "webhook_url",
                &format!("{}{inbox}", inbox_prefix(&app.config.public_url())),
            );
            if let Some(g) = group {
                pairs.append_pair("group_name", g);
            }
            pairs.append_pair("app_type", app_type);
            pairs.append_pair("user_objectId", &crate::html::uuid_like());
        } else {
            pairs.append_pair("error", "AccessDenied");
        }
    }
    Redirect::to(back.as_str()).into_response()
}

/// Whether the emulator sends the answer back to this callback: https always (as Office 365),
/// http only to a loopback host (the gateway on its defaults) or when `targets.allow_http`.
fn answers(callback: &url::Url, allow_http: bool) -> bool {
    let loopback = match callback.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match callback.scheme() {
        "https" => true,
        "http" => loopback || allow_http,
        _ => false,
    }
}

async fn receive_card(
    State(app): State<Emulator>,
    Path(group): Path<String>,
    body: String,
) -> Response {
    let Some(inboxes) = &app.inboxes else {
        return (StatusCode::NOT_FOUND, "the emulator is off").into_response();
    };
    match serde_json::from_str::<Value>(&body) {
        Ok(card) => {
            inboxes.push(&group, card);
            (StatusCode::OK, "1").into_response()
        }
        // Like the legacy connector: a 200 whose text says what failed.
        Err(e) => (StatusCode::OK, format!("Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 400 with ContextId emulator: {e}")).into_response(),
    }
}

async fn show_inbox(State(app): State<Emulator>, Path(group): Path<String>) -> Response {
    let Some(inboxes) = &app.inboxes else {
        return (StatusCode::NOT_FOUND, "the emulator is off").into_response();
    };
    let messages = inboxes.messages(&group);
    let list = inboxes::show(&messages, crate::render::CardKind::Teams, render_card);
    let body = format!(
        "<p class=\"banner\">Office 365 <strong>emulator</strong> inbox.</p><h1>{}</h1><p class=\"muted\">{}, newest first.</p>{list}",
        esc(&group),
        crate::render::plural_count(messages.len(), "card")
    );
    page(StatusCode::OK, &format!("Inbox {group}"), &body)
}

fn text(v: &Value) -> String {
    esc(v.as_str().unwrap_or_default())
}

/// A short Markdown field (a fact's value), rendered without the paragraph around it.
fn md_inline(v: &Value) -> String {
    let html = md(v);
    let inner = html
        .trim_end()
        .strip_prefix("<p>")
        .and_then(|h| h.strip_suffix("</p>"));
    match inner {
        Some(i) if !i.contains("<p>") => i.to_string(),
        _ => html,
    }
}

/// A Markdown field, rendered.
fn md(v: &Value) -> String {
    markdown(v.as_str().unwrap_or_default())
}

/// A card as a person would read it: MessageCard sections, facts and actions, or an Adaptive
/// Card's text blocks, fact sets and actions.
pub fn render_card(card: &Value) -> String {
    let mut out = String::from("<article class=\"card\">");
    if card.get("@type").and_then(Value::as_str) == Some("MessageCard") {
        if let Some(c) = card.get("themeColor").and_then(Value::as_str) {
            out = format!(
                "<article class=\"card\" style=\"border-left-color:#{}\">",
                esc(c)
            );
        }
        // Teams reads every MessageCard text field as Markdown, the title and fact names too.
        out.push_str(&format!(
            "<h3>{}</h3>",
            md_inline(card.get("title").unwrap_or(&card["summary"]))
        ));
        if let Some(t) = card.get("text") {
            out.push_str(&md(t));
        }
        for s in card
            .get("sections")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for k in [
                "activityTitle",
                "activitySubtitle",
                "activityText",
                "title",
                "text",
            ] {
                if let Some(v) = s
                    .get(k)
                    .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                {
                    out.push_str(&format!(
                        "<div class=\"{}\">{}</div>",
                        if k == "activitySubtitle" { "muted" } else { "" },
                        md(v)
                    ));
                }
            }
            facts(&mut out, s.get("facts"), "name", true);
        }
        for a in card
            .get("potentialAction")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let uri = a
                .pointer("/targets/0/uri")
                .and_then(Value::as_str)
                .unwrap_or_default();
            out.push_str(&format!(
                "<a class=\"button\" href=\"{}\" rel=\"noreferrer\">{}</a> ",
                esc(uri),
                text(&a["name"])
            ));
        }
    } else {
        let content = card.pointer("/attachments/0/content").unwrap_or(card);
        for b in content
            .get("body")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match b.get("type").and_then(Value::as_str) {
                Some("TextBlock") => out.push_str(&md(&b["text"])),
                Some("FactSet") => facts(&mut out, b.get("facts"), "title", false),
                _ => {}
            }
        }
        for a in content
            .get("actions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.push_str(&format!(
                "<a class=\"button\" href=\"{}\" rel=\"noreferrer\">{}</a> ",
                text(&a["url"]),
                text(&a["title"])
            ));
        }
    }
    out.push_str("</article>");
    out
}

/// A card of any kind as its platform lays it out, roughly: Teams' two kinds as
/// [`render_card`]; a Slack message's header, context, sections, fields and buttons; a
/// Discord embed's author, title, description, fields and footer; a Google Chat card's header,
/// paragraphs, labelled texts and buttons; a Mattermost attachment. Every text is escaped;
/// links are the card's own.
pub fn render_card_of(kind: crate::render::CardKind, card: &Value) -> String {
    use crate::render::CardKind;
    let bar = |c: Option<String>| match c {
        Some(c) => format!(
            "<article class=\"card {}\" style=\"border-left-color:{}\">",
            kind.as_str(),
            esc(&c)
        ),
        None => format!("<article class=\"card {}\">", kind.as_str()),
    };
    let button = |url: &Value, label: &str| {
        format!(
            "<a class=\"button\" href=\"{}\" rel=\"noreferrer\">{}</a> ",
            text(url),
            esc(label)
        )
    };
    let mut out;
    match kind {
        CardKind::Teams | CardKind::Workflow => return render_card(card),
        CardKind::Slack => {
            let a = &card["attachments"][0];
            out = bar(a["color"].as_str().map(str::to_string));
            let blocks = a["blocks"].as_array().or(card["blocks"].as_array());
            if blocks.is_none() {
                out.push_str(&format!(
                    "<p>{}</p>",
                    slack_html(card["text"].as_str().unwrap_or_default())
                ));
            }
            for b in blocks.into_iter().flatten() {
                match b["type"].as_str() {
                    Some("header") => {
                        out.push_str(&format!("<h3>{}</h3>", text(&b["text"]["text"])))
                    }
                    Some("context") => {
                        let parts: Vec<String> = b["elements"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|e| e["text"].as_str().map(slack_html))
                            .collect();
                        out.push_str(&format!("<p class=\"muted\">{}</p>", parts.join(" · ")));
                    }
                    Some("section") => {
                        if let Some(t) = b["text"]["text"].as_str() {
                            out.push_str(&format!(
                                "<p>{}</p>",
                                slack_html(t).replace('\n', "<br>")
                            ));
                        }
                        if let Some(f) = b["fields"].as_array() {
                            out.push_str("<dl class=\"facts\">");
                            for f in f {
                                let t = f["text"].as_str().unwrap_or_default();
                                let (name, value) = t.split_once('\n').unwrap_or((t, ""));
                                out.push_str(&format!(
                                    "<dt>{}</dt><dd>{}</dd>",
                                    slack_html(name.trim_matches('*')),
                                    slack_html(value)
                                ));
                            }
                            out.push_str("</dl>");
                        }
                    }
                    Some("actions") => {
                        for e in b["elements"].as_array().into_iter().flatten() {
                            out.push_str(&button(
                                &e["url"],
                                e["text"]["text"].as_str().unwrap_or("Open"),
                            ));
                        }
                    }
                    Some("divider") => out.push_str("<hr>"),
                    _ => {}
                }
            }
        }
        CardKind::Discord => {
            let e = &card["embeds"][0];
            out = bar(e["color"].as_u64().map(|c| format!("#{c:06X}")));
            if let Some(c) = card["content"].as_str().filter(|c| !c.is_empty()) {
                out.push_str(&md(&Value::String(c.to_string())));
            }
            if let Some(a) = e["author"]["name"].as_str() {
                out.push_str(&format!("<p class=\"muted\">{}</p>", esc(a)));
            }
            if let Some(t) = e["title"].as_str() {
                match e["url"].as_str() {
                    Some(u) => out.push_str(&format!(
                        "<h3><a href=\"{}\" rel=\"noreferrer\">{}</a></h3>",
                        esc(u),
                        esc(t)
                    )),
                    None => out.push_str(&format!("<h3>{}</h3>", esc(t))),
                }
            }
            if e.get("description").is_some() {
                out.push_str(&md(&e["description"]));
            }
            if let Some(f) = e["fields"].as_array() {
                out.push_str("<dl class=\"facts\">");
                for f in f {
                    out.push_str(&format!(
                        "<dt>{}</dt><dd>{}</dd>",
                        text(&f["name"]),
                        md_inline(&f["value"])
                    ));
                }
                out.push_str("</dl>");
            }
            if let Some(f) = e["footer"]["text"].as_str() {
                out.push_str(&format!("<p class=\"muted\">{}</p>", esc(f)));
            }
        }
        CardKind::GoogleChat => {
            out = bar(None);
            let c = &card["cardsV2"][0]["card"];
            if let Some(t) = c["header"]["title"].as_str() {
                out.push_str(&format!("<h3>{}</h3>", esc(t)));
            } else if let Some(t) = card["text"].as_str() {
                out.push_str(&format!("<p>{}</p>", esc(t)));
            }
            if let Some(t) = c["header"]["subtitle"].as_str() {
                out.push_str(&format!("<p class=\"muted\">{}</p>", esc(t)));
            }
            for s in c["sections"].as_array().into_iter().flatten() {
                if let Some(h) = s["header"].as_str() {
                    out.push_str(&format!("<h4>{}</h4>", chat_html(h)));
                }
                for w in s["widgets"].as_array().into_iter().flatten() {
                    if let Some(t) = w["textParagraph"]["text"].as_str() {
                        out.push_str(&format!("<p>{}</p>", chat_html(t)));
                    }
                    if let Some(d) = w.get("decoratedText") {
                        out.push_str(&format!(
                            "<dl class=\"facts\"><dt>{}</dt><dd>{}</dd></dl>",
                            text(&d["topLabel"]),
                            chat_html(d["text"].as_str().unwrap_or_default())
                        ));
                    }
                    for b in w["buttonList"]["buttons"].as_array().into_iter().flatten() {
                        out.push_str(&button(
                            &b["onClick"]["openLink"]["url"],
                            b["text"].as_str().unwrap_or("Open"),
                        ));
                    }
                }
            }
        }
        CardKind::Mattermost => {
            let a = &card["attachments"][0];
            out = bar(a["color"].as_str().map(str::to_string));
            if let Some(t) = card["text"].as_str().filter(|t| !t.is_empty()) {
                out.push_str(&md(&Value::String(t.to_string())));
            }
            if let Some(n) = a["author_name"].as_str() {
                out.push_str(&format!("<p class=\"muted\">{}</p>", esc(n)));
            }
            if let Some(t) = a["title"].as_str() {
                match a["title_link"].as_str() {
                    Some(u) => out.push_str(&format!(
                        "<h3><a href=\"{}\" rel=\"noreferrer\">{}</a></h3>",
                        esc(u),
                        esc(t)
                    )),
                    None => out.push_str(&format!("<h3>{}</h3>", esc(t))),
                }
            }
            if a.get("text").is_some() {
                out.push_str(&md(&a["text"]));
            }
            if let Some(f) = a["fields"].as_array() {
                out.push_str("<dl class=\"facts\">");
                for f in f {
                    out.push_str(&format!(
                        "<dt>{}</dt><dd>{}</dd>",
                        text(&f["title"]),
                        md_inline(&f["value"])
                    ));
                }
                out.push_str("</dl>");
            }
            if let Some(f) = a["footer"].as_str() {
                out.push_str(&format!("<p class=\"muted\">{}</p>", esc(f)));
            }
        }
    }
    out.push_str("</article>");
    out
}

/// Slack `mrkdwn` as HTML: its `<url|label>` links become links, `*bold*` and `_italic_`
/// emphasis; everything else stays as Slack escaped it (`&amp;`, `&lt;`, `&gt;`, which HTML
/// reads the same).
fn slack_html(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i].replace('"', "&quot;"));
        let after = &rest[i + 1..];
        let Some(j) = after.find('>') else {
            out.push_str(&esc(after));
            return out;
        };
        let inner = &after[..j];
        let (url, label) = inner.split_once('|').unwrap_or((inner, inner));
        if url.starts_with("https://") || url.starts_with("http://") {
            out.push_str(&format!(
                "<a href=\"{}\" rel=\"noreferrer\">{}</a>",
                esc(url),
                esc(label)
            ));
        } else {
            out.push_str(&esc(&format!("<{inner}>")));
        }
        rest = &after[j + 1..];
    }
    out.push_str(&rest.replace('"', "&quot;"));
    slack_emphasis(&out)
}

/// `*bold*` and `_italic_` as Slack shows them (the markers next to a word's edge, on one
/// line), in text already made HTML.
fn slack_emphasis(html: &str) -> String {
    static BOLD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(^|[\s(])\*([^*\s](?:[^*\n]*[^*\s])?)\*").expect("a valid regex")
    });
    static ITALIC: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(^|[\s(])_([^_\s](?:[^_\n]*[^_\s])?)_").expect("a valid regex")
    });
    let bold = BOLD.replace_all(html, "$1<strong>$2</strong>");
    ITALIC.replace_all(&bold, "$1<em>$2</em>").into_owned()
}

/// Google Chat's card HTML, kept to what the preview shows: everything escaped, then its
/// `<b>`, `<i>`, `<br>` and `<a href="…">` put back.
fn chat_html(s: &str) -> String {
    let mut h = esc(s);
    for (from, to) in [
        ("&lt;b&gt;", "<b>"),
        ("&lt;/b&gt;", "</b>"),
        ("&lt;i&gt;", "<i>"),
        ("&lt;/i&gt;", "</i>"),
        ("&lt;br&gt;", "<br>"),
        ("&lt;/a&gt;", "</a>"),
        ("&lt;font face=&quot;monospace&quot;&gt;", "<code>"),
        ("&lt;/font&gt;", "</code>"),
    ] {
        h = h.replace(from, to);
    }
    while let Some(i) = h.find("&lt;a href=&quot;") {
        let start = i + "&lt;a href=&quot;".len();
        let Some(end) = h[start..].find("&quot;&gt;") else {
            break;
        };
        let url = h[start..start + end].to_string();
        let safe = url.starts_with("https://") || url.starts_with("http://");
        let tag = if safe {
            format!("<a href=\"{url}\" rel=\"noreferrer\">")
        } else {
            String::new()
        };
        h.replace_range(i..start + end + "&quot;&gt;".len(), &tag);
    }
    h
}

/// A fact set; a MessageCard's fact names are Markdown (`names_md`), an Adaptive Card's titles
/// plain text.
fn facts(out: &mut String, facts: Option<&Value>, key: &str, names_md: bool) {
    let Some(facts) = facts.and_then(Value::as_array) else {
        return;
    };
    out.push_str("<dl class=\"facts\">");
    for f in facts {
        let name = if names_md {
            md_inline(&f[key])
        } else {
            text(&f[key])
        };
        out.push_str(&format!(
            "<dt>{name}</dt><dd>{}</dd>",
            md_inline(&f["value"])
        ));
    }
    out.push_str("</dl>");
}

#[cfg(test)]
mod tests {
    #[test]
    fn slack_emphasis_is_shown_as_slack_shows_it() {
        assert_eq!(
            super::slack_html("*<https://x/a_b|#2 Fix it>* by _octo cat_"),
            "<strong><a href=\"https://x/a_b\" rel=\"noreferrer\">#2 Fix it</a></strong> by <em>octo cat</em>"
        );
        // Not emphasis: a lone marker, or one inside a word.
        assert_eq!(
            super::slack_html("2 * 3 and snake_case_name"),
            "2 * 3 and snake_case_name"
        );
    }

    use super::*;
    use serde_json::json;

    /// Regression: a title with a Markdown escape (`0\\.0.1`, `a\\_b`) showed its backslashes,
    /// while the same text in a fact did not. Teams renders both as Markdown.
    #[test]
    fn every_messagecard_text_field_shows_as_teams_renders_it() {
        let mc = json!({"@type": "MessageCard", "summary": "s", "title": "Release 0\\.0.1 of a\\_b **now**",
            "sections": [{"activityTitle": "x\\_y", "facts": [{"name": "Tag\\_name", "value": "0\\.0.1"}]}]});
        let html = render_card(&mc);
        assert!(
            html.contains("<h3>Release 0.0.1 of a_b <strong>now</strong></h3>")
                && html.contains("<dt>Tag_name</dt><dd>0.0.1</dd>")
                && html.contains("x_y")
                && !html.contains('\\'),
            "{html}"
        );
    }

    #[test]
    fn only_https_or_loopback_callbacks_are_answered() {
        let yes = |u: &str, allow| answers(&url::Url::parse(u).unwrap(), allow);
        assert!(yes("https://gw.example.com/connect/callback", false));
        assert!(yes("http://127.0.0.1:8080/connect/callback", false));
        assert!(yes("http://127.1.2.3:8080/connect/callback", false));
        assert!(yes("http://[::1]:8080/connect/callback", false));
        assert!(yes("http://localhost:8080/connect/callback", false));
        assert!(!yes("http://gw.example.com/connect/callback", false));
        assert!(!yes("http://10.0.0.5/connect/callback", false));
        assert!(yes("http://gw.example.com/connect/callback", true));
        assert!(!yes("ftp://127.0.0.1/connect/callback", true));
    }

    #[test]
    fn cards_render_readably_and_escaped() {
        let mc = json!({"@type": "MessageCard", "summary": "s", "title": "<b>T</b>", "themeColor": "D73A49",
            "sections": [{"activityTitle": "A", "facts": [{"name": "Repo", "value": "x/y"}]}],
            "potentialAction": [{"@type": "OpenUri", "name": "Open", "targets": [{"os": "default", "uri": "https://x"}]}]});
        let html = render_card(&mc);
        assert!(
            html.contains("<h3>&lt;b&gt;T&lt;/b&gt;</h3>")
                && html.contains("<dt>Repo</dt><dd>x/y</dd>")
                && html.contains("href=\"https://x\""),
            "{html}"
        );
        let ac = json!({"type": "message", "attachments": [{"content": {"type": "AdaptiveCard", "body": [{"type": "TextBlock", "text": "hello"}, {"type": "FactSet", "facts": [{"title": "a", "value": "b"}]}]}}]});
        let html = render_card(&ac);
        assert!(
            html.contains("<p>hello</p>") && html.contains("<dt>a</dt>"),
            "{html}"
        );
        assert_eq!(slug("Engineering Team!"), "engineering-team");
    }
}
