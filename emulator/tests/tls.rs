//! `--tls-cert`/`--tls-key`: the emulator serves HTTPS with a certificate the test makes,
//! and a slow or plain-HTTP client cannot stall it.

use std::process::Stdio;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

/// A CA (PEM) and, in `dir`, a server certificate it signed for 127.0.0.1 (chain and key files).
fn certificates(dir: &std::path::Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    let (cert_file, key_file) = (dir.join("server.pem"), dir.join("server-key.pem"));
    std::fs::write(&cert_file, leaf.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (ca_pem, cert_file, key_file)
}

#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, cert, key) = certificates(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_graph-emulator"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    timeout(Duration::from_secs(10), BufReader::new(child.stdout.take().unwrap()).read_line(&mut line))
        .await
        .expect("announced within 10 s")
        .unwrap();
    let base = line.trim().strip_prefix("listening on ").expect("listening line").to_string();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");

    // A client that opens a socket and never starts its handshake holds up nobody.
    let _silent = tokio::net::TcpStream::connect(base.trim_start_matches("https://")).await.unwrap();

    let trusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // The admin API sees a loopback caller through TLS too.
    let health = trusting.get(format!("{base}/_emulator/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // Without the test CA the certificate is refused, quickly.
    let stranger = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    let err = stranger.get(format!("{base}/_emulator/health")).send().await.unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");

    // Plain HTTP on the TLS port gets no answer, but fails rather than hangs.
    let plain = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(15)).build().unwrap();
    let err = plain.get(format!("{}/_emulator/health", base.replace("https://", "http://"))).send().await.unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn a_key_that_does_not_fit_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, _) = certificates(dir.path());
    let other = dir.path().join("other-key.pem");
    std::fs::write(&other, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_graph-emulator"))
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&other)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tls-key"), "{stderr}");
}
