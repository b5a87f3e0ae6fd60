//! smartchat-core (placeholder, filled by its issue).
