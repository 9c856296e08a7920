//! Template helpers and the JSON escape that replaces Handlebars' HTML escape.

use handlebars::{
    handlebars_helper, Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext,
    RenderErrorReason,
};
use serde_json::Value;

/// Escapes text for the inside of a JSON string (no surrounding quotes).
pub fn json_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_string()
}

/// Escapes Markdown specials and neutralises HTML, so upstream text shows literally. Inline
/// markers are escaped everywhere; block markers (`#`, `-`, `+`, `1.`) only where they would
/// start a block, at the beginning of a line, so ordinary text such as `octo-org` stays clean.
pub fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let body = line.trim_start();
        out.push_str(&line[..line.len() - body.len()]);
        let digits = body.chars().take_while(char::is_ascii_digit).count();
        if matches!(body.chars().next(), Some('#' | '-' | '+' | '=')) {
            out.push('\\');
        } else if digits > 0 && matches!(body[digits..].chars().next(), Some('.' | ')')) {
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

/// At most `n` characters, with `…` when cut.
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

handlebars_helper!(md: |s: Value| md_escape(&as_text(&s)));
handlebars_helper!(short_sha: |s: str| s.chars().take(7).collect::<String>());
handlebars_helper!(first_line: |s: Value| as_text(&s).lines().next().unwrap_or("").to_string());
handlebars_helper!(truncate_helper: |s: Value, n: u64| truncate(&as_text(&s), n as usize));
handlebars_helper!(branch: |r: str| r.strip_prefix("refs/heads/").or_else(|| r.strip_prefix("refs/tags/")).unwrap_or(r).to_string());
handlebars_helper!(color: |status: Value| status_color(&as_text(&status)).to_string());
handlebars_helper!(humanize: |s: Value| as_text(&s).replace('_', " "));
handlebars_helper!(starts_with: |s: Value, prefix: str| as_text(&s).starts_with(prefix));

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
}
