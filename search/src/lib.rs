//! smartchat-search (placeholder, filled by its issue).
