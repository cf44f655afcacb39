//! Synthetic archive generator (being written).
