//! rbuild-cache (to be written).
