//! The shipped rules and templates against every vendored payload (tests/fixtures/): which rules
//! take which payload, that each card renders and is valid in both kinds, and end to end through
//! the gateway.

use std::path::PathBuf;

use cardwire::config::Config;
use cardwire::event::Event;
use cardwire::pipeline::Pipeline;
use cardwire::render::CardKind;
use serde_json::Value;

use crate::utils::*;

/// Every fixture and the rules that must take it — exactly these, in this order. A payload
/// that no rule takes (`&[]`) is one the shipped packs deliberately leave quiet.
pub(crate) const TABLE: &[(&str, &[&str])] = &[
    (
        "github/check_run.completed.1.json",
        &["github-check-run-failed"],
    ),
    ("github/check_run.completed.2.json", &[]),
    ("github/check_run.created.0.json", &[]),
    ("github/check_run.created.4.json", &[]),
    ("github/check_run.requested_action.6.json", &[]),
    ("github/check_run.rerequested.7.json", &[]),
    ("github/check_run.rerequested.8.json", &[]),
    (
        "github/check_suite.completed-failure.0.derived.json",
        &["github-check-suite-failed"],
    ),
    ("github/check_suite.completed.0.json", &[]),
    ("github/check_suite.completed.1.json", &[]),
    ("github/check_suite.requested.4.json", &[]),
    ("github/check_suite.requested.5.json", &[]),
    ("github/check_suite.rerequested.7.json", &[]),
    ("github/check_suite.rerequested.8.json", &[]),
    ("github/code_scanning_alert.closed_by_user.1.json", &[]),
    (
        "github/code_scanning_alert.created.2.json",
        &["github-code-scanning-alert"],
    ),
    ("github/code_scanning_alert.fixed.3.json", &[]),
    (
        "github/code_scanning_alert.reopened.0.json",
        &["github-code-scanning-alert"],
    ),
    (
        "github/code_scanning_alert.reopened.4.json",
        &["github-code-scanning-alert"],
    ),
    ("github/create.event.0.json", &[]),
    ("github/create.event.1.json", &[]),
    ("github/delete.event.0.json", &[]),
    ("github/delete.event.1.json", &[]),
    (
        "github/dependabot_alert.created.1.json",
        &["github-dependabot-alert"],
    ),
    ("github/dependabot_alert.fixed.0.json", &[]),
    ("github/dependabot_alert.fixed.2.json", &[]),
    (
        "github/deployment_status.created.0.json",
        &["github-deployment-status"],
    ),
    ("github/deployment_status.created.1.json", &[]),
    (
        "github/issue_comment.created.0.json",
        &["github-issue-comment"],
    ),
    (
        "github/issue_comment.created.1.json",
        &["github-issue-comment"],
    ),
    ("github/issue_comment.deleted.5.json", &[]),
    ("github/issue_comment.deleted.6.json", &[]),
    ("github/issue_comment.edited.7.json", &[]),
    ("github/issue_comment.edited.8.json", &[]),
    ("github/issues.assigned.1.json", &[]),
    ("github/issues.assigned.2.json", &[]),
    (
        "github/issues.closed.15.derived.json",
        &["github-issue-closed"],
    ),
    ("github/issues.deleted.4.json", &[]),
    ("github/issues.demilestoned.5.json", &[]),
    ("github/issues.demilestoned.6.json", &[]),
    ("github/issues.edited.0.json", &[]),
    ("github/issues.edited.7.json", &[]),
    ("github/issues.labeled.10.json", &[]),
    ("github/issues.labeled.9.json", &[]),
    ("github/issues.locked.11.json", &[]),
    ("github/issues.locked.12.json", &[]),
    ("github/issues.milestoned.13.json", &[]),
    ("github/issues.milestoned.14.json", &[]),
    ("github/issues.opened.15.json", &["github-issue-opened"]),
    ("github/issues.opened.16.json", &["github-issue-opened"]),
    ("github/issues.pinned.19.json", &[]),
    ("github/issues.reopened.20.json", &["github-issue-opened"]),
    ("github/issues.transferred.21.json", &[]),
    ("github/issues.unassigned.22.json", &[]),
    ("github/issues.unassigned.23.json", &[]),
    ("github/issues.unlabeled.24.json", &[]),
    ("github/issues.unlabeled.25.json", &[]),
    ("github/issues.unlocked.26.json", &[]),
    ("github/issues.unlocked.27.json", &[]),
    ("github/issues.unpinned.28.json", &[]),
    ("github/ping.event.0.json", &[]),
    ("github/ping.event.1.json", &[]),
    ("github/pull_request.assigned.1.json", &[]),
    ("github/pull_request.assigned.2.json", &[]),
    (
        "github/pull_request.closed-merged.3.derived.json",
        &["github-pr-merged"],
    ),
    ("github/pull_request.closed.3.json", &["github-pr-closed"]),
    ("github/pull_request.closed.4.json", &["github-pr-closed"]),
    ("github/pull_request.converted_to_draft.5.json", &[]),
    ("github/pull_request.converted_to_draft.6.json", &[]),
    ("github/pull_request.labeled.8.json", &[]),
    ("github/pull_request.labeled.9.json", &[]),
    ("github/pull_request.locked.10.json", &[]),
    ("github/pull_request.locked.11.json", &[]),
    ("github/pull_request.opened.0.json", &["github-pr-opened"]),
    ("github/pull_request.opened.12.json", &["github-pr-opened"]),
    (
        "github/pull_request.ready_for_review.15.json",
        &["github-pr-ready-for-review"],
    ),
    (
        "github/pull_request.ready_for_review.16.json",
        &["github-pr-ready-for-review"],
    ),
    (
        "github/pull_request.reopened.18.json",
        &["github-pr-reopened"],
    ),
    (
        "github/pull_request.reopened.19.json",
        &["github-pr-reopened"],
    ),
    ("github/pull_request.review_request_removed.20.json", &[]),
    (
        "github/pull_request.review_requested.21.json",
        &["github-pr-review-requested"],
    ),
    ("github/pull_request.synchronize.22.json", &[]),
    ("github/pull_request.unassigned.23.json", &[]),
    ("github/pull_request.unassigned.24.json", &[]),
    ("github/pull_request.unlabeled.25.json", &[]),
    ("github/pull_request.unlabeled.26.json", &[]),
    ("github/pull_request.unlocked.27.json", &[]),
    ("github/pull_request.unlocked.28.json", &[]),
    ("github/pull_request_review.dismissed.1.json", &[]),
    (
        "github/pull_request_review.submitted-approved.0.derived.json",
        &["github-review-approved"],
    ),
    (
        "github/pull_request_review.submitted-changes_requested.0.derived.json",
        &["github-review-changes-requested"],
    ),
    ("github/pull_request_review.submitted.0.json", &[]),
    ("github/pull_request_review.submitted.2.json", &[]),
    (
        "github/push.event-forced.5.derived.json",
        &["github-push-force"],
    ),
    ("github/push.event.0.json", &["github-push-tag"]),
    ("github/push.event.1.json", &["github-push-deleted"]),
    ("github/push.event.2.json", &["github-push-deleted"]),
    ("github/push.event.3.json", &["github-push-deleted"]),
    ("github/push.event.4.json", &["github-push-branch"]),
    ("github/push.event.5.json", &["github-push-branch"]),
    ("github/push.event.6.json", &["github-push-deleted"]),
    ("github/release.created.1.json", &[]),
    ("github/release.created.2.json", &[]),
    ("github/release.deleted.4.json", &[]),
    ("github/release.deleted.5.json", &[]),
    ("github/release.edited.6.json", &[]),
    ("github/release.edited.7.json", &[]),
    ("github/release.prereleased.8.json", &[]),
    ("github/release.prereleased.9.json", &[]),
    (
        "github/release.published.0.json",
        &["github-release-published"],
    ),
    (
        "github/release.published.10.json",
        &["github-release-published"],
    ),
    ("github/release.released.12.json", &[]),
    (
        "github/workflow_job.completed.1.json",
        &["github-workflow-job-failed"],
    ),
    ("github/workflow_job.completed.2.json", &[]),
    ("github/workflow_job.in_progress.0.json", &[]),
    ("github/workflow_job.in_progress.3.json", &[]),
    ("github/workflow_job.queued.5.json", &[]),
    ("github/workflow_job.queued.6.json", &[]),
    ("github/workflow_job.waiting.7.json", &[]),
    (
        "github/workflow_run.completed-failure.1.derived.json",
        &["github-workflow-run-failed"],
    ),
    ("github/workflow_run.completed.0.json", &[]),
    ("github/workflow_run.completed.1.json", &[]),
    ("github/workflow_run.requested.3.json", &[]),
    ("github/workflow_run.requested.4.json", &[]),
    ("gitlab/deployment.json", &["gitlab-deployment"]),
    ("gitlab/issue.close.derived.json", &["gitlab-issue"]),
    ("gitlab/issue.json", &["gitlab-issue"]),
    (
        "gitlab/merge_request.close.derived.json",
        &["gitlab-mr-closed"],
    ),
    ("gitlab/merge_request.json", &["gitlab-mr-opened"]),
    (
        "gitlab/merge_request.merge.derived.json",
        &["gitlab-mr-merged"],
    ),
    ("gitlab/note-issue.json", &["gitlab-note"]),
    (
        "gitlab/pipeline.failed.derived.json",
        &["gitlab-pipeline-failed"],
    ),
    ("gitlab/pipeline.json", &["gitlab-pipeline-recovered"]),
    ("gitlab/push.json", &["gitlab-push"]),
    ("gitlab/release.json", &["gitlab-release"]),
    ("gitlab/tag_push.json", &["gitlab-tag-push"]),
    ("alertmanager/firing.json", &["alertmanager-firing"]),
    ("alertmanager/resolved.json", &["alertmanager-resolved"]),
];

/// The source and the event-type header of a fixture, from its folder and name.
fn source_and_headers(fixture: &str) -> (&'static str, Vec<(&'static str, String)>) {
    let (dir, file) = fixture.split_once('/').unwrap();
    let stem = file.split('.').next().unwrap();
    match dir {
        "github" => ("github", vec![("x-github-event", stem.to_string())]),
        "gitlab" => {
            let event = match stem {
                "push" => "Push Hook",
                "tag_push" => "Tag Push Hook",
                "issue" => "Issue Hook",
                "note-issue" => "Note Hook",
                "merge_request" => "Merge Request Hook",
                "pipeline" => "Pipeline Hook",
                "deployment" => "Deployment Hook",
                "release" => "Release Hook",
                other => panic!("no X-Gitlab-Event known for {other}"),
            };
            ("gitlab", vec![("x-gitlab-event", event.to_string())])
        }
        "alertmanager" => ("alertmanager", vec![]),
        other => panic!("unknown fixture folder {other}"),
    }
}

pub(crate) fn shipped() -> (Config, Pipeline) {
    let config = test_config(&std::env::temp_dir());
    let pipeline = Pipeline::load(&config).unwrap_or_else(|e| panic!("{e}"));
    (config, pipeline)
}

/// A fixture's source and request headers.
pub(crate) fn request(fixture_name: &str) -> (&'static str, axum::http::HeaderMap) {
    let (source, headers) = source_and_headers(fixture_name);
    let mut map = axum::http::HeaderMap::new();
    for (k, v) in headers {
        map.insert(k, v.parse().unwrap());
    }
    (source, map)
}

/// Every rule of an event's source and type, enabled or not.
fn rules_of_event<'a>(
    pipeline: &'a Pipeline,
    e: &'a Event,
) -> impl Iterator<Item = &'a cardwire::rules::Rule> {
    pipeline
        .rules
        .rules()
        .iter()
        .filter(|r| r.source == e.source && r.event == e.event_type)
}

fn event(config: &Config, fixture_name: &str) -> Event {
    let (source, map) = request(fixture_name);
    let payload: Value = serde_json::from_slice(&fixture(fixture_name)).unwrap();
    cardwire::ingest::verify::Verified::trusted(source, &config.sources[source], &map)
        .event(payload)
        .unwrap()
}

#[test]
fn every_fixture_is_taken_by_exactly_its_rules() {
    let (config, pipeline) = shipped();
    let mut failures = Vec::new();
    for (fixture_name, want) in TABLE {
        let e = event(&config, fixture_name);
        let got: Vec<&str> = pipeline
            .rules
            .matches(&e)
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        if got != *want {
            failures.push(format!("{fixture_name}: matched {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_table_covers_every_fixture_and_every_enabled_rule() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut on_disk = Vec::new();
    for dir in ["github", "gitlab", "alertmanager"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            let name = entry.file_name().into_string().unwrap();
            if name.ends_with(".json") {
                on_disk.push(format!("{dir}/{name}"));
            }
        }
    }
    on_disk.sort();
    let mut listed: Vec<String> = TABLE.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every vendored fixture has a row in TABLE");
    let (_, pipeline) = shipped();
    for rule in pipeline.rules.rules().iter().filter(|r| r.enabled) {
        assert!(
            TABLE
                .iter()
                .any(|(_, rules)| rules.contains(&rule.name.as_str())),
            "no fixture exercises rule {}",
            rule.name
        );
    }
}

/// Every rule's template renders, in both kinds, every fixture of the rule's event — disabled
/// rules included, so turning one on cannot surprise anyone.
#[test]
fn every_rule_renders_every_fixture_of_its_event_in_both_kinds() {
    let (config, pipeline) = shipped();
    let mut rendered = 0;
    let mut failures = Vec::new();
    for (fixture_name, _) in TABLE {
        let e = event(&config, fixture_name);
        for rule in rules_of_event(&pipeline, &e) {
            for kind in CardKind::ALL {
                match pipeline.renderer.render(&rule.template, kind, e.context()) {
                    Ok(body) => {
                        assert!(body.len() <= cardwire::render::MAX_CARD_BYTES);
                        // Counts read as words: `1 commit`, `3 commits`, never `commit(s)`.
                        assert!(
                            !body.contains("(s)"),
                            "{fixture_name} with {}: {body}",
                            rule.name
                        );
                    }
                    Err(err) => failures.push(format!(
                        "{fixture_name} with {} ({}): {err}",
                        rule.name,
                        kind.as_str()
                    )),
                }
                rendered += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(rendered > 200, "only {rendered} cards rendered");
}

/// Ingest builds only what the rules and templates read of a payload (`cardwire::needs`): for
/// every fixture, that event matches the same rules and renders byte-identical cards, in both
/// kinds, for every rule of its event (disabled ones too), with the same dedup and limit keys
/// and the same digest item as the whole payload.
#[test]
fn the_payload_ingest_builds_gives_the_same_matches_and_cards() {
    let (config, pipeline) = shipped();
    let mut compared = 0;
    for (fixture_name, _) in TABLE {
        let whole = event(&config, fixture_name);
        let (source, map) = request(fixture_name);
        let hint = cardwire::ingest::verify::event_type_hint(&config.sources[source], &map);
        let payload = pipeline
            .needs
            .projection(source, hint.as_deref())
            .parse(&fixture(fixture_name))
            .unwrap();
        let part =
            cardwire::ingest::verify::Verified::trusted(source, &config.sources[source], &map)
                .event(payload)
                .unwrap();
        assert_eq!(part.action, whole.action, "{fixture_name}");
        let names = |e: &Event| -> Vec<String> {
            let rules = pipeline.rules.matches(e);
            rules.iter().map(|r| r.name.clone()).collect()
        };
        assert_eq!(names(&part), names(&whole), "{fixture_name}");
        for rule in rules_of_event(&pipeline, &whole) {
            for kind in CardKind::ALL {
                let render = |e: &Event| {
                    pipeline
                        .renderer
                        .render_with(&rule.template, kind, e.template_context())
                        .map_err(|e| e.to_string())
                };
                assert_eq!(
                    render(&part),
                    render(&whole),
                    "{fixture_name} with {} ({})",
                    rule.name,
                    kind.as_str()
                );
                compared += 1;
            }
            let teams = pipeline
                .renderer
                .render_with(&rule.template, CardKind::Teams, whole.template_context())
                .ok();
            let item = |e: &Event| cardwire::noise::item_of(rule, e, teams.as_deref(), None, 0);
            assert_eq!(item(&part), item(&whole), "{fixture_name}");
            for expr in rule
                .dedup
                .iter()
                .map(|d| &d.key)
                .chain(rule.limit.iter().filter_map(|l| l.per.as_ref()))
            {
                let key = |e: &Event| {
                    pipeline
                        .renderer
                        .render_expr(expr, e.template_context())
                        .unwrap()
                };
                assert_eq!(key(&part), key(&whole), "{fixture_name}: {expr}");
            }
        }
    }
    assert!(compared > 200, "only {compared} cards compared");
}

/// The projection is real: of the benchmark's push payload, the repository's ~100 members and
/// most of the sender are not built (about 1 KB of 7.7 KB is).
#[test]
fn ingest_does_not_build_what_nothing_reads() {
    let (_, pipeline) = shipped();
    let body = fixture("github/push.event.4.json");
    let part = pipeline
        .needs
        .projection("github", Some("push"))
        .parse(&body)
        .unwrap();
    let whole: Value = serde_json::from_slice(&body).unwrap();
    assert!(whole["repository"]["forks_count"].is_number());
    assert!(part["repository"].get("forks_count").is_none());
    assert_eq!(
        part["repository"]["full_name"],
        whole["repository"]["full_name"]
    );
    let size = |v: &Value| serde_json::to_string(v).unwrap().len();
    assert!(
        size(&part) * 5 < size(&whole),
        "{} of {} bytes built",
        size(&part),
        size(&whole)
    );
}

#[test]
fn a_failed_run_stands_out() {
    let (config, pipeline) = shipped();
    let render = |file: &str, kind| {
        let e = event(&config, file);
        let rule = pipeline.rules.matches(&e)[0].template.clone();
        let body = pipeline.renderer.render(&rule, kind, e.context()).unwrap();
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let failed = render(
        "github/workflow_run.completed-failure.1.derived.json",
        CardKind::Teams,
    );
    assert_eq!(failed["themeColor"], "D73A49");
    assert!(failed["title"].as_str().unwrap().contains("Failed"));
    let failed = render(
        "github/workflow_run.completed-failure.1.derived.json",
        CardKind::Workflow,
    );
    assert_eq!(
        failed["attachments"][0]["content"]["body"][0]["color"],
        "Attention"
    );
    let failed = render("gitlab/pipeline.failed.derived.json", CardKind::Teams);
    assert_eq!(failed["themeColor"], "D73A49");
    assert!(
        failed["sections"][0]["text"]
            .as_str()
            .unwrap()
            .contains("test / test-build (script failure)"),
        "{failed}"
    );
    let recovered = render("gitlab/pipeline.json", CardKind::Teams);
    assert_ne!(recovered["themeColor"], "D73A49");
}

/// (fixture, the path of the link the card must carry)
const END_TO_END: &[(&str, &str)] = &[
    ("github/push.event.4.json", "/compare"),
    ("github/push.event.1.json", "/repository/html_url"),
    (
        "github/pull_request.opened.0.json",
        "/pull_request/html_url",
    ),
    (
        "github/pull_request.closed-merged.3.derived.json",
        "/pull_request/html_url",
    ),
    ("github/issues.closed.15.derived.json", "/issue/html_url"),
    ("github/release.published.0.json", "/release/html_url"),
    (
        "github/workflow_run.completed-failure.1.derived.json",
        "/workflow_run/html_url",
    ),
];

#[tokio::test]
async fn shipped_rules_send_cards_naming_repository_actor_and_link() {
    let g = Gateway::start().await;
    let rx = Receiver::start().await;
    g.connect(&rx.url("teams"), "teams", &[]).await;
    g.connect(&rx.url("workflow"), "workflow", &[]).await;
    let mut seen = 0;
    for (file, link) in END_TO_END {
        let p: Value = serde_json::from_slice(&fixture(file)).unwrap();
        let (_, headers) = source_and_headers(file);
        let res = g.github(&headers[0].1, &fixture(file), None).await;
        assert_eq!(res.status(), 202, "{file}");
        seen += 2;
        let got = rx.wait_for(seen).await;
        let repo = p["repository"]["full_name"].as_str().unwrap();
        let actor = p["sender"]["login"].as_str().unwrap();
        let link = p.pointer(link).and_then(Value::as_str).unwrap();
        for card in &got[seen - 2..] {
            let text = card.body.to_string();
            assert!(
                text.contains(repo),
                "{file} to {}: no repository {repo}",
                card.path
            );
            assert!(
                text.contains(actor),
                "{file} to {}: no actor {actor}",
                card.path
            );
            assert!(
                text.contains(link),
                "{file} to {}: no link {link}",
                card.path
            );
        }
        let teams = got[seen - 2..].iter().find(|c| c.path == "/teams").unwrap();
        assert_eq!(teams.body["@type"], "MessageCard");
        let workflow = got[seen - 2..]
            .iter()
            .find(|c| c.path == "/workflow")
            .unwrap();
        assert_eq!(workflow.body["attachments"][0]["content"]["version"], "1.4");
    }
}
