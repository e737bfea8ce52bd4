//! The one resetPassword POST. It never retries by itself: what an answer means for
//! at-most-once is decided in `decide_reset::verdict`, from what is reported here.
//! The password goes into the request body and nowhere else: not into errors, logs or metrics.

use std::time::Instant;

use url::Url;

use super::gateway::Graph;
use super::model::ErrorBody;
use crate::api_reset::PASSWORD_METHOD_ID;
use crate::credentials::{BearerToken, SecretString};
use crate::decide_reset::Answer;
use crate::http::{read_limited, retry_after};
use crate::outbound;
use crate::text::truncate;

/// Error bodies are small; a bigger answer is not read.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What one POST gave, with the ids support asks for.
pub struct ResetCall {
    pub answer: Answer,
    pub request_id: Option<String>,
    pub client_request_id: Option<String>,
}

/// `{root}/v1.0/users/{user}/authentication/methods/{passwordMethod}/resetPassword`, the user
/// as one path segment (`#` of a guest's `#EXT#` encoded by the URL library).
pub fn reset_url(root: &Url, user: &str) -> Url {
    let mut url = root.clone();
    url.path_segments_mut().expect("the Graph root is a base URL").pop_if_empty().extend([
        "v1.0",
        "users",
        user,
        "authentication",
        "methods",
        PASSWORD_METHOD_ID,
        "resetPassword",
    ]);
    url
}

impl Graph {
    /// Sends resetPassword once for `user` with `password`, using the credentials of Secret
    /// `secret` in `namespace`.
    pub async fn reset_password(
        &self,
        namespace: &str,
        secret: Option<&str>,
        user: &str,
        password: &SecretString,
    ) -> ResetCall {
        let BearerToken { token, budget: tenant, app_only, .. } = match self.credentials.token(namespace, secret).await
        {
            Ok(token) => token,
            Err(e) => {
                let answer = Answer::Unsent { reason: e.reason(), message: e.to_string() };
                return ResetCall { answer, request_id: None, client_request_id: None };
            }
        };
        self.limiter.acquire(&tenant).await;
        let url = reset_url(self.client.root(), user);
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let started = Instant::now();
        let body = serde_json::json!({ "newPassword": password.expose() });
        let sent = self
            .client
            .http()
            .post(url)
            .bearer_auth(token.expose())
            .header("client-request-id", &client_request_id)
            .header("return-client-request-id", "true")
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&body)
            .send()
            .await;
        drop(body);
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                self.metrics().graph_request(&tenant, "none", started.elapsed());
                let answer = unanswered(&e);
                tracing::info!(client_request_id = %client_request_id, error = %answer_text(&answer), "resetPassword got no answer");
                return ResetCall { answer, request_id: None, client_request_id: Some(client_request_id) };
            }
        };
        let status = response.status().as_u16();
        self.metrics().graph_request(&tenant, &status.to_string(), started.elapsed());
        let headers = response.headers().clone();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(|s| truncate(s, 2048));
        let request_id = header("request-id");
        let location = header("location");
        let wait = retry_after(&headers);
        if status == 429 {
            self.metrics().throttled(&tenant);
            self.limiter.throttled(&tenant, wait);
        } else if status == 401 {
            self.credentials.invalidate(namespace, secret);
        } else if (200..300).contains(&status) {
            self.limiter.succeeded(&tenant);
        }
        // The body of a 202 may carry a generated password: it is dropped unread.
        let message = if (200..300).contains(&status) {
            format!("Graph answered {status}")
        } else {
            let body = read_limited(response, MAX_BODY_BYTES).await.ok();
            let parsed: Option<ErrorBody> = body.and_then(|b| serde_json::from_slice(&b).ok());
            let code = parsed.as_ref().and_then(|b| b.error.code.clone()).unwrap_or_default();
            let text = parsed.and_then(|b| b.error.message).unwrap_or_default();
            let text = text.replace(password.expose(), "[password]");
            truncate(format!("Graph answered {status} {code}: {text}").trim_end_matches([' ', ':']), 400)
        };
        tracing::info!(
            status,
            request_id = request_id.as_deref().unwrap_or(""),
            client_request_id = %client_request_id,
            "resetPassword answered"
        );
        let answer =
            Answer::Http { status, location, retry_after: wait, message, request_id: request_id.clone(), app_only };
        ResetCall { answer, request_id, client_request_id: Some(client_request_id) }
    }
}

/// A request without an answer. Only a connect error proves that no byte of the request
/// left this process; a timeout or a connection lost later may have reached Graph.
fn unanswered(e: &reqwest::Error) -> Answer {
    let message = format!("the request to Graph failed: {}", outbound::describe(e));
    if e.is_connect() { Answer::NotConnected(message) } else { Answer::Lost(message) }
}

fn answer_text(answer: &Answer) -> &str {
    match answer {
        Answer::NotConnected(m) | Answer::Lost(m) => m,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    async fn post(url: String) -> reqwest::Error {
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build().unwrap();
        client.post(url).json(&serde_json::json!({"newPassword": "x"})).send().await.expect_err("no answer")
    }

    #[tokio::test]
    async fn only_a_refused_connection_counts_as_not_sent() {
        crate::install_crypto_provider();
        // Nobody listens: the request never left.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let refused = unanswered(&post(format!("http://127.0.0.1:{port}/r")).await);
        assert!(matches!(refused, Answer::NotConnected(_)), "{refused:?}");
        // The server reads the whole request, then hangs up: Graph may have acted.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = socket.read(&mut buf).await;
            drop(socket);
        });
        let dropped = unanswered(&post(format!("http://{addr}/r")).await);
        assert!(matches!(dropped, Answer::Lost(_)), "{dropped:?}");
    }

    #[test]
    fn the_user_is_one_path_segment_after_the_configured_root() {
        let root = Url::parse("https://graph.microsoft.com").unwrap();
        assert_eq!(
            reset_url(&root, "guest_x.com#EXT#@contoso.com").as_str(),
            "https://graph.microsoft.com/v1.0/users/guest_x.com%23EXT%23@contoso.com/authentication/methods/\
             28c10230-6103-485e-b985-444c60001490/resetPassword"
        );
        let root = Url::parse("http://127.0.0.1:8080/").unwrap();
        assert!(
            reset_url(&root, "bob@contoso.com")
                .as_str()
                .starts_with("http://127.0.0.1:8080/v1.0/users/bob@contoso.com/")
        );
    }
}
