//! Operations on keys (to be filled in).
