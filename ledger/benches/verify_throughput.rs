//! Verification throughput benchmark (being built).
fn main() {}
