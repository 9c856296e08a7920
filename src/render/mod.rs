//! Rendering: an event's context through a Handlebars template into the exact JSON body a
//! webhook URL receives.
//!
//! In: template files — `templates/<name>.card.hbs`, a portable card for every kind (see
//! [`portable`]), and `templates/<name>.<kind>.hbs` for one kind (`teams`: a MessageCard,
//! `workflow`: an Adaptive Card in the Teams message envelope, `slack`, `discord`,
//! `google_chat`, `mattermost`) — and an event's context. A name renders for a kind through its
//! own file, else its portable one, else (kinds other than Teams') its MessageCard read as a
//! portable card. Out: a compact JSON string. Guarantees: `{{x}}` is JSON-escaped (never
//! HTML-escaped), so upstream text cannot break the JSON; the result parses and has the shape
//! of its kind, passes validation (see [`validate`]) and fits the kind's limits (see [`fit`]
//! and [`portable`]), or rendering fails with the template's name and what is wrong.
//!
//! Its rooms: [`kind`] (the kinds of card), [`portable`] (the portable card and each chat's
//! writer), [`validate`] and [`fit`] (each kind's schema and limits), [`helpers`] (the
//! templates' helpers and JSON escape), [`people`] (upstream identities to chat users, for
//! mentions), [`reads`] (what a template reads of its context), [`fallback`] (the card built
//! without a template when one fails).

pub mod fallback;
pub mod fit;
pub mod helpers;
pub mod kind;
pub mod people;
pub mod portable;
pub mod reads;
pub mod validate;

pub use helpers::{plural_count, truncate as truncate_text};

use std::collections::HashSet;
use std::path::PathBuf;

use handlebars::Handlebars;
use serde_json::Value;

use crate::yaml::{Pos, Problem, Problems};

pub use kind::{CardKind, MAX_CARD_BYTES};
pub use portable::model::Update;

/// A rendered card: the body to send and, for a portable card with a `key` (or a `thread`),
/// its subject and what a later card of the same subject does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The exact JSON body.
    pub body: String,
    /// The card's key and update, if it has one.
    pub subject: Option<(String, Update)>,
}

impl Rendered {
    fn plain(body: String) -> Self {
        Self {
            body,
            subject: None,
        }
    }
}

/// Why a card could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// No template of that name and kind.
    #[error("no template {0:?}")]
    NoTemplate(String),
    /// Handlebars failed (a missing field in strict mode, a helper error).
    #[error("template {template}{}: {message}", pos.map(|(l, c)| format!(" at {l}:{c}")).unwrap_or_default())]
    Template {
        /// The template file.
        template: String,
        /// Line and column in the template, when known.
        pos: Option<(usize, usize)>,
        /// What went wrong.
        message: String,
    },
    /// The output is not JSON.
    #[error("template {template} produced invalid JSON: {source}")]
    Json {
        /// The template file.
        template: String,
        /// The parse error (line and column in the output).
        #[source]
        source: serde_json::Error,
    },
    /// The JSON is not a card of its kind.
    #[error("template {template} produced an invalid {kind} card: {message}")]
    Invalid {
        /// The template file.
        template: String,
        /// The card kind.
        kind: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl RenderError {
    /// The template file, the line and column in it when known, and what went wrong.
    pub fn parts(&self) -> (String, Option<(usize, usize)>, String) {
        match self {
            Self::NoTemplate(t) => (format!("{t}.hbs"), None, "no such template".into()),
            Self::Template {
                template,
                pos,
                message,
            } => (template.clone(), *pos, message.clone()),
            Self::Json { template, source } => {
                (template.clone(), None, format!("invalid JSON: {source}"))
            }
            Self::Invalid {
                template,
                kind,
                message,
            } => (
                template.clone(),
                None,
                format!("invalid {kind} card: {message}"),
            ),
        }
    }
}

/// The compiled templates.
pub struct Renderer {
    hb: Handlebars<'static>,
    /// For `limit.per` and `dedup.key` expressions: not strict, Handlebars' default escaping
    /// (built once, not per call).
    exprs: Handlebars<'static>,
    names: HashSet<(String, CardKind)>,
    sources: std::collections::HashMap<(String, CardKind), String>,
    /// Portable templates (`<name>.card.hbs`), by name, with their text.
    portable: std::collections::HashMap<String, String>,
    people: std::sync::Arc<people::People>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("templates", &self.names.len())
            .finish()
    }
}

impl Renderer {
    /// Compiles template files given as (path relative to the templates folder, text). Every
    /// problem is reported with `origin/path:line:col`.
    pub fn load(origin: &str, files: &[(PathBuf, String)]) -> Result<Self, Problems> {
        Self::load_with_people(origin, files, people::People::default())
    }

    /// Like [`Renderer::load`], with a people map for `{{mention}}`.
    pub fn load_with_people(
        origin: &str,
        files: &[(PathBuf, String)],
        people: people::People,
    ) -> Result<Self, Problems> {
        let people = std::sync::Arc::new(people);
        let mut hb = engine(&people);
        let mut names = HashSet::new();
        let mut sources = std::collections::HashMap::new();
        let mut portable = std::collections::HashMap::new();
        let mut problems = Vec::new();
        for (path, text) in files {
            let shown = PathBuf::from(origin).join(path);
            let rel = path.to_string_lossy().replace('\\', "/");
            if let Some(name) = rel.strip_suffix(".card.hbs") {
                if let Err(e) = hb.register_template_string(&card_key(name), text) {
                    let (line, col) = e.pos().unwrap_or((1, 1));
                    problems.push(Problem::new(
                        &shown,
                        Pos { line, col },
                        format!("template syntax: {}", e.reason()),
                    ));
                    continue;
                }
                portable.insert(name.to_string(), text.clone());
                continue;
            }
            let Some((name, kind)) = split_name(&rel) else {
                problems.push(Problem::new(
                    &shown,
                    Pos { line: 1, col: 1 },
                    "a template file is named <name>.card.hbs (a portable card, for every kind) or <name>.<kind>.hbs for one kind: teams (MessageCard), workflow (Adaptive Card), slack, discord, google_chat, mattermost",
                ));
                continue;
            };
            if let Err(e) = hb.register_template_string(&key(&name, kind), text) {
                let (line, col) = e.pos().unwrap_or((1, 1));
                let pos = Pos { line, col };
                problems.push(Problem::new(
                    &shown,
                    pos,
                    format!("template syntax: {}", e.reason()),
                ));
                continue;
            }
            sources.insert((name.clone(), kind), text.clone());
            names.insert((name, kind));
        }
        if problems.is_empty() {
            let mut exprs = Handlebars::new();
            exprs.set_strict_mode(false);
            helpers::register(&mut exprs);
            Ok(Self {
                hb,
                exprs,
                names,
                sources,
                portable,
                people,
            })
        } else {
            Err(Problems(problems))
        }
    }

    /// The text of the template that renders `name` for `kind`, as loaded: its own
    /// (`<name>.<kind>.hbs`), else the portable one (`<name>.card.hbs`).
    pub fn source(&self, name: &str, kind: CardKind) -> Option<&str> {
        match self.route(name, kind)? {
            Route::Own => self.sources.get(&(name.to_string(), kind)),
            Route::Portable => self.portable.get(name),
            Route::FromTeams => self.sources.get(&(name.to_string(), CardKind::Teams)),
        }
        .map(String::as_str)
    }

    /// The file, relative to the templates folder, that renders `name` for `kind`:
    /// `<name>.<kind>.hbs`, `<name>.card.hbs`, or `<name>.teams.hbs` read as a portable card.
    pub fn file_for(&self, name: &str, kind: CardKind) -> Option<String> {
        Some(match self.route(name, kind)? {
            Route::Own => format!("{}.hbs", key(name, kind)),
            Route::Portable => format!("{}.hbs", card_key(name)),
            Route::FromTeams => format!("{}.hbs", key(name, CardKind::Teams)),
        })
    }

    /// How `name` renders for `kind`, in words: `its own template`, `the portable template`,
    /// `the MessageCard template` (read as a portable card); `None` when it does not.
    pub fn how(&self, name: &str, kind: CardKind) -> Option<&'static str> {
        Some(match self.route(name, kind)? {
            Route::Own => "its own template",
            Route::Portable => "the portable template",
            Route::FromTeams => "the MessageCard template",
        })
    }

    /// Whether `name` renders for `kind`: by a template of that kind, a portable one, or (for
    /// the kinds other than Teams') its MessageCard template read as a portable card.
    pub fn has(&self, name: &str, kind: CardKind) -> bool {
        self.route(name, kind).is_some()
    }

    /// How `name` renders for `kind`, if it does.
    fn route(&self, name: &str, kind: CardKind) -> Option<Route> {
        if self.names.contains(&(name.to_string(), kind)) {
            Some(Route::Own)
        } else if self.portable.contains_key(name) {
            Some(Route::Portable)
        } else if !kind.is_teams() && self.names.contains(&(name.to_string(), CardKind::Teams)) {
            Some(Route::FromTeams)
        } else {
            None
        }
    }

    /// Whether `name` renders for `kind` through its portable template (no
    /// `<name>.<kind>.hbs` overrides it).
    pub fn is_portable(&self, name: &str, kind: CardKind) -> bool {
        !self.names.contains(&(name.to_string(), kind)) && self.portable.contains_key(name)
    }

    /// The templates, as (name, kind).
    pub fn names(&self) -> impl Iterator<Item = &(String, CardKind)> {
        self.names.iter()
    }

    /// Adds what a template reads of an event's context to `need` (see [`reads`]); a template
    /// that does not exist reads nothing.
    pub fn reads(&self, name: &str, kind: CardKind, need: &mut crate::needs::Need) {
        let key = match self.route(name, kind) {
            Some(Route::Portable) => card_key(name),
            Some(Route::FromTeams) => key(name, CardKind::Teams),
            _ => key(name, kind),
        };
        if let Some(t) = self.hb.get_template(&key) {
            reads::template(&self.hb, t, need);
        }
    }

    /// Adds what a template expression (`limit.per`, `dedup.key`) reads to `need`.
    pub fn expr_reads(&self, expr: &str, need: &mut crate::needs::Need) {
        match handlebars::Template::compile(expr) {
            Ok(t) => reads::template(&self.exprs, &t, need),
            // It fails when rendered too; keep everything meanwhile.
            Err(_) => need.add(&[], true),
        }
    }

    /// Compiles template expressions once (the rules' `limit.per` and `dedup.key`), so that
    /// [`Renderer::render_expr`] does not parse them for every event. One that does not compile
    /// is left to fail, with its message, when it is rendered.
    pub fn prepare_exprs<'a>(&mut self, exprs: impl IntoIterator<Item = &'a str>) {
        for expr in exprs {
            if !self.exprs.has_template(expr) {
                let _ = self.exprs.register_template_string(expr, expr);
            }
        }
    }

    /// Evaluates a template expression (`{{payload.repository.full_name}}`) to text, as
    /// `limit.per` and `dedup.key` use it. Not JSON-escaped: the text is a key, not card JSON.
    pub fn render_expr(
        &self,
        expr: &str,
        ctx: &handlebars::Context,
    ) -> Result<String, RenderError> {
        let rendered = if self.exprs.has_template(expr) {
            self.exprs.render_with_context(expr, ctx)
        } else {
            self.exprs.render_template_with_context(expr, ctx)
        };
        rendered.map_err(|e| RenderError::Template {
            template: expr.to_string(),
            pos: e.line_no.zip(e.column_no),
            message: e.reason().to_string(),
        })
    }

    /// Renders a card and returns its JSON body, compact.
    pub fn render(&self, name: &str, kind: CardKind, ctx: &Value) -> Result<String, RenderError> {
        // Wrapping copies the value: the hot path renders from an event's own context instead.
        let ctx = handlebars::Context::wraps(ctx).map_err(|e| RenderError::Template {
            template: format!("{}.hbs", key(name, kind)),
            pos: None,
            message: e.reason().to_string(),
        })?;
        self.render_with(name, kind, &ctx)
    }

    /// [`Renderer::render`] from a context wrapped once (an event's: see
    /// [`crate::event::Event::template_context`]), so that several cards share it.
    pub fn render_with(
        &self,
        name: &str,
        kind: CardKind,
        ctx: &handlebars::Context,
    ) -> Result<String, RenderError> {
        self.render_card_with(name, kind, ctx).map(|r| r.body)
    }

    /// [`Renderer::render_with`], with the card's subject ([`Rendered`]).
    pub fn render_card_with(
        &self,
        name: &str,
        kind: CardKind,
        ctx: &handlebars::Context,
    ) -> Result<Rendered, RenderError> {
        let route = self.route(name, kind);
        let key = match route {
            Some(Route::Own) => key(name, kind),
            Some(Route::Portable) => card_key(name),
            Some(Route::FromTeams) => {
                let teams = self.render_with(name, CardKind::Teams, ctx)?;
                return self
                    .teams_as(kind, &format!("{}.hbs", key(name, CardKind::Teams)), &teams)
                    .map(Rendered::plain);
            }
            None => return Err(RenderError::NoTemplate(key(name, kind))),
        };
        let file = format!("{key}.hbs");
        let text = self
            .hb
            .render_with_context(&key, ctx)
            .map_err(|e| RenderError::Template {
                template: file.clone(),
                pos: e.line_no.zip(e.column_no),
                message: e.reason().to_string(),
            })?;
        if self.is_portable(name, kind) {
            return self.finish_portable(kind, &file, &text);
        }
        self.finish(kind, &file, &text).map(Rendered::plain)
    }

    /// Renders template *text* (an edited template, in the playground) as a card of `kind`,
    /// through the same checks as a loaded template; `name` names it in errors. The text is
    /// a portable card's when `template` renders `kind` through its portable template.
    pub fn render_source(
        &self,
        template: &str,
        name: &str,
        source: &str,
        kind: CardKind,
        ctx: &Value,
    ) -> Result<Rendered, RenderError> {
        let mut hb = engine(&self.people);
        hb.register_template_string(name, source)
            .map_err(|e| RenderError::Template {
                template: name.to_string(),
                pos: e.pos(),
                message: format!("template syntax: {}", e.reason()),
            })?;
        let text = hb.render(name, ctx).map_err(|e| RenderError::Template {
            template: name.to_string(),
            pos: e.line_no.zip(e.column_no),
            message: e.reason().to_string(),
        })?;
        match self.route(template, kind) {
            Some(Route::Portable) => self.finish_portable(kind, name, &text),
            Some(Route::FromTeams) => {
                let teams = self.finish(CardKind::Teams, name, &text)?;
                self.teams_as(kind, name, &teams).map(Rendered::plain)
            }
            _ => self.finish(kind, name, &text).map(Rendered::plain),
        }
    }

    /// A MessageCard body read as a portable card and converted for `kind`.
    fn teams_as(&self, kind: CardKind, file: &str, teams: &str) -> Result<String, RenderError> {
        let v: Value = serde_json::from_str(teams).map_err(|source| RenderError::Json {
            template: file.to_string(),
            source,
        })?;
        let card = portable::from_message_card(&v);
        self.finish_value(kind, file.to_string(), portable::convert(&card, kind), true)
    }

    /// Parses a portable card, checks it, converts it to `kind`, then as [`Renderer::finish`].
    fn finish_portable(
        &self,
        kind: CardKind,
        file: &str,
        text: &str,
    ) -> Result<Rendered, RenderError> {
        let card = portable::parse_str(text).map_err(|e| match e {
            portable::ParseError::Json(source) => RenderError::Json {
                template: file.to_string(),
                source,
            },
            portable::ParseError::Card(message) => RenderError::Invalid {
                template: file.to_string(),
                kind: "portable",
                message,
            },
        })?;
        let mut value = portable::convert(&card, kind);
        add_mentions(&self.people, &card.mentions, kind, &mut value);
        Ok(Rendered {
            body: self.finish_value(kind, file.to_string(), value, true)?,
            subject: card.subject().map(|(k, u)| (k.to_string(), u)),
        })
    }

    /// Parses, cleans, fits and validates rendered text into the body to send.
    fn finish(&self, kind: CardKind, file: &str, text: &str) -> Result<String, RenderError> {
        let file = file.to_string();
        let value: Value = serde_json::from_str(text).map_err(|source| RenderError::Json {
            template: file.clone(),
            source,
        })?;
        self.finish_value(kind, file, value, false)
    }

    /// Cleans, fits and validates a card into the body to send.
    /// `converted`: the card was built from a portable card, whose converter escaped its
    /// texts (a `<` outside code is `\<`), so that it carries no `<at>` of a template's.
    fn finish_value(
        &self,
        kind: CardKind,
        file: String,
        mut value: Value,
        converted: bool,
    ) -> Result<String, RenderError> {
        let value = &mut value;
        match kind {
            // A converted portable card too: a code span (`` `<b>` ``) is Markdown-literal but
            // a MessageCard may still read HTML in it (the hostile-text test found one).
            CardKind::Teams => {
                if !converted {
                    people::strip_mentions(value);
                }
                neutralize_html(value);
            }
            CardKind::Workflow => self.people.add_mention_entities(value),
            // A portable card's converter escaped and fitted it already; a template of these
            // kinds writes the platform's JSON itself and answers for it.
            _ => {}
        }
        // Serialized once where the card fits as it is (most do); shrunk and serialized again
        // where it does not.
        let json = |v: &Value| {
            serde_json::to_string(v).map_err(|source| RenderError::Json {
                template: file.clone(),
                source,
            })
        };
        let mut body;
        if kind.is_teams() {
            let mut shrunk = fit::caps(kind, value);
            body = json(value)?;
            if body.len() > MAX_CARD_BYTES {
                fit::shrink(kind, value, &mut shrunk);
                body = json(value)?;
            }
            if !shrunk.is_empty() {
                tracing::info!(template = %file, changes = ?shrunk, "card shrunk to fit Teams' limits");
            }
        } else {
            body = json(value)?;
        }
        validate::validate(kind, value).map_err(|problems| RenderError::Invalid {
            template: file.clone(),
            kind: kind.as_str(),
            message: problems.join("; "),
        })?;
        let max = kind.max_bytes();
        if body.len() > max {
            return Err(RenderError::Invalid {
                template: file,
                kind: kind.as_str(),
                message: format!(
                    "{} bytes, over the {max}-byte limit even after shrinking",
                    body.len()
                ),
            });
        }
        Ok(body)
    }
}

/// Turns any HTML tag in a MessageCard's text into literal text (`<b>` → `&lt;b>`): connector
/// cards render some HTML, and upstream text must never become markup. A `<` already escaped
/// for Markdown (`\<`) is left as it is.
pub fn neutralize_html(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('<') => {
            let mut out = String::with_capacity(s.len() + 8);
            let mut prev = ' ';
            let mut chars = s.chars().peekable();
            while let Some(c) = chars.next() {
                let tag_like = c == '<'
                    && prev != '\\'
                    && chars
                        .peek()
                        .is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?'));
                if tag_like {
                    out.push_str("&lt;");
                } else {
                    out.push(c);
                }
                prev = c;
            }
            *s = out;
        }
        Value::Array(a) => a.iter_mut().for_each(neutralize_html),
        Value::Object(o) => o.values_mut().for_each(neutralize_html),
        _ => {}
    }
}

/// A Handlebars engine configured as every template needs: strict, JSON-escaped, the helpers.
fn engine(people: &std::sync::Arc<people::People>) -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(helpers::json_escape);
    helpers::register(&mut hb);
    hb.register_helper("mention", Box::new(helpers::Mention(people.clone())));
    hb
}

fn key(name: &str, kind: CardKind) -> String {
    format!("{name}.{}", kind.as_str())
}

/// Adds a portable card's `mentions` (upstream identities) to its converted body, as a last
/// "cc" line: on Workflows a known person with a `upn` becomes a real mention (`<at>Name</at>`,
/// its entity added by [`People::add_mention_entities`]); on Slack one with a `slack` id
/// becomes `<@U…>` in the message text; on Discord one with a `discord` id becomes `<@id>` in
/// the message content, and `allowed_mentions` lets exactly those users be pinged. A person
/// without that chat's id, and every person on the other chats, is their name as inert text;
/// a login not in the map is left out (the card names whoever it is about already).
fn add_mentions(people: &people::People, logins: &[String], kind: CardKind, body: &mut Value) {
    use portable::inert;
    let mut pinged: Vec<String> = Vec::new();
    let shown: Vec<String> = logins
        .iter()
        .filter_map(|l| people.find(l))
        .map(|p| {
            let real = match kind {
                CardKind::Workflow => p.upn.as_ref().map(|_| format!("<at>{}</at>", p.name)),
                CardKind::Slack => p.slack.as_ref().map(|id| format!("<@{id}>")),
                CardKind::Discord => p.discord.as_ref().map(|id| {
                    pinged.push(id.clone());
                    format!("<@{id}>")
                }),
                _ => None,
            };
            real.unwrap_or_else(|| inert(&p.name, kind))
        })
        .collect();
    if shown.is_empty() {
        return;
    }
    let cc = format!("cc {}", shown.join(", "));
    let append = |v: &mut Value, sep: &str, limit: usize| {
        let now = v.as_str().unwrap_or_default();
        let line = if now.is_empty() {
            cc.clone()
        } else {
            format!("{now}{sep}{cc}")
        };
        *v = Value::String(line.chars().take(limit).collect());
    };
    match kind {
        CardKind::Workflow => {
            if let Some(b) = body
                .pointer_mut("/attachments/0/content/body")
                .and_then(Value::as_array_mut)
            {
                b.push(serde_json::json!({"type": "TextBlock", "wrap": true, "text": cc}));
            }
        }
        CardKind::Teams => {
            if let Some(s) = body.get_mut("sections").and_then(Value::as_array_mut) {
                s.push(serde_json::json!({"text": cc, "markdown": true}));
            }
        }
        // Slack notifies for a mention in the message's own text (not in an attachment).
        CardKind::Slack => append(&mut body["text"], "\n", 3000),
        // Discord pings only from `content`, and only whom `allowed_mentions` names.
        CardKind::Discord => {
            append(&mut body["content"], "\n", 2000);
            pinged.sort();
            pinged.dedup();
            pinged.truncate(100);
            body["allowed_mentions"] = serde_json::json!({"parse": [], "users": pinged});
        }
        CardKind::GoogleChat => append(&mut body["text"], "\n", 4000),
        CardKind::Mattermost => append(&mut body["text"], "\n", 4000),
    }
}

/// How a template name renders for a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Its own `<name>.<kind>.hbs`.
    Own,
    /// Its portable `<name>.card.hbs`.
    Portable,
    /// Its `<name>.teams.hbs`, read as a portable card (kinds other than Teams').
    FromTeams,
}

fn card_key(name: &str) -> String {
    format!("{name}.card")
}

/// `github/push.teams.hbs` → (`github/push`, Teams): a template file's name and kind.
pub fn split_name(rel: &str) -> Option<(String, CardKind)> {
    let stem = rel.strip_suffix(".hbs")?;
    let (name, kind) = stem.rsplit_once('.')?;
    Some((name.to_string(), CardKind::parse(kind)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn renderer(files: &[(&str, &str)]) -> Result<Renderer, Problems> {
        let files: Vec<_> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        Renderer::load("templates", &files)
    }

    const CARD: &str = r#"{"@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": "{{payload.title}}", "text": "{{md payload.title}}"}"#;

    #[test]
    fn prepared_expressions_render_like_ad_hoc_ones_without_a_parse_per_call() {
        let mut r = renderer(&[("t.teams.hbs", CARD)]).unwrap();
        let ctx = handlebars::Context::wraps(json!({"payload": {"repo": "o/r", "n": 3}})).unwrap();
        let exprs = [
            "{{payload.repo}}",
            "{{payload.repo}}-{{payload.n}}",
            "{{#if}}",
        ];
        let before: Vec<_> = exprs
            .iter()
            .map(|e| r.render_expr(e, &ctx).map_err(|e| e.to_string()))
            .collect();
        r.prepare_exprs(exprs);
        assert!(r.exprs.has_template(exprs[0]) && r.exprs.has_template(exprs[1]));
        // One that does not compile is not kept, and still fails with its message.
        assert!(!r.exprs.has_template(exprs[2]));
        let after: Vec<_> = exprs
            .iter()
            .map(|e| r.render_expr(e, &ctx).map_err(|e| e.to_string()))
            .collect();
        assert_eq!(after, before);
        assert_eq!(after[1].as_deref(), Ok("o/r-3"));
        assert!(after[2].is_err());
    }

    #[test]
    fn upstream_text_cannot_break_the_json() {
        let r = renderer(&[("t.teams.hbs", CARD)]).unwrap();
        let title = "a \"quote\" \\ back\nslash <b>bold</b> {{x}} \u{0}";
        let body = r
            .render("t", CardKind::Teams, &json!({"payload": {"title": title}}))
            .unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["summary"], title.replace('<', "&lt;"));
        assert!(!v["text"].as_str().unwrap().contains("<b>"));
    }

    #[test]
    fn missing_field_is_an_error_naming_the_template() {
        let r = renderer(&[("t.teams.hbs", CARD)]).unwrap();
        let err = r
            .render("t", CardKind::Teams, &json!({"payload": {}}))
            .unwrap_err();
        assert!(err.to_string().contains("t.teams.hbs"), "{err}");
    }

    #[test]
    fn syntax_errors_have_file_line_and_column() {
        let err = renderer(&[("a/t.workflow.hbs", "{\n  \"x\": \"{{#if y}}\"\n}")]).unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with("templates/a/t.workflow.hbs:"), "{s}");
        let err = renderer(&[("t.json", "{}")]).unwrap_err();
        assert!(err.to_string().contains("<name>.<kind>.hbs"));
    }

    #[test]
    fn html_never_reaches_a_message_card() {
        let t = r#"{"@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": "s", "text": "{{payload.t}} and {{md payload.t}}"}"#;
        let r = renderer(&[("t.teams.hbs", t)]).unwrap();
        let body = r
            .render(
                "t",
                CardKind::Teams,
                &json!({"payload": {"t": "<b>x</b><script>alert(1)</script><img src=x>"}}),
            )
            .unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        let text = v["text"].as_str().unwrap();
        // Every `<` left is escaped, for HTML (`&lt;`) or for Markdown (`\\<`).
        assert!(
            text.match_indices('<')
                .all(|(i, _)| text[..i].ends_with('\\')),
            "{text}"
        );
        assert!(text.contains("&lt;b>x&lt;/b>"), "{text}");
    }

    const PORTABLE: &str = r#"{"title": "{{payload.repo}}: release {{payload.tag}}", "text": "{{md payload.body}}", "severity": "success",
        "facts": [{"name": "Tag", "value": "{{payload.tag}}"}], "mentions": ["{{payload.by}}"], "link": "https://example.test/r"}"#;

    /// One `<name>.card.hbs` renders every kind through its converter, checked like any card;
    /// a `<name>.<kind>.hbs` beside it overrides it for that kind only.
    #[test]
    fn a_portable_template_renders_every_kind_and_an_own_template_overrides_it() {
        let ctx = json!({"payload": {"repo": "o/r", "tag": "v1", "body": "**not bold** @here", "by": "octocat"}});
        let r = renderer(&[("x/rel.card.hbs", PORTABLE)]).unwrap();
        assert!(r.has("x/rel", CardKind::Teams) && r.is_portable("x/rel", CardKind::Workflow));
        let teams: Value =
            serde_json::from_str(&r.render("x/rel", CardKind::Teams, &ctx).unwrap()).unwrap();
        assert_eq!(teams["@type"], "MessageCard");
        assert_eq!(teams["title"], "o/r: release v1");
        assert_eq!(teams["sections"][0]["text"], "\\*\\*not bold\\*\\* @here");
        // octocat is in no people map: no "cc" line.
        assert!(teams["sections"].get(1).is_none(), "{teams}");
        let wf: Value =
            serde_json::from_str(&r.render("x/rel", CardKind::Workflow, &ctx).unwrap()).unwrap();
        let body = &wf["attachments"][0]["content"]["body"];
        assert_eq!(body[0]["text"], "o/r: release v1");
        assert_eq!(body[0]["color"], "Good");
        assert_eq!(r.source("x/rel", CardKind::Teams), Some(PORTABLE));
        assert_eq!(
            r.file_for("x/rel", CardKind::Slack).as_deref(),
            Some("x/rel.card.hbs")
        );
        let own = renderer(&[("y.teams.hbs", CARD)]).unwrap();
        assert_eq!(
            own.file_for("y", CardKind::Teams).as_deref(),
            Some("y.teams.hbs")
        );
        assert_eq!(
            own.file_for("y", CardKind::Discord).as_deref(),
            Some("y.teams.hbs"),
            "the other chats read the MessageCard template"
        );
        assert_eq!(own.file_for("y", CardKind::Workflow), None);
        let mut need = crate::needs::Need::new();
        r.reads("x/rel", CardKind::Teams, &mut need);
        assert!(format!("{need:?}").contains("tag"), "{need:?}");

        let r = renderer(&[("x/rel.card.hbs", PORTABLE), ("x/rel.teams.hbs", CARD)]).unwrap();
        assert!(!r.is_portable("x/rel", CardKind::Teams));
        let teams: Value = serde_json::from_str(
            &r.render(
                "x/rel",
                CardKind::Teams,
                &json!({"payload": {"title": "own"}}),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(teams["summary"], "own");
        assert!(r.is_portable("x/rel", CardKind::Workflow));
    }

    #[test]
    fn a_portable_card_that_is_wrong_names_its_file_and_field() {
        let r = renderer(&[(
            "x/bad.card.hbs",
            r#"{"title": "t", "facts": [{"name": "n", "valeu": "{{payload.v}}"}]}"#,
        )])
        .unwrap();
        let e = r
            .render("x/bad", CardKind::Workflow, &json!({"payload": {"v": 1}}))
            .unwrap_err();
        let (template, _, reason) = e.parts();
        assert_eq!(template, "x/bad.card.hbs");
        assert!(
            reason.contains("facts[0]") && reason.contains("valeu"),
            "{reason}"
        );
        let e = renderer(&[("x/y.card.hbs", "{{#if}}")]).err().unwrap();
        assert!(e.0[0].to_string().contains("x/y.card.hbs:1:"), "{}", e.0[0]);
    }

    /// A portable card's `mentions`: a real mention where the person has that chat's id
    /// (Workflows `<at>` with its entity, Slack `<@U…>` in the message text, Discord `<@id>` in
    /// the content with `allowed_mentions` naming exactly that user), the name as inert text
    /// for everyone else and on the other chats; an upstream `@everyone` pings no one.
    #[test]
    fn portable_mentions_are_real_where_the_chat_can_and_inert_elsewhere() {
        let person = |name: &str,
                      login: &str,
                      upn: Option<&str>,
                      slack: Option<&str>,
                      discord: Option<&str>| people::Person {
            name: name.into(),
            upn: upn.map(Into::into),
            slack: slack.map(Into::into),
            discord: discord.map(Into::into),
            github: Some(login.into()),
            gitlab: None,
            email: None,
        };
        let people = people::People::new(vec![
            person(
                "Mona Lisa",
                "octocat",
                Some("mona@contoso.com"),
                Some("U024BE7LH"),
                Some("80351110224678912"),
            ),
            person("Hu Bot", "hubot", None, None, None),
        ]);
        let files = [(
            PathBuf::from("t.card.hbs"),
            r#"{"title": "t", "mentions": [{{#each payload.who}}{{#unless @first}}, {{/unless}}"{{this}}"{{/each}}]}"#.to_string(),
        )];
        let r = Renderer::load_with_people("templates", &files, people).unwrap();
        let ctx = json!({"payload": {"who": ["OctoCat", "hubot", "@everyone", "stranger"]}});
        let render =
            |kind| -> Value { serde_json::from_str(&r.render("t", kind, &ctx).unwrap()).unwrap() };
        let wf = render(CardKind::Workflow);
        let content = &wf["attachments"][0]["content"];
        let last = content["body"].as_array().unwrap().last().unwrap()["text"].clone();
        assert_eq!(last, "cc <at>Mona Lisa</at>, Hu Bot");
        assert_eq!(
            content["msteams"]["entities"][0]["mentioned"]["id"],
            "mona@contoso.com"
        );
        assert_eq!(content["msteams"]["entities"].as_array().unwrap().len(), 1);

        let slack = render(CardKind::Slack);
        assert_eq!(slack["text"], "t\ncc <@U024BE7LH>, Hu Bot");

        let discord = render(CardKind::Discord);
        assert_eq!(discord["content"], "cc <@80351110224678912>, Hu Bot");
        assert_eq!(
            discord["allowed_mentions"],
            json!({"parse": [], "users": ["80351110224678912"]})
        );

        for kind in [CardKind::GoogleChat, CardKind::Mattermost] {
            let v = render(kind);
            let text = v["text"].as_str().unwrap();
            assert!(text.ends_with("cc Mona Lisa, Hu Bot"), "{kind:?}: {text}");
            assert!(!text.contains("<@"), "{text}");
        }
        let teams = render(CardKind::Teams);
        assert!(
            teams.to_string().contains("cc Mona Lisa, Hu Bot\""),
            "{teams}"
        );
        // Every one of them still valid for its kind.
        for kind in CardKind::ALL {
            let body = r.render("t", kind, &ctx).unwrap();
            let v: Value = serde_json::from_str(&body).unwrap();
            assert!(validate::validate(kind, &v).is_ok(), "{kind:?}: {v}");
        }
        // No one in the map: no line at all.
        let ctx = json!({"payload": {"who": ["@everyone", "stranger"]}});
        let slack: Value =
            serde_json::from_str(&r.render("t", CardKind::Slack, &ctx).unwrap()).unwrap();
        assert_eq!(slack["text"], "t");
        let discord: Value =
            serde_json::from_str(&r.render("t", CardKind::Discord, &ctx).unwrap()).unwrap();
        assert!(discord.get("content").is_none(), "{discord}");
    }

    #[test]
    fn mentions_become_entities_in_adaptive_cards_and_names_elsewhere() {
        let people = people::People::new(vec![people::Person {
            name: "Mona Lisa".into(),
            upn: Some("mona@contoso.com".into()),
            slack: None,
            discord: None,
            github: Some("octocat".into()),
            gitlab: None,
            email: None,
        }]);
        let wf = r#"{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "by {{mention payload.a}} and {{mention payload.b}}"}]}}]}"#;
        let teams = r#"{"@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": "by {{mention payload.a}}"}"#;
        let files = [
            (PathBuf::from("t.workflow.hbs"), wf.to_string()),
            (PathBuf::from("t.teams.hbs"), teams.to_string()),
        ];
        let r = Renderer::load_with_people("templates", &files, people).unwrap();
        let ctx = json!({"payload": {"a": "OctoCat", "b": "someone_else"}});
        let card: Value =
            serde_json::from_str(&r.render("t", CardKind::Workflow, &ctx).unwrap()).unwrap();
        let content = &card["attachments"][0]["content"];
        assert_eq!(
            content["body"][0]["text"],
            "by <at>Mona Lisa</at> and someone\\_else"
        );
        assert_eq!(
            content["msteams"]["entities"],
            json!([{"type": "mention", "text": "<at>Mona Lisa</at>", "mentioned": {"id": "mona@contoso.com", "name": "Mona Lisa"}}])
        );
        let card: Value =
            serde_json::from_str(&r.render("t", CardKind::Teams, &ctx).unwrap()).unwrap();
        assert_eq!(card["summary"], "by Mona Lisa");
        // Without a people map, names are plain text.
        let r = Renderer::load("templates", &files).unwrap();
        let card: Value =
            serde_json::from_str(&r.render("t", CardKind::Workflow, &ctx).unwrap()).unwrap();
        assert_eq!(
            card["attachments"][0]["content"]["body"][0]["text"],
            "by OctoCat and someone\\_else"
        );
        assert!(card["attachments"][0]["content"].get("msteams").is_none());
    }

    #[test]
    fn shape_is_checked_per_kind() {
        let r = renderer(&[
            ("t.teams.hbs", r#"{"@type": "MessageCard"}"#),
            (
                "t.workflow.hbs",
                r#"{"type": "message", "attachments": []}"#,
            ),
        ])
        .unwrap();
        assert!(r
            .render("t", CardKind::Teams, &json!({}))
            .unwrap_err()
            .to_string()
            .contains("summary"));
        assert!(r
            .render("t", CardKind::Workflow, &json!({}))
            .unwrap_err()
            .to_string()
            .contains("attachment"));
    }
}
