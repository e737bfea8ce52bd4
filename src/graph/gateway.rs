//! The one Graph-facing API of the controller: credentials, the tenant's rate limit and one
//! GET, with the feedback that belongs to them (the limiter learns about throttling, a
//! rejected token is forgotten) kept here rather than in every caller.

use std::sync::Arc;

use url::Url;

use super::client::{GraphClient, GraphError, GraphErrorKind};
use super::limiter::TenantLimiter;
use super::model::LongRunningOperation;
use crate::credentials::{BearerToken, CredentialError, Credentials};
use crate::metrics::Metrics;

/// What one attempt to read an operation gave.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Graph answered with the operation.
    Answer(LongRunningOperation),
    /// Graph (or the way to it) failed.
    Graph(GraphError),
    /// No token could be had: no request was sent.
    Credentials(CredentialError),
}

pub struct Graph {
    pub client: GraphClient,
    pub credentials: Credentials,
    pub limiter: TenantLimiter,
    metrics: Arc<Metrics>,
}

impl Graph {
    pub fn new(client: GraphClient, credentials: Credentials, limiter: TenantLimiter, metrics: Arc<Metrics>) -> Self {
        Graph { client, credentials, limiter, metrics }
    }

    /// Reads the operation at `url` with the credentials of Secret `secret` in `namespace`
    /// (None: the operator's workload identity).
    pub async fn read_operation(&self, namespace: &str, secret: Option<&str>, url: &Url) -> Outcome {
        let BearerToken { token, budget: tenant, app_only, .. } = match self.credentials.token(namespace, secret).await
        {
            Ok(token) => token,
            Err(e) => return Outcome::Credentials(e),
        };
        self.limiter.acquire(&tenant).await;
        match self.client.get_operation(url, &token, &tenant).await {
            Ok(op) => {
                self.limiter.succeeded(&tenant);
                Outcome::Answer(op)
            }
            Err(e) => {
                self.feedback(&e, &tenant, namespace, secret);
                Outcome::Graph(classify(e, app_only))
            }
        }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn feedback(&self, e: &GraphError, tenant: &str, namespace: &str, secret: Option<&str>) {
        match e.kind {
            GraphErrorKind::Throttled => {
                self.metrics.throttled(tenant);
                self.limiter.throttled(tenant, e.retry_after);
            }
            // The next attempt reads the (maybe already fixed) Secret and asks for a new token.
            GraphErrorKind::Unauthorized => self.credentials.invalidate(namespace, secret),
            _ => {}
        }
    }
}

/// A 403 to an app-only token is Microsoft's documented refusal of application permissions
/// for this API, not a missing role: it gets its own kind, so the condition says what to use.
pub fn classify(mut e: GraphError, app_only: bool) -> GraphError {
    if app_only && e.kind == GraphErrorKind::Forbidden {
        e.kind = GraphErrorKind::AppOnlyForbidden;
    }
    e
}
