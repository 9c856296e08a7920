//! TLS to PostgreSQL, as libpq's `sslmode` and `sslrootcert` say, through rustls (no OpenSSL).
//!
//! In: the store's URL (`postgres://…?sslmode=verify-full&sslrootcert=/etc/ca.pem`, or libpq's
//! `key=value` form). Out: a [`Connector`] that makes connections with those settings.
//! Guarantees: the modes mean what they mean to libpq: `disable` plain; `prefer` (the default)
//! TLS when the server offers it, plain otherwise, the certificate not checked; `require` TLS or
//! no connection, the certificate not checked (checked against the CA, as `verify-ca`, when
//! `sslrootcert` names one); `verify-ca` the chain checked against the CA file or the system's
//! roots; `verify-full` that and the host name. tokio-postgres knows only the first three and
//! not `sslrootcert`: both are taken out of the URL here and done by the rustls configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain.
    Disable,
    /// TLS when offered, unchecked; plain otherwise.
    Prefer,
    /// TLS, unchecked.
    Require,
    /// TLS, the chain checked.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

/// The modes' names, as libpq writes them.
pub const MODES: &[&str] = &["disable", "prefer", "require", "verify-ca", "verify-full"];

impl Mode {
    /// The mode `name` names.
    pub fn parse(name: &str) -> Result<Mode, String> {
        Ok(match name {
            "disable" => Mode::Disable,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => return Err(format!("sslmode {other:?} is none of {}", MODES.join(", "))),
        })
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        MODES[self as usize]
    }
}

/// What a URL says of TLS, taken out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The URL without `sslmode` and `sslrootcert` (what tokio-postgres reads).
    pub rest: String,
    /// `sslmode`, when given.
    pub mode: Option<Mode>,
    /// `sslrootcert`, when given.
    pub ca_file: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of a PostgreSQL URL (or `key=value` string).
pub fn split(url: &str) -> Result<Split, String> {
    let mut mode = None;
    let mut ca_file = None;
    let mut take = |k: &str, v: &str| -> Result<bool, String> {
        match k {
            "sslmode" => mode = Some(Mode::parse(v)?),
            "sslrootcert" => ca_file = Some(PathBuf::from(v)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok(Split {
                rest: url.to_string(),
                mode: None,
                ca_file: None,
            });
        };
        let mut kept = url::form_urlencoded::Serializer::new(String::new());
        let mut any = false;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if !take(&k, &v)? {
                kept.append_pair(&k, &v);
                any = true;
            }
        }
        let kept = kept.finish();
        let rest = if any {
            format!("{base}?{kept}")
        } else {
            base.to_string()
        };
        return Ok(Split {
            rest,
            mode,
            ca_file,
        });
    }
    // libpq's `key=value` form (values without spaces).
    let mut kept = Vec::new();
    for word in url.split_whitespace() {
        match word.split_once('=') {
            Some((k, v)) if take(k, v.trim_matches('\''))? => {}
            _ => kept.push(word),
        }
    }
    Ok(Split {
        rest: kept.join(" "),
        mode,
        ca_file,
    })
}

/// The URL with `mode` and `ca_file` (`store.postgres.tls`) in it; an error when the URL says
/// otherwise, or when the two contradict each other (a CA file with `disable`).
pub fn with_settings(
    url: &str,
    mode: Option<&str>,
    ca_file: Option<&Path>,
) -> Result<String, String> {
    let s = split(url)?;
    let mode = match (s.mode, mode.map(Mode::parse).transpose()?) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!(
                "the URL's sslmode={} and tls.mode {} disagree: keep one",
                a.as_str(),
                b.as_str()
            ))
        }
        (a, b) => a.or(b),
    };
    let ca = match (&s.ca_file, ca_file) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!(
                "the URL's sslrootcert={} and tls.ca_file {} disagree: keep one",
                a.display(),
                b.display()
            ))
        }
        (a, b) => a.clone().or_else(|| b.map(Path::to_path_buf)),
    };
    if mode == Some(Mode::Disable) && ca.is_some() {
        return Err(
            "a CA file with sslmode=disable: TLS is off, so the CA is never used; drop one".into(),
        );
    }
    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(m) = mode {
        params.push(("sslmode".into(), m.as_str().into()));
    }
    if let Some(c) = &ca {
        params.push(("sslrootcert".into(), c.display().to_string()));
    }
    if params.is_empty() {
        return Ok(s.rest);
    }
    if s.rest.starts_with("postgres://") || s.rest.starts_with("postgresql://") {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &params {
            q.append_pair(k, v);
        }
        let sep = if s.rest.contains('?') { '&' } else { '?' };
        Ok(format!("{}{sep}{}", s.rest, q.finish()))
    } else {
        let extra: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Ok(format!("{} {}", s.rest, extra.join(" ")))
    }
}

/// Makes connections as a URL says, TLS included.
pub struct Connector {
    config: postgres::Config,
    mode: Mode,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl Connector {
    /// The connector of `url`: its TLS settings read, the CA file loaded (or the system's
    /// roots), the connect timeout 5 s unless the URL sets one.
    pub fn new(url: &str) -> Result<Connector, String> {
        let s = split(url)?;
        let mut config: postgres::Config = s.rest.parse().map_err(|e| format!("{e}"))?;
        if config.get_connect_timeout().is_none() {
            // A server that does not answer is unavailable after a few seconds, not after the
            // system's TCP timeout.
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        // libpq: `require` with a CA file checks the chain, as `verify-ca`.
        let mode = match (s.mode.unwrap_or(Mode::Prefer), &s.ca_file) {
            (Mode::Require, Some(_)) => Mode::VerifyCa,
            (m, _) => m,
        };
        config.ssl_mode(match mode {
            Mode::Disable => postgres::config::SslMode::Disable,
            Mode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        });
        let tls = match mode {
            Mode::Disable => None,
            _ => Some(tokio_postgres_rustls::MakeRustlsConnect::new(
                client_config(mode, s.ca_file.as_deref())?,
            )),
        };
        Ok(Connector { config, mode, tls })
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A new connection.
    pub fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        match &self.tls {
            None => self.config.connect(postgres::NoTls),
            Some(tls) => self.config.connect(tls.clone()),
        }
    }
}

/// rustls' settings for `mode`: the roots (the CA file's, or the system's) and what is checked.
fn client_config(mode: Mode, ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let checked = matches!(mode, Mode::VerifyCa | Mode::VerifyFull);
    let chain = if checked {
        let mut roots = RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!(
                        "sslrootcert {}: no certificate in it",
                        path.display()
                    ));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(format!(
                        "sslmode={}: no sslrootcert, and no system root certificates found",
                        mode.as_str()
                    ));
                }
            }
        }
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("the CA roots: {e}"))?,
        )
    } else {
        None
    };
    let verifier = Verifier {
        chain,
        names: mode == Mode::VerifyFull,
        provider: provider.clone(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// What a mode checks of the server's certificate: nothing (`prefer`, `require`: encryption
/// only, as libpq), the chain (`verify-ca`: a certificate for another name passes), or the
/// chain and the name (`verify-full`: webpki's own check). The handshake's signatures are
/// always checked, by the provider's algorithms.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    names: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_come_out_of_the_url() {
        let s = split("postgres://u:p@db:5432/cw?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=cw").unwrap();
        assert_eq!(s.rest, "postgres://u:p@db:5432/cw?application_name=cw");
        assert_eq!(s.mode, Some(Mode::VerifyFull));
        assert_eq!(s.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        let s = split("postgres://u@db/cw?sslmode=require").unwrap();
        assert_eq!(
            (s.rest.as_str(), s.mode),
            ("postgres://u@db/cw", Some(Mode::Require))
        );
        let s = split("host=db user=u sslmode=verify-ca sslrootcert=/ca.pem dbname=cw").unwrap();
        assert_eq!(s.rest, "host=db user=u dbname=cw");
        assert_eq!(s.mode, Some(Mode::VerifyCa));
        assert!(split("postgres://db/cw?sslmode=verify")
            .unwrap_err()
            .contains("none of disable, prefer"));
        assert_eq!(split("postgres://db/cw").unwrap().mode, None);
    }

    #[test]
    fn the_configs_tls_keys_go_into_the_url_or_say_what_contradicts() {
        assert_eq!(
            with_settings(
                "postgres://db/cw",
                Some("verify-full"),
                Some(Path::new("/ca.pem"))
            )
            .unwrap(),
            "postgres://db/cw?sslmode=verify-full&sslrootcert=%2Fca.pem"
        );
        assert_eq!(
            with_settings("postgres://db/cw?sslmode=require", Some("require"), None).unwrap(),
            "postgres://db/cw?sslmode=require"
        );
        assert!(
            with_settings("postgres://db/cw?sslmode=require", Some("disable"), None)
                .unwrap_err()
                .contains("disagree")
        );
        assert!(with_settings(
            "postgres://db/cw",
            Some("disable"),
            Some(Path::new("/ca.pem"))
        )
        .unwrap_err()
        .contains("a CA file with sslmode=disable"));
        assert_eq!(
            with_settings("postgres://db/cw", None, None).unwrap(),
            "postgres://db/cw"
        );
        assert_eq!(
            with_settings("host=db dbname=cw", Some("require"), None).unwrap(),
            "host=db dbname=cw sslmode=require"
        );
    }

    #[test]
    fn a_connector_takes_the_modes_as_libpq_does() {
        assert_eq!(
            Connector::new("postgres://db/cw").unwrap().mode(),
            Mode::Prefer,
            "libpq's default"
        );
        assert_eq!(
            Connector::new("postgres://db/cw?sslmode=disable")
                .unwrap()
                .mode(),
            Mode::Disable
        );
        assert!(Connector::new(
            "postgres://db/cw?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"
        )
        .err()
        .unwrap()
        .contains("sslrootcert /nonexistent/ca.pem"));
    }
}
