//! Offline assistant throughput (filled in later).
fn main() {}
