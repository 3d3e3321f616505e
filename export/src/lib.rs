//! rbuild-export (to be written).
