//! Operations on owners (to be filled in).
