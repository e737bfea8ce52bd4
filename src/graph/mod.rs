//! Microsoft Graph: the operation model, the HTTP client, the per-tenant limiter, national
//! clouds, and the gateway: the one API the controller calls to read an operation.

pub mod client;
pub mod cloud;
pub mod gateway;
pub mod limiter;
pub mod model;
pub mod reset;
pub mod url;

pub use client::{GraphClient, GraphError, GraphErrorKind};
pub use cloud::Cloud;
pub use gateway::{Graph, Outcome};
pub use model::{LongRunningOperation, OperationState};
pub use url::{OperationRef, ids_in_location, operation_url};
