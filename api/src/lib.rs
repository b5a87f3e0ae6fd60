//! smartchat-api (placeholder, filled by its issue).
