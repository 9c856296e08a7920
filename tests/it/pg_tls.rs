//! PostgreSQL over TLS: a real server started with `ssl=on` and a certificate signed by a CA
//! the test makes; each of libpq's modes as cardwire's connector takes it. (The store contract
//! suite, `tests/it/store.rs`, runs over TLS too: its PostgreSQL backend is such a server,
//! checked with `verify-full`; and so do `migrate` and `migrate --from-sled`:
//! `tests/it/postgres.rs`.)

use cardwire::store::pg::tls::Connector;

use crate::pg::{outside, Postgres, TestCa};

/// Connects as `url` says: whether the connection is encrypted, or the error with its causes.
fn connect(url: String) -> Result<bool, String> {
    outside(move || {
        let connector = Connector::new(&url)?;
        let mut client = connector.connect().map_err(|e| {
            let mut said = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                said.push_str(&format!(": {c}"));
                cause = c.source();
            }
            said
        })?;
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .map_err(|e| e.to_string())?;
        Ok(row.get::<_, bool>(0))
    })
}

#[test]
fn each_mode_connects_as_libpq_says() {
    let ca = TestCa::new("cardwire test CA");
    let pg = Postgres::start_tls(&ca, &["localhost", "127.0.0.1"]);
    // Encrypted, checked or not; plain with disable.
    for mode in ["require", "verify-ca", "verify-full", "prefer"] {
        assert_eq!(connect(pg.tls_url(mode)), Ok(true), "{mode}");
    }
    assert_eq!(
        connect(format!("{}?sslmode=require", pg.url())),
        Ok(true),
        "require without a CA: unchecked"
    );
    assert_eq!(
        connect(format!("{}?sslmode=prefer", pg.url())),
        Ok(true),
        "prefer: TLS when offered"
    );
    assert_eq!(connect(format!("{}?sslmode=disable", pg.url())), Ok(false));
    assert_eq!(connect(pg.url()), Ok(true), "libpq's default is prefer");
    // A CA that did not sign the server's certificate.
    let other = TestCa::new("another CA");
    let dir = tempfile::tempdir().unwrap();
    let other_file = dir.path().join("other.crt");
    std::fs::write(&other_file, other.pem()).unwrap();
    for mode in ["verify-ca", "verify-full", "require"] {
        let url = format!(
            "{}?sslmode={mode}&sslrootcert={}",
            pg.url(),
            other_file.display()
        );
        let err = connect(url).unwrap_err();
        assert!(
            err.contains("UnknownIssuer") || err.contains("unknown issuer"),
            "{mode}: {err}"
        );
    }
}

#[test]
fn verify_full_refuses_a_certificate_for_another_name() {
    let ca = TestCa::new("cardwire test CA");
    let pg = Postgres::start_tls(&ca, &["db.other.example"]);
    let err = connect(pg.tls_url("verify-full")).unwrap_err();
    assert!(err.contains("TLS"), "{err}");
    assert!(
        err.contains("not valid for name") || err.contains("NotValidForName"),
        "says the name does not match: {err}"
    );
    // verify-ca checks the chain only.
    assert_eq!(connect(pg.tls_url("verify-ca")), Ok(true));
}

#[test]
fn a_server_without_tls_is_refused_unless_tls_is_optional() {
    let pg = Postgres::start();
    let err = connect(format!("{}?sslmode=require", pg.url())).unwrap_err();
    assert!(err.contains("does not support TLS"), "{err}");
    assert_eq!(connect(format!("{}?sslmode=prefer", pg.url())), Ok(false));
}
