//! The two ways to get the operator image describe the same image: the Dockerfile (for
//! users with a registry) and `make image` (built here from Debian packages, no registry).
//! Compared as a user would see them: binary path, user, entrypoint, command, exposed
//! port, labels; and the image holds what the binary needs to start (its ELF interpreter,
//! the libraries it links, CA certificates, the nonroot user).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use pwreset_testkit::repo_root;
use serde_json::Value;

/// What the Dockerfile's final stage says about the image.
#[derive(Debug, Default)]
struct Described {
    binary: String,
    user: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    exposed: Vec<String>,
    labels: BTreeMap<String, String>,
}

/// The final stage's instructions, with line continuations joined and comments dropped.
fn dockerfile() -> Described {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        match line.trim_end().strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).expect("a FROM");
    let mut d = Described::default();
    for line in &lines[last_from..] {
        let (instr, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match instr {
            "COPY" => d.binary = rest.split_whitespace().last().unwrap().to_string(),
            "USER" => d.user = rest.to_string(),
            "EXPOSE" => {
                d.exposed = rest
                    .split_whitespace()
                    .map(|p| if p.contains('/') { p.into() } else { format!("{p}/tcp") })
                    .collect()
            }
            "ENTRYPOINT" => d.entrypoint = serde_json::from_str(rest).expect("ENTRYPOINT in exec form"),
            "CMD" => d.cmd = serde_json::from_str(rest).expect("CMD in exec form"),
            "LABEL" => {
                // key="value" pairs; values here contain spaces, so split on `" `.
                for pair in rest.split("\" ").map(str::trim) {
                    if let Some((k, v)) = pair.split_once('=') {
                        d.labels.insert(k.to_string(), v.trim_matches('"').to_string());
                    }
                }
            }
            _ => {}
        }
    }
    d
}

fn blob(dir: &Path, digest: &str) -> std::path::PathBuf {
    dir.join("blobs/sha256").join(digest.strip_prefix("sha256:").unwrap())
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every path in the image's layers, with its `tar -tv` line.
fn files(dir: &Path, manifest: &Value) -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let out = Command::new("tar").arg("-tvzf").arg(blob(dir, layer["digest"].as_str().unwrap())).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().last().unwrap().trim_end_matches('/');
            all.insert(format!("/{name}"), line.to_string());
        }
    }
    all
}

#[test]
fn make_image_builds_what_the_dockerfile_describes() {
    let archive = repo_root().join("target/image/pwreset-operator.oci.tar");
    assert!(archive.exists(), "{} is missing: run `make image` (or `make test`)", archive.display());
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(dir.path()).status().unwrap();
    assert!(status.success());
    let index = json_file(&dir.path().join("index.json"));
    let desc = &index["manifests"][0];
    let chart = std::fs::read_to_string(repo_root().join("charts/pwreset-operator/Chart.yaml")).unwrap();
    let app_version = chart.lines().find_map(|l| l.strip_prefix("appVersion:")).unwrap().trim().trim_matches('"');
    // The name the chart's default image.repository and tag resolve to in containerd.
    assert_eq!(
        desc["annotations"]["io.containerd.image.name"],
        format!("docker.io/library/pwreset-operator:{app_version}")
    );
    let manifest = json_file(&blob(dir.path(), desc["digest"].as_str().unwrap()));
    let config = json_file(&blob(dir.path(), manifest["config"]["digest"].as_str().unwrap()));
    let c = &config["config"];

    let d = dockerfile();
    assert_eq!(d.binary, "/pwreset-operator");
    assert_eq!(c["User"], d.user.as_str());
    assert_eq!(serde_json::from_value::<Vec<String>>(c["Entrypoint"].clone()).unwrap(), d.entrypoint);
    assert_eq!(serde_json::from_value::<Vec<String>>(c["Cmd"].clone()).unwrap(), d.cmd);
    let exposed: Vec<String> = c["ExposedPorts"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(exposed, d.exposed);
    for key in ["org.opencontainers.image.title", "org.opencontainers.image.licenses"] {
        assert_eq!(c["Labels"][key], d.labels[key].as_str(), "label {key}");
    }
    assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("linux"), Some("amd64")));

    let files = files(dir.path(), &manifest);
    let binary = files.get(&d.binary).unwrap_or_else(|| panic!("{} not in the image", d.binary));
    assert!(binary.starts_with("-rwxr-xr-x"), "{binary}");
    assert!(d.entrypoint[0] == d.binary, "the entrypoint runs the copied binary");
    // The binary starts only if its interpreter and libraries are there.
    // The binary that was packed (`make image` strips a copy of the build into target/image/bin).
    let packed = repo_root().join("target/image/bin/pwreset-operator");
    let ldd = Command::new("ldd").arg(&packed).output().expect("ldd is needed to check the image's libraries");
    assert!(ldd.status.success(), "ldd {}: {}", packed.display(), String::from_utf8_lossy(&ldd.stderr));
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line.split("=>").last().unwrap().split_whitespace().next().unwrap_or_default();
        if path.starts_with('/') {
            assert!(files.contains_key(path), "{path} (from `{}`) is not in the image", line.trim());
        }
    }
    // The public roots Graph's certificate verifies against, where SSL_CERT_FILE points; the
    // chart's extraCACertificates (--extra-ca-file) are added to this bundle, not swapped in.
    assert!(files.contains_key("/etc/ssl/certs/ca-certificates.crt"));
    let env: Vec<String> = serde_json::from_value(c["Env"].clone()).unwrap();
    assert!(env.contains(&"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".to_string()), "{env:?}");
    let bundle = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|layer| {
            let out = Command::new("tar")
                .args(["-xzOf"])
                .arg(blob(dir.path(), layer["digest"].as_str().unwrap()))
                .arg("etc/ssl/certs/ca-certificates.crt")
                .output()
                .unwrap();
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .expect("the CA bundle's layer");
    let count = bundle.matches("-----BEGIN CERTIFICATE-----").count();
    assert!(count > 100, "a full public CA bundle, not {count} certificates");
    let user = d.user.split(':').next().unwrap();
    assert!(files.contains_key("/etc/passwd"));
    let passwd = Command::new("tar")
        .args(["-xzOf"])
        .arg(blob(dir.path(), manifest["layers"][0]["digest"].as_str().unwrap()))
        .arg("etc/passwd")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&passwd.stdout).lines().any(|l| l.split(':').nth(2) == Some(user)),
        "user {user} is in /etc/passwd"
    );
}
