//! Microsoft Graph: the operation model, the HTTP client, credentials and national clouds.

pub mod auth;
pub mod client;
pub mod cloud;
pub mod limiter;
pub mod model;

pub use client::{GraphClient, GraphError, GraphErrorKind};
pub use cloud::Cloud;
pub use model::{LongRunningOperation, OperationState};
