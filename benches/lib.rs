//! Nothing here: the benches are the other files of this directory (see Cargo.toml).
