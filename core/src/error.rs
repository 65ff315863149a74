//! The node layer's errors, and their one mapping to gRPC status codes: retryable failures
//! become `Unavailable`, everything the caller must change becomes a permanent code.

use isms_domain::directive::InputError;
use isms_domain::records::CorruptRecord;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The operator's or peer's input is malformed; nothing was stored.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A peer broke the link protocol (sequence gap, empty envelope); nothing was applied.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The caller's identity may not do this.
    #[error("permission denied: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// An ID already names something else (a directive issued again with other content).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The request does not fit the directive's current state (confirming one already
    /// returned, say).
    #[error("{0}")]
    State(String),
    #[error(transparent)]
    Store(#[from] isms_store::StoreError),
    #[error(transparent)]
    Corrupt(#[from] CorruptRecord),
    /// The node is stopping (or stopped after a fatal store error); try again later.
    #[error("node is shutting down")]
    ShuttingDown,
}

impl From<NodeError> for tonic::Status {
    fn from(e: NodeError) -> Self {
        let msg = e.to_string();
        match e {
            NodeError::Input(_) | NodeError::Protocol(_) => tonic::Status::invalid_argument(msg),
            NodeError::Forbidden(_) => tonic::Status::permission_denied(msg),
            NodeError::NotFound(_) => tonic::Status::not_found(msg),
            NodeError::AlreadyExists(_) => tonic::Status::already_exists(msg),
            NodeError::State(_) => tonic::Status::failed_precondition(msg),
            NodeError::ShuttingDown => tonic::Status::unavailable(msg),
            NodeError::Store(_) | NodeError::Corrupt(_) => tonic::Status::internal(msg),
        }
    }
}
