//! smartchat-verify: the auditor's ledger verifier (being built).
fn main() {}
