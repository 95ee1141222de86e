//! TLS (rustls with the `ring` provider already in the tree through reqwest) for the public
//! HTTP listeners and the control plane's gRPC, and optional mutual TLS between gateways and
//! the control plane. Certificates and keys are PEM files named by flags or env.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("{0} needs {1} as well")]
    Incomplete(&'static str, &'static str),
}

/// A listener's certificate chain and key, and optionally the CA its clients must present
/// a certificate from (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// What a gateway needs to reach a TLS control plane: the CA that signed the control
/// plane's certificate and, for mutual TLS, its own certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl ServerTlsFiles {
    /// From optional flag values: none set means plain TCP; a half-set pair is an error.
    pub fn from_parts(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        client_ca: Option<PathBuf>,
    ) -> Result<Option<Self>, TlsError> {
        match (cert, key) {
            (None, None) if client_ca.is_some() => Err(TlsError::Incomplete(
                "--client-ca",
                "--tls-cert and --tls-key",
            )),
            (None, None) => Ok(None),
            (Some(_), None) => Err(TlsError::Incomplete("--tls-cert", "--tls-key")),
            (None, Some(_)) => Err(TlsError::Incomplete("--tls-key", "--tls-cert")),
            (Some(cert), Some(key)) => Ok(Some(Self {
                cert,
                key,
                client_ca,
            })),
        }
    }

    /// A rustls server config (ALPN h2 + http/1.1); with `client_ca`, clients without a
    /// certificate from that CA are refused during the handshake.
    pub fn rustls_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_certs(ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| TlsError::Config(format!("{}: {e}", ca.display())))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(read_certs(&self.cert)?, read_key(&self.key)?)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(
            self.rustls_config()?,
        )))
    }

    /// tonic's server TLS: the same files, for the control plane's gRPC listener.
    pub fn tonic_config(&self) -> Result<tonic::transport::ServerTlsConfig, TlsError> {
        let identity =
            tonic::transport::Identity::from_pem(read_file(&self.cert)?, read_file(&self.key)?);
        let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            config = config
                .client_ca_root(tonic::transport::Certificate::from_pem(read_file(ca)?))
                .client_auth_optional(false);
        }
        Ok(config)
    }
}

impl ClientTlsFiles {
    /// From optional flag values; `None` when nothing is set.
    pub fn from_parts(
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<Self>, TlsError> {
        match (&cert, &key) {
            (Some(_), None) => return Err(TlsError::Incomplete("--client-cert", "--client-key")),
            (None, Some(_)) => return Err(TlsError::Incomplete("--client-key", "--client-cert")),
            _ => {}
        }
        if ca.is_none() && cert.is_none() {
            return Ok(None);
        }
        Ok(Some(Self { ca, cert, key }))
    }

    /// tonic's client TLS for the gateway's channel to the control plane.
    pub fn tonic_config(&self) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
        let mut config = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            config = config.ca_certificate(tonic::transport::Certificate::from_pem(read_file(ca)?));
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            config = config.identity(tonic::transport::Identity::from_pem(
                read_file(cert)?,
                read_file(key)?,
            ));
        }
        Ok(config)
    }
}

impl ClientTlsFiles {
    /// The same trust (and client certificate) for the HTTP client that forwards management
    /// routes to an `https://` control plane, as for the gRPC channel.
    pub fn reqwest_builder(
        &self,
        mut builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, TlsError> {
        if let Some(ca) = &self.ca {
            let certs = reqwest::Certificate::from_pem_bundle(&read_file(ca)?).map_err(|e| {
                TlsError::Read {
                    path: ca.clone(),
                    message: e.to_string(),
                }
            })?;
            if certs.is_empty() {
                return Err(TlsError::NoCertificate { path: ca.clone() });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            let mut pem = read_file(cert)?;
            pem.push(b'\n');
            pem.extend_from_slice(&read_file(key)?);
            // The key's bytes are never part of the error.
            let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
                TlsError::Config(format!(
                    "{} and {} are not a PEM certificate and private key",
                    cert.display(),
                    key.display()
                ))
            })?;
            builder = builder.identity(identity);
        }
        Ok(builder)
    }
}

/// TLS for provider calls: the public web PKI roots (as reqwest's `rustls-tls` has them)
/// plus, with `extra_ca`, a PEM bundle of private CAs — a self-hosted model server behind
/// an internal CA. No ALPN: the client that uses it sets the protocols it speaks.
pub fn provider_client_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        for cert in read_certs(path)? {
            roots.add(cert).map_err(|e| TlsError::Read {
                path: path.to_owned(),
                message: format!("not a CA certificate: {e}"),
            })?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsError::Config(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(config)
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(path)?;
    // The key's bytes are never part of the error.
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::Read {
        path: path.to_owned(),
        message: "no PEM private key (PKCS#8, PKCS#1 or SEC1) found".into(),
    })
}
