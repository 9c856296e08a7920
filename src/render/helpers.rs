//! Template helpers and the JSON escape that replaces Handlebars' HTML escape.

use handlebars::{
    handlebars_helper, Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext,
    RenderErrorReason,
};
use serde_json::Value;

/// Escapes text for the inside of a JSON string (no surrounding quotes).
pub fn json_escape(s: &str) -> String {
    // Most texts need no escape: copied once, without serializing.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        return s.to_string();
    }
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_string()
}

/// Escapes Markdown specials and neutralises HTML, so upstream text shows literally. Inline
/// markers are escaped everywhere; a block marker only where it would start a block: at the
/// start of a line and followed by a space or the line's end (`# x`, `- x`, `+ x`, `1. x`,
/// `2) x`), or a line of only `-` or `=` (a rule or a heading's underline). Ordinary text such
/// as `octo-org`, `#123`, `-rc1` or a version `0.0.1` stays as it is.
pub fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let body = line.trim_start();
        out.push_str(&line[..line.len() - body.len()]);
        let ends_marker = |rest: &str| rest.is_empty() || rest.starts_with([' ', '\t']);
        let hashes = body.chars().take_while(|c| *c == '#').count();
        let digits = body.chars().take_while(char::is_ascii_digit).count();
        let only = |c: char| {
            let t = body.trim_end();
            !t.is_empty() && t.chars().all(|x| x == c || x == ' ')
        };
        if (1..=6).contains(&hashes) && ends_marker(&body[hashes..])
            || body.starts_with(['-', '+']) && ends_marker(&body[1..])
            || only('-')
            || only('=')
        {
            out.push('\\');
        } else if (1..=9).contains(&digits)
            && body[digits..].starts_with(['.', ')'])
            && ends_marker(&body[digits + 1..])
        {
            out.push_str(&body[..digits]);
            out.push('\\');
            push_inline(&mut out, &body[digits..]);
            continue;
        }
        push_inline(&mut out, body);
    }
    out
}

fn push_inline(out: &mut String, s: &str) {
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '~' | '&' | '|'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// At most `n` characters (grapheme clusters: an emoji with its modifiers or a letter with its
/// accents is never split), with `…` when cut.
pub fn truncate(s: &str, n: usize) -> String {
    use unicode_segmentation::UnicodeSegmentation;
    if s.len() <= n {
        return s.to_string(); // n bytes hold at most n graphemes
    }
    let mut graphemes = s.grapheme_indices(true);
    match graphemes.nth(n) {
        None => s.to_string(),
        Some(_) => {
            let cut = s
                .grapheme_indices(true)
                .nth(n.saturating_sub(1))
                .map(|(i, _)| i)
                .unwrap_or(0);
            let mut out = s[..cut].to_string();
            out.push('…');
            out
        }
    }
}

/// `3 commits`, `1 commit`: the same words as `{{plural}}`, for text written outside templates.
pub fn plural_count(n: usize, one: &str) -> String {
    plural(&Value::from(n), one, None)
}

/// `{{plural n "commit"}}` → `1 commit`, `3 commits`; a third argument gives an irregular plural.
fn plural(n: &Value, one: &str, many: Option<&str>) -> String {
    let count = n
        .as_array()
        .map(|a| a.len() as f64)
        .or_else(|| n.as_f64())
        .unwrap_or(0.0);
    let word = if count == 1.0 {
        one.to_string()
    } else {
        many.map(str::to_string)
            .unwrap_or_else(|| format!("{one}s"))
    };
    format!(
        "{} {word}",
        if count.fract() == 0.0 {
            format!("{count:.0}")
        } else {
            count.to_string()
        }
    )
}

/// Parses the timestamps upstreams send: RFC 3339, `2015-05-17 18:08:09 UTC`, or Unix seconds.
pub fn parse_time(v: &Value) -> Option<jiff::Timestamp> {
    match v {
        Value::Number(n) => jiff::Timestamp::from_second(n.as_i64()?).ok(),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<jiff::Timestamp>()
                .ok()
                .or_else(|| {
                    let civil = s.strip_suffix(" UTC")?;
                    jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", civil)
                        .ok()?
                        .to_zoned(jiff::tz::TimeZone::UTC)
                        .ok()
                        .map(|z| z.timestamp())
                })
                .or_else(|| jiff::Timestamp::strptime("%Y-%m-%d %H:%M:%S %z", s).ok())
        }
        _ => None,
    }
}

/// `{{date x}}`: `2026-11-27 09:12 UTC`; `{{date x "%d %b %Y"}}`: a strftime format (UTC);
/// `{{date x "relative"}}`: `3 hours ago` / `in 5 minutes`. An unreadable value is shown as is.
fn date(v: &Value, format: Option<&str>, now: jiff::Timestamp) -> String {
    let Some(t) = parse_time(v) else {
        return as_text(v);
    };
    match format {
        Some("relative") => relative(t, now),
        Some(f) => t.strftime(f).to_string(),
        None => t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

fn relative(t: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let secs = now.as_second() - t.as_second();
    let (n, unit) = match secs.abs() {
        s if s < 60 => return "just now".into(),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s if s < 30 * 86_400 => (s / 86_400, "day"),
        s if s < 365 * 86_400 => (s / (30 * 86_400), "month"),
        s => (s / (365 * 86_400), "year"),
    };
    let amount = plural(&Value::from(n), unit, None);
    if secs >= 0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// `{{link url "text"}}`: a Markdown link whose text is escaped and whose URL cannot break out
/// of the parentheses; an empty or non-http URL gives the text alone.
fn link(url: &str, text: &str) -> String {
    let text = md_escape(text);
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return text;
    }
    let url = url
        .replace('(', "%28")
        .replace(')', "%29")
        .replace(' ', "%20");
    format!("[{text}]({url})")
}

handlebars_helper!(md: |s: Value| md_escape(&as_text(&s)));
handlebars_helper!(short_sha: |s: Value| as_text(&s).chars().take(7).collect::<String>());
handlebars_helper!(first_line: |s: Value| as_text(&s).lines().next().unwrap_or("").to_string());
handlebars_helper!(truncate_helper: |s: Value, n: u64| truncate(&as_text(&s), n as usize));
handlebars_helper!(branch: |r: Value| {
    let r = as_text(&r);
    r.strip_prefix("refs/heads/").or_else(|| r.strip_prefix("refs/tags/")).unwrap_or(&r).to_string()
});
handlebars_helper!(color: |status: Value| status_color(&as_text(&status)).to_string());
handlebars_helper!(humanize: |s: Value| as_text(&s).replace('_', " "));
handlebars_helper!(starts_with: |s: Value, prefix: str| as_text(&s).starts_with(prefix));
handlebars_helper!(join: |list: Value, sep: str| match &list {
    Value::Array(items) => items.iter().map(as_text).collect::<Vec<_>>().join(sep),
    other => as_text(other),
});
handlebars_helper!(plural_helper: |n: Value, one: str, *args| plural(&n, one, args.get(2).and_then(|v| v.as_str())));
handlebars_helper!(date_helper: |v: Value, *args| date(&v, args.get(1).and_then(|f| f.as_str()), jiff::Timestamp::now()));
handlebars_helper!(url_part: |s: Value| url_part_of(&as_text(&s)));
handlebars_helper!(link_helper: |url: Value, text: Value| link(&as_text(&url), &as_text(&text)));

/// Text made safe as one part of a URL's path or query: everything but letters, digits and
/// `-._~` percent-encoded (RFC 3986's unreserved characters).
pub fn url_part_of(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    const PART: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(s, PART).to_string()
}

fn as_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A theme color for a status word: failures red, successes green, warnings amber.
pub fn status_color(status: &str) -> &'static str {
    match status.to_ascii_lowercase().as_str() {
        "failure" | "failed" | "error" | "timed_out" | "startup_failure" | "firing"
        | "critical" | "changes_requested" => "D73A49",
        "success" | "succeeded" | "passed" | "resolved" | "merged" | "approved" | "fixed" => {
            "2DA44E"
        }
        "cancelled" | "canceled" | "skipped" | "neutral" | "stale" | "action_required"
        | "warning" => "BF8700",
        _ => "0366D6",
    }
}

/// `{{json x}}`: writes `x` as a whole JSON value, unescaped.
struct JsonHelper;

impl HelperDef for JsonHelper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let param = h
            .param(0)
            .ok_or(RenderErrorReason::ParamNotFoundForIndex("json", 0))?;
        out.write(&param.value().to_string())?;
        Ok(())
    }
}

/// `{{default x "fallback"}}`: `x`, or the fallback when `x` is missing, null or empty. A
/// missing `x` is allowed even in strict mode: saying what to use instead is the point.
struct DefaultHelper;

impl HelperDef for DefaultHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<handlebars::ScopedJson<'rc>, handlebars::RenderError> {
        let empty = |v: Option<&handlebars::PathAndJson<'rc>>| {
            v.is_none_or(|p| {
                p.is_value_missing() || matches!(p.value(), Value::Null) || p.value() == ""
            })
        };
        let chosen = if empty(h.param(0)) {
            h.param(1)
        } else {
            h.param(0)
        };
        let value = chosen
            .filter(|p| !p.is_value_missing())
            .map(|p| p.value().clone())
            .unwrap_or(Value::Null);
        Ok(handlebars::ScopedJson::Derived(value))
    }
}

/// `{{mention login}}`: `<at>Name</at>` for a person in the people map with a Teams `upn`,
/// else the name (or the login) as Markdown-escaped text.
pub struct Mention(pub std::sync::Arc<super::people::People>);

impl HelperDef for Mention {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<handlebars::ScopedJson<'rc>, handlebars::RenderError> {
        let who = h
            .param(0)
            .ok_or(RenderErrorReason::ParamNotFoundForIndex("mention", 0))?;
        let login = as_text(who.value());
        let out = match self.0.find(&login) {
            Some(p) if p.upn.is_some() => format!("<at>{}</at>", p.name),
            Some(p) => md_escape(&p.name),
            None => md_escape(&login),
        };
        Ok(handlebars::ScopedJson::Derived(Value::String(out)))
    }
}

/// Registers every helper.
pub fn register(hb: &mut Handlebars<'static>) {
    hb.register_helper("json", Box::new(JsonHelper));
    hb.register_helper("md", Box::new(md));
    hb.register_helper("short_sha", Box::new(short_sha));
    hb.register_helper("first_line", Box::new(first_line));
    hb.register_helper("truncate", Box::new(truncate_helper));
    hb.register_helper("default", Box::new(DefaultHelper));
    hb.register_helper("branch", Box::new(branch));
    hb.register_helper("color", Box::new(color));
    hb.register_helper("humanize", Box::new(humanize));
    hb.register_helper("starts_with", Box::new(starts_with));
    hb.register_helper("join", Box::new(join));
    hb.register_helper("plural", Box::new(plural_helper));
    hb.register_helper("date", Box::new(date_helper));
    hb.register_helper("link", Box::new(link_helper));
    hb.register_helper("url_part", Box::new(url_part));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, ctx: Value) -> String {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(json_escape);
        register(&mut hb);
        hb.render_template(t, &ctx).unwrap()
    }

    #[test]
    fn helpers() {
        let ctx = json!({"s": "abcdef1234567", "m": "line one\nline two", "r": "refs/heads/main", "n": null, "o": {"a": [1, "x\""]}});
        assert_eq!(render("{{short_sha s}}", ctx.clone()), "abcdef1");
        assert_eq!(render("{{first_line m}}", ctx.clone()), "line one");
        assert_eq!(render("{{truncate s 5}}", ctx.clone()), "abcd…");
        assert_eq!(render("{{branch r}}", ctx.clone()), "main");
        assert_eq!(render("{{default n \"none\"}}", ctx.clone()), "none");
        assert_eq!(
            render("{{default o.missing \"none\"}}", ctx.clone()),
            "none"
        );
        assert_eq!(
            render("{{default s \"none\"}}", ctx.clone()),
            "abcdef1234567"
        );
        assert_eq!(
            render("{{short_sha (default o.missing s)}}", ctx.clone()),
            "abcdef1"
        );
        assert_eq!(render("{{json o}}", ctx.clone()), r#"{"a":[1,"x\""]}"#);
        assert_eq!(render("{{color \"failure\"}}", ctx.clone()), "D73A49");
        assert_eq!(
            render("{{humanize \"ready_for_review\"}}", ctx.clone()),
            "ready for review"
        );
        assert_eq!(
            render(
                "{{#if (starts_with r \"refs/heads/\")}}b{{/if}}",
                ctx.clone()
            ),
            "b"
        );
        assert_eq!(render("{{#if o.missing}}y{{else}}n{{/if}}", ctx), "n");
    }

    #[test]
    fn more_helpers() {
        let ctx = json!({"labels": ["bug", "ui"], "commits": [1, 2, 3], "one": [1], "t": "2015-05-17 18:08:09 UTC", "r": "2026-11-27T09:12:31Z", "u": 1700000000});
        assert_eq!(render("{{join labels \", \"}}", ctx.clone()), "bug, ui");
        assert_eq!(
            render("{{plural commits \"commit\"}}", ctx.clone()),
            "3 commits"
        );
        assert_eq!(render("{{plural one \"commit\"}}", ctx.clone()), "1 commit");
        assert_eq!(
            render("{{plural 2 \"child\" \"children\"}}", ctx.clone()),
            "2 children"
        );
        assert_eq!(render("{{date t}}", ctx.clone()), "2015-05-17 18:08 UTC");
        assert_eq!(
            render("{{date r \"%d %b %Y\"}}", ctx.clone()),
            "27 Nov 2026"
        );
        assert_eq!(render("{{date u}}", ctx.clone()), "2023-11-14 22:13 UTC");
        assert_eq!(render("{{date \"not a date\"}}", ctx.clone()), "not a date");
        assert_eq!(
            render("{{link \"https://x/a b\" \"[x]\"}}", ctx.clone()),
            "[\\\\[x\\\\]](https://x/a%20b)"
        );
        assert_eq!(render("{{link \"javascript:alert(1)\" \"x\"}}", ctx), "x");
        let now: jiff::Timestamp = "2026-11-27T12:00:00Z".parse().unwrap();
        let at = |s: &str| date(&json!(s), Some("relative"), now);
        assert_eq!(at("2026-11-27T09:00:00Z"), "3 hours ago");
        assert_eq!(at("2026-11-27T12:05:00Z"), "in 5 minutes");
        assert_eq!(at("2026-11-26T12:00:00Z"), "1 day ago");
        assert_eq!(at("2026-11-27T11:59:30Z"), "just now");
    }

    #[test]
    fn truncate_never_splits_a_grapheme() {
        let family = "👨‍👩‍👧‍👦";
        let s = format!("ab{family}{family}cd");
        assert_eq!(truncate(&s, 4), format!("ab{family}…"));
        assert_eq!(truncate("éé", 5), "éé");
        let accented = "e\u{301}e\u{301}e\u{301}";
        assert_eq!(truncate(accented, 2), "e\u{301}…");
    }

    #[test]
    fn md_neutralises_markup() {
        assert_eq!(
            md_escape("<b>x</b> *y* [l](u)"),
            "\\<b\\>x\\</b\\> \\*y\\* \\[l\\](u)"
        );
        assert_eq!(md_escape("octo-org/octo-repo"), "octo-org/octo-repo");
        assert_eq!(
            md_escape("# h\n- item\n  2. x"),
            "\\# h\n\\- item\n  2\\. x"
        );
    }

    /// Regression: a release named `0.0.1` showed as `0\.0.1` where Teams renders the
    /// escape literally; only what would start a block at that position is escaped.
    #[test]
    fn url_part_encodes_all_but_unreserved_characters() {
        assert_eq!(url_part_of("6113728f27ae"), "6113728f27ae");
        assert_eq!(url_part_of("v1.0-rc_1~x"), "v1.0-rc_1~x");
        assert_eq!(
            url_part_of("a b/\"c\"?&#é"),
            "a%20b%2F%22c%22%3F%26%23%C3%A9"
        );
    }

    #[test]
    fn json_escape_writes_what_serde_json_would_inside_the_quotes() {
        for s in [
            "plain text, ünïcödé and emoji 🚀",
            "a \"quote\" and a \\ backslash",
            "lines\nand\ttabs\r",
            "\u{1}\u{1f}\u{7f}",
            "",
        ] {
            let quoted = serde_json::to_string(s).unwrap();
            assert_eq!(json_escape(s), quoted[1..quoted.len() - 1], "{s:?}");
        }
    }

    #[test]
    fn md_escapes_a_block_marker_only_where_it_starts_a_block() {
        for plain in ["0.0.1", "1.2.3-rc1", "#123 fixed", "-rc1", "+1", "x\n10.5%"] {
            assert_eq!(md_escape(plain), plain);
        }
        let cases = [
            ("1. first", "1\\. first"),
            ("1.", "1\\."),
            ("2026. A year", "2026\\. A year"),
            ("3) x", "3\\) x"),
            ("#", "\\#"),
            ("### h", "\\### h"),
            ("- x", "\\- x"),
            ("+\tx", "\\+\tx"),
            ("title\n---", "title\n\\---"),
            ("title\n===", "title\n\\==="),
            ("- - -", "\\- - -"),
            ("a = b", "a = b"),
        ];
        for (text, want) in cases {
            assert_eq!(md_escape(text), want, "{text:?}");
        }
    }
}
