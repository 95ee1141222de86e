//! TLS: certificates made at test time (rcgen) → the control plane serves HTTPS and gRPC
//! over TLS, a gateway with a client certificate gets its config over mutual TLS and
//! serves HTTPS itself, and a gateway without a certificate (or with one from another CA)
//! is refused during the handshake. Management routes forwarded by the gateway reach the
//! HTTPS control plane through a client that trusts the control plane's CA. A provider
//! behind a private CA is reached over HTTPS (HTTP/2 by ALPN) by a gateway given that CA
//! (`--provider-ca`), and refused by one without it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use serde_json::{Value, json};
use switchyard_control_plane::bootstrap::{self, BootstrapOptions};
use switchyard_control_plane::{Listeners, RunOptions};
use switchyard_e2e::harness::System;
use switchyard_e2e::mock_openai::{MockConfig, MockOpenAi};
use switchyard_gateway::tls::{ClientTlsFiles, ServerTlsFiles};
use switchyard_gateway::{GatewayConfig, GatewayStatus, ServeOptions};
use switchyard_proto::pb;
use switchyard_proto::pb::config_service_client::ConfigServiceClient;
use tokio_util::sync::CancellationToken;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn write(dir: &Path, name: &str, pem: &str) {
    std::fs::write(dir.join(name), pem).unwrap();
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// `<name>.pem` / `<name>.key` signed by `issuer`.
fn leaf(
    dir: &Path,
    name: &str,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    usage: ExtendedKeyUsagePurpose,
) {
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    write(dir, &format!("{name}.pem"), &cert.pem());
    write(dir, &format!("{name}.key"), &key.serialize_pem());
}

/// A CA, the control plane's and a gateway's certificates from it, and a gateway
/// certificate from an unrelated CA.
fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("switchyard test CA");
    write(dir.path(), "ca.pem", &ca.pem());
    leaf(
        dir.path(),
        "server",
        &ca,
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    leaf(
        dir.path(),
        "gateway",
        &ca,
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let rogue = ca_with_name("someone else's CA");
    leaf(
        dir.path(),
        "rogue",
        &rogue,
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    Pki { dir }
}

fn ca_with_name(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    ca(name)
}

fn https_client(pki: &Pki) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.path("ca.pem")).unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap()
}

/// A raw gRPC call to the control plane with the given client TLS: `Unauthenticated`
/// means the TLS handshake passed and the service answered (no node token was sent).
async fn ack_config(grpc: std::net::SocketAddr, tls: &ClientTlsFiles) -> Result<(), tonic::Status> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{grpc}"))
        .unwrap()
        .tls_config(tls.tonic_config().unwrap())
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(err) => return Err(tonic::Status::unavailable(format!("connect: {err}"))),
    };
    ConfigServiceClient::new(channel)
        .ack_config(pb::ConfigAck {
            node_id: "probe".into(),
            version: 1,
            ok: true,
            error: String::new(),
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn https_and_mutual_tls_between_gateway_and_control_plane() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cp.db").display());
    let store = switchyard_control_plane::store::connect(&url)
        .await
        .unwrap();
    let secrets = bootstrap::ensure(&store, BootstrapOptions::default())
        .await
        .unwrap()
        .unwrap();
    let listeners = Listeners {
        http: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        grpc: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let http_addr = listeners.http.local_addr().unwrap();
    let grpc_addr = listeners.grpc.local_addr().unwrap();
    let cp_shutdown = CancellationToken::new();
    let control_plane = tokio::spawn(switchyard_control_plane::run(
        store,
        listeners,
        RunOptions {
            tls: Some(ServerTlsFiles {
                cert: pki.path("server.pem"),
                key: pki.path("server.key"),
                client_ca: Some(pki.path("ca.pem")),
            }),
            ..RunOptions::default()
        },
        cp_shutdown.clone(),
    ));
    let https = https_client(&pki);

    // HTTPS on the control plane's REST API (no client certificate asked for there).
    let health = https
        .get(format!("https://{http_addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{http_addr}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.map(|r| r.status() != 200).unwrap_or(true),
        "plain HTTP must not be served on the TLS port"
    );

    // gRPC: with the gateway's certificate the handshake passes and the service answers.
    let with_cert = ClientTlsFiles {
        ca: Some(pki.path("ca.pem")),
        cert: Some(pki.path("gateway.pem")),
        key: Some(pki.path("gateway.key")),
    };
    let status = ack_config(grpc_addr, &with_cert).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    // Without a certificate, or with one from another CA, the handshake is refused.
    for (what, tls) in [
        (
            "no client certificate",
            ClientTlsFiles {
                ca: Some(pki.path("ca.pem")),
                cert: None,
                key: None,
            },
        ),
        (
            "a certificate from another CA",
            ClientTlsFiles {
                ca: Some(pki.path("ca.pem")),
                cert: Some(pki.path("rogue.pem")),
                key: Some(pki.path("rogue.key")),
            },
        ),
    ] {
        let status = ack_config(grpc_addr, &tls).await.unwrap_err();
        assert_ne!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{what}: reached the service: {status:?}"
        );
        assert_ne!(status.code(), tonic::Code::Ok, "{what}");
    }

    // A gateway with its certificate: config over mutual TLS, HTTPS for its clients.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_addr = listener.local_addr().unwrap();
    let status = GatewayStatus::default();
    let mut applied = status.applied_version.subscribe();
    let gw_shutdown = CancellationToken::new();
    let gateway = tokio::spawn(switchyard_gateway::run_with(
        GatewayConfig {
            node_id: "tls-gateway".into(),
            control_plane_grpc: format!("https://{grpc_addr}"),
            control_plane_http: Some(format!("https://{http_addr}")),
            node_token: secrets.node_token.clone(),
            spool_dir: dir.path().join("spool"),
            drain_timeout: Duration::from_secs(5),
            status: status.clone(),
            redis_url: None,
        },
        listener,
        gw_shutdown.clone(),
        ServeOptions {
            tls: Some(ServerTlsFiles {
                cert: pki.path("server.pem"),
                key: pki.path("server.key"),
                client_ca: None,
            }),
            control_plane_tls: Some(with_cert.clone()),
            ..ServeOptions::default()
        },
    ));
    tokio::time::timeout(Duration::from_secs(20), applied.wait_for(|v| *v >= 1))
        .await
        .expect("the gateway got its config over mutual TLS")
        .unwrap();
    let ready = https
        .get(format!("https://{gateway_addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.version(), reqwest::Version::HTTP_2, "ALPN offers h2");
    let models = https
        .get(format!("https://{gateway_addr}/api/v1/models"))
        .bearer_auth(secrets.api_key.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200, "{}", models.text().await.unwrap());
    // A management route forwarded to the HTTPS control plane: the forwarding client trusts
    // `--control-plane-ca` (a private CA no public root store knows).
    let me = https
        .get(format!("https://{gateway_addr}/api/v1/key"))
        .bearer_auth(secrets.api_key.expose())
        .send()
        .await
        .unwrap();
    let status = me.status();
    let body: serde_json::Value = me.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body["data"].is_object(), "{body}");

    gw_shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), gateway)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    cp_shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), control_plane)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// HTTPS in front of a plain mock provider (which speaks HTTP/1.1 and, by prior knowledge,
/// HTTP/2): records the ALPN protocol of every completed handshake.
async fn tls_front(pki: &Pki, backend: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let acceptor = ServerTlsFiles {
        cert: pki.path("server.pem"),
        key: pki.path("server.key"),
        client_ca: None,
    }
    .acceptor()
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let seen = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                // A refused handshake is what an untrusting client produces; nothing to relay.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let alpn = tls.get_ref().1.alpn_protocol().unwrap_or(b"none");
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(alpn).into_owned());
                let mut plain = tokio::net::TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, handshakes)
}

#[tokio::test]
async fn a_provider_behind_a_private_ca_is_reached_over_https_only_when_its_ca_is_trusted() {
    let pki = pki();
    let mock = MockOpenAi::start(MockConfig {
        api_key: Some("sk-mock".into()),
        fixed_usage: Some((9, 4)),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let (front, handshakes) = tls_front(&pki, mock.addr()).await;
    let system = System::start().await.unwrap();
    system
        .add_openai_model(
            &format!("https://{front}/v1"),
            "private/model",
            "gpt-4o-mini",
            "0.00000015",
            "0.0000006",
        )
        .await
        .unwrap();
    let trusting = system
        .start_extra_gateway_with(
            None,
            ServeOptions {
                provider_ca: Some(pki.path("ca.pem")),
                ..ServeOptions::default()
            },
        )
        .await
        .unwrap();
    let chat = |base: String, stream: bool| {
        system
            .http
            .post(format!("{base}/chat/completions"))
            .bearer_auth(system.api_key())
            .json(&json!({"model": "private/model", "stream": stream,
                "messages": [{"role": "user", "content": "hello over TLS"}]}))
            .send()
    };

    let plain = chat(format!("http://{}/api/v1", trusting.addr), false)
        .await
        .unwrap();
    let status = plain.status();
    let body: Value = plain.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["prompt_tokens"], 9, "{body}");
    assert!(
        body["choices"][0]["message"]["content"].is_string(),
        "{body}"
    );
    let streamed = chat(format!("http://{}/api/v1", trusting.addr), true)
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    let (chunks, done) = crate::sse::chunks(&streamed.text().await.unwrap());
    assert!(done, "the stream ends with [DONE]");
    assert!(chunks.len() > 1, "{chunks:?}");
    assert_eq!(mock.request_count(), 2);
    let seen = handshakes.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the calls went through the TLS front");
    assert!(
        seen.iter().all(|alpn| alpn == "h2"),
        "HTTP/2 negotiated by ALPN: {seen:?}"
    );
    let headers = &mock.last_request().unwrap().headers;
    assert_eq!(
        headers.get("authorization").map(String::as_str),
        Some("Bearer sk-mock")
    );
    assert!(
        headers
            .get("user-agent")
            .is_some_and(|ua| ua.starts_with("switchyard/")),
        "{headers:?}"
    );

    // The harness's gateway trusts only the public roots: the handshake fails, the client
    // gets a provider error, and the provider sees nothing.
    let refused = chat(system.base_url(), false).await.unwrap();
    let status = refused.status();
    let body: Value = refused.json().await.unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("connection failed") || m.contains("could not be reached")),
        "{body}"
    );
    assert_eq!(
        mock.request_count(),
        2,
        "no request passed the refused handshake"
    );
}

#[test]
fn half_configured_tls_is_an_error() {
    let p = |s: &str| Some(PathBuf::from(s));
    assert!(ServerTlsFiles::from_parts(p("c.pem"), None, None).is_err());
    assert!(ServerTlsFiles::from_parts(None, p("k.pem"), None).is_err());
    assert!(ServerTlsFiles::from_parts(None, None, p("ca.pem")).is_err());
    assert_eq!(ServerTlsFiles::from_parts(None, None, None).unwrap(), None);
    assert!(ClientTlsFiles::from_parts(None, p("c.pem"), None).is_err());
    let missing = ServerTlsFiles {
        cert: PathBuf::from("/nonexistent/cert.pem"),
        key: PathBuf::from("/nonexistent/key.pem"),
        client_ca: None,
    };
    let err = missing.rustls_config().unwrap_err().to_string();
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
}
