//! Nothing here: the model checks are the tests of this crate (`tests/`).
