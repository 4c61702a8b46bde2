//! The router's state is the application itself: every handler reaches the operations
//! through it.

pub use keyhaven_service::Service as AppState;
