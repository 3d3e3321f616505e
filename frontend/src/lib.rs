//! rbuild-frontend (to be written).
