//! Server-rendered pages: one layout, HTML escaping, and the assets built into the binary.
//!
//! Every page carries `<meta name="referrer" content="no-referrer">`; pages under /connect
//! also answer with a `Referrer-Policy: no-referrer` header (see `flow`), so a webhook URL in a
//! callback's query can never leak to another site through the Referer header.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// The stylesheet, served at /assets/style.css.
pub const STYLE: &str = include_str!("assets/style.css");
/// The default connector logo, served at /assets/logo.svg.
pub const LOGO: &str = include_str!("assets/logo.svg");
/// The "Connect to Office 365" button image, served at /assets/connect-button.svg.
pub const BUTTON: &str = include_str!("assets/connect-button.svg");
/// The script that sends a page's form at once (the GitHub App flow).
const SUBMIT: &str = include_str!("assets/submit.js");

/// Escapes text for HTML (element content and quoted attributes).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Markdown (as cards carry it) as HTML, with any raw HTML in it shown as text and links kept
/// to http(s) only.
pub fn markdown(md: &str) -> String {
    markdown_with(md, pulldown_cmark::Options::empty(), |dest| {
        Some(
            if dest.starts_with("https://") || dest.starts_with("http://") {
                dest.to_string()
            } else {
                "#".to_string()
            },
        )
    })
}

/// Markdown as HTML with any raw HTML in it shown as text, each link's target as `link` says:
/// `Some(target)`, or `None` to keep the link's text, emphasised, without a link.
pub fn markdown_with(
    md: &str,
    options: pulldown_cmark::Options,
    mut link: impl FnMut(&str) -> Option<String>,
) -> String {
    use pulldown_cmark::{html, Event, Parser, Tag, TagEnd};
    let mut unlinked = false;
    let events = Parser::new_ext(md, options).map(|e| match e {
        Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => match link(&dest_url) {
            Some(to) => Event::Start(Tag::Link {
                link_type,
                dest_url: to.into(),
                title,
                id,
            }),
            None => {
                unlinked = true;
                Event::Start(Tag::Emphasis)
            }
        },
        Event::End(TagEnd::Link) if unlinked => {
            unlinked = false;
            Event::End(TagEnd::Emphasis)
        }
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, events);
    out
}

/// A whole page around `body` (which must already be escaped where it holds data).
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · cardwire</title><link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\
         <body><main>{body}</main></body></html>",
        esc(title)
    );
    let mut res = (status, Html(html)).into_response();
    no_referrer(&mut res);
    res
}

/// Adds `Referrer-Policy: no-referrer`.
pub fn no_referrer(res: &mut Response) {
    res.headers_mut()
        .insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

/// A static asset by name.
pub fn asset(name: &str) -> Response {
    let (body, ty) = match name {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "logo.svg" => (LOGO, "image/svg+xml"),
        "connect-button.svg" => (BUTTON, "image/svg+xml"),
        "submit.js" => (SUBMIT, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Reads one cookie from a request's headers.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A random token: 128 bits or more, URL-safe.
pub fn token(bytes: usize) -> String {
    use base64::Engine as _;
    use rand::RngCore;
    let mut b = vec![0u8; bytes.max(16)];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A random id in a UUID's shape (the delivery ids the emulators send).
pub fn uuid_like() -> String {
    let h = hex::encode(rand::random::<[u8; 16]>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Hex SHA-256, for storing a secret's digest rather than the secret.
pub fn digest(s: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_renders_without_raw_html() {
        let h = markdown("**b** [l](https://x) <script>alert(1)</script> [j](javascript:alert(1))");
        assert!(
            h.contains("<strong>b</strong>") && h.contains("<a href=\"https://x\">l</a>"),
            "{h}"
        );
        assert!(
            !h.contains("<script>") && h.contains("&lt;script&gt;") && !h.contains("javascript:"),
            "{h}"
        );
    }

    #[test]
    fn escaping_and_cookies() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; cw_connect=xyz; b=2"),
        );
        assert_eq!(cookie(&h, "cw_connect").as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "nope"), None);
        assert!(token(16).len() >= 22);
        assert_ne!(token(16), token(16));
    }
}
