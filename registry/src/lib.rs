//! rbuild-registry (to be written).
