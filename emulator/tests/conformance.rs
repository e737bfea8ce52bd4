//! Runs the documented-behaviour fixtures (`tests/conformance/*.yaml`, format in the README
//! there) against the real `graph-emulator` binary: every case's request, byte for byte,
//! and its expected status, headers and body. Any mismatch fails, listing every failing case.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::timeout;

const FILES: [&str; 3] = ["operation-get.yaml", "reset-password.yaml", "token.yaml"];

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance")
}

fn load(file: &str) -> Value {
    let path = fixture_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The emulator process, started without a config: each case brings its own.
struct Emulator {
    _child: Child,
    addr: String,
}

impl Emulator {
    async fn start() -> Emulator {
        let mut child = Command::new(env!("CARGO_BIN_EXE_graph-emulator"))
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn graph-emulator");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        timeout(Duration::from_secs(10), BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("emulator announces itself within 10 s")
            .expect("read stdout");
        let addr = line.trim().strip_prefix("listening on http://").expect("listening line").to_owned();
        Emulator { _child: child, addr }
    }
}

/// One HTTP exchange as received.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Sends a fixture request over a plain TCP connection, so the path reaches the server
/// exactly as written (URL libraries would collapse `.` segments and re-encode `$` or `'`).
async fn send(addr: &str, request: &Value) -> Result<Answer, String> {
    let method = request["method"].as_str().ok_or("request.method missing")?;
    let path = request["path"].as_str().ok_or("request.path missing")?;
    let mut headers: Vec<(String, String)> = request["headers"]
        .as_object()
        .map(|h| h.iter().map(|(k, v)| (k.to_lowercase(), scalar_text(v))).collect())
        .unwrap_or_default();
    let body = match (&request["form"], &request["body"]) {
        (Value::Object(form), _) => {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in form {
                ser.append_pair(k, &scalar_text(v));
            }
            headers.push(("content-type".into(), "application/x-www-form-urlencoded".into()));
            ser.finish()
        }
        (_, Value::String(raw)) => raw.clone(),
        (_, Value::Null) => String::new(),
        (_, other) => return Err(format!("request.body must be a string, got {other}")),
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in &headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "GET" || !body.is_empty() {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    stream.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
    stream.write_all(body.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("answer without a header end")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("bad status line")?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned())).collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body)? } else { body.to_owned() };
    Ok(Answer { status, headers, body })
}

fn dechunk(mut rest: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or("bad chunk")?;
        let size = usize::from_str_radix(size.trim(), 16).map_err(|_| "bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(after.get(..size).ok_or("short chunk")?);
        rest = after.get(size + 2..).ok_or("short chunk")?;
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Checks `actual` against `expected` (subset for objects, `~` matchers for strings);
/// pushes one message per mismatch, naming the JSON path.
fn compare(path: &str, expected: &Value, actual: Option<&Value>, errors: &mut Vec<String>) {
    if let Value::String(m) = expected
        && let Some(matcher) = m.strip_prefix('~')
    {
        if let Err(e) = matcher_ok(
            matcher,
            actual.map(|v| match v {
                Value::String(s) => Matched::Text(s),
                Value::Number(_) => Matched::Number,
                _ => Matched::Other,
            }),
        ) {
            errors.push(format!("{path}: {e} (got {})", actual.map_or("nothing".into(), Value::to_string)));
        }
        return;
    }
    match (expected, actual) {
        (Value::Object(exp), Some(Value::Object(act))) => {
            for (k, v) in exp {
                compare(&format!("{path}.{k}"), v, act.get(k), errors);
            }
        }
        (Value::Array(exp), Some(Value::Array(act))) if exp.len() == act.len() => {
            for (i, (e, a)) in exp.iter().zip(act).enumerate() {
                compare(&format!("{path}[{i}]"), e, Some(a), errors);
            }
        }
        (exp, Some(act)) if exp == act => {}
        (exp, act) => {
            errors.push(format!("{path}: expected {exp}, got {}", act.map_or("nothing".into(), Value::to_string)))
        }
    }
}

enum Matched<'a> {
    Text(&'a str),
    Number,
    Other,
}

fn matcher_ok(matcher: &str, actual: Option<Matched<'_>>) -> Result<(), String> {
    let ok = match (matcher, &actual) {
        ("absent", None) => true,
        ("absent", Some(_)) => false,
        ("present", Some(_)) => true,
        ("string", Some(Matched::Text(_))) => true,
        ("number", Some(Matched::Number)) => true,
        (m, Some(Matched::Text(s))) if m.starts_with("contains:") => s.contains(&m["contains:".len()..]),
        (m, Some(Matched::Text(s))) if m.starts_with("prefix:") => s.starts_with(&m["prefix:".len()..]),
        (m, _)
            if !["absent", "present", "string", "number"].contains(&m)
                && !m.starts_with("contains:")
                && !m.starts_with("prefix:") =>
        {
            return Err(format!("unknown matcher ~{m}"));
        }
        _ => false,
    };
    if ok { Ok(()) } else { Err(format!("does not match ~{matcher}")) }
}

/// The answer against a case's `expect`; the list of mismatches.
fn check(expect: &Value, answer: &Answer) -> Vec<String> {
    let mut errors = Vec::new();
    if expect["status"].as_u64() != Some(u64::from(answer.status)) {
        errors.push(format!("status: expected {}, got {} ({})", expect["status"], answer.status, answer.body));
    }
    if let Some(headers) = expect["headers"].as_object() {
        for (name, want) in headers {
            let got = answer.header(&name.to_lowercase()).map(|v| Value::String(v.to_owned()));
            let want = match want {
                Value::String(_) => want.clone(),
                other => Value::String(other.to_string()),
            };
            compare(&format!("header {name}"), &want, got.as_ref(), &mut errors);
        }
    }
    if !expect["body"].is_null() {
        match serde_json::from_str::<Value>(&answer.body) {
            Ok(body) => compare("body", &expect["body"], Some(&body), &mut errors),
            Err(e) => errors.push(format!("body is not JSON ({e}): {}", answer.body)),
        }
    }
    errors
}

/// The file's config with the case's top-level keys replacing its own.
fn case_config(base: &Value, case: &Value) -> Value {
    let mut config = base.as_object().cloned().unwrap_or_default();
    if let Some(overrides) = case["config"].as_object() {
        for (k, v) in overrides {
            config.insert(k.clone(), v.clone());
        }
    }
    Value::Object(config)
}

/// What every case must carry, so the files stay usable by the operator's tests too.
fn validate(case: &Value) -> Result<(), String> {
    let source = case["source"].as_str().unwrap_or_default();
    if !source.starts_with("https://learn.microsoft.com/") {
        return Err(format!("source must be a learn.microsoft.com page, got {source:?}"));
    }
    if case["documented"].as_str().is_none_or(str::is_empty) {
        return Err("documented is missing".into());
    }
    if case["expect"]["status"].as_u64().is_none() {
        return Err("expect.status is missing".into());
    }
    match &case["operator"] {
        Value::Null => Ok(()),
        Value::Object(o) if o.get("reason").is_some_and(Value::is_string) => Ok(()),
        other => Err(format!("operator must be a mapping with a reason, got {other}")),
    }
}

async fn run_case(emu: &Emulator, base: &Value, case: &Value) -> Vec<String> {
    if let Err(e) = validate(case) {
        return vec![e];
    }
    let config = Value::Object(Map::from_iter([
        ("method".into(), "PUT".into()),
        ("path".into(), "/_emulator/config".into()),
        ("headers".into(), serde_json::json!({"content-type": "application/json"})),
        ("body".into(), Value::String(case_config(base, case).to_string())),
    ]));
    let before = case["before"].as_array().cloned().unwrap_or_default();
    for (i, setup) in std::iter::once(config).chain(before).enumerate() {
        match send(&emu.addr, &setup).await {
            Ok(a) if a.status < 400 => {}
            Ok(a) => return vec![format!("setup request {i} answered {}: {}", a.status, a.body)],
            Err(e) => return vec![format!("setup request {i}: {e}")],
        }
    }
    match send(&emu.addr, &case["request"]).await {
        Ok(answer) => check(&case["expect"], &answer),
        Err(e) => vec![format!("request: {e}")],
    }
}

#[tokio::test]
async fn every_documented_behaviour_holds() {
    let emu = Emulator::start().await;
    let mut failures = Vec::new();
    let mut count = 0;
    for file in FILES {
        let fixture = load(file);
        let cases = fixture["cases"].as_array().unwrap_or_else(|| panic!("{file}: no cases"));
        for case in cases {
            count += 1;
            let name = case["name"].as_str().unwrap_or("(unnamed)");
            for error in run_case(&emu, &fixture["config"], case).await {
                failures.push(format!("{file} / {name}: {error}"));
            }
        }
    }
    assert!(count >= 40, "only {count} cases found in {}", fixture_dir().display());
    assert!(failures.is_empty(), "{} mismatch(es):\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn case_names_are_unique_and_the_seed_example_is_verbatim() {
    let mut names = std::collections::HashSet::new();
    for file in FILES {
        for case in load(file)["cases"].as_array().unwrap() {
            let name = case["name"].as_str().expect("every case has a name");
            assert!(names.insert(format!("{file}/{name}")), "duplicate case {file}/{name}");
        }
    }
    let get = load("operation-get.yaml");
    let seed = get["cases"].as_array().unwrap().iter().find(|c| c["name"] == "seed-page-example").expect("seed case");
    assert_eq!(
        seed["expect"]["body"],
        serde_json::json!({
            "status": "running",
            "createdDateTime": "2020-03-19T12-01-03.45Z",
            "lastActionDateTime": "2020-03-19T12-01-04.23Z",
            "id": "2d497bb-57bd-47a6-8749-5ccd0869f2bd"
        })
    );
}

/// The comparison must be able to fail: a wrong status, a missing key, a wrong header and
/// a failed matcher are all reported.
#[test]
fn mismatches_are_reported() {
    let answer = Answer {
        status: 403,
        headers: vec![("retry-after".into(), "2".into())],
        body: r#"{"error": {"code": "Authorization_RequestDenied", "message": "no"}}"#.into(),
    };
    let expect = serde_json::json!({
        "status": 200,
        "headers": {"retry-after": "3", "request-id": "~present"},
        "body": {"error": {"code": "BadRequest", "message": "~contains:yes", "innerError": "~present"}},
    });
    let errors = check(&expect, &answer);
    assert_eq!(errors.len(), 6, "{errors:#?}");
    let ok = serde_json::json!({
        "status": 403,
        "headers": {"retry-after": "2", "request-id": "~absent"},
        "body": {"error": {"code": "Authorization_RequestDenied", "innerError": "~absent"}},
    });
    assert_eq!(check(&ok, &answer), Vec::<String>::new());
}
