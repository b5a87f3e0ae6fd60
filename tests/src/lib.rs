//! smartchat-tests (placeholder, filled by its issue).
