//! Test certificates: a throwaway CA and a server certificate it signed, written as PEM
//! files for the emulator (`--tls-cert`, `--tls-key`) and the operator (`--extra-ca-file`,
//! `SSL_CERT_FILE`).
//!
//! Every call makes a new CA, so two `TestPki`s never trust each other: that is how the
//! wrong-CA test gets a CA that is well-formed but not the emulator's.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// The names the server certificate is valid for: the emulator listens on 127.0.0.1, and
/// tests reach it as `localhost` too when they need a second host name (e.g. the login host).
pub const SERVER_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// A CA and a server certificate, as PEM files in `dir`.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate (PEM): what a client must trust.
    pub ca_pem: String,
    pub ca_file: PathBuf,
    /// The server certificate chain (leaf, then the CA) and its key.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestPki {
    /// Makes a CA named `name` and a server certificate for [`SERVER_NAMES`]; writes
    /// `{name}-ca.pem`, `{name}-server.pem` and `{name}-server-key.pem` into `dir`.
    pub fn generate(dir: &Path, name: &str) -> anyhow::Result<TestPki> {
        let ca_key = KeyPair::generate().context("CA key")?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, format!("pwreset test CA {name}"));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).context("self-signing the CA")?;
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().context("server key")?;
        let mut server = CertificateParams::new(SERVER_NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .context("server params")?;
        server.distinguished_name.push(DnType::CommonName, "graph-emulator");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let server_cert = server.signed_by(&server_key, &issuer).context("signing the server certificate")?;

        let pki = TestPki {
            ca_pem: ca_cert.pem(),
            ca_file: dir.join(format!("{name}-ca.pem")),
            cert_file: dir.join(format!("{name}-server.pem")),
            key_file: dir.join(format!("{name}-server-key.pem")),
        };
        write(&pki.ca_file, &pki.ca_pem)?;
        write(&pki.cert_file, &format!("{}{}", server_cert.pem(), pki.ca_pem))?;
        write(&pki.key_file, &server_key.serialize_pem())?;
        Ok(pki)
    }

    /// The emulator flags that make it serve HTTPS with this certificate.
    pub fn emulator_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert_file.display().to_string(),
            "--tls-key".into(),
            self.key_file.display().to_string(),
        ]
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
