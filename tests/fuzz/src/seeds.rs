//! The seed corpus of each target, made from the project's own files: the vendored payloads
//! (tests/fixtures), the example config, the shipped rules and templates, and a few answers
//! as the platforms send them. Nothing is copied into the fuzz folder; `cargo run -p
//! cardwire-fuzz --bin seeds -- DIR` writes them out for `cargo afl fuzz -i`.

use std::path::{Path, PathBuf};

use crate::files;

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The vendored payloads, by name.
fn payloads() -> Vec<(String, Vec<u8>)> {
    ["github", "gitlab", "alertmanager"]
        .iter()
        .flat_map(|dir| files(&root().join("tests/fixtures").join(dir)))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn with(prefix: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(body);
    v
}

/// The seeds of the target `name`: (file name, bytes).
pub fn for_target(name: &str) -> Vec<(String, Vec<u8>)> {
    match name {
        "needs" => payloads()
            .into_iter()
            .enumerate()
            .map(|(i, (file, body))| {
                // Every path, some whole; a different mix for each payload.
                let pick = [0xff, 0x0f, 0xf0, 0x55][i % 4];
                (file, with(&[pick, 0x09], &body))
            })
            .collect(),
        "ndjson" => {
            let mut seeds = vec![(
                "small.ndjson".to_string(),
                with(&[16, 2, 3, 7], b"{\"a\":1}\n{\"b\":[1,2]}\r\n\n0123456789abcdefXYZ\nlast"),
            )];
            // A payload pretty-printed, one line per member, cut in chunks of 64 bytes.
            let firing = read("tests/fixtures/alertmanager/firing.json");
            seeds.push(("firing.lines".into(), with(&[80, 1, 64], &firing)));
            seeds
        }
        "verify" => payloads()
            .into_iter()
            .take(6)
            .map(|(file, body)| {
                let sig = cardwire::ingest::verify::sign(crate::targets::SECRET_FOR_SEEDS, &body);
                let mut v = sig.into_bytes();
                v.push(0);
                v.extend_from_slice(format!("Bearer {}", crate::targets::TOKEN_FOR_SEEDS).as_bytes());
                v.push(0);
                v.extend_from_slice(crate::targets::SECRET_FOR_SEEDS.as_bytes());
                v.push(0);
                v.extend_from_slice(&body);
                (file, v)
            })
            .collect(),
        "retry_after" => [
            "0",
            "2",
            "1.5",
            "120",
            " 30 ",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "-1",
            "NaN",
        ]
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("{i}.txt"), s.as_bytes().to_vec()))
        .collect(),
        "callback" => [
            // As the Office 365 emulator (and the connector documentation) sends them.
            "state=Qf3oE2&webhook_url=https%3A%2F%2Foutlook.office.com%2Fwebhook%2Fabc%40def%2FIncomingWebhook%2F123%2F456&group_name=Ops%20team&app_type=teams&user_objectId=9b1e",
            "state=Qf3oE2&webhook_url=https%3A%2F%2Foutlook.office.com%2Fwebhook%2Fx&app_type=mail&user_objectId=9b1e",
            "state=Qf3oE2&error=AccessDenied",
            "state=Qf3oE2&error=ServerError&app_type=groups",
        ]
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("{i}.query"), s.as_bytes().to_vec()))
        .collect(),
        "config" => vec![(
            "cardwire.yaml".into(),
            read("examples/cardwire.yaml"),
        )],
        "rules" => files(&root().join("rules"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().to_string(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect(),
        "templates" => files(&root().join("templates"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "hbs"))
            .map(|p| {
                let file = p.file_name().unwrap().to_string_lossy().to_string();
                // 0x80: a portable card; else the kind its name says (Teams, 0).
                let pick = if file.ends_with(".card.hbs") { 0x80 } else { 0 };
                (file, with(&[pick], &std::fs::read(&p).unwrap()))
            })
            .collect(),
        other => panic!("no target {other}"),
    }
}
