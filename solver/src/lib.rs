//! rbuild-solver (to be written).
