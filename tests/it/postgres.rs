//! The gateway on PostgreSQL (`store: {postgres: ...}`): events in, cards out, state kept
//! across a restart (several instances: `instances`), and a database that goes away:
//! ingest answers 503 with Retry-After, never a 202 it cannot keep, and resumes by itself.

use std::time::Duration;

use cardwire::config::{Config, PostgresConfig};
use serde_json::Value;

use crate::pg::Postgres;
use crate::utils::*;

const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn pg_config(dir: &std::path::Path, url: &str) -> Config {
    let mut config = test_config(dir);
    config.store.postgres = Some(PostgresConfig {
        url: url.to_string(),
        pool: 4,
        lease: cardwire::store::pg::LEASE,
        tls: None,
    });
    config.connect.secrets_key = Some(KEY.into());
    config
}

/// A PostgreSQL server, a data folder, a receiver, and a gateway on them with one Teams
/// connection to the receiver.
async fn on_postgres() -> (Postgres, tempfile::TempDir, Receiver, Gateway) {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let g = Gateway::start_with(pg_config(dir.path(), &pg.url())).await;
    g.connect(&receiver.url("/teams"), "teams", &["github"])
        .await;
    (pg, dir, receiver, g)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_runs_on_postgres_and_keeps_its_state_across_a_restart() {
    let (_pg, dir, receiver, mut g) = on_postgres().await;

    let push = fixture("github/push.event.4.json");
    let res = g.github("push", &push, Some("pg-delivery-1")).await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].body["@type"], "MessageCard");
    g.wait_settled().await;

    // The same upstream delivery again: accepted, nothing queued twice.
    let again = g.github("push", &push, Some("pg-delivery-1")).await;
    assert_eq!(again.status(), 202);

    g.restart().await;
    // The connection and the delivered record came back from the database, not from disk.
    let connections = g.admin_get("/api/connections").await;
    assert_eq!(
        connections.as_array().map(Vec::len),
        Some(1),
        "{connections}"
    );
    let delivered = g.deliveries("state=delivered").await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let res = g.github("push", &push, Some("pg-delivery-1")).await;
    assert_eq!(res.status(), 202);
    let res = g.github("push", &push, Some("pg-delivery-2")).await;
    assert_eq!(res.status(), 202);
    let got = receiver.wait_for(2).await;
    g.wait_settled().await;
    assert_eq!(
        receiver.received().len(),
        2,
        "one card per upstream delivery: {got:?}"
    );
    // The data folder holds no sled store: state is in PostgreSQL only.
    assert!(!dir.path().join("sled").exists());
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn while_postgres_is_down_ingest_answers_503_and_resumes_by_itself() {
    let (pg, _dir, receiver, mut g) = on_postgres().await;
    let push = fixture("github/push.event.4.json");
    assert_eq!(g.github("push", &push, Some("before")).await.status(), 202);
    receiver.wait_for(1).await;
    g.wait_settled().await;

    let ready = g.client.get(g.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    pg.kill();
    for path in ["/healthz", "/readyz"] {
        let res = g.client.get(g.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 503, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "store_unavailable", "{path}: {body}");
    }
    let res = g.github("push", &push, Some("during")).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "store_unavailable", "{body}");

    pg.restart();
    // The upstream retries the refused delivery: now it is accepted, once, and delivered.
    let mut accepted = false;
    for _ in 0..50 {
        let res = g.github("push", &push, Some("during")).await;
        if res.status() == 202 {
            accepted = true;
            break;
        }
        assert_eq!(res.status(), 503, "{}", res.text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted, "ingest did not resume");
    let ready = g.client.get(g.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "back in rotation");
    receiver.wait_for(2).await;
    g.wait_settled().await;
    assert_eq!(receiver.received().len(), 2);
    g.stop().await;
}

#[test]
fn the_config_names_what_postgres_needs() {
    let text = r#"
store:
  postgres: {url: "postgres://cardwire@127.0.0.1:5432/cardwire", pool: 0}
"#;
    let err = Config::from_text(std::path::Path::new("c.yaml"), text)
        .expect_err("accepted")
        .to_string();
    assert!(err.contains("c.yaml:3:"), "{err}");
    assert!(err.contains("pool is the number of connections"), "{err}");
    assert!(err.contains("set connect.secrets_key"), "{err}");

    let text = r#"
connect: {secrets_key: "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="}
store:
  postgres: {url: "mysql://nope"}
"#;
    let err = Config::from_text(std::path::Path::new("c.yaml"), text)
        .expect_err("accepted")
        .to_string();
    assert!(err.contains("url is not a PostgreSQL URL"), "{err}");

    let text = r#"
connect: {secrets_key: "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="}
store:
  postgres: {url: "postgres://cardwire@127.0.0.1:5432/cardwire", poool: 4}
"#;
    let err = Config::from_text(std::path::Path::new("c.yaml"), text)
        .expect_err("accepted")
        .to_string();
    assert!(err.contains("poool") && err.contains("pool"), "{err}");

    // TLS settings that contradict each other, or name what is not there, at file:line:col.
    let text = r#"
connect: {secrets_key: "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="}
store:
  postgres:
    url: "postgres://cardwire@db.internal:5432/cardwire?sslmode=verify-ful"
    lease: 100ms
"#;
    let err = Config::from_text(std::path::Path::new("c.yaml"), text)
        .expect_err("accepted")
        .to_string();
    assert!(
        err.contains("c.yaml:5:") && err.contains("sslmode \"verify-ful\" is none of"),
        "{err}"
    );
    assert!(
        err.contains("c.yaml:6:") && err.contains("lease is how long"),
        "{err}"
    );
    for (tls, said) in [
        (
            "{mode: disable, ca_file: /etc/ca.pem}",
            "a CA file with sslmode=disable",
        ),
        (
            "{mode: verify-full, ca_file: /nonexistent/ca.pem}",
            "the CA file /nonexistent/ca.pem does not exist",
        ),
        (
            "{mode: requre}",
            "sslmode \"requre\" is none of disable, prefer, require, verify-ca, verify-full",
        ),
        ("{mode: require, cafile: x}", "unknown field `cafile`"),
    ] {
        let text = format!(
            "connect: {{secrets_key: \"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\"}}\nstore:\n  postgres:\n    url: \"postgres://c@db/c\"\n    tls: {tls}\n"
        );
        let err = Config::from_text(std::path::Path::new("c.yaml"), &text)
            .expect_err(tls)
            .to_string();
        assert!(
            err.contains("c.yaml:5:") && err.contains(said),
            "{tls}: {err}"
        );
    }
    // A relative CA file is the config file's folder's, as every path in it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db-ca.pem"), "x").unwrap();
    let text = "connect: {secrets_key: \"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\"}\nstore:\n  postgres:\n    url: \"postgres://c@db/c\"\n    tls: {mode: verify-full, ca_file: db-ca.pem}\n";
    let config = Config::from_text(&dir.path().join("c.yaml"), text).unwrap();
    assert_eq!(
        config
            .store
            .postgres
            .as_ref()
            .unwrap()
            .tls
            .as_ref()
            .unwrap()
            .ca_file
            .as_deref(),
        Some(dir.path().join("db-ca.pem").as_path())
    );
    let text = "connect: {secrets_key: \"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\"}\nstore:\n  postgres:\n    url: \"postgres://c@db/c?sslmode=require\"\n    tls: {mode: verify-full}\n";
    let err = Config::from_text(std::path::Path::new("c.yaml"), text)
        .expect_err("two modes")
        .to_string();
    assert!(err.contains("disagree"), "{err}");
}

/// `cardwire migrate --check` says where the schema stands and changes nothing (exit 1 while
/// migrations are pending); `cardwire migrate` applies them; a config on sled has no schema.
#[test]
fn migrate_checks_and_upgrades_the_schema() {
    // Over TLS, as `store.postgres.tls` says.
    let pg = Postgres::start_tls(&crate::pg::TestCa::new("migrate CA"), &["127.0.0.1"]);
    let url = pg.database("deploy");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cardwire.yaml");
    std::fs::write(
        &config,
        format!(
            "connect: {{secrets_key: \"{KEY}\"}}\nstore:\n  postgres:\n    url: \"{url}\"\n    tls: {{mode: verify-full, ca_file: \"{}\"}}\n",
            pg.ca_file.as_ref().unwrap().display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cardwire"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["migrate", "--check"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains(
            "5 migration(s) to apply: 1 (state), 2 (instances), 3 (message_refs), 4 (source_apps), 5 (source_hooks)"
        ),
        "{out}"
    );
    let (code, out, err) = run(&["migrate", "--check"]);
    assert_eq!(code, Some(1), "--check changed nothing: {out}{err}");
    let (code, out, err) = run(&["migrate"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("up to date (schema version 5)"), "{out}");
    let (code, out, _) = run(&["migrate", "--check"]);
    assert_eq!(
        (code, out.trim()),
        (Some(0), "up to date (schema version 5)")
    );

    // `check` says what every instance on the database must share.
    let (code, out, err) = run(&["check"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("every instance on this database needs the same connect.secrets_key")
            && out.contains("this set's is "),
        "{out}"
    );

    std::fs::write(&config, "listen: 127.0.0.1:0\n").unwrap();
    let (code, _, err) = run(&["migrate", "--check"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("there is no schema to migrate"), "{err}");
}

/// The suite's switch: with `CARDWIRE_TEST_STORE=postgres` every gateway of the suite keeps its
/// state in a database of its own (and none in a sled folder); without it, in sled.
#[tokio::test(flavor = "multi_thread")]
async fn the_suite_keeps_state_where_the_run_says() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    assert_eq!(config.store.postgres.is_some(), crate::pg::on_postgres());
    let mut g = Gateway::start_with(config.clone()).await;
    g.connect("http://127.0.0.1:9/hook", "teams", &[]).await;
    g.stop().await;
    assert_eq!(dir.path().join("sled").exists(), !crate::pg::on_postgres());
    if let Some(pg) = config.store.postgres {
        let rows: i64 = crate::pg::outside(move || {
            let mut c = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
            c.query_one("SELECT count(*) FROM connections", &[])
                .unwrap()
                .get(0)
        });
        assert_eq!(rows, 1);
    }
}

/// `cardwire migrate --from-sled DIR`: a single instance's data folder moves into PostgreSQL,
/// and a gateway on the database sends the cards the folder had queued, to the connection it
/// had.
#[tokio::test(flavor = "multi_thread")]
async fn migrate_from_sled_moves_a_folder_and_its_cards_go_out() {
    use cardwire::ids::{ConnectionId, EventId};
    use cardwire::store::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let receiver = Receiver::start().await;
    // A single instance on sled (its own secrets key, in the folder), with one connection.
    let mut sled_config = test_config(&data);
    sled_config.store.postgres = None;
    sled_config.connect.secrets_key = None;
    let mut g = Gateway::start_with(sled_config).await;
    let con = g
        .connect(&receiver.url("moved"), "teams", &["github"])
        .await;
    g.stop().await;
    // A card still queued when it stopped.
    {
        let store = cardwire::store::Store::open(&data, None).unwrap();
        store
            .enqueue(&cardwire::store::OutboxRecord::new(
                EventId::new(),
                ConnectionId::parse(&con).unwrap(),
                "moved",
                cardwire::render::CardKind::Teams,
                r#"{"@type":"MessageCard","@context":"https://schema.org/extensions","text":"queued before the move"}"#.into(),
                cardwire::store::now_ms(),
            ))
            .unwrap();
        store.flush().unwrap();
    }

    // Over TLS, as the URL says.
    let pg = Postgres::start_tls(&crate::pg::TestCa::new("import CA"), &["127.0.0.1"]);
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.database("moved"),
        pg.ca_file.as_ref().unwrap().display()
    );
    let config = dir.path().join("cardwire.yaml");
    std::fs::write(
        &config,
        format!("connect: {{secrets_key: \"{KEY}\"}}\nstore:\n  postgres: {{url: \"{url}\"}}\n"),
    )
    .unwrap();
    let migrate = |extra: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cardwire"))
            .arg("migrate")
            .args(extra)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let from = [std::ffi::OsStr::new("--from-sled"), data.as_os_str()];
    let (code, out) = migrate(&from);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("1 connections, 1 queued cards"),
        "says what it moved: {out}"
    );
    let (code, out) = migrate(&from);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("already holds 1 connections"), "{out}");
    let (code, out) = migrate(&[std::ffi::OsStr::new("--from-sled"), dir.path().as_os_str()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("is not a cardwire data folder"), "{out}");

    let mut on_pg = Gateway::start_with(pg_config(&dir.path().join("pg"), &url)).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].path, "/moved");
    assert_eq!(got[0].body["text"], "queued before the move");
    on_pg.wait_settled().await;
    on_pg.stop().await;
}
