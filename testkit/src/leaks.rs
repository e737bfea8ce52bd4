//! Scanning text a test read back (process output, logs, events) for secret values, in
//! every form they could take there: raw, JSON-escaped, and base64 (standard and URL-safe,
//! at any byte offset inside a longer encoded value, as in a Secret's `data`).

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(STANDARD[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// The forms `secret` can take in text. Base64 forms are the characters that depend on the
/// secret alone (the edges depend on its neighbours), so a secret inside a longer encoded
/// value is found too.
pub fn forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_string()];
    let json = serde_json::to_string(secret).expect("a string serializes");
    forms.push(json[1..json.len() - 1].to_string());
    for offset in 0..3usize {
        let mut bytes = vec![0u8; offset];
        bytes.extend_from_slice(secret.as_bytes());
        let encoded = base64(&bytes);
        let skip = (offset * 8).div_ceil(6);
        let keep = encoded.len().saturating_sub(4);
        if keep > skip + 8 {
            let core = &encoded[skip..keep];
            forms.push(core.to_string());
            forms.push(core.replace('+', "-").replace('/', "_"));
        }
    }
    forms.sort();
    forms.dedup();
    forms
}

/// Panics, naming `place` and which secret (by position, never by value) and form, when
/// any of `secrets` appears in `text`.
pub fn assert_no_leak(place: &str, text: &str, secrets: &[&str]) {
    for (i, secret) in secrets.iter().enumerate() {
        assert!(secret.len() >= 8, "secret #{i} is too short to scan for reliably");
        for (j, form) in forms(secret).iter().enumerate() {
            assert!(!text.contains(form.as_str()), "secret #{i} (form #{j}) appears in {place}");
        }
    }
}

/// Everything a cluster's users (and its log pipeline) can see of the operator's work in
/// `ns`: the operator's log, the namespace's events, the resources with their status, and
/// the operator's metrics; each named for failure messages.
pub async fn operator_outputs(
    client: &kube::Client,
    ns: &str,
    operator: &crate::Operator,
) -> Vec<(&'static str, String)> {
    use k8s_openapi::api::core::v1::Event;
    use kube::api::{Api, ListParams};
    use pwreset_operator::api::PasswordResetOperation;
    let events = Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await.expect("events");
    let objects =
        Api::<PasswordResetOperation>::namespaced(client.clone(), ns).list(&ListParams::default()).await.expect("list");
    let (status, metrics) = operator.http_get("/metrics").await.expect("/metrics reachable");
    assert_eq!(status, 200, "/metrics: {metrics}");
    let outputs = vec![
        ("the operator's log", operator.logs()),
        ("events", serde_json::to_string(&events.items).unwrap()),
        ("resources and their status", serde_json::to_string(&objects.items).unwrap()),
        ("metrics", metrics),
    ];
    // Control: each place holds something, so a scan of it means something.
    for (place, text) in &outputs {
        assert!(text.len() > 2, "{place} is empty: nothing to scan");
    }
    outputs
}

/// [`assert_no_leak`] over every output.
pub fn assert_no_leak_in(outputs: &[(&str, String)], secrets: &[&str]) {
    for (place, text) in outputs {
        assert_no_leak(place, text, secrets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_is_found() {
        let secret = "emu-rt-Secret/Value+\"quoted\"-0123456789";
        assert_eq!(base64(b"hello"), "aGVsbG8");
        for prefix in ["", "x", "xy", "xyz"] {
            let encoded = base64(format!("{prefix}{secret}!").as_bytes());
            assert!(forms(secret).iter().any(|f| encoded.contains(f.as_str())), "offset {}", prefix.len());
        }
        let json = serde_json::to_string(&serde_json::json!({"k": secret})).unwrap();
        assert!(forms(secret).iter().any(|f| json.contains(f.as_str())));
        let caught = std::panic::catch_unwind(|| assert_no_leak("here", &json, &[secret]));
        assert!(caught.is_err());
        assert_no_leak("clean text", "nothing to see", &[secret]);
    }
}
