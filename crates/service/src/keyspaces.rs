//! Operations on keyspaces (to be filled in).
