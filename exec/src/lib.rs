//! rbuild-exec (to be written).
