//! smartchat-ledger (placeholder, filled by its issue).
