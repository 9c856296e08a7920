//! Markdown: the portable subset, read once, written in each platform's dialect; plain text
//! made inert; texts cut and lists folded to a platform's limits; the buttons a card shows.

use super::model::{web_url, Card, Link};
use crate::render::CardKind;

/// A piece of a line of portable Markdown, as [`scan`] reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Piece<'a> {
    /// Text as the reader sees it (escapes undone).
    Text(&'a str),
    /// A code span's text.
    Code(&'a str),
    /// Where a marked part starts.
    Open(Mark<'a>),
    /// Where it ends.
    Close(Mark<'a>),
}

/// What marks a part of a line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Mark<'a> {
    Bold,
    Italic,
    /// A link to this URL; the part is its label.
    Link(&'a str),
}

/// Drops control characters but newlines and tabs (a tab becomes a space).
pub(super) fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    let keep = |c: char| match c {
        '\n' => Some('\n'),
        '\t' => Some(' '),
        '\r' => None,
        c if c.is_control() => None,
        // Bidirectional overrides and zero-width joiners that could disguise text.
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => None,
        c => Some(c),
    };
    // Most texts have nothing to drop: borrowed as they are.
    if !needs_cleaning(s.as_bytes()) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    out.extend(s.chars().filter_map(keep));
    std::borrow::Cow::Owned(out)
}

/// Whether [`clean`] would change a text, read a byte at a time: a control character
/// (U+0000–U+001F but a newline, U+007F, and U+0080–U+009F: `C2 80`–`C2 9F`), or a
/// bidirectional override (U+202A–U+202E: `E2 80 AA`–`AE`; U+2066–U+2069: `E2 81 A6`–`A9`).
pub(super) fn needs_cleaning(b: &[u8]) -> bool {
    // First a pass without early exits: most texts hold none of the bytes that can start what
    // is dropped, and are done here.
    let suspect = |c: u8| (c < 0x20 && c != b'\n') | (c == 0x7F) | (c == 0xC2) | (c == 0xE2);
    if !b.iter().fold(false, |any, &c| any | suspect(c)) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\n' => {}
            0..=0x1F | 0x7F => return true,
            0xC2 if b.get(i + 1).is_some_and(|n| (0x80..=0x9F).contains(n)) => return true,
            0xE2 => match (b.get(i + 1), b.get(i + 2)) {
                (Some(0x80), Some(0xAA..=0xAE)) | (Some(0x81), Some(0xA6..=0xA9)) => return true,
                _ => {}
            },
            _ => {}
        }
        i += 1;
    }
    false
}

/// A line's bullet (`- ` or `* `) and the rest.
pub(super) fn bullet(line: &str) -> (bool, &str) {
    match line.strip_prefix("- ").or(line.strip_prefix("* ")) {
        Some(rest) => (true, rest),
        None => (false, line),
    }
}

/// Whether a line's text holds no Markdown marker: it is one run of text (most facts and
/// titles), written without being parsed.
pub(super) fn unmarked(s: &str) -> bool {
    !s.bytes()
        .any(|b| matches!(b, b'\\' | b'`' | b'*' | b'_' | b'['))
}

/// Reads one line of portable Markdown into pieces, in order. The markers are ASCII, so the
/// line is read a byte at a time: every index it cuts at is a character boundary.
pub(super) fn scan<'a>(s: &'a str, f: &mut impl FnMut(Piece<'a>)) {
    if unmarked(s) {
        if !s.is_empty() {
            f(Piece::Text(s));
        }
        return;
    }
    let c = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let flush = |start: usize, end: usize, f: &mut dyn FnMut(Piece<'a>)| {
        if end > start {
            f(Piece::Text(&s[start..end]));
        }
    };
    let prev = |i: usize| s[..i].chars().next_back();
    let next = |i: usize| s[i..].chars().next();
    while i < c.len() {
        let ch = c[i];
        if ch == b'\\' && c.get(i + 1).is_some_and(u8::is_ascii_punctuation) {
            // The escaped character starts the next run of text.
            flush(start, i, f);
            start = i + 1;
            i += 2;
            continue;
        }
        if ch == b'`' {
            if let Some(end) = find(c, i + 1, b"`") {
                flush(start, i, f);
                f(Piece::Code(&s[i + 1..end]));
                i = end + 1;
                start = i;
                continue;
            }
        }
        if ch == b'*' && c.get(i + 1) == Some(&b'*') {
            if let Some(end) = find(c, i + 2, b"**").filter(|&e| e > i + 2) {
                flush(start, i, f);
                f(Piece::Open(Mark::Bold));
                scan(&s[i + 2..end], f);
                f(Piece::Close(Mark::Bold));
                i = end + 2;
                start = i;
                continue;
            }
        }
        if matches!(ch, b'*' | b'_') {
            let opens = next(i + 1).is_some_and(|n| !n.is_whitespace())
                && (ch == b'*' || prev(i).is_none_or(|p| !p.is_alphanumeric()));
            if opens {
                let close = (i + 1..c.len()).find(|&j| {
                    c[j] == ch
                        && c[j - 1] != b'\\'
                        && prev(j).is_some_and(|p| !p.is_whitespace())
                        && (ch == b'*' || next(j + 1).is_none_or(|n| !n.is_alphanumeric()))
                });
                if let Some(end) = close.filter(|&e| e > i + 1) {
                    flush(start, i, f);
                    f(Piece::Open(Mark::Italic));
                    scan(&s[i + 1..end], f);
                    f(Piece::Close(Mark::Italic));
                    i = end + 1;
                    start = i;
                    continue;
                }
            }
        }
        if ch == b'[' {
            if let Some(mid) = find(c, i + 1, b"](") {
                if let Some(end) = find(c, mid + 2, b")") {
                    let url = &s[mid + 2..end];
                    if web_url(url) {
                        flush(start, i, f);
                        f(Piece::Open(Mark::Link(url)));
                        scan(&s[i + 1..mid], f);
                        f(Piece::Close(Mark::Link(url)));
                        i = end + 1;
                        start = i;
                        continue;
                    }
                }
            }
        }
        i += 1;
    }
    flush(start, c.len(), f);
}

/// Where `pat` next starts at or after `from`, skipping backslash-escaped characters.
pub(super) fn find(c: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    let mut j = from;
    while j + pat.len() <= c.len() {
        if c[j] == b'\\' {
            j += 2;
            continue;
        }
        if c[j..j + pat.len()] == *pat {
            return Some(j);
        }
        j += 1;
    }
    None
}

/// A Markdown dialect: how each piece is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// Teams' Markdown (MessageCard and Adaptive Card TextBlock).
    Teams,
    /// Slack's `mrkdwn`.
    Slack,
    /// Discord's Markdown.
    Discord,
    /// Google Chat card text (an HTML subset).
    ChatHtml,
    /// Mattermost's Markdown.
    Mattermost,
}

/// Text the reader sees literally: escaped for the dialect, and unable to mention anyone.
pub(super) fn literal(s: &str, d: Dialect) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    literal_into(s, d, &mut out);
    out
}

/// [`literal`], written at the end of `out`.
pub(super) fn literal_into(s: &str, d: Dialect, out: &mut String) {
    // Most pieces of text have nothing to escape (checked a byte at a time: every character
    // escaped is ASCII).
    let special = |b: u8| match d {
        Dialect::Teams => matches!(
            b,
            b'\\' | b'`' | b'*' | b'_' | b'[' | b']' | b'<' | b'>' | b'~' | b'&' | b'|' | b'#'
        ),
        Dialect::Slack => matches!(b, b'&' | b'<' | b'>'),
        Dialect::ChatHtml => matches!(b, b'&' | b'<' | b'>' | b'"'),
        Dialect::Discord | Dialect::Mattermost => matches!(
            b,
            b'\\'
                | b'`'
                | b'*'
                | b'_'
                | b'['
                | b']'
                | b'('
                | b')'
                | b'<'
                | b'>'
                | b'~'
                | b'|'
                | b'#'
                | b'@'
        ),
    };
    if !s.bytes().any(special) {
        out.push_str(s);
        return;
    }
    out.reserve(s.len());
    // Where a piece starts may be where a line starts: `#` there, followed by a space or
    // nothing after its run, would make a heading; anywhere else (`#123`) it is text.
    let mut prev = '\n';
    for (i, c) in s.char_indices() {
        let heading = || {
            prev == '\n'
                && s[i..]
                    .trim_start_matches('#')
                    .chars()
                    .next()
                    .is_none_or(|n| n == ' ' || n == '\t')
        };
        match d {
            Dialect::Teams => {
                if matches!(
                    c,
                    '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '~' | '&' | '|'
                ) || c == '#' && heading()
                {
                    out.push('\\');
                }
                out.push(c);
            }
            Dialect::Slack => match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                c => out.push(c),
            },
            Dialect::ChatHtml => match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                c => out.push(c),
            },
            Dialect::Discord | Dialect::Mattermost => {
                if matches!(
                    c,
                    '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '<' | '>' | '~' | '|'
                ) || c == '#' && heading()
                {
                    out.push('\\');
                }
                out.push(c);
                // `@everyone`, `@here`, `@channel`, `@user`: a zero-width space after the `@`
                // keeps the text and takes the mention away (Discord also gets
                // allowed_mentions with nothing to parse).
                if c == '@' || (c == '<' && d == Dialect::Mattermost) {
                    out.push('\u{200B}');
                }
            }
        }
        prev = c;
    }
}

/// One line of portable Markdown written in a dialect at the end of `out`.
pub(super) fn write_line(s: &str, d: Dialect, out: &mut String) {
    // Where the open link's label starts in `out` (links do not nest: a label ends at the
    // first `](`); the label is written, then wrapped.
    let mut label_at = 0;
    scan(s, &mut |p| match p {
        Piece::Text(t) => literal_into(t, d, out),
        Piece::Code(t) => code_into(t, d, out),
        Piece::Open(Mark::Bold) | Piece::Close(Mark::Bold) => out.push_str(match (d, p) {
            (Dialect::Slack, _) => "*",
            (Dialect::ChatHtml, Piece::Open(_)) => "<b>",
            (Dialect::ChatHtml, _) => "</b>",
            _ => "**",
        }),
        Piece::Open(Mark::Italic) | Piece::Close(Mark::Italic) => out.push_str(match (d, p) {
            (Dialect::ChatHtml, Piece::Open(_)) => "<i>",
            (Dialect::ChatHtml, _) => "</i>",
            _ => "_",
        }),
        Piece::Open(Mark::Link(_)) => label_at = out.len(),
        Piece::Close(Mark::Link(url)) => {
            let at = label_at.min(out.len());
            match d {
                Dialect::Slack => {
                    let text = out.split_off(at).replace('|', "¦");
                    out.push('<');
                    out.push_str(&url.replace('|', "%7C"));
                    out.push('|');
                    out.push_str(&text);
                    out.push('>');
                }
                Dialect::ChatHtml => {
                    let text = out.split_off(at);
                    out.push_str("<a href=\"");
                    literal_into(url, Dialect::ChatHtml, out);
                    out.push_str("\">");
                    out.push_str(&text);
                    out.push_str("</a>");
                }
                _ => {
                    out.insert(at, '[');
                    out.push_str("](");
                    if url.contains(['(', ')']) {
                        out.push_str(&url.replace('(', "%28").replace(')', "%29"));
                    } else {
                        out.push_str(url);
                    }
                    out.push(')');
                }
            }
        }
    });
}

/// A code span written in a dialect.
pub(super) fn code_into(t: &str, d: Dialect, out: &mut String) {
    match d {
        Dialect::ChatHtml => {
            out.push_str("<font face=\"monospace\">");
            literal_into(t, d, out);
            out.push_str("</font>");
        }
        Dialect::Slack => {
            out.push('`');
            literal_into(&t.replace('`', "'"), d, out);
            out.push('`');
        }
        _ => {
            // Inside code nothing is markup; a backtick in it cannot close it early.
            out.push('`');
            for c in t.chars() {
                match c {
                    '`' => out.push('\''),
                    '@' if matches!(d, Dialect::Discord | Dialect::Mattermost) => {
                        out.push_str("@\u{200B}")
                    }
                    c => out.push(c),
                }
            }
            out.push('`');
        }
    }
}

/// No field of any platform shows more than this many characters; longer input is cut before
/// it is parsed, so that a 10 MB commit message costs no more than a long one.
pub(super) const LONGEST: usize = 16_000;

/// Portable Markdown in a dialect.
pub(super) fn markdown(s: &str, d: Dialect) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    markdown_into(s, d, &mut out);
    out
}

/// [`markdown`], written at the end of `out`.
pub(super) fn markdown_into(s: &str, d: Dialect, out: &mut String) {
    let cut = cut_cow(s, LONGEST);
    for (n, line) in clean(&cut).split('\n').enumerate() {
        if n > 0 {
            out.push_str(match d {
                Dialect::ChatHtml => "<br>",
                Dialect::Teams => "\n\n",
                _ => "\n",
            });
        }
        let (bullet, rest) = bullet(line);
        if bullet {
            out.push_str(match d {
                Dialect::Slack | Dialect::ChatHtml => "• ",
                _ => "- ",
            });
        }
        write_line(rest, d, out);
    }
}

/// Plain text in a dialect: literal, one line breaks kept.
pub(super) fn plain(s: &str, d: Dialect) -> String {
    let cut = cut_cow(s, LONGEST);
    let s = clean(&cut);
    let mut out = String::with_capacity(s.len() + 8);
    for (n, line) in s.split('\n').enumerate() {
        if n > 0 {
            out.push_str(match d {
                Dialect::ChatHtml => "<br>",
                _ => "\n",
            });
        }
        literal_into(line, d, &mut out);
    }
    out
}

/// Text that shows as typed in `kind`'s message text and can mention no one (a name beside
/// real mentions, say).
pub fn inert(s: &str, kind: CardKind) -> String {
    match kind {
        CardKind::Teams | CardKind::Workflow => plain(s, Dialect::Teams),
        CardKind::Slack => slack_plain(s),
        CardKind::Discord => plain(s, Dialect::Discord),
        CardKind::Mattermost => plain(s, Dialect::Mattermost),
        CardKind::GoogleChat => bare(s).replace('<', "‹").replace('>', "›"),
    }
}

/// Plain text for fields that take no markup at all (Discord's embed title and field names,
/// Google Chat's header, a MessageCard's summary and button names): control characters
/// dropped, and a zero-width space after every `@` and `<`, so that no `@everyone`,
/// `<!channel>`, `<users/all>` or `<at>` is read as one.
pub(super) fn bare(s: &str) -> String {
    let cut = cut_cow(s, LONGEST);
    let s = clean(&cut);
    let mut out = String::with_capacity(s.len() + 8);
    let mut prev = ' ';
    for c in s.chars() {
        if c == '(' && prev == ']' {
            out.push('\u{200B}');
        }
        out.push(c);
        if c == '@' || c == '<' {
            out.push('\u{200B}');
        }
        prev = c;
    }
    out
}

/// At most `n` characters (Unicode scalar values, as the platforms count), with `…` when
/// cut; a grapheme cluster (an emoji with its modifiers) is never split, nor an escape (`&lt;`)
/// or a trailing backslash left to escape the `…`.
pub(super) fn cut(s: &str, n: usize) -> String {
    cut_cow(s, n).into_owned()
}

/// [`cut`], borrowing what needs no cut.
pub(super) fn cut_cow(s: &str, n: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= n || s.chars().count() <= n {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(cut_long(s, n))
}

pub(super) fn cut_long(s: &str, n: usize) -> String {
    use unicode_segmentation::UnicodeSegmentation;
    let mut out = String::new();
    let mut used = 0;
    for g in s.graphemes(true) {
        let c = g.chars().count();
        if used + c + 1 > n {
            break;
        }
        out.push_str(g);
        used += c;
    }
    if let Some(amp) = out.rfind('&') {
        if out[amp + 1..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '#')
        {
            out.truncate(amp);
        }
    }
    while out.ends_with('\\') {
        out.pop();
    }
    out.push('…');
    out
}

/// The first `n` of `items`, then `…and N more` when some were left out.
pub(super) fn fold<T: Clone>(items: &[T], n: usize, more: impl Fn(usize) -> T) -> Vec<T> {
    if items.len() <= n {
        return items.to_vec();
    }
    let mut v = items[..n.saturating_sub(1)].to_vec();
    v.push(more(items.len() - v.len()));
    v
}

pub(super) fn and_more(n: usize) -> String {
    format!("…and {n} more")
}

/// Short Markdown lines as a bulleted list in a dialect, folded after 20.
pub(super) fn bullets(items: &[String], d: Dialect) -> String {
    let mut out = String::new();
    bullets_into(items, d, &mut out);
    out
}

/// [`bullets`], written at the end of `out`.
pub(super) fn bullets_into(items: &[String], d: Dialect, out: &mut String) {
    let (mark, sep) = match d {
        Dialect::Slack => ("• ", "\n"),
        Dialect::ChatHtml => ("• ", "<br>"),
        _ => ("- ", "\n"),
    };
    const N: usize = 20;
    let shown = if items.len() > N { N - 1 } else { items.len() };
    let more = (items.len() > N).then(|| and_more(items.len() - shown));
    let lines = items[..shown]
        .iter()
        .map(String::as_str)
        .chain(more.as_deref());
    for (n, l) in lines.enumerate() {
        if n > 0 {
            out.push_str(sep);
        }
        out.push_str(mark);
        markdown_into(l, d, out);
    }
}

/// Links written inline, `[label](url) · …`, for the chats without buttons in a message.
pub(super) fn inline_links(links: &[Link], d: Dialect) -> String {
    links
        .iter()
        .map(|l| {
            format!(
                "[{}]({})",
                literal(&bare(&l.label), d),
                l.url.replace(')', "%29")
            )
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The text a reader sees of portable Markdown: escapes undone, markers and link targets
/// dropped.
pub fn unmarkdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (n, line) in clean(s).split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let (bullet, rest) = bullet(line);
        if bullet {
            out.push_str("- ");
        }
        scan(rest, &mut |p| {
            if let Piece::Text(t) | Piece::Code(t) = p {
                out.push_str(t)
            }
        });
    }
    out
}

/// The card's buttons: `links` (an empty label reads "Open"), else its main `link` as
/// "Open", at most `n`.
pub(super) fn buttons(card: &Card, n: usize) -> Vec<Link> {
    let mut links: Vec<Link> = card
        .links
        .iter()
        .map(|l| Link {
            label: if clean(&l.label).trim().is_empty() {
                "Open".into()
            } else {
                l.label.clone()
            },
            url: l.url.clone(),
        })
        .collect();
    if links.is_empty() {
        if let Some(u) = &card.link {
            links.push(Link {
                label: "Open".into(),
                url: u.clone(),
            });
        }
    }
    links.truncate(n);
    links
}

/// Whether links go in the text: some, and not only the main link (which is the title's).
pub(super) fn shows_links(card: &Card, links: &[Link]) -> bool {
    match links {
        [] => false,
        [only] => card.link.as_ref() != Some(&only.url),
        _ => true,
    }
}

/// Text for Slack's `plain_text` objects: no markup, and `&`, `<`, `>` escaped as Slack asks
/// of every text, so that `<!channel>` stays text.
pub(super) fn slack_plain(s: &str) -> String {
    literal(&clean(s), Dialect::Slack)
}
